"""The ``backprop-jax`` command: train, gradcheck, graph, compare-optimizers, download."""

import argparse
import os
import sys
import time


def _int_at_least(low):
    """An argparse type for integers >= ``low``; bad values give a usage error."""
    wanted = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _number(low_exclusive=None, low_inclusive=None):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low_exclusive is not None and not value > low_exclusive:
            raise argparse.ArgumentTypeError(f"expected a number > {low_exclusive}, got {text!r}")
        if low_inclusive is not None and not value >= low_inclusive:
            raise argparse.ArgumentTypeError(f"expected a number >= {low_inclusive}, got {text!r}")
        return value
    return parse


def _sizes(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated sizes like 100,100,100, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes like 100,100,100, got {text!r}")
    return sizes


def _fraction(text):
    value = _number(low_inclusive=0)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _weight_init(text):
    if text.lower() in ("he", "xavier", "relu", "sigmoid"):
        return text.lower()
    return _number(low_exclusive=0)(text)


def build_parser():
    from backprop_jax._train import OPTIMIZERS, TrainConfig

    parser = argparse.ArgumentParser(
        prog="backprop-jax",
        description="The backpropagation chapter of 'Deep Learning from Scratch' in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    defaults = TrainConfig()

    train = sub.add_parser("train", help="train a network on MNIST (the book's recipe by default)",
                           description="Train a network with the hand-written backward rules.")
    _add_data_flags(train)
    net = train.add_argument_group("network")
    net.add_argument("--model", choices=["two-layer", "multi-layer", "convnet"], default="two-layer",
                     help="the book's two-layer net (default), multi-layer net, or simple convnet "
                          "(conv 30x5x5, pool, affine 100, affine 10; Adam lr 0.001 by default)")
    net.add_argument("--hidden", type=_positive_int, default=50,
                     help="hidden size of the two-layer net (default 50)")
    net.add_argument("--hidden-sizes", type=_sizes, default=[100, 100, 100],
                     help="hidden sizes of the multi-layer net (default 100,100,100)")
    net.add_argument("--activation", choices=["relu", "sigmoid"], default="relu",
                     help="multi-layer net activation (default relu)")
    net.add_argument("--weight-init", type=_weight_init, default=None,
                     help="init std: a number, 'he' or 'xavier' (default 0.01 for the two-layer "
                          "net as in the book; 'he' for relu, 'xavier' for sigmoid in the multi-layer net)")
    net.add_argument("--weight-decay", type=_number(low_inclusive=0), default=0.0,
                     help="L2 weight decay lambda of the multi-layer net (default 0)")
    net.add_argument("--batch-norm", action="store_true",
                     help="multi-layer net: batch normalisation after every hidden affine layer")
    net.add_argument("--dropout", type=_fraction, default=0.0, metavar="DROP_RATE",
                     help="multi-layer net: drop this fraction of hidden units in training (default 0)")
    opt = train.add_argument_group("training")
    opt.add_argument("--iters", type=_positive_int, default=defaults.iters_num,
                     help=f"mini-batch updates (default {defaults.iters_num})")
    opt.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size,
                     help=f"default {defaults.batch_size}")
    opt.add_argument("--learning-rate", "--lr", type=_number(low_exclusive=0), default=None,
                     help="default 0.1 for sgd, 0.001 for adam, 0.01 for the others")
    opt.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None,
                     help="default sgd (adam for the convnet)")
    opt.add_argument("--devices", type=_positive_int, default=None,
                     help="split every mini-batch over this many devices (default: all local devices)")
    opt.add_argument("--seed", type=_non_negative_int, default=defaults.seed,
                     help="seed of the initial weights and of the batch order (default 0)")
    dist = train.add_argument_group(
        "several processes or machines (jax.distributed)",
        "Start the same command once per process, each with its --process-id; every mini-batch is "
        "split over all devices of all processes. --out must be a directory that all processes see.")
    dist.add_argument("--coordinator", metavar="HOST:PORT",
                      help="address of process 0, which all processes connect to")
    dist.add_argument("--num-processes", type=_positive_int, metavar="N", help="processes in the run")
    dist.add_argument("--process-id", type=_non_negative_int, metavar="I", help="this process, 0 to N-1")
    dist.add_argument("--distributed", action="store_true",
                      help="join a multi-process run whose settings JAX detects from the cluster "
                           "(SLURM, Open MPI, Kubernetes, Cloud TPU); implied by the three flags above")
    dist.add_argument("--heartbeat-timeout", type=_positive_int, default=100, metavar="SECONDS",
                      help="a process silent this long counts as dead, and the others stop (default 100)")
    dist.add_argument("--connect-timeout", type=_positive_int, default=300, metavar="SECONDS",
                      help="how long to wait for all processes to join (default 300)")
    files = train.add_argument_group("output")
    files.add_argument("--out", help="directory for metrics.json, curves.png and checkpoints/")
    files.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out, if any (else start a new run)")
    files.add_argument("--checkpoint-every", type=_positive_int, default=1, metavar="EPOCHS",
                       help="save a checkpoint every EPOCHS epochs and after the last (default 1)")
    files.add_argument("--checkpoint-interval", type=_non_negative_int, default=10, metavar="SECONDS",
                       help="but no sooner than SECONDS after the previous one (default 10; 0: no "
                            "minimum); a crash loses at most this much training")
    files.add_argument("--no-progress", action="store_true", help="no progress bar")

    check = sub.add_parser("gradcheck", help="the book's gradient check of the two-layer net",
                           description="Compare the hand rules of the two-layer net (784-50-10, "
                                       "book init) with autodiff and central differences, in float64.")
    check.add_argument("--batch", type=_positive_int, default=3, help="number of inputs (default 3)")
    check.add_argument("--hidden", type=_positive_int, default=50, help="hidden size (default 50, the book's)")
    check.add_argument("--numeric-elements", type=_positive_int, default=None, metavar="K",
                       help="central differences on K random elements per parameter (default: all)")
    check.add_argument("--seed", type=_non_negative_int, default=0)

    compare = sub.add_parser(
        "compare-optimizers", help="the book's optimiser comparison: SGD, Momentum, AdaGrad, Adam",
        description="Train the book's 5-layer ReLU net (784-100x4-10, He init, batch 128) with SGD "
                    "(lr 0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001) on the same data "
                    "and plot their loss curves in one figure.")
    _add_data_flags(compare)
    compare.add_argument("--out", required=True, help="directory for optimizers.png and optimizers.json")
    compare.add_argument("--iters", type=_positive_int, default=2000, help="iterations per optimiser (default 2000)")
    compare.add_argument("--seed", type=_non_negative_int, default=0)

    graph = sub.add_parser(
        "graph", help="draw a computational graph: values above the arrows, gradients below",
        description="Trace a function and draw its graph as the chapter's figures do. WHAT is "
                    "apple, apple-orange, two-layer-net, or FILE.py:FUNCTION, a function whose "
                    "parameters all have default values (the inputs to draw it at).")
    graph.add_argument("what", metavar="WHAT")
    graph.add_argument("--out", required=True,
                       help="output file; the format follows the extension: .dot, .svg, .png or .mmd (Mermaid)")
    graph.add_argument("--expand", action="store_true",
                       help="show the primitive operations inside each layer")
    graph.add_argument("--full-arrays", action="store_true",
                       help="print small arrays (up to 16 entries) in full instead of a summary")

    download = sub.add_parser("download", help="download full MNIST into the cache directory")
    download.add_argument("--data-dir", help="target directory (default: $BACKPROP_JAX_DATA or the user cache)")
    return parser


