"""The one jaxpr walker: what ``without_hand_rules`` and ``graph`` both need to read a traced function.

A traced function is a jaxpr whose equations are primitives, primitives that
carry bodies of their own (``jit``, ``scan``, ``cond``, ``while``,
``remat``, ``shard_map``, ...: any equation whose params hold a ``Jaxpr`` or
``ClosedJaxpr``), and custom rules: ``custom_vjp_call`` (our layers) and
``custom_jvp_call``, each holding the forward computation as its body.

``strip_rules`` rewrites a jaxpr with every custom rule, at any depth,
replaced by the forward computation inside it. It goes by structure, not by
a list of primitive names: every body found in any equation's params is
rewritten in turn, so a rule inside a scan inside a remat inside a jit is
reached like one at the top.
"""

import collections
import dataclasses
import inspect

import jax
from jax.extend import core as jcore

_CUSTOM_VJP = ("custom_vjp_call", "custom_vjp_call_jaxpr")
_CUSTOM_JVP = ("custom_jvp_call", "custom_jvp_call_jaxpr")
# Primitives whose bodies ``graph`` inlines as if the call were not there: the
# body computes exactly the equation's outputs from its inputs, once.
_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint", "named_call")
# Forwards that have no automatic derivative: a rule around one of them cannot be removed.
_NOT_DIFFERENTIABLE = ("pure_callback", "io_callback")
# How the report names a construct: the name its users write.
_DISPLAY = {"remat2": "checkpoint", "remat": "checkpoint", "pjit": "jit", "closed_call": "call"}

try:  # JAX's table of primitives with a forward-mode rule, to recognise an unknown primitive
    from jax._src.interpreters import ad as _ad
    _HAS_JVP = _ad.primitive_jvps
except (ImportError, AttributeError):  # pragma: no cover - a JAX without it: trust every primitive
    _HAS_JVP = None


def is_rule(eqn):
    """True if ``eqn`` calls a function with a custom rule (``custom_vjp`` or ``custom_jvp``)."""
    return eqn.primitive.name in _CUSTOM_VJP + _CUSTOM_JVP


def is_layer(eqn):
    """True if ``eqn`` calls a function with a hand-written backward (a ``custom_vjp``)."""
    return eqn.primitive.name in _CUSTOM_VJP


def rule_kind(eqn):
    """``"custom_vjp"`` or ``"custom_jvp"``."""
    return "custom_vjp" if is_layer(eqn) else "custom_jvp"


def layer_body(eqn):
    """The forward computation inside a custom rule's call, as a closed jaxpr."""
    return eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))


def layer_name(eqn):
    """The name of the Python function a custom rule was made from: ``affine``, ``relu``, ..."""
    body = layer_body(eqn)
    info = getattr(getattr(body, "jaxpr", body), "debug_info", None)
    return getattr(info, "func_name", None) or eqn.params.get("name") or eqn.primitive.name


def bodies(params):
    """``(key, position, body)`` for every ``Jaxpr``/``ClosedJaxpr`` in ``params``, also inside tuples
    and lists (``cond``'s branches); ``position`` is None for a body that is the param itself."""
    for key, value in params.items():
        if isinstance(value, (jcore.Jaxpr, jcore.ClosedJaxpr)):
            yield key, None, value
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                if isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)):
                    yield key, i, v


def map_bodies(params, fn):
    """``params`` with every body ``b`` found by ``bodies`` replaced by ``fn(key, b)``."""
    new = dict(params)
    for key, value in params.items():
        if isinstance(value, (jcore.Jaxpr, jcore.ClosedJaxpr)):
            new[key] = fn(key, value)
        elif isinstance(value, (tuple, list)) and any(
                isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)) for v in value):
            items = [fn(key, v) if isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)) else v for v in value]
            new[key] = type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return new


def call_body(eqn):
    """The body of a call primitive (``jit``, ``closed_call``, ``remat``, ...), or None for any other."""
    if eqn.primitive.name not in _CALLS:
        return None
    found = list(bodies(eqn.params))
    return found[0][2] if len(found) == 1 else None


def open_body(body):
    """``(jaxpr, consts)`` of a closed or open jaxpr."""
    if isinstance(body, jcore.ClosedJaxpr):
        return body.jaxpr, body.consts
    return body, []


def literal_or(env, var):
    """The value of ``var``: a literal's own, else ``env[var]``."""
    return var.val if isinstance(var, jcore.Literal) else env[var]


