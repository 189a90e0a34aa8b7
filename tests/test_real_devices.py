"""Training sharded over the devices the process really has (one CPU here; every GPU of a machine
where the device check runs), against training on one device. test_sharding.py simulates 8 CPU
devices in processes of their own; this file runs in the suite's process, on its devices."""

import jax
import jax.numpy as jnp
import numpy as np

import backprop_jax as bj


def test_training_sharded_over_the_real_devices_matches_one_device(sample):
    (x, t), (xt, tt) = sample
    n = len(jax.devices())
    batch = 8 * n  # divisible by the device count
    data = ((x[:400], t[:400]), (xt[:100], tt[:100]))
    config = bj.TrainConfig(iters_num=20, batch_size=batch)
    model = bj.two_layer_net.model()
    single, single_history = bj.train(model, data, config)
    mesh = bj.data_parallel_mesh()
    sharded, sharded_history = bj.train(model, data, config, mesh=mesh)
    assert mesh.size == n
    assert int(sharded.iteration) == 20
    for k in single.params:
        assert sharded.params[k].sharding.is_fully_replicated and len(sharded.params[k].sharding.device_set) == n
        np.testing.assert_allclose(sharded.params[k], single.params[k], rtol=2e-4, atol=1e-6)
    assert abs(sharded_history[-1].train_loss - single_history[-1].train_loss) < 1e-4
    assert single_history[-1].train_loss < single_history[0].train_loss + 1e-3  # it did train


def test_hand_gradient_on_the_default_device_matches_autodiff_of_jnp():
    # The book's two-layer net in float32 on whatever device is the default, against jax.grad of
    # the same loss written here in jnp.
    k = jax.random.split(jax.random.key(0), 4)
    params = {"W1": 0.1 * jax.random.normal(k[0], (20, 16)), "b1": jnp.zeros(16),
              "W2": 0.1 * jax.random.normal(k[1], (16, 5)), "b2": jnp.zeros(5)}
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    x = jax.random.normal(k[2], (8, 20), jnp.float32)
    t = jax.random.randint(k[3], (8,), 0, 5)

    def hand(p):
        h = bj.relu(bj.affine(x, p["W1"], p["b1"]))
        return bj.softmax_with_loss(bj.affine(h, p["W2"], p["b2"]), t)

    def plain(p):
        h = jnp.maximum(x @ p["W1"] + p["b1"][None, :], 0)
        scores = h @ p["W2"] + p["b2"][None, :]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(scores), t[:, None], 1))

    with jax.default_matmul_precision("highest"):
        got, want = jax.jit(jax.grad(hand))(params), jax.jit(jax.grad(plain))(params)
    for name in params:
        assert got[name].devices() == {jax.devices()[0]}
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)
