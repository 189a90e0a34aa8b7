"""Each hand rule on its own: did it run here, and is the whole rule right?

``instrumented(f, log)`` is ``f`` with every ``custom_vjp`` (at any depth) run
through a wrapper that computes exactly what the rule computes and, beside it,
reports to ``log`` what a rule-level test checks (as ChainRulesTestUtils'
``test_rrule`` does for Julia):

- whether the rule was exercised: it received a non-zero cotangent;
- whether its ``fwd`` returns what its primal returns;
- whether every cotangent has its primal's dtype (JAX itself checks shapes,
  and accepts any floating dtype);
- whether its backward is linear in the cotangent:
  ``bwd(a g1 + b g2) = a bwd(g1) + b bwd(g2)``;
- how far its backward is from automatic differentiation of its primal at
  the very inputs it met (the local disagreement, which names a rule);
- with ``dot=True``, the dot-product test ``<J u, v> = <u, J^T v>`` for
  random ``u`` and ``v``: ``J u`` by forward mode through its primal with the
  rules taken out, ``J^T v`` by its backward, beside the inputs met (moved by
  a relative 1e-4, off any tie or kink, where the derivative is one value).
  It needs no differences, so it is exact up to rounding, and ``v`` reaches
  every output: it catches a backward that is right only for the cotangents
  ``f`` happens to send it (all ones under a sum, none on an unused output).

``keep_one(f, key)`` is ``f`` with every rule replaced by autodiff except the
rules named ``key``: the gradient it gives differs from the all-autodiff one
exactly where that rule does. ``RuleLogs`` turns what the rules reported into
one ``RuleCheck`` per rule.
"""

import collections
import dataclasses
import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import ad_util
from jax.extend import core as jcore

from backprop_jax.checking._jaxpr import (
    _DISPLAY, _inline, bodies, eval_closed, is_layer, layer_name, map_bodies, rule_kind, run_fwd, strip_rules)
from backprop_jax.checking._policy import rule_tolerance
from backprop_jax.checking._report import RuleCheck
from backprop_jax.layers._deviations import DEVIATIONS

# Linear combination used for the linearity test: a * g1 + b * g2.
_A, _B = 0.75, -1.25


@dataclasses.dataclass
class RuleLog:
    """What the wrapped rules reported, by rule (``(name, kind, where)``), maxima over every call."""
    exercised: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(bool))
    fwd: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(float))  # max rel |fwd - primal|
    linear: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(float))  # max rel deviation
    local: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(float))  # max rel |bwd - autodiff|
    dot: dict = dataclasses.field(default_factory=dict)  # max rel |<J u, v> - <u, J^T v>| (with dot=True)
    dtypes: dict = dataclasses.field(default_factory=dict)  # key -> "argument 1: float64 for float32"
    skipped: dict = dataclasses.field(default_factory=dict)  # key -> why the rule was not wrapped
    dtype_of: dict = dataclasses.field(default_factory=dict)  # key -> the least precise cotangent dtype
    order: list = dataclasses.field(default_factory=list)  # keys in the order first met

    def met(self, key):
        if key not in self.order:
            self.order.append(key)

    def record(self, table, key, value):
        value = np.asarray(value, np.float64)  # under vmap, one value per example
        value = float(np.max(np.where(np.isfinite(value), value, np.inf), initial=0.0))
        table[key] = max(table.get(key, 0.0), value)

    def ran(self, key, nonzero):
        self.exercised[key] = self.exercised[key] or bool(np.any(nonzero))

    def saw(self, key, dtype):
        """The least precise dtype a rule's cotangents had (its own tolerance follows from it)."""
        old = self.dtype_of.get(key)
        if old is None or jnp.finfo(dtype).eps > jnp.finfo(old).eps:
            self.dtype_of[key] = jnp.dtype(dtype).name


