"""The book's saved parameters: pickles of NumPy arrays, read without running code.

The book's repository ships trained parameters as pickled dicts of NumPy
arrays, keyed as this project keys its nets: ``ch03/sample_weight.pkl`` (the
784-50-100-10 sigmoid net of ``neuralnet_mnist.py``), ``ch07/params.pkl`` (the
``SimpleConvNet`` of ``train_convnet.py``), ``ch08/deep_convnet_params.pkl``
(``DeepConvNet``); its nets write more through ``save_params``. The sequel
saves a list of float16 arrays in layer order (``BaseModel.save_params``).
``save_book_params`` writes either format, ``load_book_params`` reads both.

A pickle can run any code while it loads. ``load_book_params`` reads with an
unpickler that admits only what such a file holds (a dict or list, string
keys, NumPy arrays and dtypes) and refuses anything else, naming it, before
it runs.
"""

import importlib
import io
import pickle
import pickletools
from pathlib import Path

import jax
import numpy as np

from backprop_jax._io import atomic_path, read_regular_file

# What a pickled dict of NumPy arrays asks for, under NumPy 1's and NumPy 2's module names.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
}


class BookParamsError(ValueError):
    """A parameter file that cannot be read, or whose arrays do not fit the model."""


def _latin1(text, encoding):
    """``_codecs.encode`` as protocols 0-2 use it for an array's bytes (``encode(str, "latin1")``),
    and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise BookParamsError(f"refused: the file asks for _codecs.encode with {encoding!r:.40}, which "
                              f"pickled arrays do not use")
    return text.encode("latin1")


# A pickle's nesting is refused past this depth before it is loaded: files of arrays nest a few
# levels, and a million nested ``(`` would exhaust the C unpickler's stack. Values side by side
# (a dict of many arrays) are not nesting; more than MAX_PICKLE_STACK of them at once are refused.
MAX_PICKLE_DEPTH = 100
MAX_PICKLE_STACK = 100_000

# Opcodes that add to the container below their arguments, leaving it on the stack.
_IN_PLACE = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}


def _check_nesting(data):
    """BookParamsError if the pickle ``data`` builds values nested deeper than
    ``MAX_PICKLE_DEPTH``: its opcodes are walked (never run), following how deep each value on
    the unpickler's stack (and in its memo) is nested."""
    mark, stack, memo, marks = None, [], {}, 0  # stack: each value's depth, None for a mark
    too_deep = BookParamsError(f"refused: values nested more than {MAX_PICKLE_DEPTH} deep, which a file "
                               f"of parameters does not hold")
    try:
        for op, arg, _ in pickletools.genops(data):
            name = op.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo.get(arg, 0))
            elif name == "MARK":
                stack.append(mark)
                marks += 1
            else:
                before = op.stack_before
                taken = []
                if pickletools.markobject in before:  # the values since the last mark, and the mark
                    while stack[-1] is not mark:
                        taken.append(stack.pop())
                    stack.pop()
                    marks -= 1
                    before = before[:before.index(pickletools.markobject)]
                below = [stack.pop() for _ in before][::-1]
                if mark in below:
                    return  # not a pickle the walk understands: the unpickler says what is wrong
                inner = 1 + max(taken + below[1:] if name in _IN_PLACE else taken + below, default=-1)
                if name in _IN_PLACE:
                    stack.append(max(below[0], inner))
                else:
                    stack.extend([max(inner, 1 if name.startswith("EMPTY_") else 0)] * len(op.stack_after))
            if len(stack) > MAX_PICKLE_STACK:
                raise BookParamsError(f"refused: more than {MAX_PICKLE_STACK} values at once, which a file of "
                                      f"parameters does not hold")
            if marks > MAX_PICKLE_DEPTH or (stack and stack[-1] is not mark and stack[-1] > MAX_PICKLE_DEPTH):
                raise too_deep
    except BookParamsError:
        raise
    except ValueError as e:  # pickletools' words: an unknown opcode, a length past the file's end
        raise BookParamsError(f"not a pickle of parameters ({e})") from None
    except IndexError:
        pass  # values taken from an empty stack: the unpickler says what is wrong


