"""Runs with files (``run``): the output directory, its lock, resume and what it must match,
metrics.json and the epoch lines, a run stopped by its loss."""

import json
import os
import re
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import (
    Checkpoints, Model, RunError, TrainConfig, TrainingDiverged, run, train,
    two_layer_net)
from conftest import diverging_model, small


def test_a_loss_not_finite_before_any_update_blames_the_start_not_the_learning_rate(sample):
    data = small(sample)
    huge = two_layer_net.model(weight_init_std=1e300)  # float32 weights of inf: the first loss is NaN
    with pytest.raises(TrainingDiverged) as e:
        train(huge, data, TrainConfig(iters_num=5, batch_size=60))
    assert str(e.value).startswith("the loss of the initial parameters is nan, before any update")
    assert "learning rate" in str(e.value) and "Try a smaller learning rate" not in str(e.value)


def test_a_run_directory_inside_another_runs_set_aside_checkpoints_is_refused(tmp_path, sample):
    first = tmp_path / "first"
    run(two_layer_net.model(hidden_size=4), small(sample), TrainConfig(iters_num=2, batch_size=60),
        dataset="s", settings={}, out=first, progress=False, log=lambda *a: None)
    for name in ("checkpoints", "damaged-checkpoints"):
        with pytest.raises(RunError, match=f"is inside the {name} of the run in {first}, whose clean-up"):
            run(two_layer_net.model(hidden_size=4), small(sample), TrainConfig(iters_num=2, batch_size=60),
                dataset="s", settings={}, out=first / name / "new", progress=False)
        assert not (first / name / "new").exists()


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
    for name, wrong in (("d", other), ("e", other)):  # other images, under either name (content decides)
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
    (tmp_path / ".backprop-jax-run").write_text("a backprop-jax training run\n")  # a run marks, then locks
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


def test_a_run_writes_only_into_its_own_directory(tmp_path, sample):
    data, config = small(sample), TrainConfig(iters_num=5)
    go = lambda out, **kw: run(two_layer_net.model(), data, config, dataset="d", settings={}, out=out,  # noqa: E731
                               progress=False, log=lambda *a: None, **kw)
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.json").write_text("someone else's")
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(RunError, match=r"holds files that are not a training run's \(metrics.json, notes.txt\)"):
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


def test_only_the_marker_makes_a_directory_a_run_and_a_finished_run_is_never_overwritten(tmp_path, sample):
    data, config = small(sample), TrainConfig(iters_num=5)
    go = lambda out, **kw: run(two_layer_net.model(), data, config, dataset="d", settings={}, out=out,  # noqa: E731
                               progress=False, log=lambda *a: None, **kw)
    for name in ("metrics.json", "curves.png"):
        other = tmp_path / name.replace(".", "-")
        other.mkdir()
        (other / name).write_text("another program's")
        with pytest.raises(RunError, match=rf"holds files that are not a training run's \({name}\)"):
            go(other)
        assert (other / name).read_text() == "another program's" and not (other / ".backprop-jax-run").exists()
    # A finished run whose checkpoints/ was removed: its metrics.json is kept unless told to start over.
    go(tmp_path / "done")
    kept = (tmp_path / "done" / "metrics.json").read_text()
    shutil.rmtree(tmp_path / "done" / "checkpoints")
    for resume in (False, True):
        with pytest.raises(RunError, match=r"holds the metrics.json of a run whose checkpoints are gone; a new run "
                                           r"would overwrite it: start over knowingly \(start_over=True\)"):
            run(two_layer_net.model(), data, TrainConfig(iters_num=10), dataset="d", settings={},
                out=tmp_path / "done", resume=resume, progress=False, log=lambda *a: None)
        assert (tmp_path / "done" / "metrics.json").read_text() == kept
    go(tmp_path / "done", start_over=True)
    assert (tmp_path / "done" / "checkpoints").is_dir()


def test_a_hard_linked_lock_is_never_truncated(tmp_path, sample):
    target = tmp_path / "precious.txt"
    target.write_text("precious")
    run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), dataset="d", settings={},
        out=tmp_path / "run", progress=False, log=lambda *a: None)
    (tmp_path / "run" / ".lock").unlink()
    os.link(target, tmp_path / "run" / ".lock")
    with pytest.raises(RunError, match=r"\.lock has 2 names \(a hard link\); a run never writes into a file linked"):
        run(two_layer_net.model(), small(sample), TrainConfig(iters_num=10), dataset="d", settings={},
            out=tmp_path / "run", resume=True, progress=False, log=lambda *a: None)
    assert target.read_text() == "precious"


