"""Gradient check: the hand rule against autodiff and central differences, and each rule on its own.

The book checks its backward pass against a numerical gradient (sec. 5.7.3).
``gradcheck`` does that and adds a third opinion, JAX's automatic
differentiation of the same forward with the hand rules taken out, and checks
every hand rule on its own at the inputs it meets. It never passes in silence
on a comparison that compared nothing: the report says which rules were
replaced, which were exercised, which were kept, and marks an autodiff column
that is the hand computation itself.

This module orchestrates; the settings are resolved in ``_policy``, the
comparisons made in ``_numeric`` (one array's in ``_leaf``), the rules wrapped
in ``_rules``, forward mode run by ``_forward``, the report written by
``_report``.
"""

import collections
import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._autodiff import without_hand_rules
from backprop_jax.checking._forward import forward_entry
from backprop_jax.checking._jaxpr import strip_rules
from backprop_jax.checking._leaves import refuse_complex, split
from backprop_jax.checking._leaf import LeafNumerics, not_finite
from backprop_jax.checking._numeric import compare, mismatches
from backprop_jax.checking._policy import LOW, TOLERANCES, Options, rounding_floor, tolerances, validate
from backprop_jax.checking._problem import Problem, Side, finite, least_precise, per_example, rounded, upcast
from backprop_jax.checking._report import Entry, GradcheckReport
from backprop_jax.checking._rules import MalformedRule, RuleLogs, instrumented, keep_one
from backprop_jax.checking._upcast import lowers_precision, raised


