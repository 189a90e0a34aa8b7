"""The commands' table, the parser made from it, and a command's run with its output checked:
flags -> the recipes and registries -> the library, no knowledge of its own. Each command's
parser sits beside its handler; ``COMMANDS`` lists them all."""

import argparse
import os
import sys
from typing import Callable, NamedTuple

from backprop_jax.cli import _check, _evaluate, _experiments, _generate, _train, _words


class Command(NamedTuple):
    """A subcommand: how its flags are parsed, what it does, and whether it compiles programs
    worth keeping in JAX's persistent cache."""
    add_parser: Callable  # (subparsers) -> None
    run: Callable  # (args, parser) -> None
    compiles: bool = False


COMMANDS = {
    "train": Command(_train.add_parser, _train.run, compiles=True),
    "evaluate": Command(_evaluate.add_parser, _evaluate.run),
    "gradcheck": Command(_check.add_gradcheck_parser, _check.run_gradcheck),
    "compare-optimizers": Command(_experiments.add_compare_parser, _experiments.run_compare, compiles=True),
    "graph": Command(_check.add_graph_parser, _check.run_graph),
    "experiment": Command(_experiments.add_experiment_parser, _experiments.run_experiment, compiles=True),
    "download": Command(_experiments.add_download_parser, _experiments.run_download),
    "words": Command(_words.add_parser, _words.run),
    "generate": Command(_generate.add_parser, _generate.run),
}


def build_parser():
    from backprop_jax import __version__

    parser = argparse.ArgumentParser(
        prog="backprop-jax",
        description="The backpropagation chapter of 'Deep Learning from Scratch' in JAX.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


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


def run(argv=None):
    """Parses ``argv`` (default: the process's arguments) and runs the command it names. What it
    prints (``--help`` and ``--version`` included) must reach standard output, or the command
    fails in one line."""
    parser = build_parser()
    sys.stdout = _Output(sys.stdout if sys.stdout is not None else _Closed())
    try:
        args = _parse(parser, argv)
        command = COMMANDS[args.command]
        if command.compiles:
            _use_compilation_cache()
        joins = any(getattr(args, name, None) not in (None, False)
                    for name in ("coordinator", "num_processes", "process_id", "distributed"))
        if os.environ.get("JAX_PLATFORMS") and args.command != "download" and not joins:  # joining starts JAX itself
            _check_platforms(os.environ["JAX_PLATFORMS"])
        command.run(args, parser)
        _flush_output()
    except BrokenPipeError:  # `backprop-jax train | head -1`: stop quietly, as Unix tools do
        _stdout_to_devnull()
        sys.exit(141)
    except _OutputFailed as e:  # `> /dev/full`: no space left on device
        _stdout_to_devnull()
        sys.exit(f"backprop-jax: error: cannot write the output: {e}")
    finally:
        if isinstance(sys.stdout, _Output):
            sys.stdout = sys.stdout.stream if not isinstance(sys.stdout.stream, _Closed) else None


def _parse(parser, argv):
    """``parser.parse_args(argv)``; ``--help`` and ``--version``, which print and exit there, are
    held to the same standard as a command's output."""
    try:
        return parser.parse_args(argv)
    except SystemExit as e:
        if e.code in (0, None):
            _flush_output()
        raise


def _flush_output():
    if isinstance(getattr(sys.stdout, "stream", None), _Closed):  # started with `>&-`: printed nowhere
        sys.exit("backprop-jax: error: cannot write the output: standard output is closed")
    sys.stdout.flush()


class _Closed:
    """Standard output when the process started without one (``>&-``): what is printed goes
    nowhere, and the command ends saying so."""
    encoding = "utf-8"

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def _check_platforms(platforms):
    """``JAX_PLATFORMS`` names platforms JAX can start here, or the command ends with JAX's reason
    (which lists the platforms it knows) in one line."""
    import jax

    try:
        jax.devices()
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        sys.exit(f"backprop-jax: error: JAX_PLATFORMS={platforms}: {reason}")


class _OutputFailed(Exception):
    """Standard output cannot be written (a full device, an I/O error)."""


class _Output:
    """Standard output whose failed writes are ``_OutputFailed`` (a broken pipe stays itself)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        try:
            try:
                return self.stream.write(text)
            except UnicodeEncodeError:  # PYTHONIOENCODING=ascii and a path in other letters: escaped
                encoding = self.stream.encoding
                return self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputFailed(e.strerror or str(e)) from None

    def flush(self):
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise _OutputFailed(e.strerror or str(e)) from None

    def __getattr__(self, name):
        return getattr(self.stream, name)


def _stdout_to_devnull():
    stream = getattr(sys.stdout, "stream", sys.stdout)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())  # what is still buffered goes nowhere at exit

