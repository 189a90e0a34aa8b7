"""``backprop-jax gradcheck`` and ``backprop-jax graph``: the two-layer net's hand rules checked,
and a computational graph drawn."""

import inspect
import sys

from backprop_jax.cli._flags import fail, failure, load_function, positive_int, seed

_GRAPHS = ["apple", "apple-orange", "two-layer-net"]


def _two_layer_check_inputs(key, hidden, batch, dtype):
    """``(model, params, state, x, t)``: the book's 784-hidden-10 net at random inputs and labels."""
    import jax

    from backprop_jax.nets import two_layer_net

    key_init, key_x, key_t = jax.random.split(key, 3)
    model = two_layer_net.model(784, hidden, 10, dtype=dtype)
    params, state = model.init(key_init)
    x = jax.random.uniform(key_x, (batch, 784), dtype)
    t = jax.random.randint(key_t, (batch,), 0, 10)
    return model, params, state, x, t


def add_gradcheck_parser(sub):
    check = sub.add_parser("gradcheck", help="the book's gradient check of the two-layer net",
                           description="Compare the hand rules of the two-layer net (784-50-10, "
                                       "book init) with autodiff and central differences, in float64.")
    check.add_argument("--batch", type=positive_int, default=3, help="number of inputs (default 3)")
    check.add_argument("--hidden", type=positive_int, default=50, help="hidden size (default 50, the book's)")
    check.add_argument("--numeric-elements", type=positive_int, default=None, metavar="K",
                       help="central differences on K random elements per parameter (default: every element "
                            "of a parameter of up to 256 values, 8 random directions through a larger one)")
    check.add_argument("--seed", type=seed, default=0, help="seed of the weights and the inputs (default 0)")


def run_gradcheck(args, parser):
    import jax
    jax.config.update("jax_enable_x64", True)  # the book checks in float64, as we do
    import jax.numpy as jnp

    from backprop_jax.checking import gradcheck
    from backprop_jax.training import DeviceOutOfMemory, check_fits, out_of_memory_errors

    # What the check holds at once, at the least, in float64: the parameters and two gradients of
    # them (the hand rules' and autodiff's), the inputs and labels, and the hidden layer's product.
    parameters = 784 * args.hidden + args.hidden + args.hidden * 10 + 10
    try:
        check_fits({"parameters and two gradients": 3 * 8 * parameters, "inputs": 8 * args.batch * (784 + 1),
                    "the hidden layer's product": 8 * args.batch * args.hidden},
                   "the gradient check", "give a smaller --batch or --hidden")
    except ValueError as e:
        fail(e)
    try:
        with out_of_memory_errors("the gradient check"):
            model, params, state, x, t = _two_layer_check_inputs(jax.random.key(args.seed), args.hidden, args.batch,
                                                                 jnp.float64)
            # Nonzero biases, so that their gradients are exercised too.
            params["b1"] = 0.01 * jax.random.normal(jax.random.key(args.seed + 1), (args.hidden,), jnp.float64)
            report = gradcheck(model.loss_fn(state), params, x, t, argnums=0,
                               numeric_elements=args.numeric_elements)
    except DeviceOutOfMemory as e:
        fail(f"{e}; give a smaller --batch or --hidden")
    print("mean |hand - numeric| per parameter (the book's check):")
    for line in report.book_lines():
        print("  " + line)
    print(report)
    if not report.ok:
        sys.exit(1)


def add_graph_parser(sub):
    formats = ".dot, .svg, .png, .mmd (Mermaid) or .html (an interactive page)"
    graph = sub.add_parser(
        "graph", help="draw a computational graph: values above the arrows, gradients below",
        description="Trace a function and draw its graph as the chapter's figures do. WHAT is "
                    "apple, apple-orange, two-layer-net, or FILE.py:FUNCTION, a function whose "
                    f"parameters all have default values (the inputs to draw it at); the format follows "
                    f"--out's extension: {formats}.")
    graph.add_argument("what", metavar="WHAT", help=", ".join(_GRAPHS) + ", or FILE.py:FUNCTION")
    graph.add_argument("--out", required=True, help=f"output file; the format follows the extension: {formats}")
    graph.add_argument("--expand", action="store_true",
                       help="show the primitive operations inside each layer")
    graph.add_argument("--book", action="store_true",
                       help="draw sigmoid, affine and softmax_with_loss as the book's figures: sigmoid as "
                            "x(-1), exp, +1 and / with each local derivative; Affine as dot and + with the "
                            "shapes of X, W and B; Softmax-with-Loss as Softmax and Cross Entropy Error")
    graph.add_argument("--full-arrays", action="store_true",
                       help="print small arrays (up to 16 entries) in full instead of a summary")


def _graph_target(what, parser):
    """``(function, args)`` for the graph command's WHAT."""
    if what in ("apple", "apple-orange"):
        from backprop_jax import shopping
        if what == "apple":
            return shopping.buy_apple, tuple(shopping.APPLE.values())
        return shopping.buy_apple_orange, tuple(shopping.APPLE_ORANGE.values())
    if what == "two-layer-net":
        import jax
        import jax.numpy as jnp
        model, params, state, x, t = _two_layer_check_inputs(jax.random.key(0), 50, 2, jnp.float32)
        return model.loss_fn(state), (params, x, t)  # two "images"
    fn = load_function(what, parser, "WHAT", _GRAPHS)
    params = inspect.signature(fn).parameters.values()
    missing = [p.name for p in params if p.default is inspect.Parameter.empty]
    if missing:
        parser.error(f"{fn.__name__}: give every parameter a default value to draw it at "
                     f"(no default for {', '.join(missing)})")
    return fn, tuple(p.default for p in params)


def run_graph(args, parser):
    import os

    from backprop_jax import graph

    if os.path.splitext(args.out)[1].lower() not in graph.FORMATS:
        parser.error(f"--out must end in one of {', '.join(graph.FORMATS)}, got {args.out!r}")
    if args.expand and args.book:
        parser.error("--expand and --book are two different views; give one")
    fn, fn_args = _graph_target(args.what, parser)
    try:
        g = graph.trace(fn, *fn_args, expand=args.expand, book=args.book)
    except Exception as e:  # noqa: BLE001
        if args.what in _GRAPHS:
            raise  # ours: a bug, with its traceback
        fail(f"WHAT {args.what}: {fn.__name__} {failure(e, args.what.rpartition(':')[0])}")
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a directory; give a file name ending in one of {', '.join(graph.FORMATS)}")
    try:
        g.render(args.out, full_arrays=args.full_arrays)
    except graph.GraphvizNotFound as e:
        fail(e)
    except OSError as e:
        fail(f"--out {args.out} cannot be written: {e.strerror or e}")
    print(f"wrote {args.out}: {len(g.nodes)} nodes, {len(g.edges)} arrows")
