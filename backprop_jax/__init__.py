"""backprop_jax: the backpropagation chapter of "Deep Learning from Scratch" in JAX.

Every layer is a pure function decorated with ``jax.custom_vjp`` whose
backward is the textbook's hand-derived rule. ``layer.fwd(*args)`` returns
``(out, residuals)`` and ``layer.bwd(residuals, dout)`` one cotangent per
argument, so the book's backward chain can be run by hand; ``jax.grad`` runs
the same rules automatically.

Modules: ``shopping`` (the apple and orange graphs).
"""

from backprop_jax import shopping
from backprop_jax._activations import relu, sigmoid
from backprop_jax._affine import affine
from backprop_jax._autodiff import without_hand_rules
from backprop_jax._basic import add, mul
from backprop_jax._gradcheck import (
    Comparison, Entry, GradcheckReport, assert_gradcheck, gradcheck)
from backprop_jax._softmax import cross_entropy_error, softmax, softmax_with_loss

__version__ = "0.1.0"

__all__ = [
    # Layers with hand-written backward rules (chapter 5).
    "mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss",
    # Plain functions (chapters 3 and 4).
    "softmax", "cross_entropy_error",
    # Checking hand rules.
    "gradcheck", "assert_gradcheck", "GradcheckReport", "Entry", "Comparison",
    "without_hand_rules",
    # Modules.
    "shopping",
]
