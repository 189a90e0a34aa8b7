"""The ``backprop-jax`` command: flags -> the recipes and registries -> the library.

This module imports almost nothing, so that the command takes charge of SIGINT and SIGTERM
(``_signals``) before JAX and NumPy are loaded; the commands' table (``COMMANDS``) and the parser
(``build_parser``) live in ``_main`` and are found here on first use.
"""

import importlib

from backprop_jax.cli import _signals


def main(argv=None):
    """Runs the command ``argv`` names (default: the process's arguments).

    SIGINT (Ctrl-C) and SIGTERM end it at any moment, in one line, with status 130 or 143;
    ``train`` first saves the iteration reached, or keeps its last checkpoint. Called with
    ``argv``, the previous signal handlers come back on return. As the program (no ``argv``),
    the process ends here once the command is done, its exit functions run under the same
    handling (``_signals.end_program``): a signal during them is one line as well."""
    with _signals.Signals() as signals:
        run = importlib.import_module("backprop_jax.cli._main").run
        if argv is not None:
            return run(argv)
        signals.keep = True
        try:
            run()
        except SystemExit as e:
            _signals.end_program(e.code)
        _signals.end_program(0)


def __getattr__(name):
    if name.startswith("__") or name == "_main":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # COMMANDS, build_parser and the rest of the command's machinery
    try:
        return getattr(importlib.import_module("backprop_jax.cli._main"), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
