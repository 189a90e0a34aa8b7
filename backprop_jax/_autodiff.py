"""The same function with its hand-written backward rules taken out.

``without_hand_rules(f)`` traces ``f`` to a jaxpr and evaluates it again with
every ``custom_vjp`` call replaced by the plain forward computation inside it,
so JAX differentiates that forward automatically. Comparing ``jax.grad(f)``
with ``jax.grad(without_hand_rules(f))`` compares the hand derivation with
automatic differentiation of the very same forward computation, for a single
layer or a whole network.
"""

import functools

import jax
from jax.extend import core as jcore

# Higher-order primitives whose body we walk into, by the name of the param
# holding the body. Custom rules nested inside other control flow (scan, cond,
# while) are left in place.
_CALL_BODIES = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr",
                "core_call": "call_jaxpr", "remat": "jaxpr", "checkpoint": "jaxpr"}
_CUSTOM_VJP = ("custom_vjp_call", "custom_vjp_call_jaxpr")


def bind(eqn, invals):
    """Applies ``eqn``'s primitive to ``invals`` as ``jax.core.eval_jaxpr`` does; returns a list."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns = ()
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _eval(jaxpr, consts, args):
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    for var, val in zip(jaxpr.constvars, consts):
        env[var] = val
    for var, val in zip(jaxpr.invars, args):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name in _CUSTOM_VJP:
            body = eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))
            outvals = _eval_closed(body, invals)
        elif name in _CALL_BODIES and _CALL_BODIES[name] in eqn.params:
            outvals = _eval_closed(eqn.params[_CALL_BODIES[name]], invals)
        else:
            outvals = bind(eqn, invals)
        for var, val in zip(eqn.outvars, outvals):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


def _eval_closed(closed, args):
    if isinstance(closed, jcore.ClosedJaxpr):
        return _eval(closed.jaxpr, closed.consts, args)
    return _eval(closed, [], args)


def without_hand_rules(f):
    """Returns ``f`` with every ``custom_vjp`` rule inside it replaced by autodiff.

    The returned function computes the same values as ``f``; its gradients
    come from JAX's automatic differentiation of the forward computations,
    not from the hand-written backward rules. Rules inside ``jit`` are
    reached; rules inside ``lax.scan``, ``lax.cond`` or ``lax.while_loop``
    bodies are kept.

    Args:
      f: a function of array pytrees.
    Returns:
      A function with ``f``'s signature (positional arguments only).
    """
    @functools.wraps(f)
    def plain(*args):
        closed, out_shape = jax.make_jaxpr(f, return_shape=True)(*args)
        flat_args = jax.tree_util.tree_leaves(args)
        out = _eval(closed.jaxpr, closed.consts, flat_args)
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return plain