LEARNING_RATES = {"sgd": 0.1, "adam": 0.001}


def _add_data_flags(parser):
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=["auto", "mnist", "mnist-sample"], default="auto",
                      help="auto (default): full MNIST if its files are in the data directory, "
                           "else the embedded 5,000-digit sample")
    data.add_argument("--data-dir", help="directory with the four MNIST .gz files "
                                         "(default: $BACKPROP_JAX_DATA or the user cache directory)")


def _load_data(args, say=print):
    """``(dataset name, data)`` for the --dataset and --data-dir flags; says which it used."""
    from backprop_jax import datasets

    data_dir = args.data_dir or datasets.cache_dir()
    dataset = args.dataset
    if dataset == "auto":
        dataset = "mnist" if not datasets.missing_files(data_dir) else "mnist-sample"
        say(f"dataset: {dataset} "
              + (f"(full MNIST from {data_dir})" if dataset == "mnist"
                 else f"(the embedded 5,000-digit sample; full MNIST not found in {data_dir})"))
    try:
        if dataset == "mnist":
            return dataset, datasets.load_mnist(data_dir=data_dir)
        return dataset, datasets.load_mnist_sample()
    except datasets.DatasetError as e:
        sys.exit(f"backprop-jax: error: {e}")


def _host_port(address):
    """``(host, port)`` from ``HOST:PORT`` (``[::1]:PORT`` for IPv6), or None if it is not one."""
    host, sep, port = address.rpartition(":")
    if not (host and sep and port.isdigit() and 0 < int(port) < 65536):
        return None
    return host.strip("[]"), int(port)