def _rel(a, b):
    """max |a - b| / max(|b|, tiny), in float32 or wider; inf where a non-finite value appears on one side."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    wide = jnp.promote_types(jnp.result_type(a, b), jnp.float32)
    a, b = a.astype(wide), b.astype(wide)
    scale = jnp.maximum(jnp.max(jnp.abs(b), initial=0.0), jnp.finfo(wide).tiny)
    diff = jnp.where(jnp.isfinite(a) & jnp.isfinite(b), jnp.abs(a - b), jnp.where(a == b, 0.0, jnp.inf))
    return jnp.max(diff, initial=0.0) / scale


def _largest(values):
    """The largest of ``values`` (0 for none), folded from the values themselves."""
    values = [jnp.asarray(v, jnp.float32) for v in values]
    return functools.reduce(jnp.maximum, values) if values else jnp.float32(0)


def _pattern(shape, dtype, seed):
    """A fixed cotangent with no structure a rule could share: multiples of 1/8 in [-1, 1], exact in
    every floating dtype, so that XLA computing it twice (in two fusions) cannot give two values.
    Cheaper to compile than a PRNG draw."""
    i = jnp.arange(int(np.prod(shape)), dtype=jnp.int32)
    return (((i * 7919 + seed) % 17 - 8).astype(dtype) / 8).reshape(shape)


class MalformedRule(TypeError):
    """A ``custom_vjp`` whose ``fwd`` or ``bwd`` JAX refuses (a wrong structure, shape or dtype)."""


def _malformed(key, part, error):
    """JAX's complaint about a rule's ``part`` on one line, naming the rule and where it sits."""
    name, _, where = key
    text = " ".join(str(error).split("--------------------")[0].split())
    text = text.split(" but ", 1)[-1]  # JAX's preamble restates the contract
    if text.startswith("instead of a pair"):
        text = "it returns" + text.split(" produced", 1)[-1].rstrip(".") + ", not a pair (output, residuals)"
    text = text.removeprefix("instead ")
    inside = f" (in {' > '.join(where)})" if where else ""
    return MalformedRule(f"gradcheck: the {part} of the rule `{name}`{inside} is malformed: {text}")


def _refused(error):
    return isinstance(error, (TypeError, ValueError)) and "Custom VJP" in str(error)


def _zeros_for(aval):
    return jnp.zeros(aval.shape, aval.dtype)


def _is_float(aval):
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _nonzero_pattern(shape, dtype, seed):
    """Like ``_pattern``, never 0: odd multiples of 1/16 in (-1, 1), so that every element takes part."""
    i = jnp.arange(int(np.prod(shape)), dtype=jnp.int32)
    return ((2 * ((i * 7919 + seed) % 16) - 15).astype(dtype) / 16).reshape(shape)


def _dot_product(eqn, plain_body, xs, n_consts, cts, call_bwd, seed):
    """``|<J u, v> - <u, J^T v>| / (|J u| . |v| + |u| . |J^T v|)`` for the rule of ``eqn`` beside the
    inputs ``xs``: ``J u`` by ``jax.jvp`` of its primal without rules, ``J^T v`` by its backward."""
    floats = [i for i in range(n_consts, len(xs)) if _is_float(xs[i])]
    near = list(xs)
    for i in floats:  # off any tie or kink: each value moved by its own small, non-zero amount
        x = xs[i]
        shift = max(1e-4, 16 * float(jnp.finfo(x.dtype).eps))
        near[i] = x + (shift * (jnp.abs(x) + 1) * _nonzero_pattern(x.shape, x.dtype, seed + 101 + i)).astype(x.dtype)
    _, res = run_fwd(eqn, near[n_consts:], eval_closed)

    def primal(*values):
        args = list(near)
        for i, v in zip(floats, values):
            args[i] = v
        return eval_closed(plain_body, args)

    us = [_nonzero_pattern(xs[i].shape, xs[i].dtype, seed + 211 + i) for i in floats]
    _, ju = jax.jvp(primal, [near[i] for i in floats], us)
    vs = [_nonzero_pattern(c.shape, c.dtype, seed + 307 + k) if _is_float(c) else c for k, c in enumerate(cts)]
    jtv = call_bwd(res, vs)
    wide = lambda a: jnp.asarray(a, jnp.promote_types(a.dtype, jnp.float32))  # noqa: E731
    left = [(wide(a), wide(v)) for a, v in zip(ju, vs) if _is_float(v)]  # <J u, v>
    right = [(wide(u), wide(jtv[i - n_consts])) for u, i in zip(us, floats) if jtv[i - n_consts] is not None]
    lhs, rhs = (_largest([]) + sum(jnp.vdot(a, b) for a, b in pairs) for pairs in (left, right))
    scale = _largest([]) + sum(jnp.vdot(jnp.abs(a), jnp.abs(b)) for a, b in left + right)
    rel = jnp.abs(lhs - rhs) / jnp.maximum(scale, jnp.finfo(jnp.float32).tiny)
    # A point moved out of f's domain (a log at 0) says nothing; the columns judge the point itself.
    return jnp.where(jnp.isfinite(lhs) & jnp.isfinite(rhs) & jnp.isfinite(scale), rel, 0.0)


def _wrap(eqn, key, log, dot=False):
    """A ``custom_vjp`` computing what ``eqn``'s rule computes, reporting to ``log`` about it."""
    params = eqn.params
    call_jaxpr, n_consts, bwd_fun = params["call_jaxpr"], params["num_consts"], params["bwd"]
    in_avals = [v.aval for v in eqn.invars]
    primal_avals = in_avals[n_consts:]
    plain_body = strip_rules(call_jaxpr)[0]  # the primal with any rules inside it taken out

    def report(table):
        return lambda value: log.record(table, key, value)

    @jax.custom_vjp
    def rule(*xs):
        return eval_closed(call_jaxpr, xs)

    def rule_fwd(*xs):
        try:
            out, res = run_fwd(eqn, xs[n_consts:], eval_closed)
        except (TypeError, ValueError) as e:
            if _refused(e):
                raise _malformed(key, "fwd", e) from None
            raise
        want = eval_closed(call_jaxpr, xs)
        worst = _largest([_rel(o, w) for o, w in zip(out, want)])
        jax.debug.callback(report(log.fwd), worst)
        return out, (res, xs)

    def call_bwd(res, cts):
        got = bwd_fun.call_wrapped(*res, *cts)
        return [None if isinstance(g, ad_util.Zero) else g for g in got]

    seed = zlib.crc32(repr(key).encode()) % 997

    def rule_bwd(saved, cts):
        res, xs = saved
        cts = list(cts)
        try:
            got = call_bwd(res, cts)
        except (TypeError, ValueError) as e:
            if _refused(e):
                raise _malformed(key, "bwd", e) from None
            raise
        for i, (g, aval) in enumerate(zip(got, primal_avals)):  # at trace time: the dtypes
            if g is not None and _is_float(aval) and jnp.dtype(g.dtype) != jnp.dtype(aval.dtype):
                log.dtypes.setdefault(key, f"argument {i}: a {jnp.dtype(g.dtype).name} cotangent for a "
                                           f"{jnp.dtype(aval.dtype).name} input")
            if g is not None and jnp.issubdtype(g.dtype, jnp.inexact):
                log.saw(key, g.dtype)  # a less precise cotangent rounds; its own checks follow its epsilon
        nonzero = _largest([jnp.any(c != 0) for c in cts])
        jax.debug.callback(lambda v: log.ran(key, v), nonzero)
        for c in cts:
            if jnp.issubdtype(c.dtype, jnp.inexact):
                log.saw(key, c.dtype)
        # Linearity: the rule at a * g1 + b * g2 against a * rule(g1) + b * rule(g2), g2 drawn at random.
        g2 = [_pattern(c.shape, c.dtype, seed + i) for i, c in enumerate(cts)]
        mixed = call_bwd(res, [(_A * c + _B * d).astype(c.dtype) for c, d in zip(cts, g2)])
        other = call_bwd(res, g2)
        deviations = []
        for m, g, o in zip(mixed, got, other):
            like = next((v for v in (m, g, o) if v is not None), None)
            if like is None:
                continue
            m, g, o = (jnp.zeros_like(like) if v is None else v for v in (m, g, o))
            deviations.append(_rel(m, _A * g + _B * o))
        jax.debug.callback(report(log.linear), _largest(deviations))
        # The local disagreement: autodiff of the primal at the inputs this call met.
        _, vjp = jax.vjp(lambda *a: eval_closed(plain_body, a), *xs)
        auto = vjp(cts)[n_consts:]
        jax.debug.callback(report(log.local), _largest([_rel(_zeros_for(aval) if g is None else g, a)
                                                        for g, a, aval in zip(got, auto, primal_avals)
                                                        if _is_float(aval)]))
        if dot:
            jax.debug.callback(report(log.dot), _dot_product(eqn, plain_body, xs, n_consts, cts, call_bwd, seed))
        out = [None if not _is_float(aval) else (_zeros_for(aval) if g is None else g.astype(aval.dtype))
               for g, aval in zip(got, in_avals[n_consts:])]
        return (*[None if not _is_float(a) else _zeros_for(a) for a in in_avals[:n_consts]], *out)

    rule.defvjp(rule_fwd, rule_bwd)
    return rule, in_avals


