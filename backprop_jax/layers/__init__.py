"""The hand rules: every layer of the chapter as a ``jax.custom_vjp`` whose backward is the book's.

One family per file, each written as the primal, ``_fwd`` (the book's
``forward``, returning what its layer object saves), ``_bwd`` (the book's
``backward``) and ``defvjp``, side by side. Nothing here knows of networks,
training or checking.
"""

from backprop_jax.layers._activations import relu, sigmoid
from backprop_jax.layers._affine import affine
from backprop_jax.layers._basic import add, mul
from backprop_jax.layers._batch_norm import batch_norm, init_batch_norm_state
from backprop_jax.layers._conv import col2im, convolution, im2col, max_pooling
from backprop_jax.layers._conv_xla import (
    CONV_METHODS, ConvMethod, conv_method, convolution_xla, default_conv_method, max_pooling_xla)
from backprop_jax.layers._dropout import dropout
from backprop_jax.layers._recurrent import gru_cell, lstm_cell, rnn_cell, time_bilstm, time_gru, time_lstm, time_rnn
from backprop_jax.layers._attention import attention, attention_weight, attention_weights, time_attention, weight_sum
from backprop_jax.layers._sequence import (
    embedding, embedding_dot, matmul, sigmoid_with_loss, time_affine, time_dropout, time_sigmoid_with_loss,
    time_softmax_with_loss)
from backprop_jax.layers._negative_sampling import UnigramSampler, negative_sampling_loss
from backprop_jax.layers._softmax import cross_entropy_error, softmax, softmax_with_loss
from backprop_jax.layers._weight_decay import weight_decay

__all__ = ["mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss", "weight_decay", "dropout",
           "batch_norm", "init_batch_norm_state", "convolution", "max_pooling", "im2col", "col2im",
           "softmax", "cross_entropy_error", "convolution_xla", "max_pooling_xla", "CONV_METHODS", "ConvMethod",
           "conv_method", "default_conv_method",
           # The sequel's (Deep Learning from Scratch 2): words and sequences.
           "matmul", "embedding", "embedding_dot", "sigmoid_with_loss", "time_affine", "time_dropout",
           "time_softmax_with_loss", "rnn_cell", "time_rnn", "lstm_cell", "time_lstm",
           "gru_cell", "time_gru", "UnigramSampler", "negative_sampling_loss", "attention_weight", "weight_sum", "attention", "time_attention", "attention_weights",
           "time_bilstm", "time_sigmoid_with_loss"]
