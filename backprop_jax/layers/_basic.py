"""The chapter's first two nodes: multiplication and addition (sec. 5.4).

Both broadcast like ``jnp.multiply`` / ``jnp.add``; the backward then sums each
cotangent back to its input's shape (a scalar price times an array of counts
gets a scalar ``dprice``).
"""

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs, require_broadcastable


def unbroadcast(d, shape):
    """Sums ``d`` over the axes that broadcasting added to an input of ``shape``."""
    lead = d.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, n in enumerate(shape) if n == 1 and d.shape[lead + i] != 1)
    return jnp.sum(d, axis=axes).reshape(shape) if axes else d


@jax.custom_vjp
def mul(x, y):
    """Multiplication node ``out = x * y``: the book's ``MulLayer`` (sec. 5.4.1).

    Args:
      x: float array (or Python float).
      y: float array (or Python float) of a shape broadcast-compatible with x's.
    Returns:
      ``x * y``, of the broadcast shape.

    Backward: ``dx = dout * y`` and ``dy = dout * x``; the inputs swap places.
    """
    return _mul_fwd(x, y)[0]


def _mul_fwd(x, y):
    x, y = as_float_array("mul", "x", x), as_float_array("mul", "y", y)
    require_broadcastable("mul", x, y)
    out = x * y
    return out, (x, y)


def _mul_bwd(res, dout):
    x, y = res
    dx = unbroadcast(dout * y, x.shape).astype(x.dtype)
    dy = unbroadcast(dout * x, y.shape).astype(y.dtype)
    return like_inputs((dx, dy), res)


mul.defvjp(_mul_fwd, _mul_bwd)


@jax.custom_vjp
def add(x, y):
    """Addition node ``out = x + y``: the book's ``AddLayer`` (sec. 5.4.2).

    Args:
      x: float array (or Python float).
      y: float array (or Python float) of a shape broadcast-compatible with x's.
    Returns:
      ``x + y``, of the broadcast shape.

    Backward: ``dx = dy = dout``; addition passes the gradient on unchanged.
    """
    return _add_fwd(x, y)[0]


def _add_fwd(x, y):
    x, y = as_float_array("add", "x", x), as_float_array("add", "y", y)
    require_broadcastable("add", x, y)
    out = x + y
    # The book's AddLayer saves nothing. We keep the inputs for their shapes
    # alone; JAX stores an input returned as a residual without a copy.
    return out, (x, y)


def _add_bwd(res, dout):
    x, y = res
    dx = unbroadcast(dout * 1, x.shape).astype(x.dtype)
    dy = unbroadcast(dout * 1, y.shape).astype(y.dtype)
    return like_inputs((dx, dy), res)


add.defvjp(_add_fwd, _add_bwd)
