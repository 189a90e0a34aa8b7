"""The layer library: composing hand-rule layers, the book's nets as compositions, your own layers."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.example_libraries import stax

import backprop_jax as bj
from backprop_jax import conv_net, multi_layer_net, nn, two_layer_net
from conftest import normal


# --- the networks as they were written out before they became compositions --------------------

def written_out_multi_layer(params, state, x, t, *, train, activation, drop_rate=0.0, lam=0.0, key=None):
    """The book's MultiLayerNet(Extend) forward, layer by layer (every dropout layer draws from the one key)."""
    act = {"relu": bj.relu, "sigmoid": bj.sigmoid}[activation]
    n = sum(1 for k in params if k.startswith("W"))
    new_state = {}
    for i in range(1, n):
        x = bj.affine(x, params[f"W{i}"], params[f"b{i}"])
        if f"gamma{i}" in params:
            x, new_state[f"bn{i}"] = bj.batch_norm(x, params[f"gamma{i}"], params[f"beta{i}"], state[f"bn{i}"], train)
        x = act(x)
        if drop_rate:
            x = bj.dropout(x, key, drop_rate, train)
    loss = bj.softmax_with_loss(bj.affine(x, params[f"W{n}"], params[f"b{n}"]), t)
    if lam:
        loss = loss + bj.weight_decay([params[f"W{i}"] for i in range(1, n + 1)], lam)
    return loss, new_state


