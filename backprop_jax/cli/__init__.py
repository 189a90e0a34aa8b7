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
    ``argv``, the previous signal handlers come back on return; as the program (no ``argv``),
    the command's handling lasts until the process ends, its shutdown included."""
    with _signals.Signals() as signals:
        signals.keep = argv is None
        importlib.import_module("backprop_jax.cli._main").run(argv)


def __getattr__(name):
    if name.startswith("__") or name == "_main":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # COMMANDS, build_parser and the rest of the command's machinery
    try:
        return getattr(importlib.import_module("backprop_jax.cli._main"), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
