"""The convolutional net, the extended multi-layer net and the optimiser comparison."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import compare_optimizers, conv_net, multi_layer_net, run
from conftest import normal


def small(data, n_train=400, n_test=100):
    (x, t), (xt, tt) = data
    return (x[:n_train], t[:n_train]), (xt[:n_test], tt[:n_test])


def test_conv_net_shapes_and_gradcheck():
    params, state = jax.eval_shape(conv_net.model(dtype=jnp.float64).init, jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == {
        "W1": (30, 1, 5, 5), "b1": (30,), "W2": (4320, 100), "b2": (100,), "W3": (100, 10), "b3": (10,)}
    assert state == {}
    x = jax.random.uniform(jax.random.key(1), (2, 784), jnp.float64)
    # A smaller net for the numeric check: 3 filters, hidden 8; flattened and image inputs agree.
    model = conv_net.model(filter_num=3, hidden_size=8, weight_init_std=0.3, dtype=jnp.float64)
    small_params, _ = model.init(jax.random.key(2))
    assert model.predict(small_params, {}, x).shape == (2, 10)
    np.testing.assert_array_equal(model.predict(small_params, {}, x),
                                  model.predict(small_params, {}, x.reshape(2, 1, 28, 28)))
    bj.assert_gradcheck(model.loss_fn(), small_params, x, jnp.array([3, 8]), argnums=0)


def test_conv_net_honours_pad_stride_and_input_shape():
    model = conv_net.model((3, 12, 10), filter_num=4, filter_size=3, pad=1, stride=1, hidden_size=6,
                           output_size=5, dtype=jnp.float64)
    params, _ = model.init(jax.random.key(0))
    assert params["W1"].shape == (4, 3, 3, 3) and params["W2"].shape == (4 * 6 * 5, 6)
    x = normal(1, (2, 3, 12, 10))
    assert jax.jit(model.predict)(params, {}, x).shape == (2, 5)
    strided = conv_net.model((1, 9, 9), filter_num=2, filter_size=3, stride=2, hidden_size=4)
    assert jax.eval_shape(strided.init, jax.random.key(0))[0]["W2"].shape == (2 * 2 * 2, 4)  # conv 4x4, pool 2x2
    with pytest.raises(ValueError, match=r"does not hold examples of shape \(3, 12, 10\)"):
        model.predict(params, {}, normal(1, (2, 784)))
    with pytest.raises(ValueError, match="stride 2 does not divide"):
        jax.eval_shape(conv_net.model((1, 28, 28), stride=2).init, jax.random.key(0))


def test_extended_multi_layer_net_gradcheck():
    model = multi_layer_net.model(6, (5, 4), 3, use_batchnorm=True, drop_rate=0.2, weight_decay_lambda=0.1,
                                  dtype=jnp.float64)
    params, state = model.init(jax.random.key(0))
    assert sorted(params) == ["W1", "W2", "W3", "b1", "b2", "b3", "beta1", "beta2", "gamma1", "gamma2"]
    assert sorted(state) == ["bn1", "bn2"]
    # Nonzero biases: a unit whose inputs are all dropped would otherwise sit
    # exactly on ReLU's kink, where central differences disagree with any rule.
    params = {k: v + 0.05 if k.startswith("b") else v for k, v in params.items()}
    x, t = normal(1, (8, 6)), jnp.array([0, 1, 2, 0, 1, 2, 0, 1])
    bj.assert_gradcheck(lambda p, x: model.loss_fn(state, key=jax.random.key(5))(p, x, t), params, x)
    with pytest.raises(ValueError, match="Dropout: training needs a PRNG key"):
        model.loss(params, state, x, t)


def test_extended_net_trains_with_state_and_resumes_exactly(sample, tmp_path):
    model = multi_layer_net.model(784, (50, 50), 10, use_batchnorm=True, drop_rate=0.1)
    data = small(sample)
    config = bj.TrainConfig(iters_num=16, batch_size=50)  # 8 iterations an epoch
    whole, _ = run(model, data, config, dataset="d", settings={"s": 1}, out=tmp_path / "a", progress=False)
    # The running statistics moved away from their zero start and were checkpointed.
    assert float(jnp.abs(whole.model_state["bn1"]["running_mean"]).sum()) > 0
    first, _ = run(model, data, bj.TrainConfig(iters_num=8, batch_size=50), dataset="d",
                   settings={"s": 1}, out=tmp_path / "b", progress=False)
    resumed, history = run(model, data, config, dataset="d", settings={"s": 1}, out=tmp_path / "b",
                           resume=True, progress=False)
    assert [e.iteration for e in history] == [8, 16]
    for a, b in zip(jax.tree_util.tree_leaves(whole), jax.tree_util.tree_leaves(resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_compare_optimizers_writes_one_plot(sample, tmp_path):
    log = []
    histories = compare_optimizers(small(sample, 512, 100), tmp_path, iters_num=8, batch_size=128, log=log.append)
    assert list(histories) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    assert (tmp_path / "optimizers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "optimizers.json").read_text())
    assert record["net"] == [784, 100, 100, 100, 100, 10]
    assert {k: v["learning_rate"] for k, v in record["optimizers"].items()} == {
        "SGD": 0.01, "Momentum": 0.01, "AdaGrad": 0.01, "Adam": 0.001}
    assert [e["iteration"] for e in record["optimizers"]["Adam"]["epochs"]] == [4, 8]
    assert len(log) == 4
