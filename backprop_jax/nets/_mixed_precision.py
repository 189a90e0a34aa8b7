"""Mixed precision as a model: compute in bfloat16, keep float32 master weights and a float32 loss."""

import jax
import jax.numpy as jnp

from backprop_jax.nets._model import Model


def _cast(tree, dtype):
    """Every floating-point leaf of ``tree`` as ``dtype``; integer leaves (labels, word ids, keys) unchanged."""
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree)


def mixed_precision(model: Model, compute_dtype=jnp.bfloat16) -> Model:
    """``model`` computing in ``compute_dtype``: the same ``Model``, trained by the same trainer.

    Args:
      model: a ``Model`` whose parameters are float32 (the master weights).
      compute_dtype: the dtype of the forward and the backward, default bfloat16.
    Returns:
      A ``Model`` whose ``apply`` casts the parameters, the state and the floating-point input
      to ``compute_dtype``, runs ``model.apply`` (every hand rule then runs in that dtype), and
      returns the scores as float32 and the new state in the state's own dtypes; the criterion,
      the penalty and so the loss are computed in float32. The casts' derivatives cast the
      cotangents back, so the gradients and the optimiser's update are the master weights'
      dtype: the usual mixed-precision training, as a wrapper that leaves the trainer alone.
    """
    compute_dtype = jnp.dtype(compute_dtype)
    if not jnp.issubdtype(compute_dtype, jnp.floating):
        raise ValueError(f"mixed_precision: compute_dtype must be a floating-point dtype, got {compute_dtype}")

    def apply(params, state, x, *, key=None, train=False):
        scores, new_state = model.apply(_cast(params, compute_dtype), _cast(state, compute_dtype),
                                        _cast(x, compute_dtype), key=key, train=train)
        new_state = jax.tree.map(lambda new, old: new.astype(jnp.result_type(old)), new_state, state)
        return scores.astype(jnp.float32), new_state

    return model._replace(apply=apply)
