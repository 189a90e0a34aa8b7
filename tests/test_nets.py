"""The networks: init, shapes, gradients through the hand rules, composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import multi_layer_net, serial, two_layer_net
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
    acc = two_layer_net.accuracy(params, x, t)
    assert float(acc) == np.mean(scores.argmax(axis=1) == np.asarray(t))
    assert float(two_layer_net.accuracy(params, x, jax.nn.one_hot(t, 3))) == float(acc)


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("weight_decay_lambda", [0.0, 0.1])
def test_multi_layer_gradcheck(activation, weight_decay_lambda):
    params = multi_layer_net.init(jax.random.key(0), 6, [5, 4], 3, weight_init_std=activation, dtype=jnp.float64)
    params = {k: v + 0.01 if k.startswith("b") else v for k, v in params.items()}
    x, t = normal(3, (4, 6)), jnp.array([0, 2, 1, 2])
    loss = lambda p, x, t: multi_layer_net.loss(p, x, t, activation=activation,
                                               weight_decay_lambda=weight_decay_lambda)
    bj.assert_gradcheck(loss, params, x, t, argnums=0)


def test_weight_decay_adds_lambda_w_to_dw():
    params = multi_layer_net.init(jax.random.key(0), 6, [5], 3, dtype=jnp.float64)
    x, t = normal(3, (4, 6)), jnp.array([0, 2, 1, 2])
    g0 = jax.grad(multi_layer_net.loss)(params, x, t)
    g1 = jax.grad(lambda p: multi_layer_net.loss(p, x, t, weight_decay_lambda=0.5))(params)
    for k in params:
        extra = 0.5 * params[k] if k.startswith("W") else 0.0
        np.testing.assert_allclose(g1[k], g0[k] + extra, rtol=1e-12, atol=1e-15)
    penalty = multi_layer_net.loss(params, x, t, weight_decay_lambda=0.5) - multi_layer_net.loss(params, x, t)
    expected = 0.25 * sum(float(np.sum(np.asarray(params[k]) ** 2)) for k in ("W1", "W2"))
    np.testing.assert_allclose(penalty, expected, rtol=1e-10)


@pytest.mark.parametrize("init, expected", [("he", np.sqrt(2 / 400)), ("xavier", np.sqrt(1 / 400)), (0.05, 0.05)])
def test_multi_layer_init_scales(init, expected):
    params = multi_layer_net.init(jax.random.key(0), 400, [300], 10, weight_init_std=init)
    np.testing.assert_allclose(np.std(params["W1"]), expected, rtol=0.02)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="weight_init_std must be a number, 'he' or 'xavier', got 'lecun'"):
        multi_layer_net.model(weight_init_std="lecun")
    with pytest.raises(ValueError, match="activation must be one of"):
        multi_layer_net.model(activation="tanh")
    with pytest.raises(ValueError, match="weight_decay_lambda must be >= 0"):
        multi_layer_net.model(weight_decay_lambda=-1.0)
    with pytest.raises(ValueError, match=r"layer sizes must be positive integers, got \[4, 0, 3\]"):
        multi_layer_net.init(jax.random.key(0), 4, [0], 3)


def test_serial_user_network_matches_the_two_layer_net():
    net = serial.serial(serial.Affine(5, weight_init_std=1.0, dtype=jnp.float64), serial.Relu,
                        serial.Affine(3, weight_init_std=1.0, dtype=jnp.float64))
    model = serial.classifier(net, input_size=6)
    params = model.init(jax.random.key(0))
    assert [jax.tree_util.tree_map(jnp.shape, p) for p in params] == [
        {"W": (6, 5), "b": (5,)}, (), {"W": (5, 3), "b": (3,)}]
    same = {"W1": params[0]["W"], "b1": params[0]["b"], "W2": params[2]["W"], "b2": params[2]["b"]}
    x, t = normal(1, (4, 6)), jnp.array([0, 1, 2, 0])
    np.testing.assert_allclose(model.loss(params, x, t), two_layer_net.loss(same, x, t), rtol=1e-14)
    g = jax.grad(model.loss)(params, x, t)
    g_ref = jax.grad(two_layer_net.loss)(same, x, t)
    np.testing.assert_allclose(g[0]["W"], g_ref["W1"], rtol=1e-14)
    np.testing.assert_allclose(g[2]["b"], g_ref["b2"], rtol=1e-14)
    bj.assert_gradcheck(model.loss, params, x, t, argnums=0)
