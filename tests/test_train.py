"""Training: the book's recipe, determinism, one compilation, calls of many epochs, divergence,
checkpoints, what a run prints and writes."""

import gc
import json
import re
import shutil
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import (
    CheckpointWriteError, Checkpoints, Model, RunError, TrainConfig, TrainingDiverged, multi_layer_net, run, train,
    two_layer_net)


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
    chex.assert_trees_all_equal(a.params, b.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_batches_fed_from_the_host_train_exactly_like_batches_gathered_on_the_device(sample):
    data = small(sample)
    config = TrainConfig(iters_num=30, batch_size=40)  # 12 iterations an epoch: the last one short
    a, history_a = train(two_layer_net.model(), data, config, feed="device")
    b, history_b = train(two_layer_net.model(), data, config, feed="host")
    chex.assert_trees_all_equal(a.params, b.params)
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
    # One epoch loop; one evaluator each for train and test; one look at the shapes, which counts the
    # classes and sizes the evaluation's chunks.
    assert traces == {True: 1, False: 3}


def test_how_epochs_are_split_into_calls_changes_nothing(sample):
    data = small(sample)
    config = TrainConfig(iters_num=230, batch_size=60, seed=1)  # 8 iterations an epoch, 29 epochs, the last short
    model = two_layer_net.model()
    runs = {}
    for name, kwargs in {"one epoch a call": {"seconds_per_call": 1e-9},
                         "growing calls": {"seconds_per_call": 3600},
                         "synced every 5": {"seconds_per_call": 3600, "sync_every": 5}}.items():
        calls = []
        state, history = train(model, data, config, on_epochs=lambda s, h: calls.append(len(h)), **kwargs)
        assert int(state.iteration) == history[-1].iteration == 230 and len(history) == 29
        runs[name] = state, history, calls
    assert runs["one epoch a call"][2] == list(range(1, 30))
    assert runs["growing calls"][2] == [1, 3, 7, 15, 29]  # calls of 1, 2, 4, 8, then the 14 left
    assert runs["synced every 5"][2] == [1, 3, 5, 10, 15, 20, 25, 29]  # never across a multiple of 5
    state, history, _ = runs["one epoch a call"]
    for other_state, other_history, _ in list(runs.values())[1:]:
        chex.assert_trees_all_equal(other_state.params, state.params)
        strip = lambda h: [(e.epoch, e.iteration, e.train_loss, e.train_acc, e.test_acc) for e in h]
        assert strip(other_history) == strip(history)
    with pytest.raises(ValueError, match="seconds_per_call must be a positive number, got 0"):
        train(model, data, config, seconds_per_call=0)
    with pytest.raises(ValueError, match="sync_every must be None or a positive integer, got 0"):
        train(model, data, config, sync_every=0)


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


def test_a_loss_that_diverges_inside_a_long_call_keeps_the_last_finite_epoch():
    x = np.zeros((200, 3), np.float32)
    t = np.zeros(200, np.int32)
    config = TrainConfig(iters_num=5000, batch_size=10, learning_rate=0.01)  # 20 iterations an epoch
    seen = []
    with pytest.raises(TrainingDiverged) as e:
        train(diverging_model(), ((x, t), (x, t)), config, seconds_per_call=3600,
              on_epochs=lambda s, h: seen.append((int(s.iteration), h[-1].iteration, float(s.params["w"]))))
    bad_epoch = int(re.search(r"\(epoch (\d+)\)", str(e.value)).group(1))
    last_good = int(re.search(r"parameters of iteration (\d+)", str(e.value)).group(1))
    assert last_good == 20 * (bad_epoch - 1)
    assert len(seen) < bad_epoch - 1  # calls of several epochs, the bad one inside the last
    assert seen[-1][:2] == (last_good, last_good) and 0 < seen[-1][2] < 5
    # What the last call handed over is exactly the state of a run stopped there.
    stopped, _ = train(diverging_model(), ((x, t), (x, t)), TrainConfig(
        iters_num=last_good, batch_size=10, learning_rate=0.01))
    assert float(stopped.params["w"]) == seen[-1][2]


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


def test_long_runs_print_about_twenty_evenly_spread_epoch_lines(sample):
    data = small(sample, 200, 50)
    config = TrainConfig(iters_num=200)  # 2 iterations an epoch, 100 epochs

    def printed(**kwargs):
        log = []
        run(two_layer_net.model(), data, config, dataset="d", settings={}, progress=False, log=log.append,
            **kwargs)
        return [int(re.match(r"epoch (\d+): train acc", line).group(1)) for line in log]

    assert printed() == [1] + list(range(5, 101, 5))  # the first, every fifth, the last
    assert printed(every_epoch=True) == list(range(1, 101))
    short = TrainConfig(iters_num=60)  # 30 epochs: every one
    log = []
    run(two_layer_net.model(), data, short, dataset="d", settings={}, progress=False, log=log.append)
    assert len(log) == 30


@pytest.mark.parametrize("interval, seen_during_training", [(3600, False), (0, True)])
def test_metrics_json_is_written_at_most_every_interval_and_at_the_end(tmp_path, sample, interval,
                                                                       seen_during_training):
    # The model looks for metrics.json from inside the compiled steps.
    exists = []
    base = two_layer_net.model()

    def apply(params, state, x, *, key=None, train=False):
        if train:
            jax.debug.callback(lambda: exists.append((tmp_path / "metrics.json").exists()))
        return base.apply(params, state, x, key=key, train=train)

    config = TrainConfig(iters_num=100)  # 5 iterations an epoch, 20 epochs
    run(Model(base.init, apply), small(sample), config, dataset="d", settings={}, out=tmp_path,
        progress=False, log=lambda *a: None, metrics_interval=interval)
    assert len(exists) == 100 and any(exists) == seen_during_training and not exists[0]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["iteration"] for e in metrics["epochs"]] == list(range(5, 101, 5))


