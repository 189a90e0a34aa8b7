"""A function's computation with every floating dtype raised to float64.

Mixed-precision code casts inside the function (``x.astype(jnp.bfloat16)``,
the loss back to ``float32``), so giving it float64 inputs does not make it
compute in float64. ``raised(f)`` traces ``f`` and evaluates its jaxpr again
with each cast to a floating dtype, each floating literal and constant, and
each matrix product's ``preferred_element_type`` raised to float64; bodies of
``jit``, ``checkpoint``, ``scan``, ``cond`` and ``while_loop`` are raised in
turn, and a ``custom_vjp`` keeps its hand rule (its backward, a Python
function, runs on float64 values). A construct it does not know raises
``NotImplementedError``, and the caller says the references stayed in the
inputs' precision.
"""

import jax
import jax.numpy as jnp
from jax._src import ad_util
from jax.extend import core as jcore

from backprop_jax.checking._jaxpr import _CALLS, bind, call_body, layer_body, layer_name, open_body, run_fwd

_F64 = jnp.float64
# Primitives whose params name a dtype to raise.
_DTYPE_PARAMS = {"convert_element_type": "new_dtype", "iota": "dtype", "dot_general": "preferred_element_type",
                 "full": "dtype"}
_UNRAISABLE = ("bitcast_convert_type", "reduce_precision_bits")


def _is_low_float(dtype):
    return dtype is not None and jnp.issubdtype(dtype, jnp.floating) and jnp.dtype(dtype) != _F64


def _raise_value(v):
    if hasattr(v, "dtype") and jnp.issubdtype(v.dtype, jnp.floating) and jnp.dtype(v.dtype) != _F64:
        return jnp.asarray(v, _F64)
    return v


def lowers_precision(closed):
    """True if the traced function casts to a floating dtype other than float64 anywhere inside."""
    for eqn in closed.jaxpr.eqns:
        name = _DTYPE_PARAMS.get(eqn.primitive.name)
        if name and _is_low_float(eqn.params.get(name)):
            return True
        if eqn.primitive.name == "reduce_precision":
            return True
        for value in eqn.params.values():
            inner = value if isinstance(value, (tuple, list)) else (value,)
            for body in inner:
                if isinstance(body, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                    jaxpr, consts = open_body(body)
                    if lowers_precision(jcore.ClosedJaxpr(jaxpr, consts)):
                        return True
        if eqn.primitive.name.startswith("custom_") and lowers_precision(layer_body(eqn)):
            return True
    return False


def evaluate(closed, args):
    """``closed`` evaluated on ``args`` with every floating dtype raised to float64 (flat outputs)."""
    env = {}

    def read(v):
        return _raise_value(v.val) if isinstance(v, jcore.Literal) else env[v]

    for var, val in zip(closed.jaxpr.constvars, closed.consts):
        env[var] = _raise_value(val)
    for var, val in zip(closed.jaxpr.invars, args):
        env[var] = _raise_value(val)
    for eqn in closed.jaxpr.eqns:
        outs = _eqn(eqn, [read(v) for v in eqn.invars])
        for var, val in zip(eqn.outvars, outs):
            if not isinstance(var, jcore.DropVar):
                env[var] = val
    return [read(v) for v in closed.jaxpr.outvars]


def _closed(body):
    jaxpr, consts = open_body(body)
    return jcore.ClosedJaxpr(jaxpr, consts)


def _eqn(eqn, invals):
    name, params = eqn.primitive.name, eqn.params
    if name in _UNRAISABLE:
        raise NotImplementedError(f"{name} reinterprets bits and cannot be raised to float64")
    if name == "reduce_precision":
        return [invals[0]]
    body = call_body(eqn)
    if body is not None or name in _CALLS:
        found = _closed(body if body is not None else next(v for v in params.values()
                                                           if isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr))))
        # jit and checkpoint stay what they were, so the rules inside are named in the same places.
        if name == "pjit":
            return jax.jit(lambda *a: evaluate(found, a))(*invals)
        if name in ("remat", "remat2", "checkpoint"):
            return jax.checkpoint(lambda *a: evaluate(found, a), policy=params.get("policy"),
                                  prevent_cse=params.get("prevent_cse", True))(*invals)
        return evaluate(found, invals)
    if name.startswith("custom_jvp"):
        return evaluate(_closed(layer_body(eqn)), invals)
    if name.startswith("custom_vjp"):
        return _custom_vjp(eqn, invals)
    if name == "scan":
        return _scan(params, invals)
    if name == "cond":
        return _cond(params, invals)
    if name == "while":
        return _while(params, invals)
    if any(isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)) or (
            isinstance(v, (tuple, list)) and any(isinstance(b, (jcore.Jaxpr, jcore.ClosedJaxpr)) for b in v))
           for v in params.values()):
        raise NotImplementedError(f"{name} holds a body that cannot be raised to float64 here")
    key = _DTYPE_PARAMS.get(name)
    if key and _is_low_float(params.get(key)):
        eqn = eqn.replace(params={**params, key: _F64})
    return bind(eqn, invals)


