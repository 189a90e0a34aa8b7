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

from backprop_jax.checking._jaxpr import bind, call_body, is_layer, layer_body, literal_or, open_body


def _eval(jaxpr, consts, args):
    env = {}
    read = functools.partial(literal_or, env)
    for var, val in zip(jaxpr.constvars, consts):
        env[var] = val
    for var, val in zip(jaxpr.invars, args):
        env[var] = val
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        body = layer_body(eqn) if is_layer(eqn) else call_body(eqn)
        outvals = bind(eqn, invals) if body is None else _eval(*open_body(body), invals)
        for var, val in zip(eqn.outvars, outvals):
            env[var] = val
    return [read(v) for v in jaxpr.outvars]


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
