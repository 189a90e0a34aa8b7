"""A training run with files: checkpoints, ``metrics.json``, ``curves.png``, resume."""

import contextlib
import dataclasses
import errno
import hashlib
import importlib
import json
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from backprop_jax._io import writable_directory, write_json
from backprop_jax._values import check_count
from backprop_jax.training._checkpoint import (
    Checkpoints, QuietLogger, _readable, _record_problem, _short, at_recorded_dtypes, check_precision, checkpoint_record, check_same_run,
    restore_newest)
from backprop_jax.training._config import TrainConfig, init_state
from backprop_jax.training._errors import CheckpointWriteError, RunError, RunInterrupted
from backprop_jax.training._loop import DIVERGENCE_FACTOR, Epoch, TrainingDiverged, train


def data_fingerprint(data, name):
    """What a run records of its data, to refuse resuming on other data: the dataset's ``name``,
    the sizes, and a SHA-256 of every array (shapes, dtypes and values)."""
    digest = hashlib.sha256()
    for x, t in data:
        for a in (x, t):
            a = np.ascontiguousarray(a)
            digest.update(f"{a.dtype.str}{a.shape}".encode())
            digest.update(a.data)
    (x_train, _), (x_test, _) = data
    return {"name": name, "train": len(x_train), "test": len(x_test), "sha256": digest.hexdigest()}


# The first file a run writes into its directory: what marks it as a run directory.
MARKER = ".backprop-jax-run"
# What a run directory holds (a run made before the marker existed holds only these).
_RUN_FILES = {MARKER, ".lock", "metrics.json", "curves.png", "checkpoints", "damaged-checkpoints"}


