"""The book's optimisers (sec. 6.1, ``common/optimizer.py``) as optax ``GradientTransformation``s.

Each follows the book's update exactly, constants included: AdaGrad, RMSprop
and Adam add 1e-7 *outside* the square root (``lr * g / (sqrt(h) + 1e-7)``),
and Adam folds both bias corrections into the step size
(``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``), which optax's
``adagrad``, ``rmsprop`` and ``adam`` do not. Where an optax piece computes the
same thing (plain SGD, RMSprop's moment) it is used; the rest are small
transforms written like optax's own. Each returns updates to add to the
parameters (``optax.apply_updates``).
"""

import inspect
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


def sgd(lr=0.1):
    """The book's ``SGD``: ``W -= lr * g``. The default rate is its ``train_neuralnet.py``'s 0.1
    (the class's own default, 0.01, is what its other scripts pass)."""
    return optax.sgd(lr)


class MomentumState(NamedTuple):
    v: optax.Updates  # velocity, a pytree like the parameters


def momentum(lr=0.01, momentum=0.9):
    """The book's ``Momentum``: ``v = momentum * v - lr * g``, ``W += v``."""

    def init(params):
        return MomentumState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        v = jax.tree.map(lambda v, g: momentum * v - lr * g, state.v, grads)
        return v, MomentumState(v)

    return optax.GradientTransformation(init, update)


def nesterov(lr=0.01, momentum=0.9):
    """The first book's ``Nesterov`` (``common/optimizer.py`` since its commit 89eadd0): the
    parameters move with the old velocity, then the velocity is updated,
    ``W += momentum**2 * v - (1 + momentum) * lr * g``, then ``v = momentum * v - lr * g``
    (the form of arXiv 1212.0901). The first book's recipes take this one; the sequel's
    order is ``nesterov_sequel``."""

    def init(params):
        return MomentumState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        updates = jax.tree.map(lambda v, g: momentum * momentum * v - (1 + momentum) * lr * g, state.v, grads)
        v = jax.tree.map(lambda v, g: momentum * v - lr * g, state.v, grads)
        return updates, MomentumState(v)

    return optax.GradientTransformation(init, update)


def nesterov_sequel(lr=0.01, momentum=0.9):
    """The sequel's ``Nesterov`` (*Deep Learning from Scratch 2*, ``common/optimizer.py``, as the
    first book had it before its commit 89eadd0): the velocity is updated first,
    ``v = momentum * v - lr * g``, and the parameters move with the new one,
    ``W += momentum**2 * v - (1 + momentum) * lr * g``."""

    def init(params):
        return MomentumState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        v = jax.tree.map(lambda v, g: momentum * v - lr * g, state.v, grads)
        updates = jax.tree.map(lambda v, g: momentum * momentum * v - (1 + momentum) * lr * g, v, grads)
        return updates, MomentumState(v)

    return optax.GradientTransformation(init, update)


class AdaGradState(NamedTuple):
    h: optax.Updates  # sum of squared gradients, like the parameters


