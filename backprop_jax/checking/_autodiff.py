"""The same function with its hand-written rules taken out.

``without_hand_rules(f)`` traces ``f`` to a jaxpr and evaluates it again with
every custom rule (``custom_vjp`` and ``custom_jvp``, at any depth: inside
``jit``, ``scan``, ``cond``/``switch``, ``while_loop``, ``checkpoint``,
``shard_map``, ``vmap``, another rule's forward) replaced by the plain forward
computation inside it, so JAX differentiates that forward automatically.
Comparing ``jax.grad(f)`` with ``jax.grad(without_hand_rules(f))`` compares
the hand derivation with automatic differentiation of the very same forward
computation, for a single layer or a whole network.
"""

import functools

import jax

from backprop_jax.checking._jaxpr import eval_closed, strip_rules


def without_hand_rules(f):
    """Returns ``f`` with every custom rule inside it replaced by autodiff of its forward.

    The returned function computes the same values as ``f``; its gradients
    come from JAX's automatic differentiation of the forward computations,
    not from the hand-written rules. Every ``custom_vjp`` and ``custom_jvp``
    is removed wherever it sits: in ``jit``, ``lax.scan`` (and ``fori_loop``),
    ``lax.cond``/``switch``, ``lax.while_loop``, ``jax.checkpoint`` (with or
    without a policy), ``shard_map``, ``vmap``, or inside another rule's
    forward. JAX's own custom rules (``jax.nn.relu``, ``jnp.logaddexp``) are
    removed too. A rule whose forward has no automatic derivative (a
    ``pure_callback``) is kept; ``hand_rules`` lists it.

    Args:
      f: a function of array pytrees.
    Returns:
      A function with ``f``'s signature (positional arguments only).
    """
    @functools.wraps(f)
    def plain(*args):
        closed, out_shape = jax.make_jaxpr(f, return_shape=True)(*args)
        stripped, _ = strip_rules(closed)
        out = eval_closed(stripped, jax.tree_util.tree_leaves(args))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(out_shape), out)

    return plain


def hand_rules(f, *args):
    """What ``without_hand_rules(f)`` replaces at ``args``: a ``HandRules``.

    ``str(hand_rules(f, x))`` reads like
    ``replaced by autodiff: sigmoid x3 (in scan), softplus x1 (custom_jvp)``,
    followed by the rules and constructs kept (and so not compared), if any.
    """
    return strip_rules(jax.make_jaxpr(f)(*args))[1]
