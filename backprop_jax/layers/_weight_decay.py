"""L2 weight decay, the book's regulariser (sec. 6.4.2)."""

import functools

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def weight_decay(Ws, weight_decay_lambda):
    """Weight-decay penalty ``lambda / 2 * sum(W ** 2)`` over all weights.

    Args:
      Ws: a sequence (or any pytree) of float weight arrays, e.g. ``(W1, W2)``.
      weight_decay_lambda: the decay strength, a Python float >= 0. It is
        static (``nondiff_argnums``): under ``jit`` or ``vmap`` close over it
        (a traced value raises ``UnexpectedTracerError``); to trace or vmap
        the strength, scale the output instead, ``lam * weight_decay(Ws, 1.0)``.
    Returns:
      A scalar, added to the loss as in the book's ``MultiLayerNet.loss``.

    Backward: ``dW = dout * lambda * W`` for every ``W``, the term the book
    adds to each ``dW`` in ``MultiLayerNet.gradient``.
    """
    return _weight_decay_fwd(Ws, weight_decay_lambda)[0]


def _weight_decay_fwd(Ws, weight_decay_lambda):
    if not weight_decay_lambda >= 0:
        raise ValueError(f"weight_decay: weight_decay_lambda must be >= 0, got {weight_decay_lambda}")
    Ws = jax.tree_util.tree_map(lambda W: as_float_array("weight_decay", "W", W), Ws)
    out = 0.5 * weight_decay_lambda * sum(jnp.sum(W ** 2) for W in jax.tree_util.tree_leaves(Ws))
    return jnp.asarray(out), Ws


def _weight_decay_bwd(weight_decay_lambda, Ws, dout):
    dWs = jax.tree_util.tree_map(lambda W: (dout * weight_decay_lambda * W).astype(W.dtype), Ws)
    return (jax.tree_util.tree_map(lambda dW, W: like_inputs((dW,), (W,))[0], dWs, Ws),)


weight_decay.defvjp(_weight_decay_fwd, _weight_decay_bwd)
