"""``backprop-jax experiment``, ``compare-optimizers`` and ``download``: the book's experiments
written as figures and numbers, and full MNIST fetched."""

import contextlib
import time

from backprop_jax.cli._flags import add_data_flags, as_flags, fail, load_data, positive_int, recipes, seed


def _experiments():
    from backprop_jax.experiments import EXPERIMENTS
    return EXPERIMENTS


def _first_sentence(doc):
    """A docstring's first sentence, its lines joined, its code marks dropped."""
    text = " ".join(doc.replace("``", "").split())
    end = text.find(". ")
    return text if end < 0 else text[:end]


def add_experiment_parser(sub):
    experiment = sub.add_parser(
        "experiment", help="an experiment of chapters 6-7 or of the sequel: its figure (NAME.png) and "
                           "numbers (NAME.json)",
        description="Run one of the book's experiments of chapters 6 and 7, or of the sequel's, and write "
                    "its figure and the numbers behind it: " + "; ".join(
                        f"{name}: {_first_sentence(fn.__doc__).rstrip('.')}" for name, fn in _experiments().items())
                    + ".")
    experiment.add_argument("name", metavar="NAME", choices=list(_experiments()) + ["all"],
                            help=", ".join(_experiments()) + ", or all")
    experiment.add_argument("--out", required=True, help="directory for NAME.png and NAME.json")
    add_data_flags(experiment)
    experiment.add_argument("--seed", type=seed, default=0, help="seed of the weights and the data (default 0)")
    experiment.add_argument("--quick", action="store_true", help="a tiny version, to check that it runs")


def _writable(out):
    from backprop_jax import writable_directory

    if not out.strip():  # Path("") is the working directory, whose files would be overwritten
        fail(f"--out {out!r}: give a directory for the results")
    try:
        return writable_directory(out)  # before hours of training, not after
    except OSError as e:
        fail(f"--out {e}")


@contextlib.contextmanager
def _one_line_when_out_of_memory(what):
    """The device running out of memory in the block ends the command with one line naming ``what``."""
    from backprop_jax.training import DeviceOutOfMemory, out_of_memory_errors

    try:
        with out_of_memory_errors(what):
            yield
    except DeviceOutOfMemory as e:
        fail(as_flags(e))


def run_experiment(args, parser):
    out = _writable(args.out)
    data = load_data(recipes()["two-layer"], args, parser)
    if data.description:
        print(data.description)
    names = list(_experiments()) if args.name == "all" else [args.name]
    for name in names:
        start = time.perf_counter()
        print(f"{name}:")
        with _one_line_when_out_of_memory(f"the experiment {name}"):
            _experiments()[name](data.arrays, out, quick=args.quick, seed=args.seed)
        print(f"wrote {out / (name + '.png')} and {out / (name + '.json')} ({time.perf_counter() - start:.1f} s)")


def add_compare_parser(sub):
    compare = sub.add_parser(
        "compare-optimizers", help="the book's optimiser comparison: SGD, Momentum, AdaGrad, Adam",
        description="Train the book's 5-layer ReLU net (784-100x4-10, He init, batch 128) with SGD "
                    "(lr 0.01), Momentum (0.01), AdaGrad (0.01) and Adam (0.001) on the same data "
                    "and plot their loss curves in one figure.")
    add_data_flags(compare)
    compare.add_argument("--out", required=True, help="directory for optimizers.png and optimizers.json")
    compare.add_argument("--iters", type=positive_int, default=2000, help="iterations per optimiser (default 2000)")
    compare.add_argument("--seed", type=seed, default=0, help="seed of the weights and the batches (default 0)")


def run_compare(args, parser):
    import os

    from backprop_jax.experiments import compare_optimizers
    from backprop_jax.training import TrainConfig

    try:  # a length past what the compiled loop counts, refused as train refuses it
        TrainConfig(iters_num=args.iters, seed=args.seed)
    except ValueError as e:
        parser.error(f"--iters {args.iters}: {e}")
    _writable(args.out)
    data = load_data(recipes()["two-layer"], args, parser)
    if data.description:
        print(data.description)
    with _one_line_when_out_of_memory("the optimiser comparison"):
        compare_optimizers(data.arrays, args.out, iters_num=args.iters, seed=args.seed)
    print(f"wrote {os.path.join(args.out, 'optimizers.png')} and {os.path.join(args.out, 'optimizers.json')}")


def add_download_parser(sub):
    download = sub.add_parser("download", help="download full MNIST into the cache directory",
                              description="Download the four MNIST files from a mirror, check their MD5 "
                                          "sums, and keep them in the data directory, where train, "
                                          "evaluate and the experiments find them.")
    download.add_argument("--data-dir", help="target directory (default: $BACKPROP_JAX_DATA or the user cache)")


def run_download(args, parser):
    from backprop_jax import datasets
    try:
        directory = datasets.download_mnist(args.data_dir)
    except datasets.DatasetError as e:
        fail(as_flags(e))
    print(f"MNIST is in {directory}")