def test_out_dir_is_protected_and_resume_checks_settings(tmp_path, sample):
    data = small(sample)
    config = TrainConfig(iters_num=20)
    settings = {"model": "two-layer", **vars(config)}
    run(two_layer_net.model(), data, config, dataset="d", settings=settings, out=tmp_path, progress=False)
    with pytest.raises(RunError, match=r"already holds checkpoints of a run .iteration 20.; resume it \(resume=True\)"):
        run(two_layer_net.model(), data, config, dataset="d", settings=settings, out=tmp_path, progress=False)
    other = TrainConfig(iters_num=20, learning_rate=0.5)
    with pytest.raises(RunError, match=r"other settings .*'learning_rate': \(0.1, 0.5\)"):
        run(two_layer_net.model(), data, other, dataset="d", settings={"model": "two-layer", **vars(other)},
            out=tmp_path, resume=True, progress=False)
    # --resume with nothing to resume starts a new run, so one command line starts and restarts.
    log = []
    state, _ = run(two_layer_net.model(), data, config, dataset="d", settings=settings,
                   out=tmp_path / "new", resume=True, progress=False, log=log.append)
    assert log[0] == f"no checkpoint in {tmp_path / 'new' / 'checkpoints'} yet: starting a new run"
    assert [line.split(":")[0] for line in log[1:]] == ["epoch 1", "epoch 2", "epoch 3", "epoch 4"]
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


def test_resume_refuses_other_data_and_metrics_record_which(tmp_path, sample):
    data = small(sample)
    config = TrainConfig(iters_num=20)
    settings = {"model": "two-layer", **vars(config)}
    run(two_layer_net.model(), data, config, dataset="d", settings=settings, out=tmp_path, progress=False,
        log=lambda *a: None)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["data"] == bj.data_fingerprint(data, "d")
    assert metrics["data"]["train"] == 500 and metrics["data"]["test"] == 200
    longer = TrainConfig(iters_num=40)
    other = small(sample, 600, 200)  # another training set
    for name, wrong in (("d", other), ("e", data)):  # other images; the same images under another name
        with pytest.raises(RunError, match=r"was trained on other data \(saved: d, 500 train / 200 test images"):
            run(two_layer_net.model(), wrong, longer, dataset=name, settings={**settings, "iters_num": 40},
                out=tmp_path, resume=True, progress=False)
    state, history = run(two_layer_net.model(), data, longer, dataset="d", settings={**settings, "iters_num": 40},
                         out=tmp_path, resume=True, progress=False, log=lambda *a: None)
    assert int(state.iteration) == 40


