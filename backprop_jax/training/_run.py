"""A training run with files: checkpoints, ``metrics.json``, ``curves.png``, resume."""

import contextlib
import dataclasses
import errno
import gc
import hashlib
import importlib
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from backprop_jax._io import writable_directory, write_json
from backprop_jax.training._checkpoint import Checkpoints
from backprop_jax.training._loop import (
    DIVERGENCE_FACTOR, Epoch, TrainingDiverged, init_state, iterations_per_epoch, train)


class RunInterrupted(RuntimeError):
    """``run``'s ``stop`` asked training to end: raised after a checkpoint of the iteration reached
    was written (with ``out``), so that the run resumes from there."""

    def __init__(self, reason, iteration, checkpoint):
        super().__init__(f"interrupted ({reason}) at iteration {iteration}")
        self.reason, self.iteration, self.checkpoint = reason, iteration, checkpoint


class RunError(RuntimeError):
    """The output directory cannot be used as asked: it is not a writable directory, another run is
    using it, it holds another run, or one with other settings or data.

    ``argument`` names the argument of ``run`` at fault (``"out"`` or ``"resume"``), for a caller
    that words the message in its own terms (the command line: ``--out``, ``--resume``)."""

    def __init__(self, message, argument=None):
        super().__init__(message)
        self.argument = argument


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


def state_digest(state):
    """SHA-256 of every array of ``state`` (shape, dtype and bytes), read from this process's copy:
    saved with each checkpoint and checked when it is restored, so that a checkpoint damaged
    in a way that still reads (a flipped bit) is never trusted."""
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(state):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_shards[0].data  # replicated: every process holds all of it
        a = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def claim_run_directory(out):
    """Checks that ``out`` may hold this run, and marks it: a new or empty directory, or one that
    is already a run directory. Refuses, before any training, a directory holding anything else
    (another program's files), an empty path, a place inside a run's ``checkpoints/``, and
    files in the way of what the run writes."""
    if str(out) in ("", "."):
        raise RunError(f"{str(out)!r}: give the run its own directory (a new or empty one)",
                       argument="out")
    out = Path(out)
    for parent in [out.absolute(), *out.absolute().parents]:
        if parent.name == "checkpoints" and ((parent.parent / MARKER).exists()
                                             or (parent.parent / "metrics.json").exists()):
            raise RunError(f"{out} is inside the checkpoints of the run in {parent.parent}, whose "
                           f"clean-up would delete it; choose a directory outside it", argument="out")
    if out.is_symlink() and not out.exists():
        raise RunError(f"{out} is a symbolic link to nothing", argument="out")
    if out.is_dir():
        names = {p.name for p in out.iterdir()}
        foreign = sorted(names - _RUN_FILES)
        if MARKER not in names and foreign:
            shown = ", ".join(foreign[:4]) + (", ..." if len(foreign) > 4 else "")
            raise RunError(f"{out} holds files that are not a training run's ({shown}); a run writes "
                           f"only into a new or empty directory or one of its own, so choose another",
                           argument="out")
        for name, kind in (("metrics.json", "file"), ("curves.png", "file"), ("checkpoints", "directory"),
                           (".lock", "file")):
            path = out / name
            if path.is_symlink():
                raise RunError(f"{out}: {name} is a symbolic link; a run never writes through one "
                               f"(remove it)", argument="out")
            if path.exists() and (path.is_dir() if kind == "file" else not path.is_dir()):
                raise RunError(f"{out}: {name} is a {'directory' if kind == 'file' else 'file'}, where "
                               f"the run writes its {name} {kind}; move it away", argument="out")
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
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {os.getpid()} on {socket.gethostname()}\n")
            lock.flush()
        yield


class _QuietLogger:
    """Raises the named logger's level above ERROR while the run writes checkpoints."""

    def __init__(self, name):
        self.logger = logging.getLogger(name)

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)
        return self

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def drop_event_loop_leftovers():
    """After a failed write, orbax's I/O still in flight finds its event loop closed and prints
    ``RuntimeError: Event loop is closed`` from its callbacks, now or as the process ends; the
    run has said what failed. Those, and only those, are dropped from then on."""
    if getattr(sys.excepthook, "drops_event_loop_leftovers", False):
        return  # installed already: the command does so from its start, a failed write again

    def leftover(error):
        return isinstance(error, RuntimeError) and "Event loop is closed" in str(error)

    previous_except, previous_unraisable = sys.excepthook, sys.unraisablehook
    def excepthook(kind, error, tb):
        if not leftover(error):
            previous_except(kind, error, tb)
    excepthook.drops_event_loop_leftovers = True
    sys.excepthook = excepthook
    sys.unraisablehook = lambda u: None if leftover(u.exc_value) else previous_unraisable(u)