class _Instrumenter:
    def __init__(self, log, dot=False):
        self.log, self.dot = log, dot

    def closed(self, closed, where):
        return jcore.ClosedJaxpr(self.jaxpr(closed.jaxpr, where), closed.consts)

    def jaxpr(self, jaxpr, where):
        sub, eqns = {}, []

        def read(a):
            return a if isinstance(a, jcore.Literal) else sub.get(a, a)

        for eqn in jaxpr.eqns:
            invars = [read(v) for v in eqn.invars]
            if is_layer(eqn):
                key = (layer_name(eqn), rule_kind(eqn), where)
                self.log.met(key)
                if eqn.params.get("symbolic_zeros"):
                    self.log.skipped[key] = "its backward takes symbolic zeros"
                    eqns.append(eqn.replace(invars=invars))
                    continue
                rule, avals = _wrap(eqn, key, self.log, self.dot)
                wrapped = jax.make_jaxpr(rule)(*[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals])
                eqns += _inline(wrapped, invars, eqn.outvars, sub)
                continue
            if list(bodies(eqn.params)) and not eqn.primitive.name.startswith("custom_jvp"):
                shown = _DISPLAY.get(eqn.primitive.name, eqn.primitive.name)
                params = map_bodies(eqn.params, lambda _, b: self.body(b, where + (shown,)))
                eqns.append(eqn.replace(invars=invars, params=params))
                continue
            eqns.append(eqn.replace(invars=invars))
        return jaxpr.replace(eqns=eqns, outvars=[read(v) for v in jaxpr.outvars])

    def body(self, body, where):
        if isinstance(body, jcore.ClosedJaxpr):
            return self.closed(body, where)
        return self.jaxpr(body, where)