def written_out_conv_net(params, x, t, *, stride=1, pad=0):
    """The book's SimpleConvNet forward."""
    h = bj.relu(bj.convolution(x, params["W1"], params["b1"], stride, pad))
    h = bj.max_pooling(h, 2, 2, 2, 0)
    h = bj.relu(bj.affine(h, params["W2"], params["b2"]))
    return bj.softmax_with_loss(bj.affine(h, params["W3"], params["b3"]), t)


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
    chex.assert_trees_all_close(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("activation, use_batchnorm, lam, train", [
    ("relu", False, 0.0, True), ("sigmoid", True, 0.1, True), ("relu", True, 0.0, False)])
def test_multi_layer_net_equals_the_written_out_net(activation, use_batchnorm, lam, train):
    model = multi_layer_net.model(6, (5, 4), 3, activation=activation, use_batchnorm=use_batchnorm,
                                  drop_rate=0.3 if not train else 0.0, weight_decay_lambda=lam, dtype=jnp.float64)
    params, state = model.init(jax.random.key(0))
    params = {k: v + 0.1 * normal(i, v.shape) for i, (k, v) in enumerate(sorted(params.items()))}
    if use_batchnorm:  # running statistics away from their zero start
        state = {k: {"running_mean": normal(9, (v["running_mean"].shape)), "running_var": jnp.ones_like(
            v["running_var"]) * 1.5} for k, v in state.items()}
    x, t = normal(3, (8, 6)), jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
    ref = functools.partial(written_out_multi_layer, train=train, activation=activation, lam=lam,
                            drop_rate=0.3 if not train else 0.0, key=jax.random.key(1))
    ours = lambda p: model.loss(p, state, x, t, train=train)
    (loss, new_state), grads = jax.value_and_grad(ours, has_aux=True)(params)
    (ref_loss, ref_state), ref_grads = jax.value_and_grad(lambda p: ref(p, state, x, t), has_aux=True)(params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    assert_trees_close(grads, ref_grads)
    assert_trees_close(new_state, ref_state)


def test_conv_net_equals_the_written_out_net():
    model = conv_net.model(filter_num=4, hidden_size=8, pad=1, dtype=jnp.float64)
    params, _ = model.init(jax.random.key(0))
    x, t = normal(1, (3, 1, 28, 28)), jnp.array([1, 5, 9])
    loss, grads = jax.jit(jax.value_and_grad(model.loss_fn()))(params, x, t)
    ref_loss, ref_grads = jax.jit(jax.value_and_grad(lambda p: written_out_conv_net(p, x, t, pad=1)))(params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-13)
    assert_trees_close(grads, ref_grads)


# --- research use: compose, wrap your own rule, train ----------------------------------------

def test_a_conv_net_composed_from_public_layers_trains_and_equals_conv_net():
    net = nn.serial(nn.Convolution(30, 5, weight_init_std=0.01), nn.Relu, nn.MaxPooling(2, 2, stride=2),
                    nn.Flatten, nn.Affine(100, weight_init_std=0.01), nn.Relu,
                    nn.Affine(10, weight_init_std=0.01))
    mine = nn.classifier(net, input_shape=(1, 28, 28))
    # Equal to the book's SimpleConvNet at equal parameters, in loss and gradient.
    params, state = mine.init(jax.random.key(0))
    book = conv_net.model()
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, book.init(jax.random.key(1))[0])
    x, t = normal(2, (4, 784), jnp.float32), jnp.array([0, 3, 6, 9])
    mine_loss, mine_grads = jax.jit(jax.value_and_grad(mine.loss_fn()))(params, x, t)
    book_loss, book_grads = jax.jit(jax.value_and_grad(book.loss_fn()))(params, x, t)
    np.testing.assert_allclose(mine_loss, book_loss, rtol=1e-6)
    assert_trees_close(mine_grads, book_grads, rtol=1e-5, atol=1e-7)
    # And it trains with the same loop.
    (x_train, t_train), (x_test, t_test) = bj.datasets.load_mnist_sample()
    data = ((x_train[:400], t_train[:400]), (x_test[:100], t_test[:100]))
    _, history = bj.train(mine, data, bj.TrainConfig(iters_num=40, batch_size=50, optimizer="adam"))
    assert history[-1].train_loss < 0.6 * history[0].train_loss and history[-1].test_acc > 0.5


@jax.custom_vjp
def scaled_tanh(x):
    """A reader's own layer: 2 tanh(x), with a hand-written backward."""
    return 2 * jnp.tanh(x)


def _scaled_tanh_fwd(x):
    out = 2 * jnp.tanh(x)
    return out, out


def _scaled_tanh_bwd(out, dout):
    return (dout * (2 - out ** 2 / 2),)  # d/dx 2 tanh x = 2 (1 - tanh^2 x)


scaled_tanh.defvjp(_scaled_tanh_fwd, _scaled_tanh_bwd)


def test_your_own_custom_vjp_layer_composes_and_is_checked():
    net = nn.serial(nn.Affine(5, weight_init_std=0.5, dtype=jnp.float64), nn.elementwise(scaled_tanh),
                    nn.Affine(3, weight_init_std=0.5, dtype=jnp.float64))
    model = nn.classifier(net, (4,))
    params, state = model.init(jax.random.key(0))
    x, t = normal(1, (6, 4)), jnp.array([0, 1, 2, 0, 1, 2])
    report = bj.gradcheck(model.loss_fn(state), params, x, t, argnums=0)
    assert report.ok, str(report)
    graph = bj.graph.trace(model.loss_fn(state), params, x, t)
    assert graph.layers() == ["affine", "scaled_tanh", "affine", "softmax_with_loss"]
    # A wrong rule is caught.
    broken = jax.custom_vjp(lambda x: 2 * jnp.tanh(x))
    broken.defvjp(_scaled_tanh_fwd, lambda out, dout: (dout * (2 - out ** 2),))
    bad = nn.classifier(nn.serial(nn.Affine(5, dtype=jnp.float64), nn.elementwise(broken),
                                  nn.Affine(3, dtype=jnp.float64)), (4,))
    assert not bj.gradcheck(bad.loss_fn(), bad.init(jax.random.key(0))[0], x, t, argnums=0).ok


def test_stax_layers_fit_through_from_stax():
    jax.config.update("jax_numpy_rank_promotion", "allow")  # stax.Dense adds b by rank promotion
    try:
        check_stax_dense()
    finally:
        jax.config.update("jax_numpy_rank_promotion", "raise")


def check_stax_dense():
    net = nn.serial(nn.from_stax(stax.Dense(5), "Dense"), nn.Relu, nn.Affine(3, dtype=jnp.float32))
    model = nn.classifier(net, (4,))
    params, _ = model.init(jax.random.key(0))
    assert sorted(params) == ["Dense1", "W1", "b1"]  # the stax layer's (W, b) kept whole
    W, b = params["Dense1"]
    x, t = normal(1, (6, 4), jnp.float32), jnp.array([0, 1, 2, 0, 1, 2])
    expected = two_layer_net.loss({"W1": W, "b1": b, "W2": params["W1"], "b2": params["b1"]}, x, t)
    np.testing.assert_allclose(model.loss_fn()(params, x, t), expected, rtol=1e-6)


def test_branches_fan_out_and_back_in():
    block = nn.serial(nn.FanOut(2), nn.parallel(nn.Affine(3, dtype=jnp.float64), nn.Affine(2, dtype=jnp.float64)),
                      nn.FanInConcat())
    net = nn.serial(block, nn.Relu, nn.Affine(4, dtype=jnp.float64))
    shape, params, state = net.init(jax.random.key(0), (-1, 6))
    assert shape == (-1, 4) and sorted(params) == ["W1", "b1", "serial1"] and state == {}
    (p1, p2) = jax.tree.map(np.asarray, params["serial1"]["parallel2"])
    x = np.asarray(normal(1, (5, 6)))
    expected = np.maximum(np.concatenate([x @ p1["W"] + p1["b"], x @ p2["W"] + p2["b"]], axis=1), 0)
    out, _ = net.apply(params, state, x)
    np.testing.assert_allclose(out, expected @ np.asarray(params["W1"]) + np.asarray(params["b1"]), rtol=1e-12)
    summed = nn.serial(nn.FanOut(2), nn.parallel(nn.Relu, nn.Sigmoid), nn.FanInSum)
    summed_shape, summed_params, summed_state = summed.init(jax.random.key(0), (-1, 6))
    assert summed_shape == (-1, 6)
    np.testing.assert_allclose(summed.apply(summed_params, summed_state, x)[0], np.maximum(x, 0) + 1 / (1 + np.exp(-np.asarray(x))),
                               rtol=1e-12)
    model = nn.classifier(net, (6,))
    bj.assert_gradcheck(model.loss_fn(), model.init(jax.random.key(2))[0], x, jnp.array([0, 1, 2, 3, 0]), argnums=0)


def test_batch_norm_and_dropout_layers_carry_state_and_keys():
    net = nn.serial(nn.Affine(4), nn.BatchNorm(), nn.Relu, nn.Dropout(0.5), nn.Affine(2), nn.BatchNorm())
    shape, params, state = net.init(jax.random.key(0), (-1, 3))
    assert sorted(params) == ["W1", "W2", "b1", "b2", "beta1", "beta2", "gamma1", "gamma2"]
    assert sorted(state) == ["bn1", "bn2"]
    x = normal(1, (8, 3), jnp.float32)
    out_a, new = net.apply(params, state, x, key=jax.random.key(1), train=True)
    out_b, _ = net.apply(params, state, x, key=jax.random.key(2), train=True)
    assert not np.allclose(out_a, out_b)  # other keys, other dropout masks
    assert float(jnp.abs(new["bn1"]["running_mean"]).sum()) > 0
    out_eval, same = net.apply(params, new, x)  # evaluation: running statistics, no state change
    assert_trees_close(same, new)
    np.testing.assert_array_equal(out_eval, net.apply(params, new, x, key=jax.random.key(9))[0])


def test_bad_compositions_name_the_problem():
    with pytest.raises(TypeError, match="serial: argument 1 is function, not a Layer .wrap a function with nn.elementwise"):
        nn.serial(nn.Relu, lambda x: x)
    with pytest.raises(ValueError, match=r"classifier: the network's output must be scores of shape \(N, C\)"):
        nn.classifier(nn.serial(nn.Convolution(2, 3)), (1, 8, 8)).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"Convolution: input_shape must have 4 axes .batch first., got \(-1, 784\)"):
        nn.classifier(nn.serial(nn.Convolution(2, 3), nn.Affine(2)), (784,)).init(jax.random.key(0))
    params, _ = nn.classifier(nn.serial(nn.Convolution(2, 3), nn.Affine(2)), (1, 8, 8)).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"convolution: .*\(1, 3, 8, 8\).*\(2, 1, 3, 3\)"):
        nn.serial(nn.Convolution(2, 3), nn.Affine(2)).apply(params, {}, jnp.ones((1, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"Dropout: drop_rate must be in \[0, 1\), got 1"):
        nn.Dropout(1)
