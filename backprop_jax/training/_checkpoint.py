"""Training checkpoints with orbax: the state pytree plus a JSON record, and all that writing
and trusting them takes: the record's format (``checkpoint_record``), the digest of the arrays
(``state_digest``), the checks before a checkpoint is restored (``restore_newest``), a failed
write as one ``CheckpointWriteError``, and the quieting of orbax's leftovers after a failure.

Orbax writes each checkpoint to a temporary directory and renames it when it
is complete, so a crash mid-save leaves the previous checkpoint intact. Saves
run in the background: ``save`` returns once the arrays are copied off the
device, and training goes on while they are written.

orbax (and TensorStore under it) is imported only when a ``Checkpoints`` is
made, so that ``import backprop_jax`` stays quick.
"""

import errno
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import jax
import numpy as np

from backprop_jax.training._errors import CheckpointWriteError, RunError


def _ocp():
    import orbax.checkpoint as ocp  # imported on first use; Python keeps it after that
    return ocp


class Checkpoints:
    """The checkpoints of one training run, numbered by iteration."""

    def __init__(self, directory, max_to_keep=2, min_interval_s=None):
        """``min_interval_s``: skip a save (unless forced) if the last one is more recent than
        this; orbax's policy decides on process 0 and tells the others, so every process
        of a multi-process run makes the same choice."""
        self.directory = Path(directory).absolute()
        self._options = (max_to_keep, min_interval_s)
        self._made = None
        self._after_close = []
        self._quiet = None  # a _QuietOrbaxLeftovers from a failed read until close

    @property
    def _manager(self):
        # Made on first use: a new run whose directory does not exist yet needs no orbax
        # until its first save.
        if self._made is None:
            ocp = _ocp()
            max_to_keep, min_interval_s = self._options
            policy = None
            if min_interval_s:
                policy = ocp.checkpoint_managers.ContinuousCheckpointingPolicy(
                    minimum_interval_secs=min_interval_s)
            self._made = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
                    save_decision_policy=policy))
        return self._made

    def latest_step(self):
        """The iteration of the newest complete checkpoint, or None."""
        steps = self.all_steps()
        return steps[0] if steps else None

    def all_steps(self):
        """The iterations of every complete checkpoint, newest first."""
        if self._made is None and not self.directory.exists():
            return []
        return sorted(self._manager.all_steps(), reverse=True)

    def set_aside(self, step, to):
        """Moves checkpoint ``step`` (one that cannot be read) into the directory ``to``, out of
        the way of new saves; returns its new path. ``to`` on another filesystem (a mount point)
        is copied to, as ``mv`` does (``_move_across``); ``RunError`` when it cannot be moved, the
        checkpoint left where it was."""
        source, to = self.directory / str(step), Path(to)
        try:
            to.mkdir(parents=True, exist_ok=True)
            target = to / str(step)
            n = 1
            while target.exists():
                target, n = to / f"{step}-{n}", n + 1
            try:
                os.rename(source, target)
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                _move_across(source, target)
        except OSError as e:
            raise RunError(f"cannot move the damaged checkpoint {step} from {self.directory} into {to.absolute()}: "
                           f"{(e.strerror or str(e)).lower()}; it is left where it was") from None
        self.reload()
        return target

    def reload(self):
        """Reads the list of checkpoints again (after another process changed it)."""
        if self._made is not None:
            self._made.reload()

    def save(self, step, state, record, force=False):
        """Saves the ``state`` pytree and the JSON-able ``record`` (``checkpoint_record``) as
        checkpoint ``step`` (unless the interval policy skips it); returns whether it saved. The
        writing goes on in the background; ``close`` waits for it. ``CheckpointWriteError`` when
        it cannot be written."""
        try:
            return self._write(step, state, record, force)
        except Exception as e:  # noqa: BLE001 - orbax's errors, in the checkpoints' own words
            raise write_error(e, self.directory, step) from None

    def _write(self, step, state, record, force):
        ocp = _ocp()
        return self._manager.save(step, force=force, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))

    def record(self, step=None):
        """The JSON record saved with checkpoint ``step`` (default: the newest), without its arrays.
        ``ValueError`` for a checkpoint whose files could not be read safely (``_check_files``)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        _check_files(self.directory / str(step))
        ocp = _ocp()
        return self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))["record"]

    def restore(self, template, sharding=None, step=None):
        """Restores checkpoint ``step`` (default: the newest) into the structure of ``template``;
        returns ``(state, record)``.

        Every array is placed by ``sharding`` (default: this process's first
        device), whatever the devices that saved it: a checkpoint saved by any
        number of devices or processes can be read back on one, and the other
        way round.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        _check_files(self.directory / str(step))
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        ocp = _ocp()
        template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), template)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), record=ocp.args.JsonRestore()))
        return out["state"], out["record"]

    def quiet_leftovers(self):
        """After a failed read: drops its leftovers from now until ``close``
        (``_QuietOrbaxLeftovers``), and the reads' own as late as the process ends
        (``drop_event_loop_leftovers``): those still in flight complain when they are collected,
        which may be at the very end."""
        if self._quiet is None:
            drop_event_loop_leftovers()
            self._quiet = _QuietOrbaxLeftovers()
            self.on_close(self._quiet.close)

    def on_close(self, fn):
        """Calls ``fn()`` after ``close``."""
        self._after_close.append(fn)

    def close(self):
        """Waits for a save still being written, then releases orbax's resources;
        ``CheckpointWriteError`` when that save failed."""
        try:
            if self._made is not None:
                self._made.close()
        except Exception as e:  # noqa: BLE001 - a background write that failed
            raise write_error(e, self.directory, None) from None
        finally:
            for fn in self._after_close:
                fn()


