"""Dropout, the book's regulariser (sec. 6.4.3)."""

import functools

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def dropout(x, key, drop_rate, train):
    """Dropout layer: the book's ``Dropout`` (sec. 6.4.3).

    Args:
      x: float array of any shape.
      key: a PRNG key; it draws the mask in training and gets no cotangent.
      drop_rate: fraction of units set to zero in training, in [0, 1) (the
        book's ``dropout_ratio``).
      train: True to drop units (``out = x * mask`` with
        ``mask = uniform > drop_rate``), False for evaluation.
    Returns:
      An array of x's shape.

    ``drop_rate`` and ``train`` are static (``nondiff_argnums``): Python
    values, closed over under ``jit``/``vmap`` (a traced value raises
    ``UnexpectedTracerError``).

    As in the book this is not "inverted" dropout: training keeps the
    surviving units unscaled and evaluation scales every unit by
    ``1 - drop_rate`` instead, so that expected activations match.

    Backward: ``dx = dout * mask`` in training, ``dout * (1 - drop_rate)`` in evaluation.
    """
    return _dropout_fwd(x, key, drop_rate, train)[0]


def _dropout_fwd(x, key, drop_rate, train):
    x = as_float_array("dropout", "x", x)
    if not 0 <= drop_rate < 1:
        raise ValueError(f"dropout: drop_rate must be in [0, 1), got {drop_rate}")
    if not train:
        return x * (1.0 - drop_rate), None
    mask = jax.random.uniform(key, x.shape) > drop_rate
    out = jnp.where(mask, x, jnp.zeros_like(x))
    return out, mask


def _dropout_bwd(drop_rate, train, mask, dout):
    if not train:
        return dout * (1.0 - drop_rate), None
    dx = jnp.where(mask, dout, jnp.zeros_like(dout))
    return dx, None


dropout.defvjp(_dropout_fwd, _dropout_bwd)