def run_fwd(eqn, primals, evaluate):
    """A ``custom_vjp`` call's own ``fwd`` run on ``primals`` by ``evaluate(closed_jaxpr, args)``:
    ``(outputs, residuals)``, the residuals as its ``bwd`` takes them (the inputs the ``fwd``
    passed through, which JAX keeps apart, put back in their places)."""
    fwd_jaxpr, fwd_consts = eqn.params["fwd_jaxpr_thunk"].call_wrapped(*([True] * len(primals)))
    outs = evaluate(jcore.ClosedJaxpr(fwd_jaxpr, fwd_consts), primals)
    _, res_tree, forwards = eqn.params["out_trees"]()
    n_kept = res_tree.num_leaves - sum(f is not None for f in forwards)
    kept = iter(outs[:n_kept])
    return list(outs[n_kept:]), [primals[f] if f is not None else next(kept) for f in forwards]


def bind(eqn, invals):
    """Applies ``eqn``'s primitive to ``invals`` as ``jax.core.eval_jaxpr`` does; returns a list."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns = ()
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def eval_closed(closed, args):
    """Evaluates a closed jaxpr on ``args`` (flat), binding each equation as ``bind`` does."""
    env = {}
    for var, val in zip(closed.jaxpr.constvars, closed.consts):
        env[var] = val
    for var, val in zip(closed.jaxpr.invars, args):
        env[var] = val
    for eqn in closed.jaxpr.eqns:
        for var, val in zip(eqn.outvars, bind(eqn, [literal_or(env, v) for v in eqn.invars])):
            env[var] = val
    return [literal_or(env, v) for v in closed.jaxpr.outvars]


# --- taking the custom rules out --------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RuleUse:
    """A custom rule found in a traced function."""
    name: str  # the Python function the rule was made from: "sigmoid", "affine", ...
    kind: str  # "custom_vjp" or "custom_jvp"
    where: tuple  # the constructs around it, outermost first: ("scan",), ("cond", "remat2"), ()
    count: int  # how many times it runs (a rule in a scan of length 3 runs 3 times; a while body counts once)

    def __str__(self):
        where = f" (in {' > '.join(self.where)})" if self.where else ""
        kind = "" if self.kind == "custom_vjp" else f" ({self.kind})"
        return f"{self.name} x{self.count}{kind}{where}"


@dataclasses.dataclass(frozen=True)
class Kept:
    """A rule, or a construct holding rules, that was left in place: the autodiff side runs it too."""
    name: str
    reason: str
    where: tuple

    def __str__(self):
        where = f" (in {' > '.join(self.where)})" if self.where else ""
        return f"{self.name}{where}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class HandRules:
    """What ``strip_rules`` found: the rules it replaced by their forward, and what it kept."""
    replaced: tuple  # RuleUse, in the order first met
    kept: tuple  # Kept

    def __bool__(self):
        return bool(self.replaced)

    def __str__(self):
        lines = ["replaced by autodiff: " + (", ".join(map(str, self.replaced)) or "nothing")]
        if self.kept:
            lines.append("kept, not compared: " + "; ".join(map(str, self.kept)))
        return "\n".join(lines)


def _not_differentiable(jaxpr):
    """Why the computation in ``jaxpr`` (bodies included) has no automatic derivative, or None."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in _NOT_DIFFERENTIABLE:
            return f"its forward calls {name}, which has no automatic derivative"
        found = list(bodies(eqn.params))
        for _, _, body in found:
            reason = _not_differentiable(open_body(body)[0])
            if reason:
                return reason
        if (_HAS_JVP is not None and not found and not is_rule(eqn) and eqn.primitive not in _HAS_JVP
                and any(jax.numpy.issubdtype(getattr(v.aval, "dtype", int), jax.numpy.inexact)
                        for v in eqn.outvars)):
            return f"its forward uses {name}, a primitive with no automatic derivative"
    return None


