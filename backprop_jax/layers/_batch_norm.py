"""Batch normalisation with the book's staged backward (sec. 6.3)."""

import functools
import math

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs


def init_batch_norm_state(num_features, dtype=jnp.float32):
    """Running statistics for ``batch_norm``: ``{"running_mean": 0, "running_var": 0}`` of shape (D,)."""
    return {"running_mean": jnp.zeros(num_features, dtype), "running_var": jnp.zeros(num_features, dtype)}


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def batch_norm(x, gamma, beta, state, train, momentum=0.9, eps=1e-6):
    """Batch normalisation: the book's ``BatchNormalization`` (sec. 6.3).

    Args:
      x: float array of shape (N, D), or (N, C, H, W), which the book flattens
        to (N, C*H*W): every activation is normalised on its own, not per
        channel.
      gamma: float array of shape (D,): the scale.
      beta: float array of shape (D,): the shift.
      state: ``{"running_mean": (D,), "running_var": (D,)}`` (see
        ``init_batch_norm_state``); returned updated, never mutated.
      train: True to normalise with the batch's mean and variance and update
        the running ones; False to normalise with the running ones.
      momentum: running = momentum * running + (1 - momentum) * batch (0.9 in the book).
      eps: added to the variance (the book's ``10e-7``, that is 1e-6).
    Returns:
      ``(out, new_state)``: out of x's shape; new_state like ``state``.

    ``train``, ``momentum`` and ``eps`` are static (``nondiff_argnums``):
    Python values, closed over under ``jit``/``vmap``.

    In training the batch must not be empty (``ValueError``). A batch of one
    example has variance 0, so ``xn`` is 0 and ``out`` is ``beta`` whatever
    ``x`` is, and the running variance is pulled towards 0; as in the book
    nothing stops it, but train with batches of at least a few examples.

    Backward (training), the book's stages: ``dbeta = sum(dout)``,
    ``dgamma = sum(xn * dout)``, ``dxn = gamma * dout``, ``dxc = dxn / std``,
    ``dstd = -sum(dxn * xc / std**2)``, ``dvar = 0.5 * dstd / std``,
    ``dxc += 2 / N * xc * dvar``, ``dmu = sum(dxc)``, ``dx = dxc - dmu / N``.
    The running statistics are not differentiated.
    """
    return _batch_norm_fwd(x, gamma, beta, state, train, momentum, eps)[0]


def _batch_norm_fwd(x, gamma, beta, state, train, momentum, eps):
    x = as_float_array("batch_norm", "x", x)
    gamma = as_float_array("batch_norm", "gamma", gamma)
    beta = as_float_array("batch_norm", "beta", beta)
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm: x must have shape (N, D) or (N, C, H, W), got shape {x.shape}")
    D = math.prod(x.shape[1:])
    for name, a in (("gamma", gamma), ("beta", beta), ("running_mean", state["running_mean"]),
                    ("running_var", state["running_var"])):
        if a.shape != (D,):
            raise ValueError(f"batch_norm: {name} must have shape (D,) = ({D},) for x of shape "
                             f"{x.shape}, got {a.shape}")
    if train and x.shape[0] == 0:
        raise ValueError(f"batch_norm: the batch is empty (x of shape {x.shape}); training needs at least "
                         f"one example (and two to be meaningful) to take its mean and variance")
    x2 = x.reshape(x.shape[0], D)
    if train:
        mu = x2.mean(axis=0)
        xc = x2 - mu[None, :]
        var = jnp.mean(xc ** 2, axis=0)
        std = jnp.sqrt(var + eps)
        xn = xc / std[None, :]
        new_state = {
            "running_mean": momentum * state["running_mean"] + (1 - momentum) * jax.lax.stop_gradient(mu),
            "running_var": momentum * state["running_var"] + (1 - momentum) * jax.lax.stop_gradient(var)}
    else:
        xc = x2 - state["running_mean"][None, :]
        std = jnp.sqrt(state["running_var"] + eps)
        xn = xc / std[None, :]
        new_state = state
    out = (gamma[None, :] * xn + beta[None, :]).reshape(x.shape)
    return (out, new_state), (x, gamma, beta, xn, xc, std)


def _batch_norm_bwd(train, momentum, eps, res, cotangents):
    x, gamma, beta, xn, xc, std = res
    dout, _ = cotangents  # the running statistics get no gradient
    batch_size = x.shape[0]
    dout = dout.reshape(xn.shape)
    dbeta = dout.sum(axis=0)
    dgamma = jnp.sum(xn * dout, axis=0)
    dxn = gamma[None, :] * dout
    dxc = dxn / std[None, :]
    if train:
        dstd = -jnp.sum((dxn * xc) / (std * std)[None, :], axis=0)
        dvar = 0.5 * dstd / std
        dxc = dxc + (2.0 / batch_size) * xc * dvar[None, :]
        dmu = jnp.sum(dxc, axis=0)
        dx = dxc - dmu[None, :] / batch_size
    else:
        dx = dxc
    dx = dx.reshape(x.shape).astype(x.dtype)
    return like_inputs((dx, dgamma, dbeta), (x, gamma, beta)) + (None,)


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)
