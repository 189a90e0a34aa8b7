"""Checkpoints: a damaged one set aside, an impostor step, a failed write (``CheckpointWriteError``)
that loses nothing already saved."""

import gc
import json
import re
import shutil
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import (
    CheckpointWriteError, Checkpoints, TrainConfig, run, train,
    two_layer_net)
from conftest import small


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


def _short_run(out, data, iters=20, **kwargs):
    return run(two_layer_net.model(), data, TrainConfig(iters_num=iters), dataset="d", settings={"model": "two-layer"},
               out=out, progress=False, checkpoint_every=1, **{"log": lambda *a: None, **kwargs})


def _edit_record(step_dir, edit):
    path = step_dir / "record" / "metadata"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_an_edited_record_is_refused_and_never_copied_into_metrics(tmp_path, sample):
    data = small(sample)
    _short_run(tmp_path, data)

    def more_loss(record):
        record["history"][-1]["train_loss"] = 99.0
    _edit_record(tmp_path / "checkpoints" / "20", more_loss)
    log = []
    _short_run(tmp_path, data, iters=25, resume=True, log=log.append)
    assert log[0].startswith("checkpoint 20 cannot be read (ValueError: its record does not match the digest "
                             "saved with it); moved it to"), log[0]
    assert 99.0 not in [e["train_loss"] for e in json.loads((tmp_path / "metrics.json").read_text())["epochs"]]
    assert json.loads((tmp_path / "checkpoints" / "25" / "record" / "metadata").read_text())["dtypes"] == ["float32"]


def test_a_record_without_a_digest_is_refused_unless_accepted_and_older_records_with_one_resume(tmp_path, sample):
    data = small(sample)
    _short_run(tmp_path, data)
    # The format of the run before: an array digest, no record digest, no dtypes. It resumes.
    for step in ("15", "20"):
        _edit_record(tmp_path / "checkpoints" / step, lambda r: [r.pop("record_digest"), r.pop("dtypes")])
    state, _ = _short_run(tmp_path, data, iters=25, resume=True)
    assert int(state.iteration) == 25
    # The oldest format: no digest at all. Refused, by name, unless accepted knowingly.
    for step in ("20", "25"):
        _edit_record(tmp_path / "checkpoints" / step, lambda r: [r.pop(k, None) for k in ("record_digest", "digest")])
    with pytest.raises(bj.RunError, match=r"checkpoint 25 in .* has no digest \(an older format\): its arrays cannot "
                                          r"be verified; accept them knowingly with accept_unverified=True") as e:
        _short_run(tmp_path, data, iters=30, resume=True)
    assert e.value.argument == "accept_unverified"
    with pytest.raises(bj.RunError, match="has no digest"):
        bj.restore_run(tmp_path, two_layer_net.model())
    state, _ = _short_run(tmp_path, data, iters=30, resume=True, accept_unverified=True)
    assert int(state.iteration) == 30


def test_precision_is_part_of_a_runs_identity(tmp_path, sample):
    data = small(sample)
    jax.config.update("jax_enable_x64", False)
    try:
        _short_run(tmp_path, data)
        single = bj.restore_run(tmp_path, two_layer_net.model())
    finally:
        jax.config.update("jax_enable_x64", True)
    with pytest.raises(bj.RunError, match=r"was computed in float32 with jax_enable_x64 off, and this run would "
                                          r"compute in float32 with jax_enable_x64 on") as e:
        _short_run(tmp_path, data, iters=25, resume=True)
    assert e.value.argument == "resume"
    # Read back for evaluation: as saved, verified.
    chex.assert_trees_all_equal(bj.restore_run(tmp_path, two_layer_net.model()).params, single.params)
    # The reverse: a float64 run (64-bit floats on) resumed, or read, with them off.
    run(two_layer_net.model(dtype=jnp.float64), data, TrainConfig(iters_num=20), dataset="d",
        settings={"model": "two-layer"}, out=tmp_path / "double", progress=False, log=lambda *a: None)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(bj.RunError, match=r"the run computed in float64; this process computes in float32 "
                                              r"\(jax_enable_x64 is off\)"):
            bj.restore_run(tmp_path / "double", two_layer_net.model())
        with pytest.raises(bj.RunError, match=r"was computed in float64 with jax_enable_x64 on, and this run would "
                                              r"compute in float32 with jax_enable_x64 off"):
            _short_run(tmp_path / "double", data, iters=25, resume=True)
    finally:
        jax.config.update("jax_enable_x64", True)


