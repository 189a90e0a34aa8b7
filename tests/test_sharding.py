"""Data parallelism over 8 simulated CPU devices (each test runs in its own process,
since the device count is fixed when JAX starts)."""

import os
import subprocess
import sys
import textwrap

CHECK_HEAD = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    import backprop_jax as bj
    from backprop_jax import two_layer_net
    from backprop_jax import data_parallel_mesh
    assert len(jax.devices()) == 8, jax.devices()

''')

CHECK_TAIL = textwrap.dedent('''

    single, _ = bj.train(model, data, config)
    mesh = data_parallel_mesh()
    sharded, _ = bj.train(model, data, config, mesh=mesh)
    assert mesh.size == 8 and mesh.axis_names == ("data",)
    for k in single.params:
        np.testing.assert_allclose(sharded.params[k], single.params[k], rtol=2e-4, atol=1e-6)
        s = sharded.params[k].sharding
        assert s.is_fully_replicated and len(s.device_set) == 8, (k, s)
    assert int(sharded.iteration) == 100
    # Batches gathered on the host, each device sent only its rows: the same training.
    hosted, _ = bj.train(model, data, config, mesh=mesh, feed="host")
    for k in single.params:
        np.testing.assert_allclose(hosted.params[k], sharded.params[k], rtol=1e-5, atol=1e-7)
    assert seen[-1].shard_shape((96, 784)) == (12, 784)
    assert seen[0].is_fully_replicated or len(seen[0].device_set) == 1  # the single-device run
    batch = seen[-1]
    assert not batch.is_fully_replicated and len(batch.device_set) == 8, batch
    assert batch.shard_shape((96, 784)) == (12, 784), batch.shard_shape((96, 784))
    try:
        bj.train(model, data, bj.TrainConfig(iters_num=10, batch_size=100), mesh=mesh)
    except ValueError as e:
        assert "batch_size 100 does not split evenly over 8 devices" in str(e), e
    else:
        raise AssertionError("an uneven batch was accepted")
    print("sharded training matches")
