"""A training run with files: checkpoints, ``metrics.json``, ``curves.png``, resume."""

import dataclasses
import json
from pathlib import Path

import jax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from backprop_jax._io import write_json
from backprop_jax.training._checkpoint import Checkpoints
from backprop_jax.training._loop import Epoch, TrainingDiverged, init_state, train


class RunError(RuntimeError):
    """The output directory cannot be used as asked (it holds another run, or one with other settings)."""


def _metrics(dataset, settings, history):
    epochs = [dataclasses.asdict(e) for e in history]
    return {"dataset": dataset, "config": settings, "epochs": epochs,
            "final_test_acc": epochs[-1]["test_acc"] if epochs else None}


def run(model, data, config, *, dataset, settings, out=None, resume=False, checkpoint_every=1,
        checkpoint_interval=None, log=print, progress=True, mesh=None):
    """Trains with progress output and, given ``out``, files that survive a crash.

    In a multi-process run every process calls ``run`` alike: all of them take
    part in saving and restoring checkpoints (``out`` must be a directory that
    they all see, e.g. a shared file system), and only process 0 logs, shows
    progress and writes ``metrics.json`` and ``curves.png``.

    Args:
      model, data, config: as for ``train``.
      dataset: the dataset's name, recorded in ``metrics.json``.
      settings: every setting of the run (model and training) as a JSON-able
        dict; a resumed run must match it in everything but ``iters_num``.
      out: directory for ``metrics.json`` (rewritten atomically after each
        epoch), ``curves.png`` (drawn when training ends or stops) and
        ``checkpoints/`` (orbax, the last two kept).
      resume: continue from the newest checkpoint in ``out`` if there is one
        (else start afresh), so one command line both starts a run and
        restarts it after a crash; a finished run is not trained further.
      checkpoint_every: save a checkpoint every this many epochs (and after
        the last one, and after the last good epoch if the loss diverges).
      checkpoint_interval: and no sooner than this many seconds after the
        previous save (default: no minimum).
      mesh: as for ``train``: split every mini-batch over the mesh's devices.
    Returns:
      ``(state, history)`` as ``train``.
    """
    primary = jax.process_index() == 0
    if not primary:
        log, progress = (lambda *args, **kwargs: None), False
    state, history, checkpoints = None, [], None
    if out is not None:
        out = Path(out)
        checkpoints = Checkpoints(out / "checkpoints", min_interval_s=checkpoint_interval)
        step = checkpoints.latest_step()
        if resume and step is None:
            log(f"no checkpoint in {out / 'checkpoints'} yet: starting a new run")
        elif resume:
            # Settings first: a checkpoint of another model must be refused before its arrays are read.
            record = checkpoints.record(step)
            saved = {k: v for k, v in record["settings"].items() if k != "iters_num"}
            now = {k: v for k, v in json.loads(json.dumps(settings)).items() if k != "iters_num"}  # as saved
            if saved != now:
                diff = {k: (saved.get(k), now.get(k)) for k in saved.keys() | now.keys()
                        if saved.get(k) != now.get(k)}
                raise RunError(f"--resume: the checkpoint in {out} was made with other settings "
                               f"(saved, now): {diff}")
            template = jax.eval_shape(lambda: init_state(model, config))
            # Restored straight into its place: replicated on every device of the mesh.
            state, _ = checkpoints.restore(
                template, None if mesh is None else NamedSharding(mesh, PartitionSpec()))
            history = [Epoch(**e) for e in record["history"]]
            log(f"resuming from iteration {int(state.iteration)} (epoch {len(history)})")
        elif step is not None:
            raise RunError(f"{out} already holds checkpoints of a run (iteration {step}); pass "
                           f"--resume to continue it, or choose another --out")

    # The newest history (for the plot even after an error), its state, and whether that was saved.
    seen = {"history": history, "state": None, "saved": True}

    def save(state, history, force):
        record = {"settings": settings, "history": [dataclasses.asdict(h) for h in history]}
        if checkpoints.save(history[-1].iteration, state, record, force=force):
            seen["saved"] = True

    def on_epoch(state, history):
        seen["history"], seen["state"], seen["saved"] = history, state, False
        e = history[-1]
        if primary:
            bar.write(f"epoch {e.epoch}: train acc {e.train_acc:.4f}, test acc {e.test_acc:.4f}, "
                      f"loss {e.train_loss:.4f}")
        last = e.iteration >= config.iters_num
        if out is not None and (e.epoch % checkpoint_every == 0 or last):
            save(state, history, force=last)
        if out is not None and primary:
            write_json(out / "metrics.json", _metrics(dataset, settings, history))

    start = 0 if state is None else int(state.iteration)
    with tqdm(total=config.iters_num, initial=start, unit="it", disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            state, history = train(model, data, config, state=state, history=history,
                                   on_epoch=on_epoch, progress=bar, mesh=mesh)
        except TrainingDiverged:
            if out is not None and not seen["saved"]:
                save(seen["state"], seen["history"], force=True)  # the last good epoch
            raise
        finally:
            if out is not None:
                checkpoints.close()
                if seen["history"] and primary:
                    from backprop_jax.training._plot import plot_curves  # matplotlib only when drawing
                    # Drawn once, when training ends or stops: cheap next to every epoch.
                    plot_curves([dataclasses.asdict(h) for h in seen["history"]],
                                out / "curves.png", title=dataset)
    return state, history
