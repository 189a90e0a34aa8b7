"""A trained run read back for a query: its recipe, its data and its parameters, from the
settings its newest readable record holds (the commands ``words`` and ``generate``), its
checkpoint verified as ``evaluate`` verifies it (``restore_run``)."""

import os
import sys

from backprop_jax.cli._flags import as_flags, fail


def trained_run(run_dir, data_file, parser, kinds):
    """``(recipe, data, params)`` of the run in ``run_dir`` whose recipe learns one of ``kinds``
    (``Recipe.data``); its text read again from ``data_file`` or from what the run recorded (its
    file, or the generated text of its seed) and checked against the run's fingerprint."""
    from backprop_jax import datasets
    from backprop_jax.recipes import RECIPES
    from backprop_jax.training import OPTIMIZERS, RunError, data_fingerprint, restore_run, run_record

    if not os.path.isdir(os.path.join(run_dir, "checkpoints")):
        parser.error(f"{run_dir}: not a run directory of train --out (no checkpoints in it)")
    try:  # the newest record that reads, as evaluate takes it
        record = run_record(run_dir)
    except RunError as e:
        fail(as_flags(e))
    settings, recorded = record["settings"], record.get("data") or {}
    recipe = RECIPES.get(settings.get("model"))
    takes = [name for name, r in RECIPES.items() if r.data in kinds]
    if recipe is None or recipe.data not in kinds:
        parser.error(f"{run_dir} is a run of {settings.get('model')!r}; this command takes runs of "
                     f"{', '.join(takes)}")
    names = {s.name for s in recipe.settings}
    recipe = recipe.with_settings(**{k: v for k, v in settings.items() if k in names})
    path = data_file or (recorded.get("name") if os.path.isfile(str(recorded.get("name"))) else None)
    try:
        data = recipe.load_data(path, settings.get("seed", 0), settings.get("batch_size"))
    except datasets.DatasetError as e:
        fail(f"--data {e}" if data_file else str(e))
    if recorded and data_fingerprint(data.arrays, data.name)["sha256"] != recorded.get("sha256"):
        fail(f"{data.name} is not the text the run in {run_dir} trained on ({recorded.get('name')}); "
             f"give that text with --data")
    model = recipe.model(data)
    optimizer = settings.get("optimizer")  # the recipe's own when the record names none it knows
    config = recipe.config(data, optimizer=optimizer if optimizer in OPTIMIZERS else None,
                           max_grad=settings.get("max_grad"), seed=settings.get("seed", 0))
    try:  # verified as evaluate and a resumed run verify it, an older checkpoint if the newest is damaged
        state = restore_run(run_dir, model, recipe.record(data), log=lambda line: print(line, file=sys.stderr),
                            config=config)
    except RunError as e:  # each names the run or its checkpoint
        fail(as_flags(e))
    return recipe, data, state.params
