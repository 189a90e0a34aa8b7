"""Training checkpoints with orbax: the state pytree plus a JSON record.

Orbax writes each checkpoint to a temporary directory and renames it when it
is complete, so a crash mid-save leaves the previous checkpoint intact.
"""

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """The checkpoints of one training run, numbered by iteration."""

    def __init__(self, directory, max_to_keep=2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False))

    def latest_step(self):
        """The iteration of the newest complete checkpoint, or None."""
        return self._manager.latest_step()

    def save(self, step, state, record):
        """Saves the ``state`` pytree and the JSON-able ``record`` as checkpoint ``step``."""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))

    def restore(self, template):
        """Restores the newest checkpoint into the structure of ``template``; returns ``(state, record)``.

        Each array goes where the template's leaf says (``jax.ShapeDtypeStruct``
        with a ``sharding``), or, without one, to this process's first device:
        a checkpoint saved by any number of devices or processes can be read
        back on one, and the other way round.
        """
        step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        template = jax.tree.map(lambda a: jax.ShapeDtypeStruct(
            a.shape, a.dtype, sharding=getattr(a, "sharding", None) or device), template)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(template), record=ocp.args.JsonRestore()))
        return out["state"], out["record"]

    def close(self):
        self._manager.close()
