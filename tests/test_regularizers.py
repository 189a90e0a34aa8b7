"""Dropout and batch normalisation (sec. 6.3, 6.4.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import normal

KEY = jax.random.key(7)


def reference_batch_norm(x, gamma, beta, eps=1e-6):
    """Plain jnp batch norm in training mode, written here for autodiff."""
    x2 = x.reshape(x.shape[0], -1)
    mu = x2.mean(axis=0, keepdims=True)
    var = ((x2 - mu) ** 2).mean(axis=0, keepdims=True)
    return (gamma[None, :] * (x2 - mu) / jnp.sqrt(var + eps) + beta[None, :]).reshape(x.shape)


@pytest.mark.parametrize("shape", [(8, 5), (4, 2, 3, 3)])
@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_batch_norm_training_matches_autodiff_of_plain_jnp(shape, transform):
    x = normal(0, shape) * 3 + 1
    D = int(np.prod(shape[1:]))
    gamma, beta = normal(1, (D,)) + 1, normal(2, (D,))
    state = bj.init_batch_norm_state(D, jnp.float64)
    dout = normal(3, shape)
    loss = lambda x, g, b: jnp.sum(dout * bj.batch_norm(x, g, b, state, True)[0])
    hand = transform(jax.grad(loss, argnums=(0, 1, 2)))(x, gamma, beta)
    ref = jax.grad(lambda x, g, b: jnp.sum(dout * reference_batch_norm(x, g, b)), argnums=(0, 1, 2))(x, gamma, beta)
    for h, r in zip(hand, ref):
        np.testing.assert_allclose(h, r, rtol=1e-9, atol=1e-12)
    bj.assert_gradcheck(lambda x, g, b: bj.batch_norm(x, g, b, state, True)[0], x, gamma, beta)


def test_batch_norm_running_statistics_and_evaluation_mode():
    x = normal(0, (16, 4)) * 2 + 3
    gamma, beta = jnp.ones(4), jnp.zeros(4)
    state = bj.init_batch_norm_state(4, jnp.float64)
    out, new = bj.batch_norm(x, gamma, beta, state, True, momentum=0.9)
    np.testing.assert_allclose(new["running_mean"], 0.1 * np.asarray(x).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(new["running_var"], 0.1 * np.asarray(x).var(axis=0), rtol=1e-12)
    assert float(state["running_mean"][0]) == 0.0  # the old state is not mutated
    np.testing.assert_allclose(np.asarray(out).mean(axis=0), 0, atol=1e-12)
    # Evaluation normalises with the running statistics and leaves them alone.
    out_eval, same = bj.batch_norm(x, gamma, beta, new, False)
    expected = (np.asarray(x) - np.asarray(new["running_mean"])) / np.sqrt(np.asarray(new["running_var"]) + 1e-6)
    np.testing.assert_allclose(out_eval, expected, rtol=1e-12)
    for k in new:
        np.testing.assert_array_equal(same[k], new[k])
    bj.assert_gradcheck(lambda x, g, b: bj.batch_norm(x, g, b, new, False)[0], x, gamma + 0.5, beta)


def test_batch_norm_shape_errors():
    with pytest.raises(ValueError, match=r"gamma must have shape \(D,\) = \(12,\) for x of shape \(2, 3, 2, 2\), got \(3,\)"):
        bj.batch_norm(jnp.ones((2, 3, 2, 2)), jnp.ones(3), jnp.ones(3), bj.init_batch_norm_state(3), True)
    with pytest.raises(ValueError, match=r"x must have shape \(N, D\) or \(N, C, H, W\), got shape \(5,\)"):
        bj.batch_norm(jnp.ones(5), jnp.ones(5), jnp.ones(5), bj.init_batch_norm_state(5), True)


def test_dropout_training_mask_and_backward():
    x = normal(0, (200, 50))
    out, mask = bj.dropout.fwd(x, KEY, 0.3, True)
    assert mask.dtype == bool and 0.65 < float(mask.mean()) < 0.75  # about 70% kept
    np.testing.assert_array_equal(out, np.where(mask, x, 0))  # survivors unscaled (the book's rule)
    dout = normal(1, x.shape)
    dx = jax.grad(lambda x: jnp.sum(dout * bj.dropout(x, KEY, 0.3, True)))(x)
    np.testing.assert_array_equal(dx, np.where(mask, dout, 0))
    again = bj.dropout(x, KEY, 0.3, True)
    np.testing.assert_array_equal(again, out)  # the key decides the mask
    assert not np.array_equal(bj.dropout(x, jax.random.key(8), 0.3, True), out)


def test_dropout_evaluation_scales_by_the_keep_fraction():
    x = normal(0, (4, 5))
    np.testing.assert_allclose(bj.dropout(x, KEY, 0.3, False), 0.7 * x, rtol=1e-15)
    dx = jax.grad(lambda x: jnp.sum(bj.dropout(x, KEY, 0.3, False)))(x)
    np.testing.assert_allclose(dx, np.full(x.shape, 0.7), rtol=1e-15)
    bj.assert_gradcheck(lambda x: bj.dropout(x, KEY, 0.3, False), x)
    bj.assert_gradcheck(lambda x: bj.dropout(x, KEY, 0.3, True), x)


def test_dropout_rejects_a_rate_outside_0_1():
    with pytest.raises(ValueError, match=r"drop_rate must be in \[0, 1\), got 1.0"):
        bj.dropout(jnp.ones(3), KEY, 1.0, True)


def test_batch_norm_refuses_an_empty_training_batch():
    state = bj.init_batch_norm_state(3)
    with pytest.raises(ValueError, match=r"batch_norm: the batch is empty \(x of shape \(0, 3\)\)"):
        bj.batch_norm(jnp.ones((0, 3)), jnp.ones(3), jnp.zeros(3), state, True)
    # A batch of one is allowed, and (as documented) gives beta whatever x is.
    out, _ = bj.batch_norm(jnp.array([[5.0, -2.0, 7.0]]), jnp.ones(3), jnp.array([0.1, 0.2, 0.3]), state, True)
    np.testing.assert_allclose(out, [[0.1, 0.2, 0.3]], rtol=1e-6)
