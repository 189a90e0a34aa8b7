"""The ``backprop-jax`` command: train, evaluate, gradcheck, graph, compare-optimizers, experiment, download."""

import argparse
import dataclasses
import hashlib
import importlib.util
import inspect
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


def _seed(text):
    from backprop_jax.training import check_seed

    value = _non_negative_int(text)
    try:
        check_seed(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (given {text!r})") from None
    return value


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


# --- the model flags, derived from the registry in backprop_jax.nets.registry ------------------

DEFAULT_OPTIMIZER = "sgd"  # for a model from a file; the book's networks name their own
_METAVARS = {"count": "N", "size": "N", "sizes": "N,N,...", "number": "X", "fraction": "RATE", "init": "STD"}
_PARSE = {"count": _positive_int, "size": _non_negative_int, "sizes": _sizes, "number": _number(low_inclusive=0),
          "fraction": _fraction, "init": _weight_init}


def _recipes():
    from backprop_jax.nets.registry import RECIPES
    return RECIPES


def _model_settings():
    """``{setting name: (Setting, {model name: default})}`` over every network of the registry."""
    settings = {}
    for model, recipe in _recipes().items():
        defaults = recipe.defaults()
        for setting in recipe.settings:
            settings.setdefault(setting.name, (setting, {}))[1][model] = defaults[setting.name]
    return settings


def _shown(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _add_model_flags(parser):
    recipes = _recipes()
    net = parser.add_argument_group(
        "network", "Each flag applies to the models named in its help; any other is a usage error.")
    net.add_argument("--model", default="two-layer", metavar="|".join(recipes) + "|FILE.py:FUNCTION",
                     help="; ".join(f"{name}: {r.summary}" for name, r in recipes.items())
                          + "; or your own, FILE.py:FUNCTION: FILE.py is executed and FUNCTION() must "
                            "return a backprop_jax.Model (default two-layer)")
    for name, (setting, defaults) in _model_settings().items():
        values = set(map(_shown, defaults.values()))
        if setting.kind == "flag":
            default = f"for {', '.join(defaults)}"
        elif len(values) == 1:
            default = f"default {values.pop()}; for {', '.join(defaults)}"
        else:
            default = "default " + ", ".join(f"{_shown(v)} for {m}" for m, v in defaults.items())
        kwargs = {"action": "store_true"} if setting.kind == "flag" else (
            {"choices": list(setting.choices)} if setting.kind == "choice" else
            {"type": _PARSE[setting.kind], "metavar": _METAVARS[setting.kind]})
        net.add_argument(setting.flag, dest=name, default=argparse.SUPPRESS,
                         help=f"{setting.help} ({default})", **kwargs)


def build_parser():
    from backprop_jax.training import DIVERGENCE_EPOCHS, DIVERGENCE_FACTOR, OPTIMIZERS, TrainConfig

    parser = argparse.ArgumentParser(
        prog="backprop-jax",
        description="The backpropagation chapter of 'Deep Learning from Scratch' in JAX.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    defaults = TrainConfig()

    train = sub.add_parser("train", help="train a network on MNIST (the book's recipe by default)",
                           description="Train a network with the hand-written backward rules.")
    _add_data_flags(train, sequences=True)
    _add_model_flags(train)
    opt = train.add_argument_group("training")
    length = opt.add_mutually_exclusive_group()
    length.add_argument("--iters", type=_positive_int, default=None,
                        help=f"mini-batch updates (default {defaults.iters_num}, as the book's "
                             f"train_neuralnet.py; the convnet: 20 epochs, as its train_convnet.py)")
    length.add_argument("--epochs", type=_positive_int, default=None,
                        help="train this many epochs (train size / batch size updates each) instead")
    opt.add_argument("--batch-size", type=_positive_int, default=None,
                     help=f"default {defaults.batch_size}; the seq2seq models' 128 and the language models' 20, as "
                          f"the sequel's scripts")
    opt.add_argument("--learning-rate", "--lr", type=_number(low_exclusive=0), default=None,
                     help="default: the optimiser's, " + ", ".join(
                         f"{name} {o.learning_rate}" for name, o in OPTIMIZERS.items()))
    opt.add_argument("--optimizer", choices=list(OPTIMIZERS), default=None,
                     help="default: the model's, " + ", ".join(
                         f"{name} {recipe.optimizer}" for name, recipe in _recipes().items())
                     + f", {DEFAULT_OPTIMIZER} for a model from a file")
    opt.add_argument("--max-grad", type=_number(low_exclusive=0), default=None, metavar="NORM",
                     help="clip the gradients to this global norm before each update, as the sequel's "
                          "clip_grads (default: none; 5 for the seq2seq models, as the sequel's scripts)")
    opt.add_argument("--devices", type=_positive_int, default=None,
                     help="split every mini-batch over this many devices (default: all local devices)")
    opt.add_argument("--seed", type=_seed, default=defaults.seed,
                     help="seed of the initial weights and of the batch order (default 0)")
    opt.add_argument("--evaluate-sample-num", type=_positive_int, default=None, metavar="N",
                     help="evaluate each epoch on the first N training and test images only, as the "
                          "book's Trainer(evaluate_sample_num_per_epoch=N); the last epoch on all")
    opt.add_argument("--ignore-divergence", action="store_true",
                     help=f"go on when the loss stays {DIVERGENCE_FACTOR:g}x above its starting value for "
                          f"{DIVERGENCE_EPOCHS} epochs (default: stop there, as a learning rate far too "
                          f"large does that)")
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
    files.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="EPOCHS",
                       help="save a checkpoint after every EPOCHS-th epoch, where training pauses "
                            "(default: by time alone, see --checkpoint-interval); always after the last")
    files.add_argument("--checkpoint-interval", type=_non_negative_int, default=10, metavar="SECONDS",
                       help="but no sooner than SECONDS after the previous one (default 10; 0: no "
                            "minimum); a crash loses little more than this much training")
    files.add_argument("--no-progress", action="store_true", help="no progress bar")
    files.add_argument("--every-epoch", action="store_true",
                       help="print a line for every epoch (default: all of them up to 30 epochs, "
                            "else about 20 evenly spread, and the last; metrics.json has them all)")

    evaluate = sub.add_parser(
        "evaluate", help="test accuracy of saved parameters: the book's .pkl files or a run directory",
        description="Evaluate parameters on the test set: a pickle in the book's format (its "
                    "ch03/sample_weight.pkl, ch07/params.pkl, ch08/deep_convnet_params.pkl, or one "
                    "written by save_params), read without running any code it holds, or a run "
                    "directory (its newest checkpoint).")
    _add_data_flags(evaluate)
    _add_model_flags(evaluate)
    evaluate.add_argument("--params", required=True, metavar="FILE.pkl|RUN_DIR",
                          help="the parameters: a .pkl of the book's format, or a --out directory of train")
    evaluate.add_argument("--dtype", choices=["float16", "bfloat16", "float32", "float64"], default="float32",
                          help="evaluate in this precision, as the book's half_float_network.py (default float32)")

    check = sub.add_parser("gradcheck", help="the book's gradient check of the two-layer net",
                           description="Compare the hand rules of the two-layer net (784-50-10, "
                                       "book init) with autodiff and central differences, in float64.")
    check.add_argument("--batch", type=_positive_int, default=3, help="number of inputs (default 3)")
    check.add_argument("--hidden", type=_positive_int, default=50, help="hidden size (default 50, the book's)")
    check.add_argument("--numeric-elements", type=_positive_int, default=None, metavar="K",
                       help="central differences on K random elements per parameter (default: all)")
    check.add_argument("--seed", type=_seed, default=0)

    compare = sub.add_parser(
        "compare-optimizers", help="the book's optimiser comparison: SGD, Momentum, AdaGrad, Adam",
        description="Train the book's 5-layer ReLU net (784-100x4-10, He init, batch 128) with SGD "
                    "(lr 0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001) on the same data "
                    "and plot their loss curves in one figure.")
    _add_data_flags(compare)
    compare.add_argument("--out", required=True, help="directory for optimizers.png and optimizers.json")
    compare.add_argument("--iters", type=_positive_int, default=2000, help="iterations per optimiser (default 2000)")
    compare.add_argument("--seed", type=_seed, default=0)

    graph = sub.add_parser(
        "graph", help="draw a computational graph: values above the arrows, gradients below",
        description="Trace a function and draw its graph as the chapter's figures do. WHAT is "
                    "apple, apple-orange, two-layer-net, or FILE.py:FUNCTION, a function whose "
                    "parameters all have default values (the inputs to draw it at).")
    graph.add_argument("what", metavar="WHAT")
    graph.add_argument("--out", required=True,
                       help="output file; the format follows the extension: .dot, .svg, .png, .mmd (Mermaid) "
                            "or .html (a page that steps through the forward and backward passes)")
    graph.add_argument("--expand", action="store_true",
                       help="show the primitive operations inside each layer")
    graph.add_argument("--book", action="store_true",
                       help="draw sigmoid, affine and softmax_with_loss as the book's figures: sigmoid as "
                            "x(-1), exp, +1 and / with each local derivative; Affine as dot and + with the "
                            "shapes of X, W and B; Softmax-with-Loss as Softmax and Cross Entropy Error")
    graph.add_argument("--full-arrays", action="store_true",
                       help="print small arrays (up to 16 entries) in full instead of a summary")

    experiment = sub.add_parser(
        "experiment", help="an experiment of chapters 6-7 or of the sequel: its figure (NAME.png) and "
                           "numbers (NAME.json)",
        description="Run one of the book's experiments of chapters 6 and 7, or of the sequel's chapters 7 "
                    "and 8, and write its figure and the "
                    "numbers behind it: " + "; ".join(
                        f"{name}: {fn.__doc__.split(chr(10))[0].rstrip('.')}" for name, fn in _experiments().items()))
    experiment.add_argument("name", metavar="NAME", choices=list(_experiments()) + ["all"],
                            help=", ".join(_experiments()) + ", or all")
    experiment.add_argument("--out", required=True, help="directory for NAME.png and NAME.json")
    _add_data_flags(experiment)
    experiment.add_argument("--seed", type=_seed, default=0)
    experiment.add_argument("--quick", action="store_true", help="a tiny version, to check that it runs")

    download = sub.add_parser("download", help="download full MNIST into the cache directory")
    download.add_argument("--data-dir", help="target directory (default: $BACKPROP_JAX_DATA or the user cache)")
    return parser


def _add_data_flags(parser, sequences=False):
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=["auto", "mnist", "mnist-sample"], default="auto",
                      help="auto (default): full MNIST if its files are in the data directory, "
                           "else the embedded 5,000-digit sample")
    data.add_argument("--data-dir", help="directory with the four MNIST .gz files "
                                         "(default: $BACKPROP_JAX_DATA or the user cache directory)")
    if sequences:
        data.add_argument("--data", metavar="FILE.txt",
                          help="for the seq2seq models: problems in the sequel's format (its addition.txt or "
                               "date.txt) instead of 50,000 generated from --seed; for the language models "
                               "(rnnlm, better-rnnlm): any UTF-8 text, the last tenth of its words held out "
                               "(as its ptb.train.txt; default: 20,000 generated dates in words)")


def _sequences(args, recipe, parser):
    """The sequel's character problems for a seq2seq recipe: ``--data FILE.txt``, or 50,000 made
    from the seed, of the recipe's kind."""
    from backprop_jax import datasets

    if args.dataset != "auto" or args.data_dir:
        parser.error(f"--dataset and --data-dir choose MNIST; --model {args.model} learns "
                     + ("a text (give it with --data)" if recipe.data == "text" else
                        f"the sequel's {recipe.data} problems (give a file of them with --data)"))
    try:
        if recipe.data == "text":
            if args.data:
                return args.data, datasets.load_text(args.data)
            return (f"dates in words (20,000 generated, seed {args.seed})",
                    datasets.load_text(datasets.date_text(20_000, seed=args.seed)))
        if args.data:
            return args.data, datasets.load_sequence(args.data)
        make = datasets.addition_lines if recipe.data == "addition" else datasets.date_lines
        return f"{recipe.data} (50,000 generated, seed {args.seed})", datasets.load_sequence(make(50_000, seed=args.seed))
    except datasets.DatasetError as e:
        sys.exit(f"backprop-jax: error: --data: {e}" if args.data else f"backprop-jax: error: {e}")


def _load_data(args, say=print):
    """``(dataset name, data)`` for the --dataset and --data-dir flags; says which it used."""
    from backprop_jax import datasets

    data_dir = args.data_dir or datasets.cache_dir()
    dataset = args.dataset
    if dataset == "auto":
        try:
            dataset = "mnist" if not datasets.missing_files(data_dir) else "mnist-sample"
            why = f"full MNIST not found in {data_dir}"
        except datasets.DatasetError as e:  # the sample needs no directory
            dataset, why = "mnist-sample", str(e)
        say(f"dataset: {dataset} "
            + (f"(full MNIST from {data_dir})" if dataset == "mnist"
               else f"(the embedded 5,000-digit sample; {why})"))
    try:
        if dataset == "mnist":
            return dataset, datasets.load_mnist(data_dir=data_dir)
        return dataset, datasets.load_mnist_sample()
    except datasets.DatasetError as e:
        sys.exit(f"backprop-jax: error: {e}")


def _join_processes(args, parser):
    """Joins a multi-process run if the flags ask for one; returns the number of processes."""
    from backprop_jax.training import DistributedError, join, parse_host_port

    wanted = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and wanted == (None, None, None):
        return 1
    if args.coordinator is not None and parse_host_port(args.coordinator) is None:
        parser.error(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if not args.distributed and None in wanted:
        parser.error("a multi-process run needs --coordinator, --num-processes and --process-id "
                     "(or --distributed, to take them from the cluster environment)")
    if None not in (args.num_processes, args.process_id) and args.process_id >= args.num_processes:
        parser.error(f"--process-id must be below --num-processes ({args.num_processes}), "
                     f"got {args.process_id}")
    try:
        return join(*wanted, heartbeat_timeout=args.heartbeat_timeout, connect_timeout=args.connect_timeout)
    except DistributedError as e:
        sys.exit(f"backprop-jax: error: {e}")


def _failure(error, path):
    """``raised TYPE: message (line N)``, N the deepest line of ``path`` in the traceback."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
             if os.path.abspath(f.filename) == os.path.abspath(path)]
    where = f" (line {lines[-1]})" if lines else ""
    message = str(error).strip().splitlines()
    return f"raised {type(error).__name__}: {message[0] if message else ''}{where}"


def _load_function(spec, parser, what):
    """The function named by ``FILE.py:FUNCTION`` (the file is executed), or a usage error."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        choices = list(_recipes()) if what == "--model" else _CHOICES[what]
        parser.error(f"{what} must be {', '.join(choices)} or FILE.py:FUNCTION, got {spec!r}")
    if not os.path.isfile(path):
        parser.error(f"no such file: {path}")
    module_name = f"backprop_jax_user_{hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.exit(f"backprop-jax: error: {what} {spec}: {path}, line {e.lineno}: {e.msg}")
    except Exception as e:  # noqa: BLE001 - the user's code: say where it failed, in one line
        sys.exit(f"backprop-jax: error: {what} {spec}: running {path} {_failure(e, path)}")
    fn = getattr(module, name, None)
    if not callable(fn):
        parser.error(f"{path} has no function {name!r}")
    return fn


_CHOICES = {"WHAT": ["apple", "apple-orange", "two-layer-net"]}


def _build_model(args, parser, data_arguments=None):
    """``(model, settings, recipe)`` for the --model flag and the model flags given; ``recipe``
    is None for a model from a file. ``data_arguments``: what the data decide (a seq2seq's
    vocabulary), from ``Recipe.data_arguments``."""
    from backprop_jax.nets import Model

    settings = _model_settings()
    given = {name: getattr(args, name) for name in settings if hasattr(args, name)}
    recipe = _recipes().get(args.model)
    takes = [] if recipe is None else [s.name for s in recipe.settings]
    extra = [settings[name][0].flag for name in given if name not in takes]
    if extra:
        offered = ", ".join(settings[name][0].flag for name in takes) or "none"
        parser.error(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to --model "
                     f"{args.model} (its flags: {offered})")
    if recipe is None:  # FILE.py:FUNCTION
        fn = _load_function(args.model, parser, "--model")
        try:
            model = fn()
        except Exception as e:  # noqa: BLE001 - the user's code
            sys.exit(f"backprop-jax: error: --model {args.model}: {fn.__name__}() "
                     f"{_failure(e, args.model.rpartition(':')[0])}")
        if not isinstance(model, Model):
            parser.error(f"--model {args.model}: {fn.__name__}() returned {type(model).__name__}, "
                         f"not a backprop_jax.Model")
        with open(args.model.rpartition(":")[0], "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        return model, {"model": args.model, "model_file_sha256": digest}, None
    if recipe.data != "mnist" and data_arguments is None:
        parser.error(f"--model {args.model} learns "
                     + ("a text" if recipe.data == "text" else f"the sequel's {recipe.data} problems")
                     + f"; the {args.command} command takes the MNIST networks")
    try:
        model = recipe.make(data_arguments, **given)
    except ValueError as e:
        parser.error(f"{_model_named(args)}: {e}")
    return model, {"model": args.model, **recipe.record(given), **(data_arguments or {})}, recipe


def _check_model_fits(model, args, parser):
    """Shapes that do not fit (a window larger than the image) are a usage error, before any
    data is read; after joining the processes, since it starts JAX's backend."""
    import jax

    try:
        jax.eval_shape(model.init, jax.random.key(0))
    except ValueError as e:
        parser.error(f"{_model_named(args)}: {e}")


def _model_named(args):
    """``--model NAME with --flag VALUE ...`` for the network flags given, for a message."""
    settings = _model_settings()
    flags = " ".join(f"{settings[name][0].flag} {_shown(getattr(args, name))}" for name in settings
                     if hasattr(args, name) and settings[name][0].kind != "flag")
    return f"--model {args.model}{' with ' + flags if flags else ''}"


def cmd_train(args, parser):
    if args.resume and not args.out:
        parser.error("--resume needs --out DIR, the directory of the run to continue")
    # Usage errors first, before any data is loaded (but the sequel's problems, which decide the
    # vocabulary of the network that learns them; they are read without JAX).
    recipe = _recipes().get(args.model)
    sequences = None
    if recipe is not None and recipe.data != "mnist":
        dataset, sequences = _sequences(args, recipe, parser)
    elif args.data:
        parser.error(f"--data gives the seq2seq and language models their data; --model {args.model} learns MNIST")
    model, net_settings, recipe = _build_model(
        args, parser, None if sequences is None else recipe.data_arguments(sequences, args.batch_size))

    from backprop_jax.training import (
        DIVERGENCE_FACTOR, DistributedError, RunError, RunInterrupted, TrainConfig, TrainingDiverged,
        check_batch_split, check_processes_agree, data_parallel_mesh, run)

    n_processes = _join_processes(args, parser)
    _check_model_fits(model, args, parser)
    import jax
    primary = jax.process_index() == 0
    say = print if primary else (lambda *a, **k: None)  # only process 0 logs
    try:
        mesh = data_parallel_mesh(args.devices)
    except ValueError as e:
        parser.error(f"--devices: {e}")
    batch_size = args.batch_size or getattr(recipe, "batch_size", None) or TrainConfig().batch_size
    try:
        check_batch_split(batch_size, mesh.size)
    except ValueError as e:
        parser.error(f"--batch-size: {e}, or pass --devices")
    if sequences is None:
        dataset, data = _load_data(args, say)
    elif recipe.data == "text":  # truncated BPTT windows, read in order (rnnlm.training_data)
        from backprop_jax.nets import rnnlm

        say(f"dataset: {dataset}, {len(sequences.train)} words to train, {len(sequences.test)} to test, "
            f"a vocabulary of {len(sequences.word_to_id)}")
        time_size = net_settings["time_size"]
        try:
            data = (rnnlm.training_data(sequences.train, batch_size, time_size),
                    rnnlm.training_data(sequences.test, 1, time_size))
        except ValueError as e:
            sys.exit(f"backprop-jax: error: {'--data ' + args.data if args.data else dataset}: {e}; use a "
                     f"longer text or a smaller --batch-size")
    else:
        from backprop_jax.nets import seq2seq

        say(f"dataset: {dataset}, {len(sequences.train[0])} problems to train, {len(sequences.test[0])} to test"
            + (", the questions reversed" if recipe.reverse else ""))
        data = seq2seq.training_data((sequences.train, sequences.test), reverse=recipe.reverse)

    iters = args.iters
    if iters is None:
        from backprop_jax.training import iterations_per_epoch
        epochs = args.epochs or getattr(recipe, "epochs", None)
        per_epoch = iterations_per_epoch(len(data[0][0]), batch_size)
        iters = TrainConfig().iters_num if epochs is None else epochs * per_epoch
    optimizer = args.optimizer or getattr(recipe, "optimizer", DEFAULT_OPTIMIZER)
    max_grad = args.max_grad if args.max_grad is not None else getattr(recipe, "max_grad", None)
    learning_rate = args.learning_rate
    # The script's learning rate goes with the script's optimiser only.
    recipe_lr = getattr(recipe, "learning_rate", None) if optimizer == getattr(recipe, "optimizer", None) else None
    described = None
    if max_grad:  # the sequel's clip_grads before the update, as its Trainer(max_grad=...)
        import optax

        from backprop_jax.training import OPTIMIZERS, optimizers as book_optimizers
        lr = learning_rate or recipe_lr or OPTIMIZERS[optimizer].learning_rate
        described = f"{optimizer} lr {lr}, gradients clipped at {max_grad:g}"
        optimizer = optax.chain(book_optimizers.clip_grads(max_grad), OPTIMIZERS[optimizer].make(lr))
        learning_rate = None
    elif learning_rate is None:
        learning_rate = recipe_lr
    config = TrainConfig(iters_num=iters, batch_size=batch_size, learning_rate=learning_rate,
                         optimizer=optimizer, seed=args.seed,
                         evaluate_sample_num_per_epoch=args.evaluate_sample_num
                         or getattr(recipe, "evaluate_sample_num", None))
    settings = {**net_settings, **config.record()}
    if n_processes > 1:
        try:
            check_processes_agree({"settings": settings, "dataset": dataset, "resume": args.resume,
                                   "checkpoint": [args.checkpoint_every, args.checkpoint_interval]}, data)
        except DistributedError as e:
            sys.exit(f"backprop-jax: error: {e}")
    (x_train, _), (x_test, _) = data
    unit = ("images" if sequences is None else f"windows of {net_settings['time_size']} words" if recipe.data == "text"
            else "problems")
    say(f"training {net_settings} on {len(x_train)} {unit} ({len(x_test)} to test), "
        f"{config.iters_num} iterations of batch {config.batch_size}, {described or config.optimizer_name()}, on {mesh.size} {mesh.devices.flat[0].platform} device"
        f"{'s' if mesh.size > 1 else ''}"
        + (f" in {n_processes} processes" if n_processes > 1 else ""))
    start = time.perf_counter()
    stop = _stop_cleanly_on_signals()
    from backprop_jax.training._run import drop_event_loop_leftovers
    drop_event_loop_leftovers()  # from the start: orbax's leftovers can print before the failure surfaces
    try:
        state, history = run(model, data, config, dataset=dataset, settings=settings, out=args.out,
                             resume=args.resume, checkpoint_every=args.checkpoint_every,
                             checkpoint_interval=args.checkpoint_interval,
                             progress=not args.no_progress, mesh=mesh if mesh.size > 1 else None,
                             log=say, every_epoch=args.every_epoch,
                             divergence_factor=None if args.ignore_divergence else DIVERGENCE_FACTOR, stop=stop)
    except (RunError, TrainingDiverged, ValueError) as e:  # the library's one-line errors on bad input
        if str(e).startswith("cannot write"):
            _exit_past_leftovers(f"backprop-jax: error: {_as_flags(e)}")
        sys.exit(f"backprop-jax: error: {_as_flags(e)}")
    except RunInterrupted as e:  # the run saved the iteration reached and closed its files
        import signal
        where = (f"the last checkpoint is iteration {e.checkpoint}; resume with --resume --out {args.out}"
                 if e.checkpoint is not None else "nothing was saved (no --out)")
        sys.stderr.write(f"backprop-jax: {e}; {where}\n")
        sys.exit(128 + signal.Signals[e.reason].value)
    except jax.errors.JaxRuntimeError as e:
        if n_processes == 1:
            raise
        sys.exit(f"backprop-jax: error: process {jax.process_index()} lost contact with the other "
                 f"processes of this run ({e}); once all are stopped, start every process again "
                 f"with --resume to continue from the last checkpoint")
    if not primary:
        return
    if history:
        last = history[-1]
        what = (f"test accuracy {last.test_acc:.4f}" if last.test_acc is not None
                else f"test perplexity {last.test_perplexity:.2f}" if last.test_perplexity is not None
                else f"test loss {last.test_loss:.4g}")
        print(f"final {what} after {last.iteration} iterations ({time.perf_counter() - start:.1f} s)")
    if sequences is not None and recipe.data == "text":  # the sequel's eval_perplexity, the state carried
        from backprop_jax.nets import rnnlm

        print(f"perplexity of the held-out text read in order, the state carried (the sequel's "
              f"eval_perplexity): {rnnlm.eval_perplexity(state.params, sequences.test, 1, net_settings['time_size']):.2f}")
    elif sequences is not None:  # the sequel's eval_seq2seq on the held-out problems
        from backprop_jax.nets import seq2seq

        (x_test, _) = data[1]
        questions = x_test[:, :sequences.test[0].shape[1]]
        print(f"exact-match accuracy on the {len(questions)} held-out problems: "
              f"{float(seq2seq.exact_match(state.params, questions, sequences.test[1])):.4f}")
    if args.out:
        print(f"wrote {os.path.join(args.out, 'metrics.json')}, "
              f"{os.path.join(args.out, 'curves.png')} and checkpoints in "
              f"{os.path.join(args.out, 'checkpoints')}")


# The library's words for what the command line calls by its flags.
_LIBRARY_WORDS = {"(resume=True)": "(--resume)", "give the new run another directory": "choose another --out",
                  "(divergence_factor=None)": "(--ignore-divergence)",
                  "resume the run once there is room": "resume with --resume once there is room"}


def _as_flags(error):
    """A library error worded for the command line: a ``RunError`` about ``run``'s ``out`` or
    ``resume`` argument is about ``--out`` or ``--resume``."""
    text = str(error)
    argument = getattr(error, "argument", None)
    if argument == "out":
        text = f"--out {text}"
    elif argument is not None:
        text = f"--{argument.replace('_', '-')}: {text}"
    for words, flags in _LIBRARY_WORDS.items():
        text = text.replace(words, flags)
    return text


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


def _run_params(directory, model):
    """The parameters and model state of the newest checkpoint in the run ``directory``."""
    import jax

    from backprop_jax.training import Checkpoints, TrainConfig, init_state

    checkpoints = Checkpoints(os.path.join(directory, "checkpoints"))
    try:
        if checkpoints.latest_step() is None:
            sys.exit(f"backprop-jax: error: --params {directory}: no checkpoint in {checkpoints.directory}")
        record = checkpoints.record()
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        saved = {k: v for k, v in record["settings"].items() if k in fields}
        try:
            config = TrainConfig(**saved)
        except ValueError:
            sys.exit(f"backprop-jax: error: --params {directory}: the run used an optimiser this command "
                     f"cannot rebuild ({saved.get('optimizer')!r:.60}); load its parameters in Python")
        template = jax.eval_shape(lambda: init_state(model, config))
        try:
            state, _ = checkpoints.restore(template)
        except Exception as e:  # noqa: BLE001 - orbax's errors for a checkpoint of another model
            sys.exit(f"backprop-jax: error: --params {directory}: its checkpoint does not hold this model's "
                     f"parameters ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
        return state.params, state.model_state
    finally:
        checkpoints.close()


def _exit_past_leftovers(message):
    """Exits with ``message`` after a failed checkpoint write. The run has already closed its
    files; orbax's writes still in flight would print a traceback each from their callbacks as
    the interpreter shuts down, so the process ends here, without that shutdown."""
    sys.stderr.write(message + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _stop_cleanly_on_signals():
    """Returns ``stop`` for ``run``: the first SIGINT (Ctrl-C) or SIGTERM asks the run to stop
    after its current compiled call, saving the iteration reached; a second one, while the run
    is finishing, ends the process at once (the signals' default action)."""
    import signal
    import threading

    received = []

    def first(signum, frame):
        received.append(signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, first)
        signal.signal(signal.SIGTERM, first)
    return lambda: received[0] if received else None


def cmd_evaluate(args, parser):
    model, net_settings, _ = _build_model(args, parser)
    if not os.path.exists(args.params):
        parser.error(f"--params {args.params}: no such file or directory")
    _check_model_fits(model, args, parser)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from backprop_jax.book_params import BookParamsError, fit_params, load_book_params

    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    _, state = model.init(jax.random.key(0))
    if os.path.isdir(args.params):
        params, state = _run_params(args.params, model)
    else:
        try:
            params = load_book_params(args.params)
        except BookParamsError as e:
            sys.exit(f"backprop-jax: error: --params {e}")
    try:
        params = fit_params(model, params, dtype)
    except BookParamsError as e:
        sys.exit(f"backprop-jax: error: --params {args.params}: {e}")
    state = jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating)
                         else a, state)
    dataset, data = _load_data(args)
    x_test, t_test = data[1]
    predict = jax.jit(lambda p, s, x: jnp.argmax(model.predict(p, s, x.astype(dtype)), axis=1))
    correct = 0
    for start in range(0, len(x_test), 1000):
        correct += int(np.sum(np.asarray(predict(params, state, jnp.asarray(x_test[start:start + 1000])))
                              == np.asarray(t_test[start:start + 1000])))
    print(f"test accuracy {correct / len(x_test):.4f} ({correct} of {len(x_test)} {dataset} test images), "
          f"{net_settings['model']} in {args.dtype}, parameters from {args.params}")


def cmd_gradcheck(args, parser):
    import jax
    jax.config.update("jax_enable_x64", True)  # the book checks in float64, as we do
    import jax.numpy as jnp

    from backprop_jax.checking import gradcheck

    model, params, state, x, t = _two_layer_check_inputs(jax.random.key(args.seed), args.hidden, args.batch,
                                                         jnp.float64)
    # Nonzero biases, so that their gradients are exercised too.
    params["b1"] = 0.01 * jax.random.normal(jax.random.key(args.seed + 1), (args.hidden,), jnp.float64)
    report = gradcheck(model.loss_fn(state), params, x, t, argnums=0, numeric_elements=args.numeric_elements)
    print("mean |hand - numeric| per parameter (the book's check):")
    for line in report.book_lines():
        print("  " + line)
    print(report)
    if not report.ok:
        sys.exit(1)


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
    fn = _load_function(what, parser, "WHAT")
    params = inspect.signature(fn).parameters.values()
    missing = [p.name for p in params if p.default is inspect.Parameter.empty]
    if missing:
        parser.error(f"{fn.__name__}: give every parameter a default value to draw it at "
                     f"(no default for {', '.join(missing)})")
    return fn, tuple(p.default for p in params)


def cmd_graph(args, parser):
    from backprop_jax import graph

    if os.path.splitext(args.out)[1].lower() not in graph.FORMATS:
        parser.error(f"--out must end in one of {', '.join(graph.FORMATS)}, got {args.out!r}")
    fn, fn_args = _graph_target(args.what, parser)
    try:
        if args.expand and args.book:
            parser.error("--expand and --book are two different views; give one")
        g = graph.trace(fn, *fn_args, expand=args.expand, book=args.book)
    except Exception as e:  # noqa: BLE001
        if args.what in _CHOICES["WHAT"]:
            raise  # ours: a bug, with its traceback
        sys.exit(f"backprop-jax: error: WHAT {args.what}: {fn.__name__} {_failure(e, args.what.rpartition(':')[0])}")
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out} is a directory; give a file name ending in one of {', '.join(graph.FORMATS)}")
    try:
        g.render(args.out, full_arrays=args.full_arrays)
    except graph.GraphvizNotFound as e:
        sys.exit(f"backprop-jax: error: {e}")
    except OSError as e:
        sys.exit(f"backprop-jax: error: --out {args.out} cannot be written: {e.strerror or e}")
    print(f"wrote {args.out}: {len(g.nodes)} nodes, {len(g.edges)} arrows")


def cmd_compare(args, parser):
    from backprop_jax import writable_directory
    from backprop_jax.experiments import compare_optimizers

    try:
        writable_directory(args.out)  # before hours of training, not after
    except OSError as e:
        sys.exit(f"backprop-jax: error: --out {e}")
    _, data = _load_data(args)
    compare_optimizers(data, args.out, iters_num=args.iters, seed=args.seed)
    print(f"wrote {os.path.join(args.out, 'optimizers.png')} and {os.path.join(args.out, 'optimizers.json')}")


def _experiments():
    from backprop_jax.experiments import EXPERIMENTS
    return EXPERIMENTS


def cmd_experiment(args, parser):
    from backprop_jax import writable_directory

    try:
        out = writable_directory(args.out)
    except OSError as e:
        sys.exit(f"backprop-jax: error: --out {e}")
    _, data = _load_data(args)
    names = list(_experiments()) if args.name == "all" else [args.name]
    for name in names:
        start = time.perf_counter()
        print(f"{name}:")
        _experiments()[name](data, out, quick=args.quick, seed=args.seed)
        print(f"wrote {out / (name + '.png')} and {out / (name + '.json')} ({time.perf_counter() - start:.1f} s)")


def cmd_download(args, parser):
    from backprop_jax import datasets
    try:
        directory = datasets.download_mnist(args.data_dir)
    except datasets.DatasetError as e:
        sys.exit(f"backprop-jax: error: {e}")
    print(f"MNIST is in {directory}")


def _use_compilation_cache():
    """Keeps compiled programs in JAX's persistent cache under the user cache directory
    (``~/.cache/backprop-jax/xla``), so that a second run does not compile them again: every
    program that took 0.2 s or more to compile (JAX's default keeps only those of 1 s or more,
    and the book's net compiles in about 1 s here, on either side of it).
    ``$JAX_COMPILATION_CACHE_DIR`` chooses another place and
    ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` another threshold; a directory that cannot
    be written only turns the cache off."""
    import jax

    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # JAX reads it itself
    import platformdirs

    path = os.path.join(platformdirs.user_cache_dir("backprop-jax"), "xla")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return
    if not os.access(path, os.W_OK | os.X_OK):
        return
    jax.config.update("jax_compilation_cache_dir", path)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("train", "compare-optimizers", "experiment"):
        _use_compilation_cache()
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "gradcheck": cmd_gradcheck, "graph": cmd_graph,
                "compare-optimizers": cmd_compare, "experiment": cmd_experiment, "download": cmd_download}
    try:
        commands[args.command](args, parser)
        sys.stdout.flush()
    except BrokenPipeError:  # `backprop-jax train | head -1`: stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more to flush at exit
        sys.exit(141)


if __name__ == "__main__":
    main()
