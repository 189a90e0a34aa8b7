"""A trained run read back for a query: its recipe, its data and its parameters, from the
settings its newest checkpoint recorded (the commands ``words`` and ``generate``)."""

import os

from backprop_jax.cli._flags import fail


def trained_run(run_dir, data_file, parser, kinds):
    """``(recipe, data, params)`` of the run in ``run_dir`` whose recipe learns one of ``kinds``
    (``Recipe.data``); its text read again from ``data_file`` or from what the run recorded (its
    file, or the generated text of its seed) and checked against the run's fingerprint."""
    import jax

    from backprop_jax import datasets
    from backprop_jax.recipes import RECIPES
    from backprop_jax.training import OPTIMIZERS, Checkpoints, data_fingerprint, init_state

    directory = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(directory):
        parser.error(f"{run_dir}: not a run directory of train --out (no checkpoints in it)")
    checkpoints = Checkpoints(directory)
    try:
        record = checkpoints.record()
    except FileNotFoundError as e:
        fail(f"{run_dir}: {e}")
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
    optimizer = settings.get("optimizer")
    config = recipe.config(data, optimizer=optimizer if optimizer in OPTIMIZERS else None,
                           max_grad=settings.get("max_grad"), seed=settings.get("seed", 0))
    try:
        state, _ = checkpoints.restore(jax.eval_shape(lambda: init_state(model, config)))
    except Exception as e:  # noqa: BLE001 - orbax's errors for a checkpoint of another shape
        fail(f"{run_dir}: its checkpoint does not hold the parameters its settings describe "
             f"({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    return recipe, data, state.params
