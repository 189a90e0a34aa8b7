"""Training checkpoints with orbax: the state pytree plus a JSON record.

Orbax writes each checkpoint to a temporary directory and renames it when it
is complete, so a crash mid-save leaves the previous checkpoint intact. Saves
run in the background: ``save`` returns once the arrays are copied off the
device, and training goes on while they are written.

orbax (and TensorStore under it) is imported only when a ``Checkpoints`` is
made, so that ``import backprop_jax`` stays quick.
"""

from pathlib import Path

import jax


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
        the way of new saves; returns its new path."""
        to = Path(to)
        to.mkdir(parents=True, exist_ok=True)
        target = to / str(step)
        n = 1
        while target.exists():
            target, n = to / f"{step}-{n}", n + 1
        (self.directory / str(step)).rename(target)
        self.reload()
        return target

    def reload(self):
        """Reads the list of checkpoints again (after another process changed it)."""
        if self._made is not None:
            self._made.reload()

    def save(self, step, state, record, force=False):
        """Saves the ``state`` pytree and the JSON-able ``record`` as checkpoint ``step``
        (unless the interval policy skips it); returns whether it saved. The writing
        goes on in the background; ``close`` waits for it."""
        ocp = _ocp()
        return self._manager.save(step, force=force, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))

    def record(self, step=None):
        """The JSON record saved with checkpoint ``step`` (default: the newest), without its arrays."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
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
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        ocp = _ocp()
        template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), template)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), record=ocp.args.JsonRestore()))
        return out["state"], out["record"]

    def on_close(self, fn):
        """Calls ``fn()`` after ``close``."""
        self._after_close.append(fn)

    def close(self):
        """Waits for a save still being written, then releases orbax's resources."""
        if self._made is not None:
            self._made.close()
        for fn in self._after_close:
            fn()