def _custom_vjp(eqn, invals):
    """The rule rebuilt on float64: primal and fwd raised, the hand backward run on float64 values."""
    params = eqn.params
    call_jaxpr, n_consts, bwd_fun = params["call_jaxpr"], params["num_consts"], params["bwd"]
    in_avals = [v.aval for v in eqn.invars]

    def primal(*xs):
        return evaluate(call_jaxpr, xs)

    primal.__name__ = primal.__qualname__ = layer_name(eqn)  # the rule keeps its name in reports
    rule = jax.custom_vjp(primal)

    def rule_fwd(*xs):
        out, res = run_fwd(eqn, xs[n_consts:], evaluate)
        return out, (res, xs)

    def rule_bwd(saved, cts):
        res, xs = saved
        got = bwd_fun.call_wrapped(*res, *cts)
        out = []
        for g, x, aval in zip(got, xs[n_consts:], in_avals[n_consts:]):
            if not jnp.issubdtype(aval.dtype, jnp.inexact):
                out.append(None)
            elif isinstance(g, ad_util.Zero):
                out.append(jnp.zeros(jnp.shape(x), jnp.result_type(x)))
            else:
                out.append(jnp.asarray(g, jnp.result_type(x)))
        return (*[None if not jnp.issubdtype(a.dtype, jnp.inexact) else jnp.zeros(jnp.shape(x), jnp.result_type(x))
                  for a, x in zip(in_avals[:n_consts], xs[:n_consts])], *out)

    rule.defvjp(rule_fwd, rule_bwd)
    return rule(*invals)


def _scan(params, invals):
    n_consts, n_carry = params["num_consts"], params["num_carry"]
    body = _closed(params["jaxpr"])
    consts, carry, xs = invals[:n_consts], invals[n_consts:n_consts + n_carry], invals[n_consts + n_carry:]

    def step(c, x):
        outs = evaluate(body, [*consts, *c, *x])
        return outs[:n_carry], outs[n_carry:]

    carry, ys = jax.lax.scan(step, list(carry), list(xs), length=params["length"], reverse=params["reverse"],
                             unroll=params.get("unroll", 1))
    return [*carry, *ys]


def _cond(params, invals):
    branches = [_closed(b) for b in params["branches"]]
    index, operands = invals[0], invals[1:]
    return jax.lax.switch(index, [lambda *ops, b=b: evaluate(b, ops) for b in branches], *operands)


def _while(params, invals):
    cn, bn = params["cond_nconsts"], params["body_nconsts"]
    cond, body = _closed(params["cond_jaxpr"]), _closed(params["body_jaxpr"])
    cconsts, bconsts, init = invals[:cn], invals[cn:cn + bn], invals[cn + bn:]
    return jax.lax.while_loop(lambda c: evaluate(cond, [*cconsts, *c])[0],
                              lambda c: evaluate(body, [*bconsts, *c]), list(init))


def raised(f):
    """``f`` (a function of a list of arrays) computing in float64 throughout; see the module."""
    def wrapped(values):
        closed, shape = jax.make_jaxpr(f, return_shape=True)(values)
        out = evaluate(closed, jax.tree_util.tree_leaves(values))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)
    return wrapped

