"""Activation layers: ReLU and Sigmoid (sec. 5.5)."""

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array


@jax.custom_vjp
def relu(x):
    """ReLU layer ``out = max(x, 0)``: the book's ``Relu`` (sec. 5.5.1).

    Args:
      x: float array of any shape.
    Returns:
      An array of ``x``'s shape and dtype.

    Backward: ``dout`` passes where ``x > 0`` and is zeroed where ``mask = x <= 0``.
    """
    return _relu_fwd(x)[0]


def _relu_fwd(x):
    x = as_float_array("relu", "x", x)
    mask = x <= 0
    out = jnp.where(mask, jnp.zeros_like(x), x)
    return out, mask


def _relu_bwd(mask, dout):
    # mask is x <= 0, so the derivative at exactly 0 is taken as 0, as in the
    # book and in jax.nn.relu.
    dx = jnp.where(mask, jnp.zeros_like(dout), dout)
    return (dx,)


relu.defvjp(_relu_fwd, _relu_bwd)


@jax.custom_vjp
def sigmoid(x):
    """Sigmoid layer ``out = 1 / (1 + exp(-x))``: the book's ``Sigmoid`` (sec. 5.5.2).

    Args:
      x: float array of any shape.
    Returns:
      An array of ``x``'s shape and dtype, in [0, 1].

    The forward uses ``jax.lax.logistic``, which stays finite for any finite
    ``x`` (the naive ``1 / (1 + exp(-x))`` overflows ``exp`` for x < -88 in
    float32). Backward: ``dx = dout * (1 - out) * out`` from the saved output.
    """
    return _sigmoid_fwd(x)[0]


def _sigmoid_fwd(x):
    x = as_float_array("sigmoid", "x", x)
    out = jax.lax.logistic(x)
    return out, out


def _sigmoid_bwd(out, dout):
    dx = dout * (1.0 - out) * out
    return (dx,)


sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)