def _files(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_damaged_checkpoint_is_set_aside_onto_another_filesystem_without_losing_it(tmp_path, sample, monkeypatch):
    import errno
    import os
    data = small(sample)
    _short_run(tmp_path, data)
    _edit_record(tmp_path / "checkpoints" / "20", lambda r: r["history"][-1].update(train_loss=99.0))
    damaged = _files(tmp_path / "checkpoints" / "20")
    aside = tmp_path / "damaged-checkpoints"
    real_rename, crossed = os.rename, []

    def across(src, dst, *args, **kwargs):  # damaged-checkpoints is a mount point of another filesystem
        parents = os.path.dirname(os.path.abspath(src)), os.path.dirname(os.path.abspath(dst))
        if parents == (str(tmp_path / "checkpoints"), str(aside)):
            crossed.append(src)
            raise OSError(errno.EXDEV, "Invalid cross-device link", str(src), None, str(dst))
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr("os.rename", across)

    real_copy, copied = shutil.copy2, []

    def full_after_one(src, dst, **kwargs):  # a copy that cannot complete: the other disk fills
        if copied:
            raise OSError(errno.ENOSPC, "No space left on device")
        copied.append(src)
        return real_copy(src, dst, **kwargs)
    monkeypatch.setattr("shutil.copy2", full_after_one)
    with pytest.raises(bj.RunError, match=rf"^cannot move the damaged checkpoint 20 from {tmp_path}/checkpoints into "
                                          rf"{aside}: no space left on device; it is left where it was$"):
        _short_run(tmp_path, data, iters=25, resume=True)
    assert _files(tmp_path / "checkpoints" / "20") == damaged and os.listdir(aside) == []
    monkeypatch.undo()
    monkeypatch.setattr("os.rename", across)
    log = []
    state, _ = _short_run(tmp_path, data, iters=25, resume=True, log=log.append)
    assert len(crossed) == 2  # the failed copy, then this one
    assert log[0].startswith("checkpoint 20 cannot be read (ValueError: its record does not match the digest saved "
                             f"with it); moved it to {aside}/20"), log[0]
    assert _files(aside / "20") == damaged and os.listdir(aside) == ["20"]  # whole, and no temporary left
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["20", "25"]  # 20 trained again, nothing else left
    whole, _ = train(two_layer_net.model(), data, TrainConfig(iters_num=25))
    chex.assert_trees_all_equal(state.params, whole.params)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_run_whose_every_checkpoint_is_damaged_is_named_once_each(tmp_path, sample):
    data = small(sample)
    _short_run(tmp_path, data)
    for step in ("15", "20"):
        damage(tmp_path / "checkpoints" / step, "truncated array data")
    log = []
    with pytest.raises(bj.RunError, match=r"^no checkpoint in .* can be read: 20: ValueError: OUT_OF_RANGE: Error "
                                          r"reading \"params\.W\d/0\.0\" .*; 15: ValueError: OUT_OF_RANGE"):
        _short_run(tmp_path, data, iters=25, resume=True, log=log.append)
    assert log == []
    with pytest.raises(bj.RunError, match=r"can be read and verified for this model: 20: ValueError: OUT_OF_RANGE.*"
                                          r"; 15: ValueError: OUT_OF_RANGE") as e:
        bj.restore_run(tmp_path, two_layer_net.model(), log=log.append)
    assert log == [] and "TensorStore details" not in str(e.value)  # each reason once, in the error
    time.sleep(1.0)
    gc.collect()


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_resuming_or_evaluating_a_run_whose_every_checkpoint_is_damaged_is_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "backprop_jax"]
    out = tmp_path / "run"
    made = subprocess.run([*command, "train", "--iters", "4", "--batch-size", "2000", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert made.returncode == 0, made.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["2", "4"]
    for step in ("2", "4"):
        damage(out / "checkpoints" / step, "truncated array data")
    # orbax's reads still in flight complain when collected, at some moment or as the process ends:
    # each command twice, as that moment varies.
    for args in (["train", "--iters", "6", "--batch-size", "2000", "--out", str(out), "--resume"],
                 ["evaluate", "--params", str(out)]) * 2:
        result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
        assert re.match(r"backprop-jax: error: --(resume|params .*): no checkpoint in .* 4: ValueError: OUT_OF_RANGE.*"
                        r"; 2: ValueError: OUT_OF_RANGE", result.stderr), result.stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["2", "4"]  # nothing moved


def _forge(step_dir, edit):
    """Edits the record and makes its digest again, as someone who read how it is made would."""
    import hashlib

    def forged(record):
        edited = edit(record) or record
        if isinstance(edited, dict):
            fields = {k: v for k, v in edited.items() if k != "record_digest"}
            edited["record_digest"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
        return edited
    path = step_dir / "record" / "metadata"
    path.write_text(json.dumps(forged(json.loads(path.read_text()))))


@pytest.mark.parametrize("edit, why", [
    (lambda r: [1, 2], "its record is a JSON list, not an object"),
    (lambda r: r.update(settings=[1]), "its record has no settings object"),
    (lambda r: r.update(history={"a": 1}), "its record's history is not a list of epochs, each with its iteration"),
    (lambda r: r["history"][-1].update(iteration=str(r["history"][-1]["iteration"])), "its record's history is not"),
    (lambda r: r.update(data=[1]), r"its record's data is not a fingerprint of data \(name, train, test, sha256\)"),
    (lambda r: r.update(dtypes="float32"), "its record's dtypes is not a list"),
])
def test_a_forged_record_of_another_form_is_unreadable_in_one_line(tmp_path, sample, edit, why):
    data = small(sample)
    _short_run(tmp_path, data)
    for step in ("15", "20"):
        _forge(tmp_path / "checkpoints" / step, edit)
    with pytest.raises(bj.RunError, match=rf"^no checkpoint in .* can be read: 20: ValueError: {why}.*; 15: "):
        _short_run(tmp_path, data, iters=25, resume=True)
    # Without settings to read, restore_run stops before the arrays: no record that reads.
    with pytest.raises(bj.RunError, match=rf"(can be read and verified for this model: 20: ValueError: {why}|"
                                          rf"has a record that reads$)"):
        bj.restore_run(tmp_path, two_layer_net.model())


def test_a_forged_record_with_epochs_of_another_form_is_refused_in_one_line(tmp_path, sample):
    data = small(sample)
    _short_run(tmp_path, data)
    _forge(tmp_path / "checkpoints" / "20", lambda r: r["history"][-1].update(bogus=1))
    with pytest.raises(bj.RunError, match=r"the checkpoint in .* holds epochs this program does not write "
                                          r"\(.*unexpected keyword argument 'bogus'\)"):
        _short_run(tmp_path, data, iters=25, resume=True)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_run_restored_for_a_model_of_other_shapes_names_them_without_orbax_advice(tmp_path, sample):
    _short_run(tmp_path, small(sample))
    # The array orbax names first is any of the three whose shapes the hidden size sets.
    pairs = "|".join(rf"\({a}\) is not compatible with the stored shape: \({b}\)"
                     for a, b in (("784, 60", "784, 50"), ("60,", "50,"), ("60, 10", "50, 10")))
    with pytest.raises(bj.RunError, match=rf"20: ValueError: Requested shape: (?:{pairs}); 15: ") as e:
        bj.restore_run(tmp_path, two_layer_net.model(784, 60, 10))
    assert "Truncating" not in str(e.value) and "strict=False" not in str(e.value)
    time.sleep(1.0)  # orbax's failed reads finish here, not in a later test (see above)
    gc.collect()


@pytest.mark.parametrize("kind", ["fifo", "device", "sparse"])
def test_a_checkpoint_file_that_is_a_fifo_a_device_or_endless_is_never_read(tmp_path, sample, kind):
    import os
    data = small(sample)
    _short_run(tmp_path, data)
    record = tmp_path / "checkpoints" / "20" / "record" / "metadata"
    array = max((p for p in (tmp_path / "checkpoints" / "20" / "state").rglob("*") if p.parent.name == "d"),
                key=lambda p: p.stat().st_size)
    if kind == "fifo":  # a read would wait for a writer forever
        array.unlink()
        os.mkfifo(array)
        why = rf"{array.relative_to(tmp_path / 'checkpoints' / '20')} is not a regular file"
    elif kind == "device":  # /dev/zero never ends
        record.unlink()
        record.symlink_to("/dev/zero")
        why = "record/metadata is a symbolic link, which a checkpoint does not hold"
    else:
        os.truncate(record, 2 ** 40)  # a terabyte of nothing
        why = r"record/metadata holds 1099511627776 bytes, more than the 67108864 a file of a checkpoint's metadata"
    log = []
    bj.restore_run(tmp_path, two_layer_net.model(), log=log.append)
    assert re.search(rf"checkpoint 20 in .* cannot be trusted \(ValueError: {why}", log[0]), log
    state, _ = _short_run(tmp_path, data, iters=25, resume=True, log=log.append)
    assert re.search(rf"checkpoint 20 cannot be read \(ValueError: {why}", log[1]), log
    assert int(state.iteration) == 25 and (tmp_path / "damaged-checkpoints" / "20").is_dir()


def test_a_damaged_checkpoint_holding_a_fifo_is_never_copied_across_filesystems(tmp_path, sample, monkeypatch):
    import errno
    import os
    data = small(sample)
    _short_run(tmp_path, data)
    os.mkfifo(tmp_path / "checkpoints" / "20" / "record" / "pipe")
    real_rename = os.rename

    def across(src, dst, *args, **kwargs):
        if os.path.dirname(os.path.abspath(dst)) == str(tmp_path / "damaged-checkpoints"):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, *args, **kwargs)
    monkeypatch.setattr("os.rename", across)
    with pytest.raises(bj.RunError, match=r"cannot move the damaged checkpoint 20 .*: .*record/pipe is not a regular "
                                          r"file; it is left where it was"):
        _short_run(tmp_path, data, iters=25, resume=True)
    assert (tmp_path / "checkpoints" / "20" / "record" / "pipe").exists()
    assert os.listdir(tmp_path / "damaged-checkpoints") == []
