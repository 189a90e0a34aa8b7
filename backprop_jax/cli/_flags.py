"""What every command shares: the argparse types, the data and network flags (derived from
``backprop_jax.recipes``), a library error worded as flags, and loading ``FILE.py:FUNCTION``."""

import argparse
import hashlib
import importlib.util
import os
import sys


def fail(message):
    """Ends the command with ``backprop-jax: error: message`` (status 1)."""
    sys.exit(f"backprop-jax: error: {message}")


# --- argparse types: a bad value is a usage error naming it ----------------------------------

def int_at_least(low):
    """An argparse type for integers >= ``low``."""
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


def seconds(text):
    """An argparse type for a timeout: whole seconds from 1 to 2**31 - 1 (about 68 years, what
    the runtime's 32-bit timeouts hold)."""
    value = int_at_least(1)(text)
    if value > 2 ** 31 - 1:
        raise argparse.ArgumentTypeError(f"expected at most 2**31 - 1 = {2 ** 31 - 1} seconds, got {text!r}")
    return value


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def seed(text):
    from backprop_jax.training import check_seed

    value = non_negative_int(text)
    try:
        check_seed(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{e} (given {text!r})") from None
    return value


def number(low_exclusive=None, low_inclusive=None):
    """An argparse type for finite numbers above ``low_exclusive`` or from ``low_inclusive``."""
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
    value = number(low_inclusive=0)(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}")
    return value


def _weight_init(text):
    if text.lower() in ("he", "xavier", "relu", "sigmoid"):
        return text.lower()
    return number(low_exclusive=0)(text)


# --- the data flags -----------------------------------------------------------------------

def add_data_flags(parser, sequences=False):
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
                               "(rnnlm, better-rnnlm) and word2vec (cbow, skip-gram): any UTF-8 text, the last "
                               "tenth of its words held out (as its ptb.train.txt; default: 20,000 generated "
                               "dates in words)")


def load_data(recipe, args, parser, batch_size=None):
    """``recipe.load_data`` for the data flags; usage errors for flags that do not fit the recipe."""
    from backprop_jax import datasets

    data_file = getattr(args, "data", None)
    if recipe.data == "mnist" and data_file:
        parser.error(f"--data gives the seq2seq and language models their data; --model {args.model} learns MNIST")
    if recipe.data != "mnist" and (args.dataset != "auto" or args.data_dir):
        parser.error(f"--dataset and --data-dir choose MNIST; --model {args.model} learns "
                     + ("a text (give it with --data)" if recipe.data in ("text", "words") else
                        f"the sequel's {recipe.data} problems (give a file of them with --data)"))
    path = args.data_dir if recipe.data == "mnist" else data_file
    try:
        return recipe.load_data(path, getattr(args, "seed", 0), batch_size, dataset=args.dataset)
    except datasets.DatasetError as e:
        fail(f"--data {as_flags(e)}" if data_file else as_flags(e))


# --- the network flags, from backprop_jax.recipes ------------------------------------------

_METAVARS = {"count": "N", "size": "N", "sizes": "N,N,...", "number": "X", "fraction": "RATE", "init": "STD"}
_PARSE = {"count": positive_int, "size": non_negative_int, "sizes": _sizes, "number": number(low_inclusive=0),
          "fraction": _fraction, "init": _weight_init}


def recipes():
    from backprop_jax.recipes import RECIPES
    return RECIPES


def flag(name):
    """The flag of a setting or an argument: ``--name``, ``_`` as ``-``."""
    return "--" + name.replace("_", "-")


def model_settings():
    """``{setting name: (Setting, {model name: default})}`` over every recipe."""
    settings = {}
    for model, recipe in recipes().items():
        defaults = recipe.defaults()
        for setting in recipe.settings:
            settings.setdefault(setting.name, (setting, {}))[1][model] = defaults[setting.name]
    return settings


def shown(value):
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def add_model_flags(parser):
    net = parser.add_argument_group(
        "network", "Each flag applies to the models named in its help; any other is a usage error.")
    net.add_argument("--model", default="two-layer", metavar="|".join(recipes()) + "|FILE.py:FUNCTION",
                     help="; ".join(f"{name}: {r.summary}" for name, r in recipes().items())
                          + "; or your own, FILE.py:FUNCTION: FILE.py is executed and FUNCTION() must "
                            "return a backprop_jax.Model (default two-layer)")
    for name, (setting, defaults) in model_settings().items():
        values = set(map(shown, defaults.values()))
        if setting.kind == "flag":
            default = f"for {', '.join(defaults)}"
        elif len(values) == 1:
            default = f"default {values.pop()}; for {', '.join(defaults)}"
        else:
            default = "default " + ", ".join(f"{shown(v)} for {m}" for m, v in defaults.items())
        kwargs = {"action": "store_true"} if setting.kind == "flag" else (
            {"choices": list(setting.choices)} if setting.kind == "choice" else
            {"type": _PARSE[setting.kind], "metavar": _METAVARS[setting.kind]})
        net.add_argument(flag(name), dest=name, default=argparse.SUPPRESS, help=f"{setting.help} ({default})",
                         **kwargs)


