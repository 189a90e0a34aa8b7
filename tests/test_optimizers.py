"""The book's optimisers: each follows its update in ``common/optimizer.py``, written out
here in NumPy, over 100 steps with gradients from 1e-8 to 1."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import backprop_jax as bj


def book_sgd(lr):
    def update(params, grads, state):
        return params - lr * grads, state
    return update, None


def book_momentum(lr, momentum=0.9):
    def update(params, grads, v):
        v = momentum * v - lr * grads
        return params + v, v
    return update, 0.0


def book_nesterov(lr, momentum=0.9):
    # Book 1's common/optimizer.py at 07b1161 (the order since commit 89eadd0).
    def update(params, grads, v):
        params = params + momentum * momentum * v
        params = params - (1 + momentum) * lr * grads
        v = v * momentum
        v = v - lr * grads
        return params, v
    return update, 0.0


def book_nesterov_sequel(lr, momentum=0.9):
    # The sequel's common/optimizer.py at 842ae31c (book 1's order before 89eadd0).
    def update(params, grads, v):
        v = v * momentum
        v = v - lr * grads
        params = params + momentum * momentum * v
        return params - (1 + momentum) * lr * grads, v
    return update, 0.0


def book_adagrad(lr):
    def update(params, grads, h):
        h = h + grads * grads
        return params - lr * grads / (np.sqrt(h) + 1e-7), h
    return update, 0.0


def book_rmsprop(lr, decay_rate=0.99):
    def update(params, grads, h):
        h = h * decay_rate
        h = h + (1 - decay_rate) * grads * grads
        return params - lr * grads / (np.sqrt(h) + 1e-7), h
    return update, 0.0


def book_adam(lr, beta1=0.9, beta2=0.999):
    def update(params, grads, state):
        it, m, v = state
        it += 1
        lr_t = lr * np.sqrt(1.0 - beta2 ** it) / (1.0 - beta1 ** it)
        m = m + (1 - beta1) * (grads - m)
        v = v + (1 - beta2) * (grads ** 2 - v)
        return params - lr_t * m / (np.sqrt(v) + 1e-7), (it, m, v)
    return update, (0, 0.0, 0.0)


BOOK = {"sgd": book_sgd, "momentum": book_momentum, "nesterov": book_nesterov,
        "nesterov_sequel": book_nesterov_sequel, "adagrad": book_adagrad, "rmsprop": book_rmsprop, "adam": book_adam}


def gradient_sequence(steps=100, shape=(4, 6), seed=0):
    """Gradients whose magnitudes span 1e-8 to 1 (log-uniform), with random signs; some
    elements stay tiny for many steps, where the epsilon's place matters most."""
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(-8, 0, (steps, *shape))
    return np.where(rng.random((steps, *shape)) < 0.5, -1.0, 1.0) * magnitude


@pytest.mark.parametrize("name", list(BOOK))
@pytest.mark.parametrize("dtype, rtol", [(jnp.float64, 1e-10), (jnp.float32, 2e-5)])
def test_each_optimizer_is_the_books_update(name, dtype, rtol):
    lr = bj.OPTIMIZERS[name.removesuffix("_sequel")].learning_rate
    grads = gradient_sequence()
    book_update, book_state = BOOK[name](lr)
    expected = np.full(grads.shape[1:], 0.5)
    transform = getattr(bj.optimizers, name)(lr)
    params = {"W": jnp.full(grads.shape[1:], 0.5, dtype)}
    state = transform.init(params)
    for g in grads:
        expected, book_state = book_update(expected, g, book_state)
        updates, state = transform.update({"W": jnp.asarray(g, dtype)}, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(params["W"], expected, rtol=rtol, atol=0)
        assert params["W"].dtype == dtype


def test_the_trainer_uses_the_books_optimizers():
    for name, entry in bj.OPTIMIZERS.items():
        assert entry.make is getattr(bj.optimizers, name)
    # The transformation the config makes takes the book's AdaGrad step: W -= lr * g / (sqrt(g * g) + 1e-7).
    transform = bj.TrainConfig(optimizer="adagrad").make_optimizer()
    params, g = {"W": jnp.asarray([0.5, -0.25])}, {"W": jnp.asarray([0.2, -0.4])}
    updates, _ = transform.update(g, transform.init(params), params)
    np.testing.assert_allclose(updates["W"], -0.01 * np.array([0.2, -0.4]) / (np.array([0.2, 0.4]) + 1e-7),
                               rtol=1e-12)


def test_nesterov_takes_the_books_first_steps():
    # Book 1's common/optimizer.py at 07b1161 (commit 89eadd0), from v = 0: W += 0.9 * 0.9 * v (0);
    # W -= (1 + 0.9) * lr * g (-1.9 lr g); v *= 0.9 (0); v -= lr * g (-lr g).
    lr, g = 0.01, jnp.asarray([1.0, -2.0], jnp.float64)
    params = {"W": jnp.zeros(2, jnp.float64)}
    transform = bj.optimizers.nesterov(lr)
    updates, state = transform.update({"W": g}, transform.init(params), params)
    np.testing.assert_allclose(updates["W"], -1.9 * lr * np.asarray(g), rtol=1e-12)
    # Second step, same gradient: W += 0.81 * (-lr g) - 1.9 lr g = -2.71 lr g.
    updates, _ = transform.update({"W": g}, state, params)
    np.testing.assert_allclose(updates["W"], -2.71 * lr * np.asarray(g), rtol=1e-12)
    # The sequel's common/optimizer.py at 842ae31c updates v first: v = -lr g, then
    # W += 0.81 * v - 1.9 lr g = -2.71 lr g on the first step already; -3.439 lr g on the second.
    transform = bj.optimizers.nesterov_sequel(lr)
    updates, state = transform.update({"W": g}, transform.init(params), params)
    np.testing.assert_allclose(updates["W"], -2.71 * lr * np.asarray(g), rtol=1e-12)
    updates, _ = transform.update({"W": g}, state, params)
    np.testing.assert_allclose(updates["W"], -3.439 * lr * np.asarray(g), rtol=1e-12)
    # The first book's recipes name nesterov: its order is the trainer's.
    assert bj.OPTIMIZERS["nesterov"].make is bj.optimizers.nesterov


def test_where_the_epsilon_sits_shows_in_the_first_small_step():
    # g = 1e-4: the book's AdaGrad moves by lr * g / (|g| + 1e-7) = 0.00999; optax's
    # adagrad, with the epsilon inside the root, would move about a third as far.
    g = {"W": jnp.asarray([1e-4], jnp.float64)}
    for name, expected in (("adagrad", 0.01 * 1e-4 / (1e-4 + 1e-7)),
                           ("rmsprop", 0.01 * 1e-4 / (np.sqrt(0.01) * 1e-4 + 1e-7)),
                           ("adam", 0.001 * np.sqrt(1 - 0.999) / (1 - 0.9) * 0.1e-4 / (np.sqrt(0.001) * 1e-4 + 1e-7))):
        transform = getattr(bj.optimizers, name)(bj.OPTIMIZERS[name].learning_rate)
        updates, _ = transform.update(g, transform.init(g), g)
        np.testing.assert_allclose(-updates["W"][0], expected, rtol=1e-12)
    # optax's own adagrad (epsilon inside the root, its default initial accumulator 0.1) moves
    # far less: the two are different optimisers for small gradients.
    optax_step = -optax.adagrad(0.01, eps=1e-7).update(g, optax.adagrad(0.01, eps=1e-7).init(g), g)[0]["W"][0]
    assert float(optax_step) < 0.5 * 0.01 * 1e-4 / (1e-4 + 1e-7)