def _wait_for_coordinator(address, timeout):
    """Returns once process 0 accepts connections at ``address``; exits with a clear error after ``timeout`` s.

    (Without this check JAX aborts with a bare DEADLINE_EXCEEDED when process 0 never comes.)
    """
    import socket
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(_host_port(address), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                sys.exit(f"backprop-jax: error: process 0 is not reachable at {address} after {timeout} s "
                         f"({e}); start it first, or check --coordinator")
            time.sleep(0.2)


def _join_processes(args, parser):
    """Joins a multi-process run if the flags ask for one; returns the number of processes."""
    wanted = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and wanted == (None, None, None):
        return 1
    if args.coordinator is not None and _host_port(args.coordinator) is None:
        parser.error(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if not args.distributed and None in wanted:
        parser.error("a multi-process run needs --coordinator, --num-processes and --process-id "
                     "(or --distributed, to take them from the cluster environment)")
    if None not in (args.num_processes, args.process_id) and args.process_id >= args.num_processes:
        parser.error(f"--process-id must be below --num-processes ({args.num_processes}), "
                     f"got {args.process_id}")
    if args.coordinator is not None and args.process_id:
        _wait_for_coordinator(args.coordinator, args.connect_timeout)
    print(f"backprop-jax: process {'?' if args.process_id is None else args.process_id} of "
          f"{'?' if args.num_processes is None else args.num_processes} joining the run at "
          f"{args.coordinator or '(address from the cluster)'}; waiting up to {args.connect_timeout} s "
          f"for every process", file=sys.stderr, flush=True)
    import jax
    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                   initialization_timeout=args.connect_timeout,
                                   heartbeat_timeout_seconds=args.heartbeat_timeout)
    except (ValueError, RuntimeError) as e:  # missing settings, or the others never came
        sys.exit(f"backprop-jax: error: could not join the multi-process run: {e}")
    return jax.process_count()


def _check_processes_agree(args, dataset, data, settings):
    """Exits on every process if the processes of a run were given different settings or data."""
    import hashlib
    import json

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    digest = hashlib.sha256(json.dumps(
        {"settings": settings, "dataset": dataset, "resume": args.resume,
         "checkpoint": [args.checkpoint_every, args.checkpoint_interval]}, sort_keys=True).encode())
    for x, t in data:  # shapes and a sample of about 1000 rows of each array
        for a in (np.asarray(x), np.asarray(t)):
            digest.update(repr(a.shape).encode() + np.ascontiguousarray(a[::max(1, len(a) // 1000)]).tobytes())
    mine = np.frombuffer(digest.digest(), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine))  # (processes, 32)
    differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        sys.exit(f"backprop-jax: error: process{'es' if len(differ) > 1 else ''} "
                 f"{', '.join(map(str, differ))} of this run got other settings or data than process 0 "
                 f"(this is process {jax.process_index()}); start every process with the same flags "
                 f"and the same dataset")


def cmd_train(args, parser):
    if args.resume and not args.out:
        parser.error("--resume needs --out DIR, the directory of the run to continue")
    if args.model != "multi-layer" and (args.weight_decay or args.hidden_sizes != [100, 100, 100]
                                        or args.activation != "relu" or args.batch_norm or args.dropout):
        parser.error("--weight-decay, --hidden-sizes, --activation, --batch-norm and --dropout apply "
                     "to --model multi-layer")
    if args.model == "convnet" and args.hidden != 50:
        parser.error("--hidden applies to --model two-layer")
    if args.optimizer is None:
        args.optimizer = "adam" if args.model == "convnet" else "sgd"

    from backprop_jax import conv_net, multi_layer_net, two_layer_net
    from backprop_jax._run import RunError, run
    from backprop_jax._train import TrainConfig, TrainingDiverged, data_parallel_mesh

    # Usage errors first, before any data is loaded.
    n_processes = _join_processes(args, parser)
    import jax
    primary = jax.process_index() == 0
    say = print if primary else (lambda *a, **k: None)  # only process 0 logs
    try:
        mesh = data_parallel_mesh(args.devices)
    except ValueError as e:
        parser.error(f"--devices: {e}")
    if args.batch_size % mesh.size:
        parser.error(f"--batch-size {args.batch_size} does not split evenly over {mesh.size} devices; "
                     f"choose a multiple of {mesh.size} or pass --devices")
    dataset, data = _load_data(args, say)

    lr = args.learning_rate if args.learning_rate is not None else LEARNING_RATES.get(args.optimizer, 0.01)
    config = TrainConfig(iters_num=args.iters, batch_size=args.batch_size, learning_rate=lr,
                         optimizer=args.optimizer, seed=args.seed)
    if args.model == "two-layer":
        init = 0.01 if args.weight_init is None else args.weight_init
        model = two_layer_net.model(784, args.hidden, 10, weight_init_std=init)
        net_settings = {"model": "two-layer", "hidden": args.hidden, "weight_init": init}
    elif args.model == "convnet":
        init = 0.01 if args.weight_init is None else args.weight_init
        if isinstance(init, str):
            parser.error("--weight-init for the convnet must be a number (the book uses 0.01)")
        model = conv_net.model(weight_init_std=init)
        net_settings = {"model": "convnet", "weight_init": init}
    else:
        init = args.weight_init or ("he" if args.activation == "relu" else "xavier")
        model = multi_layer_net.model(784, tuple(args.hidden_sizes), 10, activation=args.activation,
                                      weight_init_std=init, weight_decay_lambda=args.weight_decay,
                                      use_batchnorm=args.batch_norm, drop_rate=args.dropout)
        net_settings = {"model": "multi-layer", "hidden_sizes": args.hidden_sizes,
                        "activation": args.activation, "weight_init": init,
                        "weight_decay": args.weight_decay, "batch_norm": args.batch_norm,
                        "dropout": args.dropout}
    settings = {**net_settings, **vars(config)}
    if n_processes > 1:
        _check_processes_agree(args, dataset, data, settings)
    (x_train, _), (x_test, _) = data
    say(f"training {net_settings} on {len(x_train)} images ({len(x_test)} to test), "
        f"{config.iters_num} iterations of batch {config.batch_size}, {config.optimizer} "
        f"lr {config.learning_rate}, on {mesh.size} {mesh.devices.flat[0].platform} device"
        f"{'s' if mesh.size > 1 else ''}"
        + (f" in {n_processes} processes" if n_processes > 1 else ""))
    start = time.perf_counter()
    try:
        state, history = run(model, data, config, dataset=dataset, settings=settings, out=args.out,
                             resume=args.resume, checkpoint_every=args.checkpoint_every,
                             checkpoint_interval=args.checkpoint_interval,
                             progress=not args.no_progress, mesh=mesh if mesh.size > 1 else None,
                             log=say)
    except (RunError, TrainingDiverged) as e:
        sys.exit(f"backprop-jax: error: {e}")
    except jax.errors.JaxRuntimeError as e:
        if n_processes == 1:
            raise
        sys.exit(f"backprop-jax: error: process {jax.process_index()} lost contact with the other "
                 f"processes of this run ({e}); once all are stopped, start every process again "
                 f"with --resume to continue from the last checkpoint")
    if not primary:
        return
    if history:
        print(f"final test accuracy {history[-1].test_acc:.4f} after {history[-1].iteration} "
              f"iterations ({time.perf_counter() - start:.1f} s)")
    if args.out:
        print(f"wrote {os.path.join(args.out, 'metrics.json')}, "
              f"{os.path.join(args.out, 'curves.png')} and checkpoints in "
              f"{os.path.join(args.out, 'checkpoints')}")


def cmd_gradcheck(args, parser):
    import jax
    jax.config.update("jax_enable_x64", True)  # the book checks in float64, as we do
    import jax.numpy as jnp

    from backprop_jax import gradcheck, two_layer_net

    key_init, key_x, key_t = jax.random.split(jax.random.key(args.seed), 3)
    params = two_layer_net.init(key_init, 784, args.hidden, 10, dtype=jnp.float64)
    # Nonzero biases, so that their gradients are exercised too.
    params["b1"] = 0.01 * jax.random.normal(key_t, (args.hidden,), jnp.float64)
    x = jax.random.uniform(key_x, (args.batch, 784), jnp.float64)
    t = jax.random.randint(key_t, (args.batch,), 0, 10)
    report = gradcheck(two_layer_net.loss, params, x, t, argnums=0, numeric_elements=args.numeric_elements)
    print("mean |hand - numeric| per parameter (the book's check):")
    for line in report.book_lines():
        print("  " + line)
    print(report)
    if not report.ok:
        sys.exit(1)


def _graph_target(what, parser):
    """``(function, args)`` for the graph command's WHAT."""
    import inspect

    if what in ("apple", "apple-orange"):
        from backprop_jax import shopping
        if what == "apple":
            return shopping.buy_apple, tuple(shopping.APPLE.values())
        return shopping.buy_apple_orange, tuple(shopping.APPLE_ORANGE.values())
    if what == "two-layer-net":
        import jax
        import jax.numpy as jnp

        from backprop_jax import two_layer_net
        key_init, key_x = jax.random.split(jax.random.key(0))
        params = two_layer_net.init(key_init, 784, 50, 10)
        x = jax.random.uniform(key_x, (2, 784))  # two "images"
        return two_layer_net.loss, (params, x, jnp.array([3, 7]))
    path, sep, name = what.rpartition(":")
    if not sep or not path.endswith(".py"):
        parser.error(f"WHAT must be apple, apple-orange, two-layer-net or FILE.py:FUNCTION, got {what!r}")
    if not os.path.isfile(path):
        parser.error(f"no such file: {path}")
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"backprop_jax_graph_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, name, None)
    if not callable(fn):
        parser.error(f"{path} has no function {name!r}")
    params = inspect.signature(fn).parameters.values()
    missing = [p.name for p in params if p.default is inspect.Parameter.empty]
    if missing:
        parser.error(f"{name}: give every parameter a default value to draw it at "
                     f"(no default for {', '.join(missing)})")
    return fn, tuple(p.default for p in params)


def cmd_graph(args, parser):
    from backprop_jax import graph

    if os.path.splitext(args.out)[1].lower() not in graph.FORMATS:
        parser.error(f"--out must end in one of {', '.join(graph.FORMATS)}, got {args.out!r}")
    fn, fn_args = _graph_target(args.what, parser)
    g = graph.trace(fn, *fn_args, expand=args.expand)
    try:
        g.render(args.out, full_arrays=args.full_arrays)
    except graph.GraphvizNotFound as e:
        sys.exit(f"backprop-jax: error: {e}")
    print(f"wrote {args.out}: {len(g.nodes)} nodes, {len(g.edges)} arrows")


def cmd_compare(args, parser):
    from backprop_jax._compare import compare_optimizers

    _, data = _load_data(args)
    compare_optimizers(data, args.out, iters_num=args.iters, seed=args.seed)
    print(f"wrote {os.path.join(args.out, 'optimizers.png')} and {os.path.join(args.out, 'optimizers.json')}")


def cmd_download(args, parser):
    from backprop_jax import datasets
    try:
        directory = datasets.download_mnist(args.data_dir)
    except datasets.DatasetError as e:
        sys.exit(f"backprop-jax: error: {e}")
    print(f"MNIST is in {directory}")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"train": cmd_train, "gradcheck": cmd_gradcheck, "graph": cmd_graph,
                "compare-optimizers": cmd_compare, "download": cmd_download}
    commands[args.command](args, parser)


if __name__ == "__main__":
    main()