def test_a_run_directory_is_locked_for_the_life_of_its_run(tmp_path, sample):
    import fcntl

    data = small(sample)
    config = TrainConfig(iters_num=20)

    def try_lock():
        with open(tmp_path / ".lock", "a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "held"
            return "free"

    # Someone else holds it: refused at once, naming the holder.
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                               "f.write('process 4242 on elsewhere'); f.flush(); fcntl.flock(f, fcntl.LOCK_EX); "
                               "print('locked', flush=True); time.sleep(120)", str(tmp_path / ".lock")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunError, match=r"is in use by another training run \(process 4242 on elsewhere\)"):
            run(two_layer_net.model(), data, config, dataset="d", settings={}, out=tmp_path, progress=False)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert not (tmp_path / "checkpoints").exists()  # nothing of the other run was touched
    # Held while our own run trains (seen from inside its steps), free again after.
    seen = []
    base = two_layer_net.model()

    def apply(params, state, x, *, key=None, train=False):
        if train:
            jax.debug.callback(lambda: seen.append(try_lock()))
        return base.apply(params, state, x, key=key, train=train)

    run(Model(base.init, apply), data, config, dataset="d", settings={}, out=tmp_path, progress=False,
        log=lambda *a: None)
    assert seen == ["held"] * 20 and try_lock() == "free"


def test_an_output_path_that_cannot_hold_a_run_is_refused_before_training(tmp_path, sample):
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(RunError, match=r"/file is a file, not a directory") as e:
        run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), dataset="d", settings={},
            out=tmp_path / "file", progress=False)
    assert e.value.argument == "out"  # a caller words it as its own option (the command line: --out)
    with pytest.raises(OSError, match=r"file is a file, not a directory"):
        bj.compare_optimizers(small(sample), tmp_path / "file", iters_num=1)


def damage(step_dir, how):
    if how == "truncated array data":
        data = max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[:10])
    elif how == "broken record":
        (step_dir / "record" / "metadata").write_text("{not json")
    elif how == "flipped bits that still read":
        # The same record over arrays that differ in one bit of one weight: orbax reads them without
        # a word; only the digest saved with the record tells.
        checkpoints = Checkpoints(step_dir.parent)
        template = jax.eval_shape(lambda: bj.init_state(two_layer_net.model(), TrainConfig(iters_num=20)))
        state, record = checkpoints.restore(template, step=int(step_dir.name))
        W1 = np.asarray(state.params["W1"]).copy()
        W1.view(np.uint32)[3, 7] ^= 1 << 20
        shutil.rmtree(step_dir)
        checkpoints.reload()
        checkpoints.save(int(step_dir.name), state._replace(params={**state.params, "W1": jnp.asarray(W1)}), record,
                         force=True)
        checkpoints.close()
    else:  # missing metadata
        (step_dir / "state" / "_METADATA").unlink()


# Reading a truncated file leaves orbax reads in flight whose callbacks later find their event
# loop closed ("Exception ignored ..."). The run keeps them quiet while it lasts; the test waits
# for the last of them here, so that they cannot surface in a later test.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["truncated array data", "broken record", "missing metadata",
                                 "flipped bits that still read"])
def test_a_damaged_last_checkpoint_falls_back_to_the_one_before(tmp_path, sample, how):
    data = small(sample)
    config = TrainConfig(iters_num=40)  # 5 iterations an epoch
    whole, _ = train(two_layer_net.model(), data, config)
    short = TrainConfig(iters_num=20)
    settings = {"model": "two-layer", **vars(short)}
    run(two_layer_net.model(), data, short, dataset="d", settings=settings, out=tmp_path, progress=False,
        checkpoint_every=1, log=lambda *a: None)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["15", "20"]
    damage(tmp_path / "checkpoints" / "20", how)
    log = []
    state, history = run(two_layer_net.model(), data, config, dataset="d", settings={**settings, "iters_num": 40},
                         out=tmp_path, resume=True, progress=False, checkpoint_every=1, log=log.append)
    assert re.fullmatch(rf"checkpoint 20 cannot be read \(.+\); moved it to {tmp_path}/damaged-checkpoints/20",
                        log[0]), log[0]
    assert log[1] == "resuming from iteration 15 (epoch 3)"
    chex.assert_trees_all_equal(state.params, whole.params)
    assert [e.iteration for e in history] == list(range(5, 41, 5))
    assert (tmp_path / "damaged-checkpoints" / "20").is_dir()
    time.sleep(1.0)
    gc.collect()