def test_a_disk_that_fills_while_metrics_json_is_written_is_said_truly(tmp_path, sample, monkeypatch):
    import errno

    def full(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("backprop_jax.training._run.write_json", full)
    with pytest.raises(bj.CheckpointWriteError, match=rf"^cannot write metrics.json in {tmp_path}: no space left on "
                                                      r"device; no metrics.json was written, and the checkpoints "
                                                      r"written are kept$"):
        run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), dataset="d", settings={}, out=tmp_path,
            progress=False, log=lambda *a: None)
    assert not (tmp_path / "metrics.json").exists() and (tmp_path / "checkpoints" / "5").is_dir()
    # With one written before: kept whole (written atomically), and said to be.
    monkeypatch.undo()
    run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), dataset="d", settings={}, out=tmp_path,
        resume=True, progress=False, log=lambda *a: None)
    before = (tmp_path / "metrics.json").read_text()
    monkeypatch.setattr("backprop_jax.training._run.write_json", full)
    with pytest.raises(bj.CheckpointWriteError, match="the metrics.json written before it is kept"):
        run(two_layer_net.model(), small(sample), TrainConfig(iters_num=10), dataset="d", settings={}, out=tmp_path,
            resume=True, progress=False, log=lambda *a: None)
    assert (tmp_path / "metrics.json").read_text() == before


def test_data_are_identified_by_content_not_by_the_name_they_were_given(tmp_path, sample):
    data = small(sample)
    go = lambda name, iters, **kw: run(two_layer_net.model(), data, TrainConfig(iters_num=iters),  # noqa: E731
                                       dataset=name, settings={}, out=tmp_path, progress=False,
                                       log=lambda *a: None, **kw)
    go("dates.txt", 5)
    state, _ = go(str(tmp_path / ".." / "dates.txt"), 10, resume=True)  # the same file by another path
    assert int(state.iteration) == 10
    (x, t), test = data
    with pytest.raises(RunError, match="was trained on other data"):
        run(two_layer_net.model(), ((x[::-1], t[::-1]), test), TrainConfig(iters_num=15), dataset="dates.txt",
            settings={}, out=tmp_path, progress=False, resume=True, log=lambda *a: None)


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_a_damaged_checkpoints_that_is_a_link_or_a_file_is_refused_before_training(tmp_path, sample, kind):
    go = lambda **kw: run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), dataset="d",  # noqa: E731
                          settings={}, out=tmp_path / "run", progress=False, log=lambda *a: None, **kw)
    go()
    aside = tmp_path / "run" / "damaged-checkpoints"
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir()
        aside.symlink_to(tmp_path / "elsewhere")
        message = "damaged-checkpoints is a symbolic link; a run never writes through one"
    else:
        aside.write_text("a file")
        message = "damaged-checkpoints is a file, where the run writes its damaged-checkpoints directory"
    with pytest.raises(RunError, match=message):
        go(resume=True)


def test_an_output_path_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path, sample):
    out = tmp_path / os.fsdecode(b"run\xff\xfe")  # bytes a file system allows, kept by Python as surrogates
    with pytest.raises(RunError, match=r"the path is not valid UTF-8, and checkpoints \(TensorStore\) can only be "
                                       r"written under a UTF-8 path") as e:
        run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), dataset="d", settings={}, out=out,
            progress=False, log=lambda *a: None)
    assert e.value.argument == "out" and os.listdir(tmp_path) == []


@pytest.mark.parametrize("argument, message", [
    ({"settings": [1]}, "settings must be a dict of the run's settings, got list"),
    ({"settings": {"a": np.zeros(3)}}, "settings must be JSON values with finite numbers.*ndarray is not JSON"),
    ({"settings": {"a": float("nan")}}, "settings must be JSON values with finite numbers.*Out of range float"),
    ({"checkpoint_every": 0}, r"checkpoint_every must be None or a positive integer, got 0"),
    ({"checkpoint_interval": -1}, r"checkpoint_interval must be None or a number of seconds >= 0, got -1"),
    ({"metrics_interval": float("nan")}, r"metrics_interval must be a number of seconds >= 0, got nan"),
])
def test_run_arguments_it_cannot_use_are_named_before_anything_is_written(tmp_path, sample, argument, message):
    # A NaN in the settings would be recorded, and equal nothing: the run could never be resumed.
    kwargs = {"dataset": "d", "settings": {}, "out": tmp_path / "run", "progress": False, "log": lambda *a: None,
              **argument}
    with pytest.raises(ValueError, match=message):
        run(two_layer_net.model(), small(sample), TrainConfig(iters_num=5), **kwargs)
    assert not (tmp_path / "run").exists()
