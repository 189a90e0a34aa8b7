"""The one jaxpr walker: what ``without_hand_rules`` and ``graph`` both need to read a traced function.

A traced function is a jaxpr whose equations are primitives, calls
(``jit``, ``closed_call``, ``remat``) with a body inside, and our layers, each
a ``custom_vjp_call`` holding the forward computation as its body.
"""

import inspect

import jax
from jax.extend import core as jcore

# Call primitives whose body is walked into, by the name of the param holding
# the body. Custom rules nested inside control flow (scan, cond, while) are
# left in place.
_CALL_BODIES = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr",
                "core_call": "call_jaxpr", "remat": "jaxpr", "checkpoint": "jaxpr"}
_CUSTOM_VJP = ("custom_vjp_call", "custom_vjp_call_jaxpr")


def is_layer(eqn):
    """True if ``eqn`` calls a function with a hand-written rule (a ``custom_vjp``)."""
    return eqn.primitive.name in _CUSTOM_VJP


def layer_body(eqn):
    """The forward computation inside a ``custom_vjp`` call, as a (closed) jaxpr."""
    return eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))


def layer_name(eqn):
    """The name of the Python function a ``custom_vjp`` call was made from: ``affine``, ``relu``, ..."""
    return layer_body(eqn).jaxpr.debug_info.func_name


def call_body(eqn):
    """The body of a call primitive (``jit``, ``closed_call``, ``remat``, ...), or None for any other."""
    param = _CALL_BODIES.get(eqn.primitive.name)
    return None if param is None else eqn.params.get(param)


def open_body(body):
    """``(jaxpr, consts)`` of a closed or open jaxpr."""
    if isinstance(body, jcore.ClosedJaxpr):
        return body.jaxpr, body.consts
    return body, []


def literal_or(env, var):
    """The value of ``var``: a literal's own, else ``env[var]``."""
    return var.val if isinstance(var, jcore.Literal) else env[var]


def bind(eqn, invals):
    """Applies ``eqn``'s primitive to ``invals`` as ``jax.core.eval_jaxpr`` does; returns a list."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns = ()
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def leaf_names(f, args, argnums):
    """Readable names for the array leaves of ``args[i]``, ``i`` in ``argnums``: ``x``, ``W1``, ``params.W1``."""
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    names = []
    several = sum(1 for i in argnums if jax.tree_util.tree_leaves(args[i]) != [args[i]]) > 1
    for i in argnums:
        argname = params[i] if i < len(params) and not params[i].startswith("*") else f"arg{i}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(args[i])[0]:
            key = jax.tree_util.keystr(path, simple=True, separator=".")
            if not key:
                names.append(argname)
            else:
                names.append(f"{argname}.{key}" if several else key)
    return names
