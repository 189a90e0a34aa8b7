"""``backprop-jax evaluate``: the test accuracy of saved parameters, the book's pickles or a run's."""

import os

from backprop_jax.cli._flags import (
    add_data_flags, add_model_flags, as_flags, build_model, check_model_fits, fail, load_data, recipe_from_flags)


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


def run(args, parser):
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
    params, state = _params(model, args.params, jnp.dtype(args.dtype))
    data = load_data(recipe, args, parser)
    if data.description:
        print(data.description)
    x_test, t_test = data.arrays[1]
    correct = _count_correct(model, params, state, x_test, t_test, jnp.dtype(args.dtype))
    print(f"test accuracy {correct / len(x_test):.4f} ({correct} of {len(x_test)} {data.name} test images), "
          f"{args.model} in {args.dtype}, parameters from {args.params}")


def _params(model, path, dtype):
    """``(params, model state)`` from a book's pickle or a run directory, in ``dtype``."""
    import jax
    import jax.numpy as jnp

    from backprop_jax.book_params import BookParamsError, fit_params, load_book_params
    from backprop_jax.training import RunError, restore_run

    _, state = model.init(jax.random.key(0))
    try:
        if os.path.isdir(path):
            saved = restore_run(path, model)
            params, state = saved.params, saved.model_state
        else:
            params = load_book_params(path)
    except (RunError, BookParamsError) as e:  # each names the file
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