class _OnlyArrays(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1
        if (module, name) not in _ALLOWED:
            raise BookParamsError(f"refused: the file asks for {module}.{name}, which a file of parameters "
                                  f"does not hold (loading it could run code)")
        # NumPy 2 keeps these under numpy._core (numpy.core is a deprecated alias); NumPy 1 under numpy.core.
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core"):]
        elif module.startswith("numpy._core") and not hasattr(np, "_core"):
            module = "numpy.core" + module[len("numpy._core"):]
        return getattr(importlib.import_module(module), name)


def load_book_params(path):
    """The parameters in a pickle of the book's format, as NumPy arrays.

    Args:
      path: a ``.pkl`` written by the book's ``pickle.dump(params, f)`` (a dict
        keyed ``W1``, ``b1``, ...), by ``save_book_params``, or by the sequel's
        ``save_params`` (a list of arrays).
    Returns:
      A dict of str to ``numpy.ndarray`` (or a list of them, for the sequel's files).
    Raises:
      BookParamsError: the file is not such a pickle; it is never executed.
    """
    path = Path(path)
    try:
        data = read_regular_file(path)
    except OSError as e:
        raise BookParamsError(str(e)) from None  # names the file
    try:
        _check_nesting(data)
        params = _OnlyArrays(io.BytesIO(data)).load()
    except BookParamsError as e:
        raise BookParamsError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any other failure: not a pickle of arrays
        raise BookParamsError(f"{path}: not a pickle of parameters ({type(e).__name__}: {e})") from None
    if isinstance(params, dict):
        bad = [k for k, v in params.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
        if bad:
            raise BookParamsError(f"{path}: holds a dict, but {bad[0]!r} is not a name with an array")
        return dict(params)
    if isinstance(params, list) and all(isinstance(v, np.ndarray) for v in params):
        return params
    raise BookParamsError(f"{path}: holds a {type(params).__name__}, not a dict (or list) of arrays")


def save_book_params(params, path, *, order=None):
    """Writes ``params`` (a dict of str to arrays) in a book's own format, atomically.

    Args:
      params: a dict keyed as the model's parameters.
      path: the file to write.
      order: None for the first book's format, the dict of NumPy arrays its nets'
        ``save_params`` pickle (``ch07/simple_convnet.py``, ``ch08/deep_convnet.py``), read back
        by their ``load_params``; or the key of each entry of the sequel's format, the list of
        float16 arrays in layer order that its ``BaseModel.save_params`` pickles and its
        ``load_params`` reads (``rnnlm.book_order()``, ``seq2seq.BOOK_ORDER``). An entry named
        ``"NAME.T"`` is written as the transpose of NAME (a tied output layer's matrix, which the
        sequel's list holds too).

    ``load_book_params`` reads either back (``fit_params(model, ..., order=order)`` for a list).
    """
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise BookParamsError(f"save_book_params: params must be a dict keyed by names, got {type(params).__name__}")
    arrays = {k: np.asarray(jax.device_get(v)) for k, v in params.items()}
    if order is not None:
        order = tuple(order)
        missing = [k for k in order if k.removesuffix(".T") not in arrays]
        left = sorted(set(arrays) - {k.removesuffix(".T") for k in order})
        if missing or left:
            raise BookParamsError(f"save_book_params: the order names {', '.join(order)}, but the parameters "
                                  f"are keyed {', '.join(arrays)}" + (f" (missing {', '.join(missing)})" if missing
                                                                     else f" (not in the order: {', '.join(left)})"))
        # The sequel's save_params: [p.astype(np.float16) for p in self.params].
        arrays = [(arrays[k[:-2]].T if k.endswith(".T") else arrays[k]).astype(np.float16) for k in order]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(arrays, f)


def _from_list(params, order):
    """The sequel's list of arrays as a dict, entry i under ``order[i]``; an entry named
    ``"NAME.T"`` is the transpose of the parameter NAME (a tied output layer) and must equal it."""
    if order is None:
        raise BookParamsError(f"the parameters are a list of {len(params)} arrays (the sequel's save_params); "
                              f"say which parameter each is with order=... (the model module's book_order())")
    if len(params) != len(order):
        raise BookParamsError(f"the list holds {len(params)} arrays, but the order names {len(order)}: "
                              f"{', '.join(order)}")
    named = {k: np.asarray(v) for k, v in zip(order, params) if not k.endswith(".T")}
    for k, v in zip(order, params):
        if k.endswith(".T"):
            tied = named.get(k[:-2])
            if tied is None or np.shape(v) != tied.T.shape or not np.array_equal(np.asarray(v), tied.T):
                raise BookParamsError(f"entry {order.index(k)} ({k}, shape {np.shape(v)}) should be the transpose "
                                      f"of {k[:-2]} (shape {None if tied is None else tied.shape}), but is not")
    return named


def fit_params(model, params, dtype=None, *, order=None):
    """``params`` as ``model``'s parameter pytree: the same keys and shapes, cast to the model's
    dtypes (or to ``dtype``).

    Args:
      model: a ``Model``.
      params: a dict keyed as the model's parameters, or the sequel's list of arrays
        (``load_book_params`` of its ``save_params`` file, float16).
      dtype: the dtype to cast to (default: the model's).
      order: for a list, the key of each entry, in the sequel's order
        (``rnnlm.book_order()``, ``seq2seq.BOOK_ORDER``).
    Raises:
      BookParamsError: one line listing every key missing, unexpected or of another shape.
    """
    if isinstance(params, list):
        params = _from_list(params, tuple(order) if order is not None else None)
    expected, _ = jax.eval_shape(model.init, jax.random.key(0))
    if not isinstance(params, dict) or not isinstance(expected, dict):
        raise BookParamsError(f"the parameters are a {type(params).__name__}; this model takes a dict keyed "
                              f"{sorted(expected) if isinstance(expected, dict) else type(expected).__name__}")
    problems = [f"missing {k} {tuple(expected[k].shape)}" for k in expected if k not in params]
    problems += [f"unexpected {k} {tuple(np.shape(params[k]))}" for k in params if k not in expected]
    problems += [f"{k} is {tuple(np.shape(params[k]))}, the model's {tuple(expected[k].shape)}"
                 for k in expected if k in params and tuple(np.shape(params[k])) != tuple(expected[k].shape)]
    if problems:
        raise BookParamsError("the parameters do not fit the model: " + "; ".join(problems))
    kinds = {k: np.asarray(params[k]).dtype for k in expected}
    bad = [f"{k} holds {kinds[k]}" for k in expected if not jax.numpy.issubdtype(kinds[k], jax.numpy.floating)]
    if bad:
        raise BookParamsError("the parameters must be floating-point numbers: " + "; ".join(bad))
    with np.errstate(over="ignore", invalid="ignore"):  # a value the dtype cannot hold is named below
        fitted = {k: jax.numpy.asarray(params[k], dtype or expected[k].dtype) for k in expected}
    bad = [f"{k} has {n} of {fitted[k].size}" for k in expected
           if (n := int(jax.numpy.sum(~jax.numpy.isfinite(fitted[k]))))]
    if bad:
        raise BookParamsError("the parameters hold NaN or infinite values"
                              + (f" in {np.dtype(dtype)}" if dtype is not None else "") + ": " + "; ".join(bad))
    return fitted