class _Stripper:
    def __init__(self, keep=frozenset()):
        self.keep = keep  # (name, kind, where) of the rules left in place on purpose (naming the one to blame)
        self.counts = collections.Counter()  # (name, kind, where) -> runs
        self.order = []
        self.kept = []

    def closed(self, closed, where, times):
        return jcore.ClosedJaxpr(self.jaxpr(closed.jaxpr, where, times), closed.consts)

    def body(self, body, where, times):
        if isinstance(body, jcore.ClosedJaxpr):
            return self.closed(body, where, times)
        return self.jaxpr(body, where, times)

    def jaxpr(self, jaxpr, where, times):
        sub = {}

        def read(a):
            return a if isinstance(a, jcore.Literal) else sub.get(a, a)

        eqns = []
        for eqn in jaxpr.eqns:
            invars = [read(v) for v in eqn.invars]
            if is_rule(eqn):
                body, name = layer_body(eqn), layer_name(eqn)
                reason = _not_differentiable(body.jaxpr)
                if reason:
                    self.kept.append(Kept(f"{name} ({rule_kind(eqn)})", reason, where))
                    eqns.append(eqn.replace(invars=invars))
                    continue
                key = (name, rule_kind(eqn), where)
                if key in self.keep:
                    eqns.append(eqn.replace(invars=invars))
                    continue
                if key not in self.counts:
                    self.order.append(key)
                self.counts[key] += times
                inner = self.closed(body, where, times)  # rules nested in this rule's forward, too
                eqns += _inline(inner, invars, eqn.outvars, sub)
                continue
            found = list(bodies(eqn.params))
            if found:
                name = eqn.primitive.name
                shown = _DISPLAY.get(name, name)
                # A scan body runs `length` times; a while body and a cond branch are counted once.
                inner_times = times * eqn.params.get("length", 1) if name == "scan" else times
                params = map_bodies(eqn.params, lambda _, b: self.body(b, where + (shown,), inner_times))
                eqns.append(eqn.replace(invars=invars, params=params))
                continue
            eqns.append(eqn.replace(invars=invars))
        return jaxpr.replace(eqns=eqns, outvars=[read(v) for v in jaxpr.outvars])

    def rules(self):
        replaced = tuple(RuleUse(n, k, w, self.counts[(n, k, w)]) for n, k, w in self.order)
        return HandRules(replaced=replaced, kept=tuple(self.kept))


def _inline(closed, invars, outvars, sub):
    """The equations of ``closed`` with fresh variables, reading ``invars``; records in ``sub`` what
    each of ``outvars`` now is. The same body may be inlined several times, hence the renaming."""
    ren = dict(zip(closed.jaxpr.invars, invars))
    for var, value in zip(closed.jaxpr.constvars, closed.consts):
        ren[var] = jcore.Literal(value, var.aval)

    def read(a):
        return a if isinstance(a, jcore.Literal) else ren.get(a, a)

    eqns = []
    for eqn in closed.jaxpr.eqns:
        outs = [v if isinstance(v, jcore.DropVar) else jcore.Var(v.aval) for v in eqn.outvars]
        new_in = [read(v) for v in eqn.invars]
        ren.update((v, o) for v, o in zip(eqn.outvars, outs) if not isinstance(v, jcore.DropVar))
        eqns.append(eqn.replace(invars=new_in, outvars=outs))
    for out, inner in zip(outvars, closed.jaxpr.outvars):
        if not isinstance(out, jcore.DropVar):
            sub[out] = read(inner)
    return eqns


def strip_rules(closed, keep=frozenset()):
    """``(closed jaxpr with every custom rule replaced by its forward, HandRules)``.

    A rule whose forward has no automatic derivative (a ``pure_callback``)
    is kept and listed in ``HandRules.kept``. The rules whose
    ``(name, kind, where)`` is in ``keep`` stay in place (unlisted).
    """
    stripper = _Stripper(keep)
    return stripper.closed(closed, (), 1), stripper.rules()


def _is_leaf(a):
    """True if ``a`` is a pytree leaf itself (compared by identity: arrays have no plain ``==``)."""
    leaves = jax.tree_util.tree_leaves(a)
    return len(leaves) == 1 and leaves[0] is a


def leaf_names(f, args, argnums):
    """Readable names for the leaves of ``args[i]``, ``i`` in ``argnums``: ``x``, ``W1``, ``params.W1``."""
    try:
        params = list(inspect.signature(f).parameters)
    except (TypeError, ValueError):
        params = []
    names = []
    several = sum(1 for i in argnums if not _is_leaf(args[i])) > 1
    for i in argnums:
        argname = params[i] if i < len(params) and not params[i].startswith("*") else f"arg{i}"
        for path, leaf in jax.tree_util.tree_flatten_with_path(args[i])[0]:
            key = jax.tree_util.keystr(path, simple=True, separator=".")
            if not key:
                names.append(argname)
            else:
                names.append(f"{argname}.{key}" if several else key)
    return names
