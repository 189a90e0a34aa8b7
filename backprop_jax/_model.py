"""A network as three pure functions over a parameter pytree."""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class Model(NamedTuple):
    """A classifier: what training needs to know about a network.

    Every function is pure; parameters are an explicit pytree (a dict keyed
    like the book: ``W1``, ``b1``, ...). A network with batch normalisation
    or dropout is ``stateful``: it also carries a state (running statistics)
    that its loss returns updated, and its loss takes a PRNG key (dropout
    masks); its predict runs in evaluation mode.
    """
    init: Callable  # key -> params; stateful: key -> (params, state)
    predict: Callable  # (params, x of shape (N, ...)) -> scores (N, C); stateful: (params, state, x)
    loss: Callable  # (params, x, t) -> scalar loss; stateful: (params, state, x, t, key) -> (loss, state)
    stateful: bool = False


def accuracy(predict, params, x, t):
    """Fraction of rows of ``x`` whose arg-max score is the label: the book's ``accuracy``.

    Args:
      predict: ``(params, x) -> scores`` of shape (N, C).
      x: inputs of shape (N, ...).
      t: integer labels of shape (N,) or one-hot rows of shape (N, C).
    Returns:
      A float32 scalar in [0, 1].
    """
    y = jnp.argmax(predict(params, x), axis=1)
    t = jnp.asarray(t)
    if t.ndim != 1:
        t = jnp.argmax(t, axis=1)
    return jnp.mean((y == t).astype(jnp.float32))


def normal_weights(key, shapes, stds, dtype):
    """Book-style init: ``W = std * N(0, 1)``, ``b = 0``, keyed ``W1``, ``b1``, ..."""
    keys = jax.random.split(key, len(shapes))
    params = {}
    for i, ((fan_in, fan_out), std, k) in enumerate(zip(shapes, stds, keys), start=1):
        params[f"W{i}"] = (std * jax.random.normal(k, (fan_in, fan_out))).astype(dtype)
        params[f"b{i}"] = jnp.zeros(fan_out, dtype)
    return params