def adagrad(lr=0.01, eps=1e-7):
    """The book's ``AdaGrad``: ``h += g * g``, ``W -= lr * g / (sqrt(h) + 1e-7)``."""

    def init(params):
        return AdaGradState(jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params
        h = jax.tree.map(lambda h, g: h + g * g, state.h, grads)
        updates = jax.tree.map(lambda h, g: -lr * g / (jnp.sqrt(h) + eps), h, grads)
        return updates, AdaGradState(h)

    return optax.GradientTransformation(init, update)


def rmsprop(lr=0.01, decay_rate=0.99, eps=1e-7):
    """The book's ``RMSprop``: ``h = decay_rate * h + (1 - decay_rate) * g * g``,
    ``W -= lr * g / (sqrt(h) + 1e-7)``: optax's ``scale_by_rms`` with the epsilon outside
    the root, then the step."""
    return optax.chain(optax.scale_by_rms(decay=decay_rate, eps=eps, initial_scale=0.0, eps_in_sqrt=False),
                       optax.scale(-lr))


class AdamState(NamedTuple):
    count: jax.Array  # int32 scalar: updates done, the book's ``iter``
    m: optax.Updates  # first moment, like the parameters
    v: optax.Updates  # second moment, like the parameters


def adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-7):
    """The book's ``Adam``: ``t += 1``, ``lr_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)``,
    ``m += (1 - beta1) * (g - m)``, ``v += (1 - beta2) * (g**2 - v)``,
    ``W -= lr_t * m / (sqrt(v) + 1e-7)``."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return AdamState(jnp.zeros((), jnp.int32), zeros, zeros)

    def update(grads, state, params=None):
        del params
        t = state.count + 1
        m = jax.tree.map(lambda m, g: m + (1 - beta1) * (g - m), state.m, grads)
        v = jax.tree.map(lambda v, g: v + (1 - beta2) * (g ** 2 - v), state.v, grads)

        def step(m, v):
            t_ = t.astype(jnp.promote_types(m.dtype, jnp.float32))  # bfloat16 cannot count far
            lr_t = lr * jnp.sqrt(1.0 - beta2 ** t_) / (1.0 - beta1 ** t_)
            return (-lr_t * m / (jnp.sqrt(v) + eps)).astype(m.dtype)

        return jax.tree.map(step, m, v), AdamState(t, m, v)

    return optax.GradientTransformation(init, update)


def clip_grads(max_norm):
    """The sequel's ``clip_grads`` (*Deep Learning from Scratch 2*, sec. 5.5.3, ``common/util.py``) as
    an optax transformation: ``total_norm = sqrt(sum of every g**2)``, ``rate = max_norm /
    (total_norm + 1e-6)``, and the gradients scaled by ``rate`` only when ``rate < 1``.

    Chain it before an optimiser: ``optax.chain(clip_grads(5.0), optimizers.adam(0.001))``. It
    differs from ``optax.clip_by_global_norm`` by the sequel's 1e-6 in the denominator. The norm
    is computed in the widest of the gradients' dtypes (float32 at least): float64 gradients are
    clipped exactly as the sequel's NumPy code clips them.
    """
    def init(params):
        del params
        return optax.EmptyState()

    def update(grads, state, params=None):
        del params
        leaves = jax.tree.leaves(grads)
        # The sum of squares in the gradients' own dtype (float64 stays float64); half
        # precision is summed in float32, where its squares cannot overflow.
        dtype = jnp.result_type(*leaves, jnp.float32) if leaves else jnp.float32
        total_norm = jnp.sqrt(sum(jnp.sum(g.astype(dtype) ** 2) for g in leaves))
        rate = max_norm / (total_norm + 1e-6)
        scale = jnp.where(rate < 1, rate, 1.0)
        return jax.tree.map(lambda g: (g * scale).astype(g.dtype), grads), state

    return optax.GradientTransformation(init, update)


class Optimizer(NamedTuple):
    """An entry of ``OPTIMIZERS``."""
    make: Callable[..., optax.GradientTransformation]  # learning rate -> the transformation
    learning_rate: float  # its default learning rate: the default of ``make``'s ``lr``


def _entry(make):
    return Optimizer(make, inspect.signature(make).parameters["lr"].default)


OPTIMIZERS = {name: _entry(make) for name, make in (
    ("sgd", sgd), ("momentum", momentum), ("nesterov", nesterov), ("adagrad", adagrad), ("rmsprop", rmsprop),
    ("adam", adam))}
"""The book's optimiser set (sec. 6.1) by name, each an ``Optimizer``: its update exactly as
``common/optimizer.py`` and its default learning rate, the one written in its function's
signature (SGD 0.1, the rate of the book's ``train_neuralnet.py``; Adam 0.001; the others 0.01)."""
