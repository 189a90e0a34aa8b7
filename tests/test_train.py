"""Training: the book's recipe, determinism, one compilation, divergence, checkpoints."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import (
    Checkpoints, Model, RunError, TrainConfig, TrainingDiverged, datasets, multi_layer_net, run, train,
    two_layer_net)


@pytest.fixture(scope="module")
def sample():
    return datasets.load_mnist_sample()


def small(data, n_train=500, n_test=200):
    (x, t), (xt, tt) = data
    return (x[:n_train], t[:n_train]), (xt[:n_test], tt[:n_test])


def test_book_recipe_on_the_embedded_sample_reaches_092(sample):
    state, history = train(two_layer_net.model(), sample, TrainConfig())
    assert len(history) == 250 and history[-1].iteration == 10_000
    assert history[-1].test_acc >= 0.92
    assert history[-1].train_acc > history[0].train_acc


def test_same_seed_gives_bitwise_the_same_parameters(sample):
    data = small(sample)
    config = TrainConfig(iters_num=120, seed=3)
    a, _ = train(two_layer_net.model(), data, config)
    b, _ = train(two_layer_net.model(), data, config)
    c, _ = train(two_layer_net.model(), data, TrainConfig(iters_num=120, seed=4))
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_batches_fed_from_the_host_train_exactly_like_batches_gathered_on_the_device(sample):
    data = small(sample)
    config = TrainConfig(iters_num=30, batch_size=40)  # 12 iterations an epoch: the last one short
    a, history_a = train(two_layer_net.model(), data, config, feed="device")
    b, history_b = train(two_layer_net.model(), data, config, feed="host")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert [e.train_loss for e in history_a] == [e.train_loss for e in history_b]
    with pytest.raises(ValueError, match="feed must be 'auto', 'device' or 'host', got 'disk'"):
        train(two_layer_net.model(), data, config, feed="disk")


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("momentum", 0.05), ("nesterov", 0.05),
                                           ("adagrad", 0.05), ("rmsprop", 0.001), ("adam", 0.001)])
def test_every_optimizer_learns(sample, optimizer, lr):
    data = small(sample, 1000, 300)
    _, history = train(multi_layer_net.model(784, (50,), 10), data,
                       TrainConfig(iters_num=300, learning_rate=lr, optimizer=optimizer))
    assert history[-1].train_loss < 0.7 * history[0].train_loss
    assert history[-1].test_acc > 0.6


def test_the_training_step_is_traced_once_per_run(sample):
    # Python code in apply runs only while JAX traces it: count the traces.
    traces = {True: 0, False: 0}
    base = two_layer_net.model()

    def apply(params, state, x, *, key=None, train=False):
        traces[train] += 1
        return base.apply(params, state, x, key=key, train=train)

    config = TrainConfig(iters_num=50, batch_size=100)  # 5 iterations an epoch, 10 epochs
    _, history = train(Model(base.init, apply), small(sample), config)
    assert [e.iteration for e in history] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert traces == {True: 1, False: 2}  # one epoch loop; one evaluator each for train and test


def diverging_model():
    """Loss ``sqrt(5 - w) - w``: SGD raises w by about lr per step, and at w > 5 the loss is NaN."""
    return Model(
        init=lambda key: ({"w": jnp.zeros(())}, {}),
        apply=lambda p, state, x, *, key=None, train=False: (jnp.zeros((x.shape[0], 2)) + p["w"], state),
        criterion=lambda scores, t: jnp.sqrt(5.0 - scores[0, 0]) - scores[0, 0])


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    x = np.zeros((200, 3), np.float32)
    t = np.zeros(200, np.int32)
    config = TrainConfig(iters_num=500, batch_size=10, learning_rate=0.1)  # 20 iterations an epoch
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at iteration \d+ \(epoch 2\)"):
        run(diverging_model(), ((x, t), (x, t)), config, dataset="toy", settings={"toy": 1},
            out=tmp_path, progress=False)
    checkpoints = Checkpoints(tmp_path / "checkpoints")
    assert checkpoints.latest_step() == 20
    template = jax.eval_shape(lambda: bj.init_state(diverging_model(), config))
    state, record = checkpoints.restore(template)
    checkpoints.close()
    assert int(state.iteration) == 20 and np.isfinite(float(state.params["w"]))
    assert 2.0 <= float(state.params["w"]) < 5.0
    assert [e["iteration"] for e in record["history"]] == [20]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_minimum_interval_skips_saves_but_keeps_the_last_good_epoch(tmp_path):
    x = np.zeros((200, 3), np.float32)
    t = np.zeros(200, np.int32)
    config = TrainConfig(iters_num=500, batch_size=40, learning_rate=0.1)  # 5 iterations an epoch
    with pytest.raises(TrainingDiverged) as e:
        run(diverging_model(), ((x, t), (x, t)), config, dataset="toy", settings={"toy": 1},
            out=tmp_path, progress=False, checkpoint_interval=3600)
    last_good = int(re.search(r"parameters of iteration (\d+)", str(e.value)).group(1))
    assert last_good >= 15  # a few epochs in, so that some saves were skipped
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps == [5, last_good]  # the first epoch, then nothing for an hour, but the last good one


def test_out_dir_is_protected_and_resume_checks_settings(tmp_path, sample):
    data = small(sample)
    config = TrainConfig(iters_num=20)
    settings = {"model": "two-layer", **vars(config)}
    run(two_layer_net.model(), data, config, dataset="d", settings=settings, out=tmp_path, progress=False)
    with pytest.raises(RunError, match="already holds checkpoints of a run .iteration 20.; pass --resume"):
        run(two_layer_net.model(), data, config, dataset="d", settings=settings, out=tmp_path, progress=False)
    other = TrainConfig(iters_num=20, learning_rate=0.5)
    with pytest.raises(RunError, match=r"other settings .*'learning_rate': \(0.1, 0.5\)"):
        run(two_layer_net.model(), data, other, dataset="d", settings={"model": "two-layer", **vars(other)},
            out=tmp_path, resume=True, progress=False)
    # --resume with nothing to resume starts a new run, so one command line starts and restarts.
    log = []
    state, _ = run(two_layer_net.model(), data, config, dataset="d", settings=settings,
                   out=tmp_path / "new", resume=True, progress=False, log=log.append)
    assert log == [f"no checkpoint in {tmp_path / 'new' / 'checkpoints'} yet: starting a new run"]
    assert int(state.iteration) == 20
    # Resuming a finished run trains no further.
    again, history = run(two_layer_net.model(), data, config, dataset="d", settings=settings,
                         out=tmp_path / "new", resume=True, progress=False)
    np.testing.assert_array_equal(again.params["W1"], state.params["W1"])
    assert len(history) == 4
    # Extending a finished run is allowed: only iters_num may differ.
    longer = TrainConfig(iters_num=40)
    state, history = run(two_layer_net.model(), data, longer, dataset="d",
                         settings={"model": "two-layer", **vars(longer)}, out=tmp_path, resume=True,
                         progress=False)
    assert int(state.iteration) == 40 and [e.iteration for e in history] == [5 * i for i in range(1, 9)]


def test_bad_data_is_named(sample):
    (x, t), test = small(sample)
    with pytest.raises(ValueError, match=r"train set: 500 inputs of shape \(500, 784\) but 499 labels"):
        train(two_layer_net.model(), ((x, t[:-1]), test), TrainConfig(iters_num=1))
    with pytest.raises(ValueError, match="train labels must be integers of shape"):
        train(two_layer_net.model(), ((x, np.eye(10)[t]), test), TrainConfig(iters_num=1))


@pytest.mark.parametrize("kwargs, message", [
    ({"iters_num": 0}, "iters_num must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive number"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, momentum, nesterov, adagrad, rmsprop, adam"),
])
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