# The most a checkpoint's file of metadata (anything but an array's data, in a "d" directory) may
# hold: each is a few kilobytes, and the record's history some hundred bytes an epoch.
METADATA_LIMIT = 64 * 2 ** 20


def _check_files(step_dir):
    """``ValueError`` naming the first file of the checkpoint ``step_dir`` that orbax could not read
    safely: a symbolic link inside it (orbax writes none), a FIFO (a read would wait forever), a
    device (``/dev/zero`` never ends) or a socket, or a file of metadata over ``METADATA_LIMIT``."""
    for root, dirs, files in os.walk(step_dir):
        for name in dirs + files:
            path = Path(root) / name
            where = path.relative_to(step_dir)
            if path.is_symlink():
                raise ValueError(f"{where} is a symbolic link, which a checkpoint does not hold")
            info = path.stat()
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise ValueError(f"{where} is not a regular file")
            if stat.S_ISREG(info.st_mode) and path.parent.name != "d" and info.st_size > METADATA_LIMIT:
                raise ValueError(f"{where} holds {info.st_size} bytes, more than the {METADATA_LIMIT} a file "
                                 f"of a checkpoint's metadata may")


class _CopyStopped(Exception):
    """A file that could not be copied: ``copytree`` would go on with the others and gather the
    errors (a full disk, once per file); this stops it at the first, keeping its ``OSError``."""

    def __init__(self, error):
        super().__init__(error)
        self.error = error


def _copy_or_stop(src, dst):
    try:
        if not stat.S_ISREG(os.stat(src).st_mode):  # a FIFO would wait forever, a device never end
            raise OSError(f"{src} is not a regular file")
        return shutil.copy2(src, dst)
    except OSError as e:
        raise _CopyStopped(e) from None


def _move_across(source, target):
    """Moves the directory ``source`` to ``target`` on another filesystem, where a rename cannot:
    copied under a temporary name beside ``target`` and renamed when complete, then ``source``
    renamed out of the checkpoints' way (a name that is not a step) and removed. A crash at any
    moment leaves the checkpoint whole where it was, or whole at ``target`` (or both); what it
    leaves half done under a temporary name is removed by the next move. A failed copy (a full
    disk) removes its part and raises, ``source`` untouched."""
    partial = target.with_name(f".{target.name}.partial")
    leaving = source.with_name(f".{source.name}.set-aside")
    for leftover in (partial, leaving):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        shutil.copytree(source, partial, symlinks=True, copy_function=_copy_or_stop)
    except BaseException as e:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(e, _CopyStopped):
            raise e.error from None
        raise
    os.rename(partial, target)
    os.rename(source, leaving)
    shutil.rmtree(leaving)


# --- the record saved beside the arrays, and what is checked before a checkpoint is trusted ---

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


def state_dtypes(state):
    """The floating-point dtypes of ``state``'s parameters, as a record holds them (``["float32"]``):
    what a run computes in, part of its identity."""
    leaves = jax.tree_util.tree_leaves(state.params)
    return sorted({str(a.dtype) for a in leaves if jax.numpy.issubdtype(a.dtype, jax.numpy.floating)})


