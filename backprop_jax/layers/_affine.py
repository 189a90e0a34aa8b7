"""The Affine layer ``out = x @ W + b`` for a batch (sec. 5.6.2)."""

import math

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import (
    as_float_array, batch_sharded, contraction_sharding, like_inputs, require_ndim, sharding_like)


@jax.custom_vjp
def affine(x, W, b):
    """Affine layer: the book's batched ``Affine`` (sec. 5.6.2).

    Args:
      x: float array of shape (N, d1, d2, ...); it is flattened to (N, D) with
        D = d1 * d2 * ..., as the book does for image batches.
      W: float array of shape (D, M).
      b: float array of shape (M,).
    Returns:
      ``x.reshape(N, D) @ W + b``, of shape (N, M).

    Backward: ``dx = dout @ W.T`` reshaped back to x's shape,
    ``dW = x.T @ dout`` and ``db = sum(dout, axis=0)``.
    """
    return _affine_fwd(x, W, b)[0]


def _affine_fwd(x, W, b):
    x = as_float_array("affine", "x", x)
    W = as_float_array("affine", "W", W)
    b = as_float_array("affine", "b", b)
    if x.ndim < 2:
        raise ValueError(
            f"affine: x must have shape (N, d1, ...) with a leading batch axis, "
            f"got shape {x.shape}; for one sample use x[None]")
    require_ndim("affine", "W", W, 2, "(D, M)")
    require_ndim("affine", "b", b, 1, "(M,)")
    D = math.prod(x.shape[1:])
    if D != W.shape[0]:
        raise ValueError(
            f"affine: x of shape {x.shape} flattens to (N, D) with D = {D}, "
            f"but W of shape {W.shape} expects D = {W.shape[0]} rows")
    if b.shape[0] != W.shape[1]:
        raise ValueError(
            f"affine: b of shape {b.shape} does not match the {W.shape[1]} "
            f"columns of W of shape {W.shape}")
    out = jnp.dot(x.reshape(x.shape[0], D), W) + b[None, :]
    # The inputs are kept as given (JAX saves an input residual without a
    # copy); the backward reshapes x, which is free, and reads its shape.
    return out, (x, W, b)


def _affine_bwd(res, dout):
    x, W, b = res
    x2 = x.reshape(x.shape[0], W.shape[0])
    # Under explicit sharding a contraction over a split axis must say how its result is sharded:
    # dx like x's batch, dW like the parameter it is the gradient of (replicated where W is not).
    dx = jnp.dot(dout, W.T, out_sharding=contraction_sharding(batch_sharded(x, 2), dout, W))
    dx = dx.reshape(x.shape).astype(x.dtype)
    dW = jnp.dot(x2.T, dout, out_sharding=contraction_sharding(sharding_like(W), x, dout)).astype(W.dtype)
    db = jnp.sum(dout, axis=0).astype(b.dtype)
    return like_inputs((dx, dW, db), res)


affine.defvjp(_affine_fwd, _affine_bwd)