def instrumented(f, log, dot=False):
    """``f`` (a function of a list of arrays) with every ``custom_vjp`` reporting to ``log`` (with
    ``dot``, the dot-product test too)."""
    def wrapped(values):
        closed, shape = jax.make_jaxpr(f, return_shape=True)(values)
        out = eval_closed(_Instrumenter(log, dot).closed(closed, ()), jax.tree_util.tree_leaves(values))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)
    return wrapped


def keep_one(f, key):
    """``f`` (a function of a list of arrays) with every rule but those named ``key`` replaced by autodiff."""
    def plain(values):
        closed, shape = jax.make_jaxpr(f, return_shape=True)(values)
        stripped, _ = strip_rules(closed, keep=frozenset([key]))
        out = eval_closed(stripped, jax.tree_util.tree_leaves(values))
        return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shape), out)
    return plain


class RuleLogs:
    """What the rules reported in the inputs' precision (``lo``) and on the float64 copy (``up``)."""

    def __init__(self):
        self.lo, self.up = RuleLog(), RuleLog()
        self.up_note = ""  # why the rules could not be checked on the float64 copy, when they could not

    def checks(self, rules, low, lowest, note):
        """One ``RuleCheck`` per replaced ``custom_vjp``: dtypes and exercise from the inputs' run, the
        rest from the float64 copy where there is one (its tolerances are float64's)."""
        if rules is None or note:
            return []
        sharp = self.up if low else self.lo
        base = "float64" if low else lowest
        out = []
        for use in rules.replaced:
            key = (use.name, use.kind, use.where)
            if use.kind != "custom_vjp":
                continue
            if key in sharp.order and not self.up_note:  # a cotangent less precise than the run rounds
                log, t = sharp, rule_tolerance(max(base, sharp.dtype_of.get(key, base),
                                                   key=lambda d: float(jnp.finfo(d).eps)))
            else:
                log, t = self.lo, rule_tolerance(self.lo.dtype_of.get(key, lowest))
            out.append(RuleCheck(
                name=use.name, where=use.where, exercised=self.lo.exercised.get(key, False),
                fwd=log.fwd.get(key, 0.0), linear=log.linear.get(key, 0.0), local=log.local.get(key, 0.0),
                dot=log.dot.get(key),
                dtype=self.lo.dtypes.get(key, ""), fwd_tol=t, linear_tol=t,
                note=DEVIATIONS.get(use.name, ""), skipped=self.lo.skipped.get(key, ""), key=key))
        return out