''')


def run_with_devices(code, n=8, timeout=300):
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(n), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)


def test_sharded_training_matches_single_device_and_really_shards(sharded_setup):
    result = run_with_devices(CHECK_HEAD + sharded_setup + CHECK_TAIL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sharded training matches" in result.stdout


def test_devices_flag():
    code = textwrap.dedent('''
        import sys
        from backprop_jax.cli import main
        sys.argv = ["backprop-jax"]
        args = ["train", "--dataset", "mnist-sample", "--iters", "80", "--no-progress"]
        for bad in (["--batch-size", "98", "--devices", "4"], ["--batch-size", "96", "--devices", "16"]):
            try:
                main(args + bad)
            except SystemExit as e:
                print("exit", e.code, flush=True)
        main(args + ["--batch-size", "96", "--devices", "4"])
    ''')
    result = run_with_devices(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("exit 2") == 2, result.stdout
    assert "--batch-size: batch_size 98 does not split evenly over 4 devices; choose a multiple of 4, or pass --devices" in result.stderr
    assert "cannot use 16 devices: 8 available" in result.stderr
    assert "on 4 cpu devices" in result.stdout and "epoch 2: train acc" in result.stdout


SHARD_MAP = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    jax.config.update("jax_enable_x64", True)
    import backprop_jax as bj
    from backprop_jax import conv_net, multi_layer_net, two_layer_net

    def f64(tree):
        return jax.tree.map(lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    # Batch norm in evaluation mode: in training mode each shard would normalise with its own statistics.
    nets = {
        "two-layer": (two_layer_net.model(20, 8, 3), (16, 20), {}),
        "multi-layer with batch norm": (multi_layer_net.model(20, [8, 8], 3, use_batchnorm=True,
                                                              weight_decay_lambda=0.1), (16, 20), {"train": False}),
        "conv": (conv_net.model((1, 8, 8), filter_num=3, filter_size=3, hidden_size=6, output_size=3),
                 (8, 1, 8, 8), {}),
    }
    auto = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Auto,))
    for name, (model, shape, kw) in nets.items():
        params, state = f64(model.init(jax.random.key(0)))
        x, t = jax.random.normal(jax.random.key(1), shape), jnp.arange(shape[0]) % 3
        loss = model.loss_fn(state, **kw)
        full = jax.grad(loss)(params, x, t)  # the whole batch on one device
        # Data parallel under shard_map, check_vma left at its default True: parameters replicated,
        # the batch split, the loss averaged over the shards.
        def data_parallel(fn):
            grad = lambda p, x, t: jax.grad(lambda p: jax.lax.pmean(fn(p, x, t), "data"))(p)
            return jax.jit(jax.shard_map(grad, mesh=auto, in_specs=(P(), P("data"), P("data")), out_specs=P()))
        hand = data_parallel(loss)(params, x, t)
        plain = data_parallel(bj.without_hand_rules(loss))(params, x, t)
        for k in full:
            scale = float(jnp.max(jnp.abs(full[k]))) + 1e-12
            assert float(jnp.max(jnp.abs(hand[k] - full[k]))) <= 1e-12 * scale, (name, k)
            assert float(jnp.max(jnp.abs(hand[k] - plain[k]))) <= 1e-12 * scale, (name, k)
        print("shard_map", name, "matches")

    # Explicit sharding (sharding in types): the batch split over the mesh, the same gradient.
    explicit = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Explicit,))
    with jax.set_mesh(explicit):
        for name in ("two-layer", "multi-layer with batch norm", "conv"):
            model, shape, _ = nets[name]
            params, state = f64(model.init(jax.random.key(0)))
            x, t = jax.random.normal(jax.random.key(1), shape), jnp.arange(shape[0]) % 3
            loss = model.loss_fn(state, train=True)
            full = jax.grad(loss)(params, x, t)
            xs = jax.device_put(x, NamedSharding(explicit, P("data")))
            ts = jax.device_put(t, NamedSharding(explicit, P("data")))
            hand = jax.jit(jax.grad(loss))(params, xs, ts)
            for k in full:
                scale = float(jnp.max(jnp.abs(full[k]))) + 1e-12
                assert float(jnp.max(jnp.abs(hand[k] - full[k]))) <= 1e-12 * max(scale, 1e-3), (name, k)
            print("explicit", name, "matches")
''')


def test_hand_rules_under_shard_map_and_explicit_sharding_give_the_full_batch_gradient():
    result = run_with_devices(SHARD_MAP, n=4)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("matches") == 6, result.stdout


LANGUAGE_MODEL = textwrap.dedent('''
    import jax, numpy as np
    import backprop_jax as bj
    from backprop_jax import datasets, rnnlm
    assert len(jax.devices()) == 4, jax.devices()

    text = datasets.load_text(datasets.date_text(400, seed=2))
    x, t = rnnlm.training_data(text.train, 8, 10)
    test = rnnlm.training_data(text.test, 1, 10)
    model = rnnlm.model(len(text.word_to_id), 8, 16, 16)
    config = bj.TrainConfig(iters_num=30, batch_size=8, learning_rate=1.0)
    single, _ = bj.train(model, ((x, t), test), config)
    mesh = bj.data_parallel_mesh()
    for feed in ("device", "host"):
        sharded, history = bj.train(model, ((x, t), test), config, mesh=mesh, feed=feed)
        for k in single.params:
            np.testing.assert_allclose(sharded.params[k], single.params[k], rtol=2e-4, atol=1e-5, err_msg=k)
        for k in single.model_state:  # the carried hidden states, every row of the batch
            assert sharded.model_state[k].shape == (8, 16)
            np.testing.assert_allclose(sharded.model_state[k], single.model_state[k], rtol=2e-4, atol=1e-5, err_msg=k)
    assert history[-1].test_perplexity > 0
    print("the language model trains alike on 4 devices")
''')


def test_truncated_bptt_carries_its_state_alike_over_devices():
    result = run_with_devices(LANGUAGE_MODEL, n=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the language model trains alike on 4 devices" in result.stdout