def test_a_given_state_that_does_not_fit_the_model_is_named(sample):
    data, model, config = small(sample), two_layer_net.model(), TrainConfig(iters_num=5)
    state = bj.init_state(model, config)
    wide = state._replace(params={**state.params, "W1": state.params["W1"].astype(jnp.float64)})
    with pytest.raises(ValueError, match=r"state\.params\['W1'\] has shape \(784, 50\) and dtype float64, but "
                                         r"this model and optimizer make \(784, 50\) and float32"):
        train(model, data, config, state=wide)
    with pytest.raises(ValueError, match="state does not have the structure this model and optimizer make"):
        train(model, data, TrainConfig(iters_num=5, optimizer="adam"), state=state)
    trained, _ = train(model, data, config, state=state)  # the right one is taken as it is
    assert int(trained.iteration) == 5


def test_bad_data_is_named(sample):
    (x, t), test = small(sample)
    with pytest.raises(ValueError, match=r"train set: 500 inputs of shape \(500, 784\) but 499 labels"):
        train(two_layer_net.model(), ((x, t[:-1]), test), TrainConfig(iters_num=1))
    with pytest.raises(ValueError, match="train labels must be integers of shape"):
        train(two_layer_net.model(), ((x, t.astype(np.float32)), test), TrainConfig(iters_num=1))
    # Out of range: -1 would silently train class 9, and 10 would give a NaN loss.
    for bad, where in ((-1, 7), (10, 3)):
        wrong = t.copy()
        wrong[where] = bad
        with pytest.raises(ValueError, match=rf"train labels must be classes 0 to 9 \(the model scores 10\), "
                                             rf"got {bad} at index {where} \(1 such labels\)"):
            train(two_layer_net.model(), ((x, wrong), test), TrainConfig(iters_num=1))
    (xt, tt) = test
    with pytest.raises(ValueError, match=r"test labels must be classes 0 to 9 .*got 12 at index 0"):
        train(two_layer_net.model(), ((x, t), (xt, np.full_like(tt, 12))), TrainConfig(iters_num=1))


def test_evaluating_a_sample_each_epoch_as_the_books_trainer(sample):
    data = small(sample)
    model = two_layer_net.model()
    config = TrainConfig(iters_num=23, seed=2)  # 5 iterations an epoch: the last epoch is short
    sampled = TrainConfig(iters_num=23, seed=2, evaluate_sample_num_per_epoch=30)
    state, history = train(model, data, config)
    state_s, history_s = train(model, data, sampled)
    chex.assert_trees_all_equal(state_s.params, state.params)
    assert [e.train_loss for e in history_s] == [e.train_loss for e in history]
    # The book's Trainer: x[:30] each epoch; everything after the last.
    (x, t), (xt, tt) = data
    for e_s in history_s[:-1]:
        assert e_s.train_acc * 30 == pytest.approx(round(e_s.train_acc * 30))
    assert history_s[-1].train_acc == history[-1].train_acc == pytest.approx(
        float(model.accuracy(state.params, state.model_state, x, t)), abs=1e-6)
    assert history_s[-1].test_acc == history[-1].test_acc
    first_params, _ = train(model, data, TrainConfig(iters_num=5, seed=2))
    assert history_s[0].test_acc == pytest.approx(
        float(model.accuracy(first_params.params, first_params.model_state, xt[:30], tt[:30])), abs=1e-6)
    with pytest.raises(ValueError, match="evaluate_sample_num_per_epoch must be None or a positive integer"):
        TrainConfig(evaluate_sample_num_per_epoch=0)


def test_a_loss_that_explodes_without_becoming_nan_stops_training(sample):
    data = small(sample)
    config = TrainConfig(iters_num=500, learning_rate=1e4)  # the loss reaches about 5e10, never NaN
    with pytest.raises(TrainingDiverged, match=r"the loss has stayed above 10 times its starting value 2\.3\d* "
                                               r"for 3 epochs .* learning rate \(now sgd lr 10000\.0\)") as e:
        train(two_layer_net.model(), data, config)
    stopped_at = int(re.search(r"parameters of iteration (\d+)", str(e.value)).group(1))
    assert stopped_at < 500
    _, history = train(two_layer_net.model(), data, config, divergence_factor=None)  # turned off: it goes on
    assert history[-1].iteration == 500 and history[-1].train_loss > 23
    with pytest.raises(ValueError, match="divergence_factor must be None or a number above 1, got 0.5"):
        train(two_layer_net.model(), data, config, divergence_factor=0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"iters_num": 0}, "iters_num must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive number"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, momentum, nesterov, adagrad, rmsprop, adam"),
    ({"seed": 2 ** 32}, r"seed must be an integer from 0 to 2\*\*32 - 1 = 4294967295, got 4294967296"),
    ({"seed": 2 ** 64}, r"seed must be an integer from 0 to 2\*\*32 - 1"),
    ({"seed": -1}, r"seed must be an integer from 0 to 2\*\*32 - 1"),
])
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_the_default_learning_rate_follows_the_optimizer_through_replace():
    import dataclasses

    adam = TrainConfig(optimizer="adam")
    assert adam.learning_rate is None and adam.lr == bj.OPTIMIZERS["adam"].learning_rate == 0.001
    sgd = dataclasses.replace(adam, optimizer="sgd")
    assert sgd.lr == bj.OPTIMIZERS["sgd"].learning_rate == 0.1 and sgd.record()["learning_rate"] == 0.1
    assert dataclasses.replace(sgd, learning_rate=0.5).lr == 0.5
    assert dataclasses.replace(TrainConfig(learning_rate=0.5), optimizer="adam").lr == 0.5  # given: kept
    assert sgd.optimizer_name() == "sgd lr 0.1"