def _write_error(e, directory, step):
    """A failed checkpoint write as a one-line ``RunError``; the checkpoints before it stay."""
    drop_event_loop_leftovers()
    text = str(e)
    failed = re.search(r"/(\d+)\.orbax-checkpoint-tmp", text)  # a background write of an earlier step
    step = int(failed.group(1)) if failed else step
    which = f"checkpoint {step}" if step is not None else "the last checkpoint"
    if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "RESOURCE_EXHAUSTED" in text \
            or "No space left" in text or "ENOSPC" in text:
        why = "no space left on device"
    elif (isinstance(e, OSError) and e.errno == errno.EFBIG) or "File too large" in text:
        why = "the file size limit is reached"
    elif not Path(directory).exists():
        why = "the directory was removed"
    else:
        return RunError(f"cannot write {which} in {directory}: {_short(e)}")
    return RunError(f"cannot write {which} in {directory}: {why}; the checkpoints before it and "
                    f"metrics.json are kept (resume the run once there is room)")


def _short(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def _same_run(record, settings, fingerprint, out):
    """Raises ``RunError`` unless ``record`` was saved by a run with these settings (all but
    ``iters_num``) and this data."""
    saved = {k: v for k, v in record["settings"].items() if k != "iters_num"}
    now = {k: v for k, v in json.loads(json.dumps(settings)).items() if k != "iters_num"}  # as saved
    if saved != now:
        diff = {k: (saved.get(k), now.get(k)) for k in saved.keys() | now.keys() if saved.get(k) != now.get(k)}
        raise RunError(f"the checkpoint in {out} was made with other settings (saved, now): {diff}",
                       argument="resume")
    data = record.get("data")
    if data is not None and data != fingerprint:
        describe = lambda d: f"{d['name']}, {d['train']} train / {d['test']} test images, sha256 {d['sha256'][:12]}"
        raise RunError(f"the checkpoint in {out} was trained on other data (saved: {describe(data)}; "
                       f"now: {describe(fingerprint)}); resume with the data it started with, or give "
                       f"the new run another directory", argument="resume")


class _QuietOrbaxLeftovers:
    """A failed orbax restore leaves reads in flight whose callbacks, when they finish, find
    their event loop closed, and coroutines that complain when collected: each prints
    "Exception ignored ..." on stderr at some later moment. While this is installed (from
    the failed restore until the run closes its checkpoints) those, and only those, are
    dropped; anything else still reaches the previous hook."""

    def __init__(self):
        self.previous = sys.unraisablehook
        sys.unraisablehook = self

    def __call__(self, unraisable):
        error, where = unraisable.exc_value, repr(unraisable.object)
        leftover = (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)
                    or isinstance(error, GeneratorExit) or "orbax" in where or "tensorstore" in where
                    or "_read_array" in where)
        if not leftover:
            self.previous(unraisable)

    def close(self):
        gc.collect()  # what is left, now, while still quiet
        if sys.unraisablehook is self:
            sys.unraisablehook = self.previous