def model_named(args):
    """``--model NAME with --flag VALUE ...`` for the network flags given, for a message."""
    settings = model_settings()
    flags = " ".join(f"{flag(name)} {shown(getattr(args, name))}" for name in settings
                     if hasattr(args, name) and settings[name][0].kind != "flag")
    return f"--model {args.model}{' with ' + flags if flags else ''}"


def recipe_from_flags(args, parser):
    """The recipe of ``--model`` with the network flags given, or one for ``FILE.py:FUNCTION``."""
    from backprop_jax.nets import Model
    from backprop_jax.recipes import from_model

    settings = model_settings()
    given = {name: getattr(args, name) for name in settings if hasattr(args, name)}
    recipe = recipes().get(args.model)
    takes = [] if recipe is None else [s.name for s in recipe.settings]
    extra = [flag(name) for name in given if name not in takes]
    if extra:
        offered = ", ".join(flag(name) for name in takes) or "none"
        parser.error(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply to --model "
                     f"{args.model} (its flags: {offered})")
    if recipe is not None:
        return recipe.with_settings(**given)
    fn = load_function(args.model, parser, "--model")
    try:
        model = fn()
    except Exception as e:  # noqa: BLE001 - the user's code
        fail(f"--model {args.model}: {fn.__name__}() {failure(e, args.model.rpartition(':')[0])}")
    if not isinstance(model, Model):
        parser.error(f"--model {args.model}: {fn.__name__}() returned {type(model).__name__}, "
                     f"not a backprop_jax.Model")
    with open(args.model.rpartition(":")[0], "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return from_model(args.model, lambda: model, recorded=(("model_file_sha256", digest),))


def build_model(recipe, data, args, parser):
    """``recipe.model(data)``; a value out of range is a usage error."""
    try:
        return recipe.model(data)
    except ValueError as e:
        parser.error(f"{model_named(args)}: {e}")


def check_model_fits(model, args, parser):
    """Shapes that do not fit (a window larger than the image) are a usage error, found from
    shapes alone; after joining the processes of a multi-process run, since it starts JAX's backend."""
    import jax

    try:
        jax.eval_shape(model.init, jax.random.key(0))
    except ValueError as e:
        parser.error(f"{model_named(args)}: {e}")


# --- the library's errors in the command line's words ---------------------------------------

_LIBRARY_WORDS = {"(resume=True)": "(--resume)", "give the new run another directory": "choose another --out",
                  "(divergence_factor=None)": "(--ignore-divergence)",
                  "resume the run once there is room": "resume with --resume once there is room",
                  "a smaller batch_size": "a smaller --batch-size", "data_dir=...": "--data-dir",
                  "(connect_timeout)": "(--connect-timeout)", "the same coordinator": "the same --coordinator",
                  "its own process_id": "its own --process-id", "accept_unverified=True": "--accept-unverified",
                  "start_over=True": "--start-over", "with jax_enable_x64 on": "with JAX_ENABLE_X64=1",
                  "with jax_enable_x64 off": "with JAX_ENABLE_X64 unset"}


def as_flags(error):
    """A library error worded for the command line: a ``RunError`` about ``run``'s ``out`` or
    ``resume`` argument is about ``--out`` or ``--resume``, and the library's argument names in
    its advice are the flags that set them."""
    text = str(error)
    argument = getattr(error, "argument", None)
    if argument == "out":
        text = f"--out {text}"
    elif argument is not None:
        text = f"{flag(argument)}: {text}"
    for words, flags in _LIBRARY_WORDS.items():
        text = text.replace(words, flags)
    return text


def failure(error, path):
    """``raised TYPE: message (line N)``, N the deepest line of ``path`` in the traceback."""
    import traceback

    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
             if os.path.abspath(f.filename) == os.path.abspath(path)]
    where = f" (line {lines[-1]})" if lines else ""
    message = str(error).strip().splitlines()
    return f"raised {type(error).__name__}: {message[0] if message else ''}{where}"


def same_function(given, recorded):
    """Whether both name a function of a Python file (``FILE.py:FUNCTION``), the same function (the
    files' paths may differ)."""
    def function(spec):
        path, sep, name = str(spec).rpartition(":")
        return name if sep and path.endswith(".py") else None
    return function(given) is not None and function(given) == function(recorded)


def load_function(spec, parser, what, choices=None):
    """The function named by ``FILE.py:FUNCTION`` (the file is executed), or a usage error; the
    message offers ``choices`` (default: the recipes)."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py") or not name.isidentifier():
        choices = list(recipes()) if choices is None else choices
        parser.error(f"{what} must be {', '.join(choices)} or FILE.py:FUNCTION, got {spec!r}")
    if not os.path.isfile(path):  # a FIFO or a device is never read: it could wait or never end
        parser.error(f"{what} {spec}: {path} is not a regular file" if os.path.exists(path)
                     else f"no such file: {path}")
    module_name = f"backprop_jax_user_{hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:12]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as e:
        fail(f"{what} {spec}: {path}, line {e.lineno}: {e.msg}")
    except Exception as e:  # noqa: BLE001 - the user's code: say where it failed, in one line
        fail(f"{what} {spec}: running {path} {failure(e, path)}")
    fn = getattr(module, name, None)
    if not callable(fn):
        parser.error(f"{path} has no function {name!r}")
    return fn