def test_any_optax_transformation_trains_checkpoints_and_resumes_bitwise(tmp_path, sample):
    import optax
    data = small(sample)
    adamw = lambda lr: optax.adamw(lr, weight_decay=1e-4)  # noqa: E731
    whole, _ = train(two_layer_net.model(), data, TrainConfig(iters_num=40, optimizer=adamw(1e-3)))
    settings = {"model": "two-layer"}
    run(two_layer_net.model(), data, TrainConfig(iters_num=20, optimizer=adamw(1e-3)), dataset="d",
        settings=settings, out=tmp_path, progress=False, log=lambda *a: None)
    record = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert "optax" in record["optimizer"] and "0.001" in record["optimizer"], record["optimizer"]
    resumed, _ = run(two_layer_net.model(), data, TrainConfig(iters_num=40, optimizer=adamw(1e-3)), dataset="d",
                     settings=settings, out=tmp_path, resume=True, progress=False, log=lambda *a: None)
    chex.assert_trees_all_equal(resumed.params, whole.params)
    # Another transformation, or the same with another learning rate, is another run.
    for other in (adamw(2e-3), optax.sgd(0.1)):
        with pytest.raises(RunError, match="other settings .*'optimizer'"):
            run(two_layer_net.model(), data, TrainConfig(iters_num=60, optimizer=other), dataset="d",
                settings=settings, out=tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="learning_rate must be None with an optax transformation"):
        TrainConfig(optimizer=optax.sgd(0.1), learning_rate=0.1)
    with pytest.raises(ValueError, match="optimizer must be one of .* or an optax GradientTransformation"):
        TrainConfig(optimizer="lbfgs")


def test_weight_decay_applies_to_the_weights_each_layer_declares():
    from jax.example_libraries import stax
    from backprop_jax import nn
    model = nn.classifier(nn.serial(nn.from_stax(stax.Dense(32)), nn.Relu, nn.from_stax(stax.Dense(10))),
                          (784,), weight_decay_lambda=0.1)
    params, _ = model.init(jax.random.key(0))
    (W1, b1), (W2, b2) = params["stax1"], params["stax3"]
    assert W1.shape == (784, 32) and W2.shape == (32, 10)
    expected = 0.1 / 2 * (np.sum(np.asarray(W1, np.float64) ** 2) + np.sum(np.asarray(W2, np.float64) ** 2))
    assert float(model.penalty(params)) > 0
    np.testing.assert_allclose(float(model.penalty(params)), expected, rtol=1e-6)
    # The book's nets: W's only, not biases, not batch norm's gamma and beta.
    net = multi_layer_net.model(20, [8, 8], 3, use_batchnorm=True, weight_decay_lambda=0.1)
    p, _ = net.init(jax.random.key(0))
    assert [k for k, w in net.weight_mask(p).items() if w] == ["W1", "W2", "W3"]
    assert sorted(k for k, w in two_layer_net.model().weight_mask({"W1": 0, "b1": 0, "W2": 0, "b2": 0}).items()
                  if w) == ["W1", "W2"]