def _restore(checkpoints, model, config, settings, fingerprint, out, mesh, log, primary):
    """``(state, history)`` from the newest checkpoint that can be read; one that cannot (a
    damaged file) is set aside into ``out/damaged-checkpoints`` with a message."""
    template = jax.eval_shape(lambda: init_state(model, config))
    # Restored straight into its place: replicated on every device of the mesh.
    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    skipped = []
    for step in checkpoints.all_steps():
        try:
            record = checkpoints.record(step)
        except Exception as e:  # noqa: BLE001 - any damage: try the one before
            skipped.append((step, e))
            continue
        # Settings first: a checkpoint of another model must be refused before its arrays are read.
        _same_run(record, settings, fingerprint, out)
        saved_at = record["history"][-1]["iteration"] if record.get("history") else None
        if saved_at != step:  # a copy of another step renamed: an older state under a later number
            skipped.append((step, ValueError(f"its record says iteration {saved_at}, not {step}")))
            continue
        try:
            state, _ = checkpoints.restore(template, sharding, step=step)
        except Exception as e:  # noqa: BLE001
            skipped.append((step, e))
            continue
        if "digest" in record and state_digest(state) != record["digest"]:
            skipped.append((step, ValueError("its arrays do not match the digest saved with them")))
            continue
        break
    else:
        raise RunError(f"no checkpoint in {checkpoints.directory} can be read: "
                       + "; ".join(f"{step}: {_short(e)}" for step, e in skipped), argument="resume")
    if skipped:
        quiet = _QuietOrbaxLeftovers()
        checkpoints.on_close(quiet.close)
        if primary:
            for step, e in skipped:
                where = checkpoints.set_aside(step, out / "damaged-checkpoints")
                log(f"checkpoint {step} cannot be read ({_short(e)}); moved it to {where}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("backprop-jax: damaged checkpoints set aside")
        checkpoints.reload()
    return state, [Epoch(**e) for e in record["history"]]


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
        metrics_interval=5.0, divergence_factor=DIVERGENCE_FACTOR, stop=None):
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
    Returns:
      ``(state, history)`` as ``train``.
    """
    primary = jax.process_index() == 0
    # The training settings are always part of what a resumed run must match; an optax
    # transformation as the optimiser is recorded by its description.
    settings = {**settings, **config.record()}
    if not primary:
        log, progress = (lambda *args, **kwargs: None), False
    with contextlib.ExitStack() as stack:
        if out is not None:
            if primary:  # checked, and marked, before anything is written
                claim_run_directory(out)
            out = Path(out)
            if primary:  # one lock per run, however many processes it has
                stack.enter_context(_exclusive(out))
        options = _RunOptions(dataset, settings, out, resume, checkpoint_every, checkpoint_interval, log,
                              progress, mesh, every_epoch, metrics_interval, divergence_factor, primary, stop)
        return _run(model, data, config, options)


class _RunOptions(NamedTuple):
    """``run``'s arguments past the model, the data and the config, settings included."""
    dataset: str
    settings: dict
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
        record = {"settings": o.settings, "data": self.fingerprint, "digest": state_digest(state),
                  "history": [dataclasses.asdict(h) for h in history]}
        step = history[-1].iteration
        if self.wrote and not self.checkpoints.directory.exists():  # removed while the run went on
            o.log(f"{self.checkpoints.directory} was removed while the run went on; writing checkpoint "
                  f"{step} afresh")
            try:
                self.checkpoints.close()
            except Exception:  # noqa: BLE001 - the old manager's writes went nowhere
                pass
            self.checkpoints = Checkpoints(self.checkpoints.directory, min_interval_s=o.checkpoint_interval)
        try:
            saved = self.checkpoints.save(step, state, record, force=force)
        except Exception as e:  # noqa: BLE001 - orbax's errors, in the run's own words
            raise _write_error(e, self.checkpoints.directory, step) from None
        if saved:
            self.saved = self.wrote = True

    def write_metrics(self, history):
        o = self.options
        write_json(o.out / "metrics.json", _metrics(o.dataset, self.fingerprint, o.settings, history))
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
        except Exception as e:  # noqa: BLE001 - a background write that failed
            failed = _write_error(e, self.checkpoints.directory, None)
        if self.history and o.primary:
            self.write_metrics(self.history)
            from backprop_jax.training._plot import plot_curves  # matplotlib only when drawing
            # Drawn once, when training ends or stops: cheap next to every epoch.
            plot_curves([dataclasses.asdict(h) for h in self.history], o.out / "curves.png", title=o.dataset)
        if failed is not None:
            raise failed


def _open_run(model, data, config, o):
    """``(state, history, files, finished)``: the run to continue (``state`` None for a new one),
    its files (None without an output directory), and whether it is already past the iterations
    asked."""
    if o.out is None:
        return None, [], None, False
    fingerprint = data_fingerprint(data, o.dataset)
    _import_early("orbax.checkpoint", *(["backprop_jax.training._plot"] if o.primary else []))
    checkpoints = Checkpoints(o.out / "checkpoints", min_interval_s=o.checkpoint_interval)
    steps = checkpoints.all_steps()
    state, history = None, []
    if o.resume and not steps:
        o.log(f"no checkpoint in {o.out / 'checkpoints'} yet: starting a new run")
    elif o.resume:
        state, history = _restore(checkpoints, model, config, o.settings, fingerprint, o.out, o.mesh, o.log,
                                  o.primary)
        if int(state.iteration) > config.iters_num:
            o.log(f"the run in {o.out} is already at iteration {int(state.iteration)}, past the "
                  f"{config.iters_num} asked: nothing to train")
            checkpoints.close()
            return state, history, None, True
        o.log(f"resuming from iteration {int(state.iteration)} (epoch {len(history)})")
    elif steps:
        raise RunError(f"{o.out} already holds checkpoints of a run (iteration {steps[0]}); resume it "
                       f"(resume=True), or give the new run another directory", argument="out")
    return state, history, _RunFiles(o, fingerprint, checkpoints, history), False


def _run(model, data, config, o):
    state, history, files, finished = _open_run(model, data, config, o)
    if finished:
        return state, history
    done = int(state.iteration) if state is not None else 0
    # Which epochs get a line: all of a short run, about 20 of a long one.
    per_epoch = iterations_per_epoch(len(data[0][0]), config.batch_size)
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
    quiet = _QuietLogger("absl") if files is not None else contextlib.nullcontext()
    with quiet, tqdm(total=config.iters_num, initial=done, unit="it", disable=not o.progress,
                     dynamic_ncols=True) as bar:
        try:
            state, history = train(model, data, config, state=state, history=history,
                                   on_epochs=on_epochs, progress=bar, mesh=o.mesh,
                                   sync_every=o.checkpoint_every, divergence_factor=o.divergence_factor)
        except TrainingDiverged:
            if files is not None and not files.saved:
                files.save(files.state, files.history, force=True)  # the last good epoch
            raise
        finally:
            if files is not None:
                files.finish()
    return state, history
