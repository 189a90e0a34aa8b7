"""Networks: the ``Model`` contract, the layer library that composes the hand rules, the book's nets."""

from backprop_jax.nets import (
    conv_net, deep_conv_net, generation, multi_layer_net, nn, rnnlm, seq2seq, simple_rnnlm, two_layer_net, word2vec)
from backprop_jax.nets._mixed_precision import mixed_precision
from backprop_jax.nets._model import Metric, Model, carried_rows, correct, count_correct, sequential_rows, shuffled_rows

__all__ = ["Model", "Metric", "correct", "count_correct", "nn", "two_layer_net", "multi_layer_net", "conv_net",
           "deep_conv_net", "seq2seq", "rnnlm", "sequential_rows", "shuffled_rows", "word2vec", "simple_rnnlm",
           "generation", "carried_rows", "mixed_precision"]