def test_any_model_trains_regression_and_one_hot_labels(tmp_path, sample):
    # A regression: y = x @ w_true, through the hand-ruled affine layer and a mean-squared criterion.
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(5, 2)).astype(np.float32)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = x @ w_true
    model = Model(init=lambda key: ({"W": 0.01 * jax.random.normal(key, (5, 2)), "b": jnp.zeros(2)}, {}),
                  apply=lambda p, s, x, *, key=None, train=False: (bj.affine(x, p["W"], p["b"]), s),
                  criterion=lambda pred, t: jnp.mean(jnp.sum((pred - t) ** 2, axis=1)))
    assert not model.measures_accuracy()
    data = ((x[:300], y[:300]), (x[300:], y[300:]))
    state, history = run(model, data, TrainConfig(iters_num=600, batch_size=50), dataset="line",
                         settings={"model": "regression"}, out=tmp_path, progress=False, log=lambda *a: None)
    last = history[-1]
    assert last.test_acc is None and last.test_loss < 1e-4 and last.train_loss < 1e-4, last
    np.testing.assert_allclose(state.params["W"], w_true, atol=1e-2)
    assert last.line().startswith(f"epoch {last.epoch}: train loss")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final_test_acc"] is None and metrics["final_test_loss"] == last.test_loss
    assert (tmp_path / "curves.png").exists()
    # The test loss is the mean over the whole test set, written out here.
    pred = np.asarray(data[1][0]) @ np.asarray(state.params["W"]) + np.asarray(state.params["b"])
    np.testing.assert_allclose(last.test_loss, np.mean(np.sum((pred - data[1][1]) ** 2, axis=1)), rtol=1e-4)
    # One-hot labels for the classifier train exactly as the integer labels do.
    small_data = small(sample)
    (xs, ts), (xt, tt) = small_data
    one_hot = ((xs, np.eye(10, dtype=np.float32)[ts]), (xt, np.eye(10, dtype=np.float32)[tt]))
    config = TrainConfig(iters_num=30)
    by_int, h_int = train(two_layer_net.model(), small_data, config)
    by_hot, h_hot = train(two_layer_net.model(), one_hot, config)
    np.testing.assert_allclose(by_hot.params["W1"], by_int.params["W1"], rtol=1e-5, atol=1e-7)
    assert h_hot[-1].test_acc == pytest.approx(h_int[-1].test_acc)
    bad = ((xs, np.full((len(xs), 10), 0.5, np.float32)), (xt, np.eye(10, dtype=np.float32)[tt]))
    with pytest.raises(ValueError, match="train one-hot labels: each row must be non-negative and sum to 1"):
        train(two_layer_net.model(), bad, config)
    with pytest.raises(ValueError, match=r"data must be \(\(x_train, t_train\), \(x_test, t_test\)\), got a tuple of 3"):
        train(two_layer_net.model(), (small_data[0], small_data[1], small_data[1]), config)
    with pytest.raises(ValueError, match="train labels must be integers of shape"):
        train(two_layer_net.model(), ((xs, ts.astype(np.float32)), (xt, tt)), config)


def test_an_impostor_step_and_a_resume_shorter_than_the_run(tmp_path, sample):
    data = small(sample)
    config = TrainConfig(iters_num=20)
    settings = {"model": "two-layer"}
    done, _ = run(two_layer_net.model(), data, config, dataset="d", settings=settings, out=tmp_path,
                  progress=False, checkpoint_every=1, log=lambda *a: None)
    # A copy of step 15 renamed as a later step: an older state under a later number.
    shutil.copytree(tmp_path / "checkpoints" / "15", tmp_path / "checkpoints" / "999999")
    log = []
    state, history = run(two_layer_net.model(), data, TrainConfig(iters_num=30), dataset="d", settings=settings,
                         out=tmp_path, resume=True, progress=False, log=log.append)
    assert log[0].startswith("checkpoint 999999 cannot be read (ValueError: its record says iteration 15, "
                             "not 999999)"), log[0]
    assert log[1] == "resuming from iteration 20 (epoch 4)" and int(state.iteration) == 30
    # Asking for fewer iterations than the run already has: said, and nothing is trained.
    log = []
    again, history = run(two_layer_net.model(), data, TrainConfig(iters_num=12), dataset="d", settings=settings,
                         out=tmp_path, resume=True, progress=False, log=log.append)
    assert log == [f"the run in {tmp_path} is already at iteration 30, past the 12 asked: nothing to train"]
    assert int(again.iteration) == 30 and history[-1].iteration == 30
    np.testing.assert_array_equal(again.params["W1"], state.params["W1"])


