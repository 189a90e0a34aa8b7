"""L2 weight decay, the book's regulariser (sec. 6.4.2)."""

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs


@jax.custom_vjp
def weight_decay(Ws, weight_decay_lambda):
    """Weight-decay penalty ``lambda / 2 * sum(W ** 2)`` over all weights.

    Args:
      Ws: a sequence (or any pytree) of float weight arrays, e.g. ``(W1, W2)``.
      weight_decay_lambda: the decay strength, >= 0: a Python float or a
        scalar array, traced like any argument, so ``jit`` and ``vmap`` over
        it just work (the random search vmaps training over it). A negative
        value is refused where it is known, outside ``jit``.
    Returns:
      A scalar of the weights' dtype, added to the loss as in the book's
      ``MultiLayerNet.loss``.

    Backward: ``dW = dout * lambda * W`` for every ``W``, the term the book
    adds to each ``dW`` in ``MultiLayerNet.gradient``; and for the strength
    itself ``dlambda = dout * sum(W ** 2) / 2``, the penalty's true
    derivative (the book never differentiates it; a gradient-based search
    over the strength needs it, and zero would be silently wrong).
    """
    return _weight_decay_fwd(Ws, weight_decay_lambda)[0]


def _weight_decay_fwd(Ws, weight_decay_lambda):
    lam = jnp.asarray(weight_decay_lambda)
    if lam.ndim != 0 or not jnp.issubdtype(lam.dtype, jnp.floating) and not jnp.issubdtype(lam.dtype, jnp.integer):
        raise TypeError(f"weight_decay: weight_decay_lambda must be a real scalar, got shape {lam.shape} "
                        f"and dtype {lam.dtype}")
    if not isinstance(lam, jax.core.Tracer) and not bool(lam >= 0):
        raise ValueError(f"weight_decay: weight_decay_lambda must be >= 0, got {weight_decay_lambda}")
    Ws = jax.tree_util.tree_map(lambda W: as_float_array("weight_decay", "W", W), Ws)
    leaves = jax.tree_util.tree_leaves(Ws)
    dtype = jnp.result_type(*leaves) if leaves else lam.dtype
    squares = sum(jnp.sum(W ** 2) for W in leaves)
    out = (0.5 * lam.astype(dtype) * squares).astype(dtype)
    return out, (Ws, weight_decay_lambda, squares)


def _weight_decay_bwd(residuals, dout):
    Ws, weight_decay_lambda, squares = residuals
    lam = jnp.asarray(weight_decay_lambda)
    dWs = jax.tree_util.tree_map(lambda W: (dout * lam * W).astype(W.dtype), Ws)
    dWs = jax.tree_util.tree_map(lambda dW, W: like_inputs((dW,), (W,))[0], dWs, Ws)
    if not jnp.issubdtype(lam.dtype, jnp.floating):
        return dWs, None  # an integer strength has no cotangent
    return dWs, like_inputs(((0.5 * dout * squares).astype(lam.dtype),), (lam,))[0]


weight_decay.defvjp(_weight_decay_fwd, _weight_decay_bwd)