def record_digest(record):
    """SHA-256 of every field of a checkpoint's ``record`` but this one (``"record_digest"``)."""
    fields = {k: v for k, v in record.items() if k != "record_digest"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def checkpoint_record(settings, fingerprint, state, history):
    """The JSON record saved with a checkpoint: the run's ``settings`` (what a resumed run must
    match), its data's ``fingerprint``, the ``state_digest`` of ``state``, the precision it computes
    in (``state_dtypes`` and whether ``jax_enable_x64`` was on), and the ``history`` (``Epoch``
    records as dicts), whose last iteration is the checkpoint's step; ``record_digest`` covers
    all of it."""
    record = {"settings": settings, "data": fingerprint, "digest": state_digest(state),
              "dtypes": state_dtypes(state), "jax_enable_x64": bool(jax.config.jax_enable_x64), "history": history}
    return {**record, "record_digest": record_digest(record)}


def at_recorded_dtypes(template, record, out):
    """``template`` (of a ``TrainState``) with its floating-point arrays in the dtype the run
    recorded, so that a run saved in float32 reads back in float32 whatever ``jax_enable_x64``
    says; ``RunError`` if this process cannot hold it (float64 with ``jax_enable_x64`` off)."""
    saved = record.get("dtypes")
    if saved is None or saved == state_dtypes(template):
        return template
    if len(saved) != 1 or (saved[0] == "float64" and not jax.config.jax_enable_x64):
        raise RunError(f"the run in {out} computed in {', '.join(saved)}; this process computes in "
                       f"{', '.join(state_dtypes(template))} (jax_enable_x64 is "
                       f"{'on' if jax.config.jax_enable_x64 else 'off'})")
    dtype = jax.numpy.dtype(saved[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, dtype) if jax.numpy.issubdtype(
        a.dtype, jax.numpy.floating) else a, template)


def check_precision(record, template, out):
    """Raises ``RunError`` (``argument="resume"``) unless the run of ``record`` computed in the
    precision this one would (its parameters' dtypes as ``template``'s, ``jax_enable_x64`` as now):
    a float32 run resumed with 64-bit floats on would diverge from itself."""
    def precision(dtypes, x64):
        return f"{', '.join(dtypes)} with jax_enable_x64 {'on' if x64 else 'off'}"

    saved = (record.get("dtypes"), record.get("jax_enable_x64"))
    now = (state_dtypes(template), bool(jax.config.jax_enable_x64))
    if (saved[0] is not None and saved[0] != now[0]) or (saved[1] is not None and saved[1] != now[1]):
        raise RunError(f"the checkpoint in {out} was computed in {precision(saved[0] or now[0], saved[1])}, and "
                       f"this run would compute in {precision(*now)}: resume it in the precision it started in",
                       argument="resume")


def _short(error):
    """``TYPE: the first line`` of ``error`` (at most 200 characters); for orbax's wrapper of a
    failed read ("Encountered error while reading array index ... TensorStore details: <bound
    method ...>"), of TensorStore's error under it, which says what is wrong with which file; for a
    shape that differs, without orbax's advice to pad or truncate."""
    if str(error).startswith("Encountered error while reading") and error.__cause__ is not None:
        error = error.__cause__
    text = str(error).split(". Truncating/padding is disabled")[0].strip().splitlines()  # orbax's advice, not ours
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


def check_same_run(record, settings, fingerprint, out):
    """Raises ``RunError`` unless ``record`` was saved by a run with these settings (all but
    ``iters_num``) and this data. ``settings`` is a list of the forms the run's settings may
    have been recorded in (``TrainConfig.earlier_records``), the first the current one."""
    saved = {k: v for k, v in record["settings"].items() if k != "iters_num"}
    forms = [{k: v for k, v in json.loads(json.dumps(form)).items() if k != "iters_num"}  # as saved
             for form in settings]
    if saved not in forms:
        now = forms[0]
        diff = {k: (saved.get(k), now.get(k)) for k in saved.keys() | now.keys() if saved.get(k) != now.get(k)}
        raise RunError(f"the checkpoint in {out} was made with other settings (saved, now): {diff}",
                       argument="resume")
    data = record.get("data")
    content = lambda d: {k: v for k, v in d.items() if k != "name"}  # noqa: E731 - the same file by another path
    if data is not None and content(data) != content(fingerprint):
        describe = lambda d: f"{d['name']}, {d['train']} train / {d['test']} test images, sha256 {d['sha256'][:12]}"
        raise RunError(f"the checkpoint in {out} was trained on other data (saved: {describe(data)}; "
                       f"now: {describe(fingerprint)}); resume with the data it started with, or give "
                       f"the new run another directory", argument="resume")


def _record_problem(record):
    """What makes ``record`` other than a record ``checkpoint_record`` writes (a JSON file made
    or edited by hand, its digest made again), in words; None for a record of the right form."""
    if not isinstance(record, dict):
        return f"its record is a JSON {type(record).__name__}, not an object"
    if not isinstance(record.get("settings"), dict):
        return "its record has no settings object"
    history = record.get("history")
    if not (isinstance(history, list) and history
            and all(isinstance(e, dict) and type(e.get("iteration")) is int for e in history)):
        return "its record's history is not a list of epochs, each with its iteration"
    data = record.get("data")
    if data is not None and not (isinstance(data, dict) and {"name", "train", "test", "sha256"} <= data.keys()
                                 and isinstance(data["sha256"], str)):
        return "its record's data is not a fingerprint of data (name, train, test, sha256)"
    for key, kind in (("digest", str), ("record_digest", str), ("dtypes", list), ("jax_enable_x64", bool)):
        if key in record and not isinstance(record[key], kind):
            return f"its record's {key} is not a {kind.__name__}"
    return None


def _readable(checkpoints, step, template, sharding, check, accept_unverified=False):
    """``(state, record, None)`` for checkpoint ``step`` if it reads and its arrays match its
    digest, else ``(None, None, why)``. ``check(record)`` runs before any array is read."""
    drop_event_loop_leftovers()  # a damaged file's reads left in flight print as late as the process ends
    try:
        record = checkpoints.record(step)
    except Exception as e:  # noqa: BLE001 - any damage: try the one before
        checkpoints.quiet_leftovers()
        return None, None, e
    problem = _record_problem(record)
    if problem is not None:
        return None, None, ValueError(problem)
    if "record_digest" in record and record_digest(record) != record["record_digest"]:
        return None, None, ValueError("its record does not match the digest saved with it")
    if "digest" not in record and not accept_unverified:
        raise RunError(f"checkpoint {step} in {checkpoints.directory} has no digest (an older format): its "
                       f"arrays cannot be verified; accept them knowingly with accept_unverified=True",
                       argument="accept_unverified")
    check(record)  # a checkpoint of another model is refused before its arrays are read
    saved_at = record["history"][-1]["iteration"]
    if saved_at != step:  # a copy of another step renamed: an older state under a later number
        return None, None, ValueError(f"its record says iteration {saved_at}, not {step}")
    try:
        state, _ = checkpoints.restore(template, sharding, step=step)
    except Exception as e:  # noqa: BLE001
        checkpoints.quiet_leftovers()
        return None, None, e
    if "digest" in record and state_digest(state) != record["digest"]:
        return None, None, ValueError("its arrays do not match the digest saved with them")
    return state, record, None


def restore_newest(checkpoints, template, check, out, sharding=None, log=print, primary=True,
                   accept_unverified=False):
    """``(state, record)`` from the newest checkpoint that reads and matches its digest, its
    arrays placed by ``sharding``; ``check(record)`` raises for a checkpoint of another run. One
    that cannot be read (a damaged file) is set aside into ``out/damaged-checkpoints`` with a
    message; ``RunError`` when none can be read, or the newest has no digest (an older format)
    and not ``accept_unverified``."""
    skipped = []
    for step in checkpoints.all_steps():
        state, record, why = _readable(checkpoints, step, template, sharding, check, accept_unverified)
        if why is None:
            break
        skipped.append((step, why))
    else:
        raise RunError(f"no checkpoint in {checkpoints.directory} can be read: "
                       + "; ".join(f"{step}: {_short(e)}" for step, e in skipped), argument="resume")
    if skipped:
        if primary:
            for step, e in skipped:
                where = checkpoints.set_aside(step, Path(out) / "damaged-checkpoints")
                log(f"checkpoint {step} cannot be read ({_short(e)}); moved it to {where}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("backprop-jax: damaged checkpoints set aside")
        checkpoints.reload()
    return state, record


# --- orbax's noise after a failure: the run has said what failed, in one line ---------------

class QuietLogger:
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
    ``RuntimeError: Event loop is closed`` from its callbacks, now or as the process ends; after
    a failed read, its reads still in flight print ``Exception ignored in: <coroutine object
    _read_array_index_and_device_put ...>`` when they are collected, which may be as the
    process ends. The run has said what failed. Those, and only those, are dropped from then on."""
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
    sys.unraisablehook = lambda u: None if leftover(u.exc_value) or _a_read_of_orbax(u) else previous_unraisable(u)


def _a_read_of_orbax(unraisable):
    """Whether an unraisable exception comes from one of orbax's reads (a coroutine of its own)."""
    where = repr(unraisable.object)
    return "_read_array" in where or "orbax" in where or "tensorstore" in where.lower()


def write_error(e, directory, step):
    """A failed checkpoint write as a one-line ``CheckpointWriteError``; the checkpoints before it stay."""
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
        return CheckpointWriteError(f"cannot write {which} in {directory}: {_short(e)}")
    return CheckpointWriteError(f"cannot write {which} in {directory}: {why}; the checkpoints before it and "
                    f"metrics.json are kept (resume the run once there is room)")


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
        error = unraisable.exc_value
        leftover = (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)
                    or isinstance(error, GeneratorExit) or _a_read_of_orbax(unraisable))
        if not leftover:
            self.previous(unraisable)

    def close(self):
        gc.collect()  # what is left, now, while still quiet
        if sys.unraisablehook is self:
            sys.unraisablehook = self.previous