def test_a_run_writes_only_into_its_own_directory(tmp_path, sample):
    data, config = small(sample), TrainConfig(iters_num=5)
    go = lambda out, **kw: run(two_layer_net.model(), data, config, dataset="d", settings={}, out=out,  # noqa: E731
                               progress=False, log=lambda *a: None, **kw)
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.json").write_text("someone else's")
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match=r"holds files that are not a training run's \(notes.txt\)"):
        go(other)
    assert (other / "metrics.json").read_text() == "someone else's"
    with pytest.raises(RunError, match="give the run its own directory"):
        go("")
    go(tmp_path / "run")
    assert (tmp_path / "run" / ".backprop-jax-run").exists()
    with pytest.raises(RunError, match="inside the checkpoints of the run"):
        go(tmp_path / "run" / "checkpoints" / "nested")
    # A symbolic link as the lock: the file it points to is never touched.
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".lock").symlink_to(target)
    with pytest.raises(RunError, match=r"\.lock is a symbolic link; a run never writes through one"):
        go(tmp_path / "linked")
    assert target.read_text() == "precious"
    # Files in the way of what the run writes are found before training.
    (tmp_path / "blocked" / "metrics.json").mkdir(parents=True)
    with pytest.raises(RunError, match="metrics.json is a directory, where the run writes its metrics.json file"):
        go(tmp_path / "blocked")
    (tmp_path / "blocked2").mkdir()
    (tmp_path / "blocked2" / "checkpoints").write_text("a file")
    with pytest.raises(RunError, match="checkpoints is a file, where the run writes its checkpoints directory"):
        go(tmp_path / "blocked2")


def test_non_finite_inputs_are_named_where_data_enters(sample):
    (x, t), (xt, tt) = small(sample)
    bad = xt.copy()
    bad[[4, 9, 11]] = np.nan
    with pytest.raises(ValueError, match="test inputs hold NaN or infinite values: 3 of 200 examples, the first "
                                         "at index 4"):
        train(two_layer_net.model(), ((x, t), (bad, tt)), TrainConfig(iters_num=5))
    inf = x.copy()
    inf[7, 3] = np.inf
    with pytest.raises(ValueError, match="train inputs hold NaN or infinite values: 1 of 500 examples, the first "
                                         "at index 7"):
        train(two_layer_net.model(), ((inf, t), (xt, tt)), TrainConfig(iters_num=5))


def test_a_full_disk_or_a_removed_directory_loses_nothing_already_saved(tmp_path, sample, monkeypatch):
    import errno
    data = small(sample)
    calls = []
    real_save, real_write = Checkpoints.save, Checkpoints._write

    def full_on_the_third(self, step, state, record, force=False):  # orbax's write fails
        calls.append(step)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, step, state, record, force)

    monkeypatch.setattr(Checkpoints, "_write", full_on_the_third)
    with pytest.raises(CheckpointWriteError, match=rf"cannot write checkpoint 15 in {tmp_path}/checkpoints: no space left on "
                                       r"device; the checkpoints before it and metrics.json are kept"):
        run(two_layer_net.model(), data, TrainConfig(iters_num=40), dataset="d", settings={}, out=tmp_path,
            progress=False, checkpoint_every=1, log=lambda *a: None)
    monkeypatch.setattr(Checkpoints, "_write", real_write)
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"][-1]["iteration"] >= 10
    whole, _ = train(two_layer_net.model(), data, TrainConfig(iters_num=40))
    state, _ = run(two_layer_net.model(), data, TrainConfig(iters_num=40), dataset="d", settings={}, out=tmp_path,
                   resume=True, progress=False, log=lambda *a: None)
    chex.assert_trees_all_equal(state.params, whole.params)

    # The checkpoints directory removed while the run goes on: the next checkpoint is written afresh.
    def removed_after_the_first(self, step, state, record, force=False):
        saved = real_save(self, step, state, record, force)
        if step == 5:
            self._manager.wait_until_finished()
            shutil.rmtree(self.directory)
        return saved

    monkeypatch.setattr(Checkpoints, "save", removed_after_the_first)
    log = []
    run(two_layer_net.model(), data, TrainConfig(iters_num=20), dataset="d", settings={}, out=tmp_path / "gone",
        progress=False, checkpoint_every=1, log=log.append)
    assert f"{tmp_path / 'gone' / 'checkpoints'} was removed while the run went on; writing checkpoint 10 afresh" in log
    assert sorted(int(p.name) for p in (tmp_path / "gone" / "checkpoints").iterdir() if p.name.isdigit()) == [15, 20]