def gradcheck(f, *args, reference=None, argnums=None, eps=None, atol=None, rtol=None, numeric=True,
              numeric_elements=None, numeric_directions=None, order=1, batched=False, in_axes=0,
              has_aux=False, mode="reverse", key=None, matmul_precision="highest", dot_product=False):
    """Compares the hand rule with autodiff and with central differences.

    For every differentiable array among ``args`` (leaves of pytrees such as
    parameter dicts included; integer and bool leaves such as labels, and
    non-array leaves such as callables and strings, are passed through and
    not checked), three gradients of ``f`` are computed:

    1. the hand rule: ``jax.grad`` of ``f``, which runs its custom rules;
    2. autodiff: ``jax.grad`` of ``reference`` (default:
       ``without_hand_rules(f)``, the same forward with every ``custom_vjp``
       and ``custom_jvp`` replaced by JAX's automatic differentiation, at any
       depth: inside ``jit``, ``scan``, ``cond``, ``while_loop``,
       ``checkpoint``, ``shard_map``, ``vmap``). It is independent of the
       hand rules and of nothing else: a wrong forward is wrong on both sides;
    3. numeric: central differences of ``f`` (the book's numerical gradient),
       independent of every derivative, hand or automatic.

    The report lists which rules were replaced (``sigmoid x3 (in scan)``) and
    which were kept (a rule whose forward is a ``pure_callback``). When no rule
    was replaced, the autodiff column is the hand computation itself: it is
    marked ``same`` and does not count; with ``numeric=False`` as well,
    there is nothing independent to compare and ``ValueError`` is raised.

    Each hand rule is also checked on its own, at the inputs it meets (the
    ``each rule on its own`` lines, ``report.rule_checks``): whether it was
    exercised (received a non-zero cotangent; a rule in a branch not taken or
    behind ``stop_gradient`` is "not exercised here" and counts for nothing),
    whether its ``fwd`` returns what its primal returns, whether every
    cotangent has its input's dtype, and whether its backward is linear in the
    cotangent. When the autodiff column fails, the rules are put back one at a
    time and the report names the one to blame ("the rule of `affine` (in
    scan) disagrees with autodiff; the other 4 rules agree"), with the book's
    documented deviation where there is one (``sigmoid_with_loss``'s 1e-7).

    Kinks and ties: where the one-sided differences of ``f`` disagree (ReLU at
    exactly 0, tied maxima in pooling, the book's zero biases), the function
    is not differentiable and any value between them is a right derivative;
    such a value is judged by that interval in every column alike (autodiff's
    choice at a tie is not the book's) and reported, never failed. If every
    value compared lies at a kink the check fails closed.

    Low precision: for float32, bfloat16 and float16 inputs the references
    run in float64 on an upcast copy (x64 switched on for them), and the
    low-precision hand gradient is compared with them within a tolerance
    derived from the dtype: ``4 * noise + 4 * eps_dtype * |reference|``,
    where ``noise`` is the largest difference between autodiff run in the
    low dtype and in float64 (over finite values), the rounding a correct
    computation of the same forward shows. Values where the dtype overflows
    for autodiff too are left out of that column and named. The same rule is
    also run on the float64 copy and compared tightly with autodiff there
    (the ``in float64`` column), so an error below the dtype's resolution is
    still caught. A function that casts inside (mixed precision: bfloat16
    compute, a float32 loss) runs on the copy with its own casts raised to
    float64. Only if ``f`` cannot run so do the references stay in the
    inputs' dtype, with fixed tolerances, and the report says so. Tolerances
    given that the dtype cannot resolve fail closed, with a note.

    If ``f`` does not return a scalar, the check is made on
    ``sum(dout * f(*args))`` for a fixed random cotangent ``dout`` (drawn
    from ``key``), which exercises every entry of the VJP.

    A failing argument's report names its worst element (index, and the hand,
    autodiff and numeric values there) and how many values fail.

    Args:
      f: function of ``args``.
      *args: arrays, Python floats or pytrees of them. Python ints, bools and
        strings (a stride, a flag), callables and other non-array leaves are
        passed through unchanged and not checked. A Python list of numbers is
        refused (pass an array). A Python float is checked like an array when
        it is among ``argnums``; left out of ``argnums`` it is a setting,
        passed through unchanged (as a layer's static argument, such as
        ``dropout``'s ``drop_rate``, needs) and noted. Complex arrays are refused: check
        ``lambda re, im: f(re + 1j * im)`` at ``x.real, x.imag`` instead.
      reference: function with ``f``'s signature to differentiate
        automatically in place of ``without_hand_rules(f)``.
      argnums: indices of the arguments to check (default: all).
      eps: central-difference step (default by dtype: 1e-6 for float64 and
        for low precision checked through float64).
      atol: absolute tolerance for all comparisons. By default it depends on
        the dtype: tight in float64, derived from the rounding in low precision.
      rtol: relative tolerance, the same way.
      numeric: set False to skip central differences.
      numeric_elements: central differences on this many elements per
        array, drawn at random from ``key`` (all of them when at least the
        array's size, as the book does); each costs two evaluations of ``f``.
        By default (neither this nor ``numeric_directions``), arrays of up
        to 256 values are checked element by element and larger ones along 8
        random directions, element by element only where a direction fails
        (to name the element): the 784-100-10 net's check takes seconds.
      numeric_directions: instead, compare ``v^T J u`` (the hand gradient's
        projection against the central difference of ``f`` along ``u``) for
        this many random directions ``u`` per array: a cost that does not grow
        with the array's size. Where a direction fails, central differences
        per element name the faulty entry.
      order: 2 checks second derivatives (and N the N-th): the derivative of
        ``<grad f, u>`` for a random ``u``, differentiated through the hand
        rules, against the same of ``without_hand_rules(f)`` and against
        central differences of the hand first derivative.
      batched: check the rules under ``jax.vmap``, as per-example gradients
        use them: ``f`` is applied to one example, and the arguments carry a
        batch axis as ``in_axes`` says. The three gradients are those of the
        sum over examples, and per-example gradients
        (``vmap(grad(f), in_axes)``) are compared with the rules run one
        example at a time in a loop, which catches a rule that breaks only
        under ``vmap``.
      in_axes: with ``batched``: an int or None for every argument, or a
        tuple of them, one per argument, as ``jax.vmap`` takes; None marks a
        shared argument (parameters), given whole to every example.
      has_aux: ``f`` returns ``(value, aux)``; only ``value`` is checked and
        ``aux`` (any pytree, integers included) is returned in ``report.aux``.
      mode: ``"reverse"`` (``jax.grad``) or ``"forward"`` (``jax.jvp`` along
        random directions, ``numeric_directions`` of them, default 4): for
        ``custom_jvp`` rules inside ``lax.while_loop``, which reverse mode
        cannot differentiate.
      key: PRNG key for the random cotangent, directions and elements
        (default ``jax.random.key(0)``).
      dot_product: also check each ``custom_vjp`` rule by the dot-product test
        ``<J u, v> = <u, J^T v>`` for random ``u`` and ``v``, ``J u`` by forward mode through its
        primal with the rules taken out and ``J^T v`` by its backward, just beside the inputs it
        met (off any tie or kink). It needs no differences and sends the rule a cotangent on every
        output: it catches a backward that is right only for the cotangents ``f`` sends it (all
        ones under a sum, nothing on an output ``f`` does not use), which the three columns cannot.
      matmul_precision: ``jax.default_matmul_precision`` for all three
        gradients (default ``"highest"``). GPUs and TPUs run float32 matrix
        products in TF32 or bfloat16 passes by default, whose rounding (about
        1e-3) swamps central differences; None keeps the current setting.
    Returns:
      A ``GradcheckReport``; ``report.ok`` is True only if every counted
      comparison passes and ``str(report)`` is a table per argument.
    """
    options = Options(reference=reference, eps=eps, atol=atol, rtol=rtol, numeric=numeric,
                      numeric_elements=numeric_elements, numeric_directions=numeric_directions, order=order,
                      batched=batched, in_axes=in_axes, has_aux=has_aux, mode=mode, key=key,
                      dot_product=dot_product)
    if matmul_precision is not None:
        with jax.default_matmul_precision(matmul_precision):
            return gradcheck(f, *args, argnums=argnums, matmul_precision=None,
                             **{k.name: getattr(options, k.name) for k in dataclasses.fields(options)})
    argnums = tuple(range(len(args))) if argnums is None else tuple(
        [argnums] if isinstance(argnums, int) else argnums)
    validate(args, argnums, options)
    refuse_complex(args)
    aux = None
    if has_aux:
        out = f(*args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"gradcheck: has_aux=True needs f to return (value, aux), got {type(out).__name__}"
                            + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
        aux = out[1]
        f = _value_of(f)
    # A Python float left out of argnums is a setting: passed through as the Python value, so it
    # may reach a layer's static argument (dropout's drop_rate); every other float is traced.
    held = frozenset(i for i, a in enumerate(args) if isinstance(a, float) and i not in argnums)
    try:
        return _Check(f, args, argnums, held, options).report(aux)
    except jax.errors.UnexpectedTracerError as e:
        if "nondiff_argnums" not in str(e):
            raise
        floats = [str(i) for i, a in enumerate(args) if isinstance(a, float) and i not in held]
        raise TypeError(
            "gradcheck: f passes a traced value to a layer's non-differentiable argument (nondiff_argnums, "
            "such as dropout's drop_rate or a stride)"
            + (f"; argument {', '.join(floats)} is a Python float that gradcheck traces: leave it out of "
               f"argnums, and it is passed through as a setting" if floats else
               "; close over that setting instead of passing it as an array")) from None


def _refuse_not_finite(name, value):
    """A derivative at a NaN or an infinity says nothing: such an input is refused, its position named."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(value, np.float64)))
    if bad.size:
        where = list(map(int, np.unravel_index(bad[0], jnp.shape(value)))) if jnp.ndim(value) else []
        raise ValueError(f"gradcheck: {name}{where} is {np.asarray(value, np.float64).reshape(-1)[bad[0]]} "
                         f"({bad.size} of {jnp.size(value)} values are not "
                         f"finite); a gradient is checked only at a finite point")


def _value_of(f):
    def value(*a):
        return f(*a)[0]
    value.__wrapped__ = f  # keeps f's parameter names for the report
    return value


BLAME_AT_MOST = 16  # rules tried one at a time when naming the one to blame


class _Check:
    """One call of ``gradcheck``: the arguments split, the functions built, every comparison made."""

    def __init__(self, f, args, argnums, held, options):
        self.options = o = options
        leaves, skipped = split(f, args, argnums, held, o.batched, o.in_axes)
        top_of = np.repeat(np.arange(len(args)), [len(jax.tree_util.tree_leaves(a)) for a in args])
        floats = [p for p, k in enumerate(leaves.kinds) if k == "float" and top_of[p] in argnums]
        empty = [p for p in floats if jnp.size(leaves.values[p]) == 0]
        skipped += [f"{leaves.names[p]} (empty, shape {tuple(jnp.shape(leaves.values[p]))})" for p in empty]
        diff_pos = [p for p in floats if p not in empty]
        if not diff_pos:
            raise ValueError("gradcheck: no floating-point argument with values to check among argnums "
                             f"{argnums}" + (f" ({', '.join(skipped)})" if skipped else "")
                             + "; integer and bool arrays are not differentiable")
        for p in diff_pos:
            _refuse_not_finite(leaves.names[p], leaves.values[p])
        self.leaves, self.skipped = leaves, skipped
        self.dyn_pos = [p for p, k in enumerate(leaves.kinds) if k != "static"]
        self.dyn = [leaves.values[p] for p in self.dyn_pos]
        self.dyn_kinds = [leaves.kinds[p] for p in self.dyn_pos]
        self.dyn_axes = [leaves.axes[p] for p in self.dyn_pos]
        self.diff_pos = diff_pos
        self.diff_in_dyn = [self.dyn_pos.index(p) for p in diff_pos]
        if o.batched:
            sizes = {jnp.shape(v)[a] if jnp.ndim(v) > a else None for v, a in zip(self.dyn, self.dyn_axes)
                     if a is not None}
            if len(sizes) != 1 or None in sizes:
                shapes = [(leaves.names[p], tuple(jnp.shape(leaves.values[p])), leaves.axes[p])
                          for p in self.dyn_pos]
                raise ValueError("gradcheck: batched=True needs every batched array to have one size along "
                                 f"its in_axes; got (name, shape, axis) {shapes}")
        self.example = [v if a is None else jnp.take(v, 0, axis=a) for v, a in zip(self.dyn, self.dyn_axes)]
        self.f_on = self.on(f)
        self.ref_on = without_hand_rules(self.f_on) if o.reference is None else self.on(o.reference)
        self.douts = self._cotangent()

    def on(self, fn):
        """``fn`` as a function of the dynamic leaves (settings and callables held as they are)."""
        leaves, dyn_pos = self.leaves, self.dyn_pos

        def call(values):
            full = list(leaves.values)
            for p, v in zip(dyn_pos, values):
                full[p] = v
            return leaves.call(fn, full)
        return call

    def _cotangent(self):
        """None if ``f`` returns a scalar, else a fixed random ``dout`` per output (float64 values rounded
        to each output's dtype, so that the low-precision and float64 checks use the very same one).

        Checking the VJP against one random cotangent checks every entry of the Jacobian with
        probability 1, at the cost of a single scalar function.
        """
        try:
            out = jax.eval_shape(self.f_on, self.example)
        except (TypeError, ValueError, IndexError) as e:
            if isinstance(e, jax.errors.UnexpectedTracerError):
                raise
            given = ", ".join(f"{n}: {tuple(jnp.shape(v))} {jnp.result_type(v).name}"
                              for n, v, k in zip(self.leaves.names, self.leaves.values, self.leaves.kinds)
                              if k != "static")
            raise TypeError(f"gradcheck: f cannot be called with the arguments given ({given}): "
                            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        paths = jax.tree_util.tree_flatten_with_path(out)[0]
        for path, leaf in paths:
            if not jnp.issubdtype(leaf.dtype, jnp.inexact):
                where = jax.tree_util.keystr(path) or "its output"
                raise TypeError(f"gradcheck: f returns a {jnp.dtype(leaf.dtype).name} array at {where} "
                                f"(shape {tuple(leaf.shape)}), which has no gradient; if it is an auxiliary "
                                f"output, return (value, aux) and pass has_aux=True")
        if not paths:
            raise TypeError(f"gradcheck: f returns no array (it returns {type(out).__name__}); it must return the "
                            f"value to differentiate")
        outs = [leaf for _, leaf in paths]
        if len(outs) == 1 and outs[0].shape == ():
            return None
        keys = jax.random.split(self.options.prng(), len(outs))
        return [rounded(jax.random.normal(k, l.shape, jnp.float32), l.dtype) for k, l in zip(keys, outs)]

    def _references_dtype(self, lowest):
        """Whether the references can run on a float64 copy: ``(True, what)`` or ``(False, why)``;
        sets ``f_up`` and ``ref_up``, the functions that run there. Probed as the check calls ``f``:
        on one example when batched. A function that casts to a lower precision inside (mixed
        precision) runs with its casts raised to float64."""
        self.f_up, self.ref_up = self.f_on, self.ref_on
        if lowest not in LOW:
            return False, ""
        what = f"float64, on an upcast copy of the {lowest} inputs"
        example = upcast(self.example, self.dyn_kinds)
        with jax.enable_x64(True):
            try:
                closed = jax.make_jaxpr(self.f_on)(example)
                if lowers_precision(closed):
                    self.f_up = raised(self.f_on)
                    self.ref_up = without_hand_rules(self.f_up) if self.options.reference is None else raised(
                        self.ref_on)
                    what += ", f's own casts to lower precision raised to float64"
                out = jax.eval_shape(self.f_up, example)
            except Exception as e:  # noqa: BLE001 - any failure means: not in float64
                return False, f"in {lowest}: f does not run in float64 ({type(e).__name__}: {str(e)[:120]})"
            bad = [leaf.dtype for leaf in jax.tree_util.tree_leaves(out)
                   if jnp.issubdtype(leaf.dtype, jnp.inexact) and jnp.dtype(leaf.dtype) != jnp.float64]
        if bad:
            return False, (f"in {lowest}: given float64 inputs f returns {jnp.dtype(bad[0]).name}, so it does "
                           f"not run in float64; tolerances are {lowest}'s fixed ones")
        return True, what

    def report(self, aux):
        o = self.options
        rules = None
        if o.reference is None:
            rules = strip_rules(jax.make_jaxpr(self.f_on)(self.example))[1]
            if not rules.replaced and not o.numeric:
                kept = f" (kept: {'; '.join(map(str, rules.kept))})" if rules.kept else ""
                raise ValueError("gradcheck: f has no custom rule that without_hand_rules could replace" + kept +
                                 ", so the autodiff column would compare f with itself, and numeric=False leaves "
                                 "nothing independent to compare; turn numeric on or give reference=")
        if o.mode == "forward" and rules is not None and any(u.kind == "custom_vjp" for u in rules.replaced):
            names = sorted({f"`{u.name}`" for u in rules.replaced if u.kind == "custom_vjp"})
            raise ValueError(f"gradcheck: mode='forward' differentiates f by jax.jvp, which JAX cannot apply to "
                             f"a custom_vjp rule ({', '.join(names)}); check those rules with mode='reverse'")
        lowest = least_precise([jnp.dtype(v.dtype).name for v, k in zip(self.dyn, self.dyn_kinds) if k == "float"])
        self.low, references = self._references_dtype(lowest)
        self.lowest = lowest
        self.eps_used = {}  # the central-difference step, by entry name
        self.rule_note = ""  # why the rules could not be checked on their own, when they could not
        key = o.prng()
        diff_lo = [self.dyn[i] for i in self.diff_in_dyn]
        us = [[rounded(jax.random.normal(jax.random.fold_in(key, 1000 + 100 * k + j), v.shape, jnp.float32),
                        v.dtype) for j, v in enumerate(diff_lo)] for k in range(1, o.order)]
        self.problem = Problem(self.dyn_axes, self.diff_in_dyn, o.batched, self.douts, us)
        self.lo = Side(diff_lo, contextlib.nullcontext, self.f_on, self.ref_on)
        self.up = self.lo
        self.dyn64 = self.dyn
        if self.low:
            with jax.enable_x64(True):
                self.dyn64 = upcast(self.dyn, self.dyn_kinds)
            self.up = Side(self.problem.diff(self.dyn64), lambda: jax.enable_x64(True), self.f_up, self.ref_up)
        self.g_hand_up = self.problem.scalar(self.up.f, self.dyn64)
        self.f_scale = 0.0  # |g| at the point, where central differences evaluate it
        logs = RuleLogs()
        if o.mode == "forward":
            self.f_scale = self._scale_of(None)
            entries = [forward_entry(self, j, p, rules) for j, p in enumerate(self.diff_pos)]
            rule_checks = ()
        else:
            entries, rule_checks = self._reverse(rules, logs)
        if o.batched:
            entries = self._batched(entries)
        note = ""
        if not any(e.autodiff_independent or e.numeric is not None or e.float64 is not None for e in entries):
            note = ("no replaced rule was exercised at these inputs and central differences are off: nothing "
                    "independent was compared")
        with_numeric = [e for e in entries if e.numeric is not None]
        if with_numeric and all(e.only_kinks for e in with_numeric) and not any(
                e.autodiff_independent and e.autodiff.size > e.autodiff.kinks for e in entries):
            note = ("every value compared lay at a kink of f (its one-sided differences disagree everywhere"
                    + (", down to a step of eps / 100" if self.up.at[0].dtype == jnp.float64 else "")
                    + "): nothing was compared where f is differentiable; check at another point"
                    + (f", or with a smaller eps than {o.eps} (a large step parts them by h |f''| where f "
                       f"curves)" if o.eps is not None else ""))
        return GradcheckReport(entries=tuple(entries), eps=self.eps_used, skipped=tuple(self.skipped),
                               order=o.order, rules=rules, references=references, aux=aux,
                               rule_checks=rule_checks, rule_note=self.rule_note, note=note)

    def _scale_of(self, value):
        """``|g|`` at the point (the rounding of central differences scales with it); a value that is
        not finite there is refused: no difference of it says anything. ``value``: g there, from the
        gradient taken on the side central differences run on, or None to evaluate it."""
        if value is None:
            with self.up.x64():
                value = jax.jit(self.g_hand_up)(self.up.at)
        value = np.asarray(value, np.float64)
        if not np.all(np.isfinite(value)):
            what = "f" if self.douts is None else "f, contracted with a random cotangent,"
            raise ValueError(f"gradcheck: {what} is {float(value)} at the point given"
                             f"{' (on its float64 copy)' if self.low else ''}; a gradient is checked only where "
                             f"f is finite")
        return float(np.abs(value))

    def rounding_of(self, j, step):
        """The rounding of central differences in leaf ``j`` at ``step`` (0 with a tolerance given)."""
        if self.options.atol is not None:
            return 0.0
        return rounding_floor(jnp.dtype(self.up.at[j].dtype).name, self.f_scale, step)

    # --- reverse mode ------------------------------------------------------------------------

    def _hand(self, side, base, log, order=None):
        """The hand gradient on ``side``, every rule reporting to ``log``; plain where wrapping fails."""
        plain = self.problem.scalar(side.f, base, order)
        if log is None:
            return side.grad(plain), ""
        try:
            return side.grad(self.problem.scalar(instrumented(side.f, log, self.options.dot_product), base,
                                                 order)), ""
        except Exception as e:  # noqa: BLE001 - the rules are checked on their own where they can be
            if isinstance(e, (KeyboardInterrupt, MemoryError, MalformedRule)):
                raise
            first = (str(e).splitlines() or [""])[0][:160]
            return side.grad(plain), f"the rules could not be checked on their own here ({type(e).__name__}: {first})"

    def _reverse(self, rules, logs):
        o = self.options
        lo, up = self.lo, self.up
        rule_note = ""
        if o.order == 1:
            hand, rule_note = self._hand(lo, self.dyn, logs.lo)
        else:  # the rules on their own first: a malformed rule is named before it breaks the order-N gradient
            _, rule_note = self._hand(lo, self.dyn, logs.lo, order=1)
            hand = lo.grad(self.problem.scalar(lo.f, self.dyn))
        value = lo.value  # f where central differences evaluate it (in float64, below, when low)
        ref_lo = lo.grad(self.problem.scalar(lo.ref, self.dyn))
        ref, hand64 = ref_lo, None
        if self.low:
            ref = up.grad(self.problem.scalar(up.ref, self.dyn64))
            if o.order == 1:
                hand64, logs.up_note = self._hand(up, self.dyn64, logs.up)
            else:
                _, logs.up_note = self._hand(up, self.dyn64, logs.up, order=1)
                hand64 = up.grad(self.g_hand_up)
            value = up.value
        self.f_scale = self._scale_of(value)
        self.rule_note = rule_note
        rule_checks = logs.checks(rules, self.low, self.lowest, rule_note)
        exercised = [r for r in rule_checks if r.exercised is not False]
        independent = o.reference is not None or (bool(rules.replaced) and (
            bool(exercised) or not rule_checks or any(u.kind != "custom_vjp" for u in rules.replaced)))
        entries = []
        for j, p in enumerate(self.diff_pos):
            entries.append(self._leaf(j, p, hand[j], ref[j], ref_lo[j], None if hand64 is None else hand64[j],
                                      independent))
        entries = self._blame(entries, _suspects(rule_checks, rules), ref, ref_lo)
        return entries, tuple(rule_checks)

    def _leaf(self, j, p, hand, ref, ref_lo, hand64, independent):
        """Every comparison for one differentiable leaf."""
        o, leaf = self.options, self.lo.at[j]
        name, dtype, low = self.leaves.names[p], jnp.dtype(leaf.dtype).name, self.low
        tol_dtype = self.lowest if low else dtype
        hand, ref, ref_lo = (np.asarray(a, np.float64).reshape(-1) for a in (hand, ref, ref_lo))
        size = leaf.size
        ref_note = not_finite(name, leaf.shape, ref, "float64 autodiff" if low else "autodiff")
        both = finite(ref_lo) & finite(ref)
        noise = float(np.max(np.abs(ref_lo - ref)[both], initial=0.0)) if low else 0.0
        overflow = (~finite(ref_lo) & finite(ref) & ~finite(hand)) if low else np.zeros(size, bool)
        overflow_why = (f"{self.lowest} overflows there for autodiff as well as for the hand rule; compared in "
                        f"float64 only (the in float64 column)")
        a_atol, a_rtol, a_note = tolerances(tol_dtype, low, noise, o.atol, o.rtol, 0)
        n_atol, n_rtol, n_note = tolerances(tol_dtype, low, noise, o.atol, o.rtol, 1)
        t_atol, t_rtol = TOLERANCES["float64"][0]
        t_atol, t_rtol = (t_atol if o.atol is None else o.atol), (t_rtol if o.rtol is None else o.rtol)
        bad = mismatches(hand, ref, a_atol, a_rtol) & ~overflow
        if hand64 is not None:
            hand64 = np.asarray(hand64, np.float64).reshape(-1)
            bad |= mismatches(hand64, ref, t_atol, t_rtol)
        step = o.step(dtype, low)
        floor = self.rounding_of(j, step)
        n_atol += floor
        numeric = LeafNumerics(self, j, step, overflow, overflow_why, floor)
        # Where the dtype overflows for any computation, numerics judge the rule run in float64.
        judged = hand if hand64 is None else np.where(overflow, hand64, hand)
        if o.numeric:
            self.eps_used[name] = step
            numeric.run(o.plan(size), judged, ref, ref_lo, n_atol, n_rtol, n_note, low)
            bad[numeric.bad_elements()] = True
        agree = ~mismatches(judged, ref, a_atol, a_rtol) if independent else None
        kink = numeric.kinks_at(np.flatnonzero(bad), judged, n_atol, n_rtol, agree)
        entry = Entry(
            name=name, shape=tuple(leaf.shape), dtype=dtype,
            autodiff=compare(hand, ref, a_atol, a_rtol, ignore=kink, note=(a_note or ref_note) if independent else "",
                             excluded=overflow, excluded_why=overflow_why),
            numeric=None, autodiff_values=ref, autodiff_independent=independent,
            float64=None if hand64 is None else compare(hand64, ref, t_atol, t_rtol, ignore=kink, note=ref_note))
        return numeric.fill(entry, kink, judged, ref, n_atol, n_rtol, n_note)

    def _blame(self, entries, candidates, ref, ref_lo):
        """For an autodiff column that fails, the rules whose replacement alone reproduces the failure."""
        failing = [j for j, e in enumerate(entries) if e.autodiff_independent and (
            (not e.autodiff.ok and not e.autodiff.note) or (e.float64 is not None and not e.float64.ok
                                                            and not e.float64.note))]
        if not failing or not candidates or self.options.reference is not None:
            return entries
        in64 = any(entries[j].float64 is not None and not entries[j].float64.ok for j in failing)
        side, base = (self.up, self.dyn64) if in64 else (self.lo, self.dyn)
        found = {j: [] for j in failing}
        for r in candidates[:BLAME_AT_MOST]:
            try:
                alone = side.grad(self.problem.scalar(keep_one(side.f, r.key), base))
            except Exception:  # noqa: BLE001 - naming the rule is a courtesy; the verdict stands without it
                continue
            for j in failing:
                c = entries[j].float64 if in64 else entries[j].autodiff
                kink = np.zeros(ref[j].size, bool)
                for k in entries[j].kinks:
                    if not k.direction:
                        kink[np.ravel_multi_index(k.index, entries[j].shape) if entries[j].shape else 0] = True
                if (mismatches(alone[j], ref[j], c.atol, c.rtol) & ~kink).any():
                    found[j].append(r)
        out = []
        for j, e in enumerate(entries):
            if j not in found:
                out.append(e)
                continue
            names = [f"`{r.name}`" + (f" (in {' > '.join(r.where)})" if r.where else "") for r in found[j]]
            others = len(candidates) - len(found[j])
            if names:
                text = (f"the rule of {', '.join(names)} disagrees with autodiff"
                        + (f"; the other {others} rule{'s' if others != 1 else ''} agree" if others else ""))
                text += "".join(f" [{r.note}]" for r in found[j] if r.note)
            else:
                text = "no single rule reproduces the disagreement alone: rules disagree only together"
            out.append(dataclasses.replace(e, blame=(text,)))
        return out

    # --- batched ---------------------------------------------------------------------------------

    def _batched(self, entries):
        under, looped = per_example(self.problem.example_fn(self.f_on), self.dyn, self.dyn_axes,
                                     self.diff_in_dyn)
        return [dataclasses.replace(e, batched=compare(under[j], looped[j],
                                                       *self.options.batched_tolerances(e.dtype)))
                for j, e in enumerate(entries)]


_Suspect = collections.namedtuple("_Suspect", "key name where note")


def _suspects(rule_checks, rules):
    """The rules that may be to blame: every exercised ``custom_vjp``, and every ``custom_jvp`` (whose
    exercise is not recorded), in the order first met."""
    out = [_Suspect(r.key, r.name, r.where, r.note) for r in rule_checks if r.exercised]
    out += [_Suspect((u.name, u.kind, u.where), u.name, u.where, "")
            for u in (rules.replaced if rules else ()) if u.kind == "custom_jvp"]
    return out


def assert_gradcheck(f, *args, **kwargs):
    """Runs ``gradcheck`` and raises ``AssertionError`` with its table if any comparison fails."""
    report = gradcheck(f, *args, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradient check failed\n{report}")
    return report
