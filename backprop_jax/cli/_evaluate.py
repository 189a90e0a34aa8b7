"""``backprop-jax evaluate``: the test accuracy of saved parameters, the book's pickles or a run's."""

import os
import sys

from backprop_jax.cli._flags import (
    add_data_flags, add_model_flags, as_flags, build_model, check_model_fits, fail, flag, load_data, recipe_from_flags,
    recipes, same_function, shown)


def add_parser(sub):
    evaluate = sub.add_parser(
        "evaluate", help="test accuracy of saved parameters: the book's .pkl files or a run directory",
        description="Evaluate parameters on the test set: a pickle in the book's format (its "
                    "ch03/sample_weight.pkl, ch07/params.pkl, ch08/deep_convnet_params.pkl, or one "
                    "written by save_params), read without running any code it holds, or a run "
                    "directory (its newest checkpoint).")
    add_data_flags(evaluate)
    add_model_flags(evaluate)
    evaluate.add_argument("--params", required=True, metavar="FILE.pkl|RUN_DIR",
                          help="the parameters: a .pkl of the book's format, or a --out directory of train")
    evaluate.add_argument("--dtype", choices=["float16", "bfloat16", "float32", "float64"], default="float32",
                          help="evaluate in this precision, as the book's half_float_network.py (default float32)")
    evaluate.add_argument("--accept-unverified", action="store_true",
                          help="for a run directory: accept a checkpoint of an older format that has no "
                               "digest, its arrays unverified (default: refuse it)")
    # For a run directory the network is the run's own, read from its record: --model and the
    # network flags are then only checked against it.
    evaluate.set_defaults(model=None)


def run(args, parser):
    run_dir = os.path.isdir(args.params)
    if run_dir:
        recorded_model = _take_the_runs_network(args, parser)
    elif args.model is None:
        args.model = "two-layer"
    recipe = recipe_from_flags(args, parser)
    if recipe.data != "mnist":
        parser.error(f"--model {args.model} learns "
                     + ("a text" if recipe.data == "text" else f"the sequel's {recipe.data} problems")
                     + "; the evaluate command takes the MNIST networks")
    model = build_model(recipe, None, args, parser)
    if not os.path.exists(args.params):
        parser.error(f"--params {args.params}: no such file or directory")
    check_model_fits(model, args, parser)
    import jax
    import jax.numpy as jnp

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    # A model file given by another path than the run recorded is the same network if its content is:
    # the record's digest of the file decides (compared by restore_run), not the path's spelling.
    settings = {**recipe.record(), "model": recorded_model} if run_dir else None
    params, state = _params(model, args.params, jnp.dtype(args.dtype), settings, args.accept_unverified)
    data = load_data(recipe, args, parser)
    if data.description:
        print(data.description)
    x_test, t_test = data.arrays[1]
    from backprop_jax.training import DeviceOutOfMemory, out_of_memory_errors

    try:
        with out_of_memory_errors("evaluation"):
            correct = _count_correct(model, params, state, x_test, t_test, jnp.dtype(args.dtype))
    except DeviceOutOfMemory as e:
        fail(as_flags(e))
    print(f"test accuracy {correct / len(x_test):.4f} ({correct} of {len(x_test)} {data.name} test images), "
          f"{args.model} in {args.dtype}, parameters from {args.params}")


def _take_the_runs_network(args, parser):
    """Sets ``args.model`` and the network flags not given to what the run in ``args.params``
    recorded; a flag given with another value is a usage error naming both. Returns the model
    the run recorded (a ``FILE.py:FUNCTION`` as it was spelled where the run trained: ``--model``
    may give the same function's file by another path)."""
    from backprop_jax.training import RunError, run_settings

    try:
        saved = run_settings(args.params)
    except RunError as e:
        fail(f"--params {as_flags(e)}")
    name = saved.get("model")
    if args.model is not None and args.model != name and not same_function(args.model, name):
        parser.error(f"--model {args.model}: the run in {args.params} trained --model {name}")
    if args.model is None:
        args.model = name
        path, _, function = str(name).rpartition(":")
        if same_function(name, name) and not os.path.isfile(path):
            parser.error(f"--params {args.params}: the run's model file {path} (recorded as it was given where "
                         f"the run trained) is not found from here; give it with --model PATH:{function}")
    recipe = recipes().get(name)
    if recipe is None:
        if name is None or ":" not in str(name):
            fail(f"--params {args.params}: its record names no model this command knows ({name!r:.60})")
        return name  # your own FILE.py:FUNCTION: its digest is compared with the record
    for setting in recipe.settings:
        if setting.name not in saved:
            continue
        value = saved[setting.name]
        value = tuple(value) if isinstance(value, list) else value
        if not hasattr(args, setting.name):
            setattr(args, setting.name, list(value) if isinstance(value, tuple) else value)
        elif shown(getattr(args, setting.name)) != shown(value):
            parser.error(f"{flag(setting.name)} {shown(getattr(args, setting.name))}: the run in {args.params} "
                         f"trained with {flag(setting.name)} {shown(value)}")
    return name


def _params(model, path, dtype, settings=None, accept_unverified=False):
    """``(params, model state)`` from a book's pickle or a run directory (which must have
    recorded ``settings``), in ``dtype``."""
    import jax
    import jax.numpy as jnp

    from backprop_jax.book_params import BookParamsError, fit_params, load_book_params
    from backprop_jax.training import RunError, restore_run

    try:
        if os.path.isdir(path):
            saved = restore_run(path, model, settings, log=lambda line: print(line, file=sys.stderr),
                                accept_unverified=accept_unverified)
            params, state = saved.params, saved.model_state
        else:
            params = load_book_params(path)
            # The model's state as it starts (batch norm's statistics), its parameters never made
            # (compiled away): they come from the file, whose shapes fit_params compares.
            state = jax.jit(lambda key: model.init(key)[1])(jax.random.key(0))
    except RunError as e:  # each names the run or its checkpoint
        fail(f"--params {path}: {as_flags(str(e))}" if e.argument else f"--params {as_flags(e)}")
    except BookParamsError as e:  # names the file
        fail(f"--params {as_flags(e)}")
    try:
        params = fit_params(model, params, dtype)
    except BookParamsError as e:
        fail(f"--params {path}: {e}")
    state = jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating)
                         else a, state)
    return params, state


def _count_correct(model, params, state, x_test, t_test, dtype, chunk=1000):
    """How many test images the model classifies right (``nets.count_correct``), ``chunk`` at a time."""
    import jax
    import jax.numpy as jnp

    from backprop_jax.nets import count_correct

    count = jax.jit(lambda p, s, x, t: count_correct(model.predict(p, s, x.astype(dtype)), t))
    return sum(int(count(params, state, jnp.asarray(x_test[i:i + chunk]), jnp.asarray(t_test[i:i + chunk])))
               for i in range(0, len(x_test), chunk))
