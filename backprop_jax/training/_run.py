"""A training run with files: checkpoints, ``metrics.json``, ``curves.png``, resume."""

import dataclasses
import importlib
import json
import threading
import time
from pathlib import Path

import jax
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from backprop_jax._io import write_json
from backprop_jax.training._checkpoint import Checkpoints
from backprop_jax.training._loop import Epoch, TrainingDiverged, init_state, iterations_per_epoch, train


class RunError(RuntimeError):
    """The output directory cannot be used as asked (it holds another run, or one with other settings)."""


def _metrics(dataset, settings, history):
    epochs = [dataclasses.asdict(e) for e in history]
    return {"dataset": dataset, "config": settings, "epochs": epochs,
            "final_test_acc": epochs[-1]["test_acc"] if epochs else None}


def _import_early(*modules):
    """Imports ``modules`` in a background thread: orbax and matplotlib take seconds to
    import, time the device spends training anyway. An import that fails here fails
    again, with its message, where the module is used."""
    def work():
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001 - reported where the module is really imported
                pass
    threading.Thread(target=work, name="backprop-jax-imports", daemon=True).start()


def run(model, data, config, *, dataset, settings, out=None, resume=False, checkpoint_every=None,
        checkpoint_interval=None, log=print, progress=True, mesh=None, every_epoch=False,
        metrics_interval=5.0):
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
    Returns:
      ``(state, history)`` as ``train``.
    """
    primary = jax.process_index() == 0
    if not primary:
        log, progress = (lambda *args, **kwargs: None), False
    state, history, checkpoints = None, [], None
    if out is not None:
        _import_early("orbax.checkpoint", *(["backprop_jax.training._plot"] if primary else []))
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

    # Which epochs get a line: all of a short run, about 20 of a long one.
    done = int(state.iteration) if state is not None else 0
    per_epoch = iterations_per_epoch(len(data[0][0]), config.batch_size)
    last_epoch = len(history) + -(-max(config.iters_num - done, 0) // per_epoch)
    spacing = 1 if every_epoch or last_epoch <= 30 else -(-last_epoch // 20)
    # The newest history (for the files even after an error), its state, and what was saved.
    seen = {"history": history, "state": None, "saved": True, "shown": len(history),
            "written_at": time.monotonic()}

    def save(state, history, force):
        record = {"settings": settings, "history": [dataclasses.asdict(h) for h in history]}
        if checkpoints.save(history[-1].iteration, state, record, force=force):
            seen["saved"] = True

    def write_metrics(history):
        write_json(out / "metrics.json", _metrics(dataset, settings, history))
        seen["written_at"] = time.monotonic()

    def on_epochs(state, history):
        seen["history"], seen["state"], seen["saved"] = history, state, False
        for e in history[seen["shown"]:] if primary else ():
            if e.epoch % spacing == 0 or e.epoch in (1, last_epoch):
                # Above the bar when there is one.
                (bar.write if progress else log)(f"epoch {e.epoch}: train acc {e.train_acc:.4f}, "
                                                 f"test acc {e.test_acc:.4f}, loss {e.train_loss:.4f}")
        seen["shown"] = len(history)
        e = history[-1]
        last = e.iteration >= config.iters_num
        if out is not None and (checkpoint_every is None or e.epoch % checkpoint_every == 0 or last):
            save(state, history, force=last)
        if out is not None and primary and time.monotonic() - seen["written_at"] >= metrics_interval:
            write_metrics(history)

    with tqdm(total=config.iters_num, initial=done, unit="it", disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            state, history = train(model, data, config, state=state, history=history,
                                   on_epochs=on_epochs, progress=bar, mesh=mesh,
                                   sync_every=checkpoint_every)
        except TrainingDiverged:
            if out is not None and not seen["saved"]:
                save(seen["state"], seen["history"], force=True)  # the last good epoch
            raise
        finally:
            if out is not None:
                checkpoints.close()  # waits for a save still being written
                if seen["history"] and primary:
                    write_metrics(seen["history"])
                    from backprop_jax.training._plot import plot_curves  # matplotlib only when drawing
                    # Drawn once, when training ends or stops: cheap next to every epoch.
                    plot_curves([dataclasses.asdict(h) for h in seen["history"]],
                                out / "curves.png", title=dataset)
    return state, history