def claim_run_directory(out):
    """Checks that ``out`` may hold this run, and marks it: a new or empty directory, or one that
    is already a run directory. Refuses, before any training, a directory holding anything else
    (another program's files), an empty path, a place inside a run's ``checkpoints/``, and
    files in the way of what the run writes."""
    if str(out) in ("", "."):
        raise RunError(f"{str(out)!r}: give the run its own directory (a new or empty one)",
                       argument="out")
    out = Path(out)
    try:
        str(out.absolute()).encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as surrogates
        raise RunError(f"{str(out)!r}: the path is not valid UTF-8, and checkpoints (TensorStore) can only be "
                       f"written under a UTF-8 path; choose another", argument="out") from None
    try:
        _check_run_directory(out)
    except OSError as e:  # a name too long, a directory that cannot be listed
        raise RunError(f"{out}: {e.strerror or e}", argument="out") from None
    try:
        writable_directory(out)
        if not (out / MARKER).exists():
            fd = os.open(out / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
            with os.fdopen(fd, "w") as f:
                f.write("a backprop-jax training run\n")
    except FileExistsError:
        pass  # another process of the run made it
    except OSError as e:
        raise RunError(f"{e}", argument="out") from None


def _check_run_directory(out):
    for parent in [out.absolute(), *out.absolute().parents]:
        if parent.name in ("checkpoints", "damaged-checkpoints") and (
                (parent.parent / MARKER).exists() or (parent.parent / "metrics.json").exists()):
            raise RunError(f"{out} is inside the {parent.name} of the run in {parent.parent}, whose "
                           f"clean-up would delete it; choose a directory outside it", argument="out")
    if out.is_symlink() and not out.exists():
        raise RunError(f"{out} is a symbolic link to nothing", argument="out")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        for name, kind in (("metrics.json", "file"), ("curves.png", "file"), ("checkpoints", "directory"),
                           (".lock", "file"), ("damaged-checkpoints", "directory")):
            path = out / name
            if path.is_symlink():
                raise RunError(f"{out}: {name} is a symbolic link; a run never writes through one "
                               f"(remove it)", argument="out")
            if path.exists() and (path.is_dir() if kind == "file" else not path.is_dir()):
                raise RunError(f"{out}: {name} is a {'directory' if kind == 'file' else 'file'}, where "
                               f"the run writes its {name} {kind}; move it away", argument="out")
        # Only the marker makes a directory a run: another program's metrics.json or curves.png
        # alone is never overwritten. (A run made before the marker existed has its checkpoints.)
        foreign = sorted(names - _RUN_FILES if "checkpoints" in names else names)
        if MARKER not in names and foreign:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise RunError(f"{out} holds files that are not a training run's ({shown}); a run writes "
                           f"only into a new or empty directory or one of its own, so choose another",
                           argument="out")


@contextlib.contextmanager
def _exclusive(out):
    """Holds an exclusive lock on the run directory ``out`` (its ``.lock`` file); the system
    releases it when the process ends, however it ends. The lock is never opened through a
    symbolic link."""
    try:
        writable_directory(out)
        fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
        lock = os.fdopen(fd, "r+")
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise RunError(f"{out}: .lock is a symbolic link; a run never writes through one "
                           f"(remove it)", argument="out") from None
        raise RunError(f"{e}", argument="out") from None
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        fcntl = None
    with lock:
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                raise RunError(f"{out} is in use by another training run ({lock.read().strip() or 'unknown'}); "
                               f"wait for it to end, or choose another directory", argument="out") from None
            if os.fstat(lock.fileno()).st_nlink != 1:  # a hard link to a file elsewhere: never truncate it
                raise RunError(f"{out}: .lock has {os.fstat(lock.fileno()).st_nlink} names (a hard link); a run "
                               f"never writes into a file linked elsewhere (remove it)", argument="out")
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
        yield


def _metrics(dataset, fingerprint, settings, history):
    epochs = [dataclasses.asdict(e) for e in history]
    return {"dataset": dataset, "data": fingerprint, "config": settings, "epochs": epochs,
            "final_test_acc": epochs[-1]["test_acc"] if epochs else None,
            "final_test_loss": epochs[-1]["test_loss"] if epochs else None}


def _import_early(*modules):
    """Imports ``modules`` in a background thread, on machines with spare cores: orbax and
    matplotlib take a while to import, time the device spends training anyway. An import that fails here fails
    again, with its message, where the module is used."""
    if (os.cpu_count() or 1) < 4:
        # On two cores the import competes with training for the CPU and saves nothing
        # (measured: the command's 10,000 iterations trained in 5.19 s without it against 5.41 s
        # with it, medians of 5 interleaved runs; importing orbax before training instead made
        # no difference either, 4 interleaved runs each); the modules are imported where first used.
        return

    def work():
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported where the module is really imported
                pass
    threading.Thread(target=work, name="backprop-jax-imports", daemon=True).start()


def run(model, data, config, *, dataset, settings, out=None, resume=False, checkpoint_every=None,
        checkpoint_interval=None, log=print, progress=True, mesh=None, every_epoch=False,
        metrics_interval=5.0, divergence_factor=DIVERGENCE_FACTOR, stop=None, accept_unverified=False,
        start_over=False, between_epochs=None):
    """Trains with progress output and, given ``out``, files that survive a crash.

    In a multi-process run every process calls ``run`` alike: all of them take
    part in saving and restoring checkpoints (``out`` must be a directory that
    they all see, e.g. a shared file system), and only process 0 logs, shows
    progress and writes ``metrics.json`` and ``curves.png``.

    Args:
      model: as for ``train``.
      data: as for ``train``.
      config: as for ``train``.
      dataset: the dataset's name, recorded in ``metrics.json``.
      settings: every setting of the model (and anything else that defines the run) as a
        JSON-able dict; ``config.record()`` is added to it. A resumed run must match it in
        everything but ``iters_num``.
      out: directory for ``metrics.json`` (every epoch, rewritten atomically at
        most every ``metrics_interval`` seconds and when training ends or
        stops), ``curves.png`` (drawn when training ends or stops) and
        ``checkpoints/`` (orbax, written in the background, the last two kept).
      resume: continue from the newest checkpoint in ``out`` if there is one
        (else start afresh), so one command line both starts a run and
        restarts it after a crash; a finished run is not trained further.
      checkpoint_every: None (default): save after every compiled call of
        ``train`` (about twice a second; see ``checkpoint_interval``). An
        integer: save after every this many epochs, making a call end there.
        In both cases also after the last epoch, and after the last good
        epoch if the loss diverges.
      checkpoint_interval: but no sooner than this many seconds after the
        previous save, nor while it is still being written (default: no
        minimum, and every save waits for the previous one).
      log: called with each message and epoch line (default ``print``); with a
        progress bar, epoch lines are written above it instead.
      progress: show a tqdm progress bar of the iterations.
      mesh: as for ``train``: split every mini-batch over the mesh's devices.
      every_epoch: print a line for every epoch; by default, when a run has
        more than 30 epochs, only about 20 evenly spread ones, always the first
        and the last (``metrics.json`` holds every epoch either way).
      metrics_interval: the least number of seconds between two writes of
        ``metrics.json`` during training.
      divergence_factor: as for ``train``: stop when the loss stays this many
        times above its starting value (None: never).
      stop: called after every compiled call; when it returns a reason (a string, e.g. the
        signal received), the run saves a checkpoint of the iteration reached, closes its
        files and raises ``RunInterrupted``.
      accept_unverified: resume from a checkpoint of an older format that has no digest, its
        arrays and record unverified (by default it is refused).
      start_over: start a new run in ``out`` although its ``metrics.json`` says a run was there
        whose checkpoints are gone (by default refused: that metrics.json would be lost).
      between_epochs: as for ``train``; the checkpoints hold the state it returns.
    Returns:
      ``(state, history)`` as ``train``.
    """
    _check_run_arguments(settings, checkpoint_every, checkpoint_interval, metrics_interval)
    primary = jax.process_index() == 0
    # The training settings are always part of what a resumed run must match; an optax
    # transformation as the optimiser is recorded by its description.
    recorded = [{**settings, **config.record()}] + [{**settings, **r} for r in config.earlier_records()]
    if not primary:
        log, progress = (lambda *args, **kwargs: None), False
    with contextlib.ExitStack() as stack:
        if out is not None:
            if primary:  # checked, and marked, before anything is written
                claim_run_directory(out)
            out = Path(out)
            if primary:  # one lock per run, however many processes it has
                stack.enter_context(_exclusive(out))
        options = _RunOptions(
            dataset=dataset, settings=recorded[0], earlier_settings=recorded[1:], out=out, resume=resume,
            checkpoint_every=checkpoint_every, checkpoint_interval=checkpoint_interval, log=log,
            progress=progress, mesh=mesh, every_epoch=every_epoch, metrics_interval=metrics_interval,
            divergence_factor=divergence_factor, primary=primary, stop=stop,
            accept_unverified=accept_unverified, start_over=start_over, between_epochs=between_epochs)
        return _run(model, data, config, options)


def _check_run_arguments(settings, checkpoint_every, checkpoint_interval, metrics_interval):
    """``ValueError`` naming the first of ``run``'s own arguments that it cannot use, before anything
    is trained: settings a resumed run could never match (not JSON, or NaN, which equals nothing)."""
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict of the run's settings, got {type(settings).__name__}")
    try:
        json.dumps(settings, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"settings must be JSON values with finite numbers, as checkpoints record them: {e}") from None
    check_count("checkpoint_every", checkpoint_every, optional=True)
    for name, value in (("checkpoint_interval", checkpoint_interval), ("metrics_interval", metrics_interval)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and 0 <= value < math.inf):
            raise ValueError(f"{name} must be {'None or ' if name == 'checkpoint_interval' else ''}a number of "
                             f"seconds >= 0, got {value!r}")


class _RunOptions(NamedTuple):
    """``run``'s arguments past the model, the data and the config, settings included."""
    dataset: str
    settings: dict  # the model's and config.record()'s, as checkpoints and metrics.json record them
    earlier_settings: list  # the forms earlier versions recorded the same settings in (resume accepts them)
    out: Path | None
    resume: bool
    checkpoint_every: int | None
    checkpoint_interval: float | None
    log: Callable
    progress: bool
    mesh: Any
    every_epoch: bool
    metrics_interval: float
    divergence_factor: float | None
    primary: bool  # this process writes metrics.json and curves.png, and logs
    stop: Callable | None
    accept_unverified: bool  # resume from a checkpoint without a digest
    start_over: bool  # a new run over a metrics.json whose checkpoints are gone
    between_epochs: Callable | None  # (state, history) -> state after every whole epoch


@dataclasses.dataclass
class _RunFiles:
    """What a run with an output directory has written and must still write: the newest
    epochs and state (for the files even after an error), whether they are saved, and the
    checkpoints, made again if their directory is removed while the run goes on."""
    options: _RunOptions
    fingerprint: Any
    checkpoints: Any
    history: list
    state: Any = None
    saved: bool = True  # the newest state has a checkpoint (or there is nothing new)
    wrote: bool = False  # at least one checkpoint was written by this run
    written_at: float = dataclasses.field(default_factory=time.monotonic)  # metrics.json, last

    def save(self, state, history, force):
        o = self.options
        record = checkpoint_record(o.settings, self.fingerprint, state, [dataclasses.asdict(h) for h in history])
        step = history[-1].iteration
        if self.wrote and not self.checkpoints.directory.exists():  # removed while the run went on
            o.log(f"{self.checkpoints.directory} was removed while the run went on; writing checkpoint "
                  f"{step} afresh")
            try:
                self.checkpoints.close()
            except Exception:  # noqa: BLE001 - the old manager's writes went nowhere
                pass
            self.checkpoints = Checkpoints(self.checkpoints.directory, min_interval_s=o.checkpoint_interval)
        if self.checkpoints.save(step, state, record, force=force):
            self.saved = self.wrote = True

    def write_metrics(self, history):
        """Writes metrics.json (atomically: the one before stays whole if this write fails);
        ``CheckpointWriteError`` saying what is left when it cannot be written."""
        o = self.options
        try:
            write_json(o.out / "metrics.json", _metrics(o.dataset, self.fingerprint, o.settings, history))
        except OSError as e:
            left = ("the metrics.json written before it is kept" if (o.out / "metrics.json").exists()
                    else "no metrics.json was written")
            raise CheckpointWriteError(f"cannot write metrics.json in {o.out}: {(e.strerror or str(e)).lower()}; "
                                       f"{left}, and the checkpoints written are kept") from None
        self.written_at = time.monotonic()

    def on_epochs(self, state, history, last):
        """Checkpoint and metrics after a call of ``train``."""
        o = self.options
        self.history, self.state, self.saved = history, state, False
        if o.checkpoint_every is None or history[-1].epoch % o.checkpoint_every == 0 or last:
            self.save(state, history, force=last)
        if o.primary and time.monotonic() - self.written_at >= o.metrics_interval:
            self.write_metrics(history)

    def finish(self):
        """Waits for a checkpoint still being written, then writes metrics.json and curves.png."""
        o = self.options
        failed = None
        try:
            self.checkpoints.close()
        except CheckpointWriteError as e:  # a background write that failed
            failed = e
        if self.history and o.primary:
            try:
                self.write_metrics(self.history)
                from backprop_jax.training.plots import plot_curves  # matplotlib only when drawing
                # Drawn once, when training ends or stops: cheap next to every epoch.
                try:
                    plot_curves([dataclasses.asdict(h) for h in self.history], o.out / "curves.png",
                                title=o.dataset)
                except OSError as e:
                    raise CheckpointWriteError(f"cannot write curves.png in {o.out}: "
                                               f"{(e.strerror or str(e)).lower()}; metrics.json and the "
                                               f"checkpoints written are kept") from None
            except CheckpointWriteError as e:
                if failed is None:
                    raise
                # Both failed: the checkpoint's message, but only what is true of metrics.json.
                raise CheckpointWriteError(f"{str(failed).split('; the checkpoints before it')[0]}; and {e}") from None
        if failed is not None:
            raise failed


def _open_run(model, data, config, o):
    """``(state, history, files, finished)``: the run to continue (``state`` None for a new one),
    its files (None without an output directory), and whether it is already past the iterations
    asked."""
    if o.out is None:
        return None, [], None, False
    fingerprint = data_fingerprint(data, o.dataset)
    _import_early("orbax.checkpoint", *(["backprop_jax.training.plots"] if o.primary else []))
    checkpoints = Checkpoints(o.out / "checkpoints", min_interval_s=o.checkpoint_interval)
    steps = checkpoints.all_steps()
    state, history = None, []
    if o.resume and not steps:
        o.log(f"no checkpoint in {o.out / 'checkpoints'} yet: starting a new run")
    elif o.resume:
        try:
            state, history = _restore(checkpoints, model, config, fingerprint, o)
        except BaseException:
            checkpoints.close()  # orbax's reads of a damaged one end here, quietly, not as the process ends
            raise
        if int(state.iteration) > config.iters_num:
            o.log(f"the run in {o.out} is already at iteration {int(state.iteration)}, past the "
                  f"{config.iters_num} asked: nothing to train")
            checkpoints.close()
            return state, history, None, True
        o.log(f"resuming from iteration {int(state.iteration)} (epoch {len(history)})")
    elif steps:
        raise RunError(f"{o.out} already holds checkpoints of a run (iteration {steps[0]}); resume it "
                       f"(resume=True), or give the new run another directory", argument="out")
    if not steps and not o.start_over and (o.out / "metrics.json").exists():
        raise RunError(f"{o.out} holds the metrics.json of a run whose checkpoints are gone; a new run "
                       f"would overwrite it: start over knowingly (start_over=True), or give the new run "
                       f"another directory", argument="out")
    return state, history, _RunFiles(o, fingerprint, checkpoints, history), False


def _restore(checkpoints, model, config, fingerprint, o):
    """``(state, history)`` of the newest readable checkpoint of this run (``restore_newest``),
    its arrays replicated over the mesh."""
    template = jax.eval_shape(lambda: init_state(model, config))
    sharding = None if o.mesh is None else NamedSharding(o.mesh, PartitionSpec())

    def check(record):
        check_same_run(record, [o.settings, *o.earlier_settings], fingerprint, o.out)
        check_precision(record, template, o.out)

    state, record = restore_newest(checkpoints, template, check, o.out, sharding, o.log, o.primary,
                                   o.accept_unverified)
    try:
        return state, [Epoch(**e) for e in record["history"]]
    except TypeError as e:  # fields of no Epoch (a record made by hand, its digest made again)
        raise RunError(f"the checkpoint in {o.out} holds epochs this program does not write ({e})",
                       argument="resume") from None


def _run(model, data, config, o):
    state, history, files, finished = _open_run(model, data, config, o)
    if finished:
        return state, history
    done = int(state.iteration) if state is not None else 0
    # Which epochs get a line: all of a short run, about 20 of a long one.
    per_epoch = config.epoch_length(len(data[0][0]))
    last_epoch = len(history) + -(-max(config.iters_num - done, 0) // per_epoch)
    spacing = 1 if o.every_epoch or last_epoch <= 30 else -(-last_epoch // 20)
    shown = len(history)

    def on_epochs(state, history):
        nonlocal shown
        for e in history[shown:] if o.primary else ():
            if e.epoch % spacing == 0 or e.epoch in (1, last_epoch):
                (bar.write if o.progress else o.log)(e.line())  # above the bar when there is one
        shown = len(history)
        e = history[-1]
        last = e.iteration >= config.iters_num
        if files is not None:
            files.on_epochs(state, history, last)
        reason = o.stop() if o.stop is not None else None
        if reason and not last:
            if files is not None and not files.saved:
                files.save(state, history, force=True)
            raise RunInterrupted(reason, e.iteration, e.iteration if files is not None else None)

    # Orbax logs a failed background write with its traceback; the run says it in one line.
    quiet = QuietLogger("absl") if files is not None else contextlib.nullcontext()
    with quiet, _bar(total=config.iters_num, initial=done, unit="it", disable=not o.progress,
                     dynamic_ncols=True) as bar:
        try:
            state, history = train(model, data, config, state=state, history=history,
                                   on_epochs=on_epochs, progress=bar, mesh=o.mesh,
                                   sync_every=o.checkpoint_every, divergence_factor=o.divergence_factor,
                                   between_epochs=o.between_epochs)
        except TrainingDiverged:
            if files is not None and not files.saved:
                files.save(files.state, files.history, force=True)  # the last good epoch
            raise
        finally:
            if files is not None:
                files.finish()
    return state, history


def _bar(**kwargs):
    """tqdm's bar for where it shows: a widget in a notebook that has ipywidgets, text anywhere
    else (``tqdm.auto`` would warn on every run in a notebook without them)."""
    try:
        import ipywidgets  # noqa: F401 - what tqdm's notebook bar is drawn with
    except ImportError:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(**kwargs)


def run_settings(out):
    """The settings recorded by the run in directory ``out`` (its model's name and settings and
    its training settings), from the newest checkpoint whose record reads; ``RunError`` if none."""
    return dict(run_record(out)["settings"])


def run_record(out):
    """The record of the newest checkpoint of the run in directory ``out`` whose record reads
    (older ones are tried when the newest is damaged): its ``settings``, its ``data``
    (``data_fingerprint`` of what it trained on, where it recorded one) and its ``history``; its
    arrays are not read (``restore_run`` reads and verifies them). ``RunError`` if none reads."""
    checkpoints = Checkpoints(Path(out) / "checkpoints")
    try:
        return _newest_record(checkpoints, out)
    finally:
        checkpoints.close()


def _newest_record(checkpoints, out):
    steps = checkpoints.all_steps()
    if not steps:
        raise RunError(f"{out}: no checkpoint in {checkpoints.directory}")
    for step in steps:
        try:
            record = checkpoints.record(step)
        except Exception:  # noqa: BLE001 - a damaged record: the one before
            continue
        if _record_problem(record) is None:
            return record
    raise RunError(f"{out}: no checkpoint in {checkpoints.directory} has a record that reads")


def restore_run(out, model, settings=None, log=None, accept_unverified=False, config=None):
    """The ``TrainState`` of the newest checkpoint in the run directory ``out``, for ``model`` (the
    network the run trained), its optimiser state rebuilt from the settings the run recorded.

    The checkpoint is verified as a resumed run verifies it: its record names its own step, and
    its arrays match the digest saved with them; one that fails is skipped (``log`` says which
    and why) for the one before it, and nothing in ``out`` is changed. ``settings``: what the
    run must have recorded (the model's name and settings, ``Recipe.record()``); any other value
    is an error naming both. The arrays are read in the dtypes the run recorded (a float32 run
    stays float32 with ``jax_enable_x64`` on). ``accept_unverified``: accept a checkpoint of an
    older format without a digest (by default refused). ``config``: the run's ``TrainConfig``,
    for a run whose optimiser its record cannot rebuild (a recipe's own, ``Recipe.config``); by
    default made from the record.

    Raises:
      RunError: there is no checkpoint, none verifies, the run recorded other ``settings``, the
        run's optimiser cannot be rebuilt from its record and no ``config`` is given (an optax
        transformation of your own: give ``config``, or restore it with ``Checkpoints.restore``
        and a template of its state), or the checkpoint
        does not hold ``model``'s parameters.
    """
    checkpoints = Checkpoints(Path(out) / "checkpoints")
    try:
        newest = _newest_record(checkpoints, out)
        saved = newest["settings"]
        if settings is not None:
            wanted = json.loads(json.dumps(settings))  # as a record holds them
            diff = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
            if diff:
                raise RunError(f"{out}: the run was made with other settings (saved, given): "
                               + ", ".join(f"{k} {a!r}, {b!r}" for k, (a, b) in sorted(diff.items())))
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        try:
            config = config or TrainConfig(**{k: v for k, v in saved.items() if k in fields})
        except ValueError:
            raise RunError(f"{out}: the run used an optimiser that cannot be rebuilt from its record "
                           f"({saved.get('optimizer')!r:.60}); give its config, or restore it with "
                           f"Checkpoints.restore") from None
        try:
            template = at_recorded_dtypes(jax.eval_shape(lambda: init_state(model, config)), newest, out)
        except RunError as e:
            raise RunError(f"{out}: {e}".replace(f"the run in {out} ", "the run ")) from None
        skipped = []
        for step in checkpoints.all_steps():
            state, _, why = _readable(checkpoints, step, template, None, lambda record: None, accept_unverified)
            if why is None:
                break
            skipped.append((step, _short(why)))
        else:  # each one's reason in the error, once
            raise RunError(f"{out}: no checkpoint in {checkpoints.directory} can be read and verified "
                           f"for this model: " + "; ".join(f"{step}: {why}" for step, why in skipped))
        for step, why in skipped if log is not None else ():
            log(f"checkpoint {step} in {checkpoints.directory} cannot be trusted ({why}); skipped it")
        return state
    finally:
        checkpoints.close()
