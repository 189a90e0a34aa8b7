"""The arguments of a check, flat: which leaves are checked, passed as arrays, or held as settings."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._jaxpr import _is_leaf, leaf_names

_SETTING_TYPES = (bool, int, str)


def is_array(leaf):
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, complex)) and not isinstance(leaf, bool) \
        or isinstance(leaf, jax.ShapeDtypeStruct)


def _kind(leaf):
    """How a leaf takes part: "float" (checked), "array" (passed as an array, not checked) or
    "static" (a Python setting, a callable, a string: passed unchanged, not checked)."""
    if not is_array(leaf):
        return "static"
    return "float" if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) else "array"


def _static_reason(leaf):
    if isinstance(leaf, _SETTING_TYPES):
        return f"a Python {type(leaf).__name__}, a setting"
    if callable(leaf):
        return "a callable, passed unchanged"
    return f"a {type(leaf).__name__}, passed unchanged"


def _refuse_number_lists(name, tree):
    """A Python list of numbers is refused: f may want an array or a list of arrays; say which."""
    def visit(node, path):
        if isinstance(node, list) and node and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in node) and any(isinstance(v, float) for v in node):
            raise TypeError(f"gradcheck: {name}{path} is a Python list of numbers ({node[:3]}...); pass an "
                            f"array (jnp.asarray) or a list of arrays, whichever f expects")
        if isinstance(node, (list, tuple)):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]")
        elif isinstance(node, dict):
            for k, v in node.items():
                visit(v, f"{path}[{k!r}]")
    visit(tree, "")



@dataclasses.dataclass
class _Leaves:
    """Every leaf of every argument, flat, and how each takes part."""
    tree: object  # the treedef of the tuple of arguments
    values: list  # leaves: arrays (jnp) for "float"/"array", the objects themselves for "static"
    kinds: list  # "float", "array" or "static"
    names: list
    axes: list  # batched: the batch axis of each leaf (None: shared or not batched)

    def call(self, fn, values):
        return fn(*jax.tree_util.tree_unflatten(self.tree, values))


def _arg_names(f, n):
    """``f``'s parameter names for its first ``n`` arguments (``arg{i}`` where it has none)."""
    try:
        params = [p for p in inspect.signature(f).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[i].name if i < len(params) else f"arg{i}" for i in range(n)]


def split(f, args, argnums, held, batched, in_axes):
    all_names = leaf_names(f, list(args), range(len(args)))
    arg_names = _arg_names(f, len(args))
    names_by_arg, at = [], 0
    for a in args:
        n = len(jax.tree_util.tree_leaves(a))
        names_by_arg.append(all_names[at:at + n])
        at += n
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    values, kinds, names, leaf_axes, skipped = [], [], [], [], []
    for i, a in enumerate(args):
        _refuse_number_lists(arg_names[i], a)
        top = _is_leaf(a)
        for name, leaf in zip(names_by_arg[i], jax.tree_util.tree_leaves(a)):
            kind = "static" if i in held else _kind(leaf)
            if kind != "static":
                leaf = jnp.asarray(leaf)
            values.append(leaf)
            kinds.append(kind)
            names.append(name)
            leaf_axes.append(axes[i] if batched and kind != "static" else None)
            if i not in argnums and top:
                continue
            label = f"argument {i}" if top else name
            if kind == "static":
                skipped.append(f"{label} ({_static_reason(leaf)})")
            elif kind == "array" and i in argnums:
                skipped.append(f"{name} (integer or bool)")
    tree = jax.tree_util.tree_structure(tuple(args))
    return _Leaves(tree, values, kinds, names, leaf_axes), skipped


def refuse_complex(args):
    for i, a in enumerate(args):
        for leaf in jax.tree_util.tree_leaves(a):
            if is_array(leaf) and jnp.iscomplexobj(leaf):
                raise TypeError(
                    f"gradcheck: argument {i} is complex ({jnp.result_type(leaf)}, shape {jnp.shape(leaf)}); "
                    f"complex inputs are not checked directly. Check the real and imaginary parts as two "
                    f"real arguments: gradcheck(lambda re, im: f(re + 1j * im), x.real, x.imag)")