def test_training_that_cannot_fit_the_device_is_refused_from_shapes(sample):
    with pytest.raises(ValueError, match=r"training needs about .* one step's values for a batch of 1000000000 .*"
                                         r"more than the .* cpu device has"):
        train(two_layer_net.model(), small(sample), TrainConfig(iters_num=1, batch_size=10 ** 9))


def test_a_grown_run_has_the_history_of_an_uninterrupted_one(sample):
    data, model = small(sample), two_layer_net.model()  # 5 iterations an epoch
    whole, whole_history = train(model, data, TrainConfig(iters_num=40))
    # Stopped at 23, inside the fifth epoch, then grown to 40: the fifth epoch is completed, not doubled.
    part, part_history = train(model, data, TrainConfig(iters_num=23))
    assert [e.iteration for e in part_history] == [5, 10, 15, 20, 23]
    grown, grown_history = train(model, data, TrainConfig(iters_num=40), state=part, history=part_history)
    assert [e.iteration for e in grown_history] == [e.iteration for e in whole_history] == list(range(5, 41, 5))
    assert [e.epoch for e in grown_history] == list(range(1, 9))
    np.testing.assert_array_equal(grown.params["W1"], whole.params["W1"])
    for g, w in zip(grown_history, whole_history):
        assert g.test_acc == w.test_acc and g.train_acc == w.train_acc
        assert g.train_loss == pytest.approx(w.train_loss, rel=1e-6)
    # With a sample evaluated each epoch, the epoch that was last before growing is a middle epoch now.
    sampled = dict(evaluate_sample_num_per_epoch=30)
    _, uninterrupted = train(model, data, TrainConfig(iters_num=40, **sampled))
    first, first_history = train(model, data, TrainConfig(iters_num=20, **sampled))
    assert first_history[-1].train_acc != uninterrupted[3].train_acc  # evaluated on all 500, as the last
    _, continued = train(model, data, TrainConfig(iters_num=40, **sampled), state=first, history=first_history)
    assert [(e.train_acc, e.test_acc) for e in continued] == [(e.train_acc, e.test_acc) for e in uninterrupted]


def test_a_model_chooses_its_batch_order_and_the_trainer_follows_it(sample):
    # shuffled_rows: each epoch a permutation (the sequel's Trainer), its rows batch after batch.
    n, b = 25, 10  # two batches an epoch; five rows left out of each
    epoch0 = np.concatenate([np.asarray(bj.shuffled_rows(3, i, b, n)) for i in range(2)])
    epoch1 = np.concatenate([np.asarray(bj.shuffled_rows(3, i, b, n)) for i in range(2, 4)])
    for rows in (epoch0, epoch1):
        assert len(set(rows.tolist())) == 2 * b and rows.min() >= 0 and rows.max() < n  # no repeats in an epoch
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(bj.shuffled_rows(3, 2, b, n), bj.shuffled_rows(3, 2, b, n))
    # Through the trainer: the batches are the ones the model's batch_rows names, on either feed.
    (x, t), test = small(sample, 40, 20)
    seen = []
    base = two_layer_net.model()

    def rows(seed, iteration, batch_size, n):
        return (jnp.arange(batch_size) * 3 + iteration) % n  # an order no other code draws

    ordered = base._replace(batch_rows=rows)
    config = TrainConfig(iters_num=6, batch_size=8, seed=2)
    for feed in ("device", "host"):
        state, _ = train(ordered, ((x, t), test), config, feed=feed)
        seen.append(state.params)
    params = bj.init_state(base, config).params
    for i in range(6):  # plain SGD over the batches rows() names
        r = np.asarray(rows(2, i, 8, 40))
        grads = jax.grad(lambda p: base.loss(p, {}, x[r], t[r])[0])(params)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    for got in seen:
        for k in params:
            np.testing.assert_allclose(got[k], params[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_compiling_is_timed_apart_from_training(sample):
    model = two_layer_net.model(hidden_size=23)  # a program no other test compiles
    config = TrainConfig(iters_num=30, batch_size=100)
    _, first = train(model, small(sample), config)
    _, again = train(model, small(sample), config)  # the same program: kept, not compiled again
    assert first[0].compile_seconds > 0 and all(e.compile_seconds == 0 for e in first[1:])
    assert again[0].compile_seconds == 0
    # The epochs' clock leaves it out: the first epoch took less than its compiling did.
    assert first[0].seconds < first[0].compile_seconds
