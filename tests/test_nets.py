"""The networks: init, shapes, gradients through the hand rules, composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import multi_layer_net, two_layer_net
from conftest import normal


def test_two_layer_init_is_the_books():
    params = two_layer_net.init(jax.random.key(0), 784, 50, 10)
    assert {k: v.shape for k, v in params.items()} == {"W1": (784, 50), "b1": (50,), "W2": (50, 10), "b2": (10,)}
    assert params["W1"].dtype == jnp.float32
    np.testing.assert_allclose(np.std(params["W1"]), 0.01, rtol=0.02)
    assert not np.any(params["b1"]) and not np.any(params["b2"])


def test_two_layer_predict_and_loss_match_an_independent_forward():
    params = two_layer_net.init(jax.random.key(1), 6, 5, 3, weight_init_std=1.0, dtype=jnp.float64)
    x, t = normal(2, (4, 6)), jnp.array([0, 1, 2, 1])

    def reference(p):
        h = np.maximum(np.asarray(x) @ p["W1"] + p["b1"], 0)
        s = h @ p["W2"] + p["b2"]
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return s, -logp[np.arange(4), np.asarray(t)].mean()

    scores, loss = reference({k: np.asarray(v) for k, v in params.items()})
    np.testing.assert_allclose(two_layer_net.predict(params, x), scores, rtol=1e-12)
    np.testing.assert_allclose(two_layer_net.loss(params, x, t), loss, rtol=1e-12)
    model = two_layer_net.model(6, 5, 3)
    value, state = model.loss(params, {}, x, t)
    assert state == {}
    np.testing.assert_allclose(value, loss, rtol=1e-12)
    acc = model.accuracy(params, {}, x, t)
    assert float(acc) == np.mean(scores.argmax(axis=1) == np.asarray(t))
    assert float(model.accuracy(params, {}, x, jax.nn.one_hot(t, 3))) == float(acc)


def multi_layer(activation="relu", weight_decay_lambda=0.0, sizes=(6, (5, 4), 3), **kwargs):
    model = multi_layer_net.model(*sizes, activation=activation, weight_init_std=activation,
                                  weight_decay_lambda=weight_decay_lambda, dtype=jnp.float64, **kwargs)
    params, state = model.init(jax.random.key(0))
    return model, params, state


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_decay_lambda", [0.0, 0.1])
def test_multi_layer_gradcheck(activation, weight_decay_lambda):
    model, params, state = multi_layer(activation, weight_decay_lambda)
    assert sorted(params) == ["W1", "W2", "W3", "b1", "b2", "b3"] and state == {}
    params = {k: v + 0.01 if k.startswith("b") else v for k, v in params.items()}
    x, t = normal(3, (4, 6)), jnp.array([0, 2, 1, 2])
    bj.assert_gradcheck(model.loss_fn(state), params, x, t, argnums=0)


def test_weight_decay_adds_lambda_w_to_dw():
    plain, params, _ = multi_layer(sizes=(6, (5,), 3))
    decayed = multi_layer(sizes=(6, (5,), 3), weight_decay_lambda=0.5)[0]
    x, t = normal(3, (4, 6)), jnp.array([0, 2, 1, 2])
    g0 = jax.grad(plain.loss_fn())(params, x, t)
    g1 = jax.grad(decayed.loss_fn())(params, x, t)
    for k in params:
        extra = 0.5 * params[k] if k.startswith("W") else 0.0
        np.testing.assert_allclose(g1[k], g0[k] + extra, rtol=1e-12, atol=1e-15)
    penalty = decayed.loss_fn()(params, x, t) - plain.loss_fn()(params, x, t)
    expected = 0.25 * sum(float(np.sum(np.asarray(params[k]) ** 2)) for k in ("W1", "W2"))
    np.testing.assert_allclose(penalty, expected, rtol=1e-10)


@pytest.mark.parametrize("init, expected", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400)), (0.05, 0.05)])
def test_multi_layer_init_scales(init, expected):
    params, _ = multi_layer_net.model(400, [300], 10, weight_init_std=init).init(jax.random.key(0))
    np.testing.assert_allclose(np.std(params["W1"]), expected, rtol=0.02)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="weight_init_std must be a number, 'he' or 'xavier', got 'lecun'"):
        multi_layer_net.model(weight_init_std="lecun")
    with pytest.raises(ValueError, match="activation must be one of"):
        multi_layer_net.model(activation="tanh")
    with pytest.raises(ValueError, match="weight_decay_lambda must be >= 0"):
        multi_layer_net.model(weight_decay_lambda=-1.0)
    with pytest.raises(ValueError, match=r"layer sizes must be positive integers, got \[4, 0, 3\]"):
        multi_layer_net.model(4, [0], 3)
    with pytest.raises(ValueError, match="weight_init_std must be a number, 'he' or 'xavier', got 'lecun'"):
        two_layer_net.model(weight_init_std="lecun")
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        two_layer_net.model(hidden_size=0)


def test_the_two_layer_net_takes_the_same_init_names_as_every_layer():
    """'he' and 'xavier' scale each layer by its own fan-in, as ``nn.Affine`` does."""
    params, _ = two_layer_net.model(400, 300, 10, weight_init_std="he").init(jax.random.key(0))
    np.testing.assert_allclose(np.std(params["W1"]), np.sqrt(2 / 400), rtol=0.02)
    np.testing.assert_allclose(np.std(params["W2"]), np.sqrt(2 / 300), rtol=0.05)
