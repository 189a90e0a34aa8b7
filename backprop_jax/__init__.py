"""backprop_jax: the backpropagation chapter of "Deep Learning from Scratch" in JAX.

Every layer is a pure function decorated with ``jax.custom_vjp`` whose
backward is the textbook's hand-derived rule. ``layer.fwd(*args)`` returns
``(out, residuals)`` and ``layer.bwd(residuals, dout)`` one cotangent per
argument, so the book's backward chain can be run by hand; ``jax.grad`` runs
the same rules automatically.

Modules: ``two_layer_net``, ``multi_layer_net`` and ``conv_net`` (the book's networks),
``serial`` (compose your own), ``datasets`` (MNIST), ``shopping`` (the apple
and orange graphs), ``graph`` (draw a computational graph with its values and
gradients).
"""

from backprop_jax import conv_net, datasets, graph, multi_layer_net, serial, shopping, two_layer_net
from backprop_jax._activations import relu, sigmoid
from backprop_jax._affine import affine
from backprop_jax._autodiff import without_hand_rules
from backprop_jax._basic import add, mul
from backprop_jax._batch_norm import batch_norm, init_batch_norm_state
from backprop_jax._conv import col2im, convolution, im2col, max_pooling
from backprop_jax._dropout import dropout
from backprop_jax._gradcheck import (
    Comparison, Entry, GradcheckReport, assert_gradcheck, gradcheck)
from backprop_jax._model import Model, accuracy
from backprop_jax._softmax import cross_entropy_error, softmax, softmax_with_loss
from backprop_jax._train import (
    OPTIMIZERS, Epoch, TrainConfig, TrainingDiverged, TrainState, data_parallel_mesh, init_state, train)
from backprop_jax._weight_decay import weight_decay

__version__ = "0.1.0"

__all__ = [
    # Layers with hand-written backward rules (chapter 5, sec. 6.4).
    "mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss", "weight_decay",
    # The rest of the book's layers (chapters 6 and 7).
    "dropout", "batch_norm", "init_batch_norm_state", "convolution", "max_pooling",
    "im2col", "col2im",
    # Plain functions (chapters 3 and 4).
    "softmax", "cross_entropy_error",
    # Checking hand rules.
    "gradcheck", "assert_gradcheck", "GradcheckReport", "Entry", "Comparison",
    "without_hand_rules",
    # Networks and learning.
    "Model", "accuracy", "train", "TrainConfig", "TrainState", "Epoch", "TrainingDiverged",
    "init_state", "OPTIMIZERS", "data_parallel_mesh",
    # Modules.
    "two_layer_net", "multi_layer_net", "conv_net", "serial", "datasets", "shopping", "graph",
]
