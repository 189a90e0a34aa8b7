"""Gradient check: the hand rule against autodiff and central differences.

The book checks its backward pass against a numerical gradient (sec. 5.7.3).
``gradcheck`` does that and adds a third opinion, JAX's automatic
differentiation of the same forward with the hand rules taken out. It never
passes in silence on a comparison that compared nothing: the report says
which rules were replaced, which were kept, and marks an autodiff column that
is the hand computation itself.
"""

import contextlib
import dataclasses
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._autodiff import without_hand_rules
from backprop_jax.checking._jaxpr import HandRules, leaf_names, strip_rules

# Default tolerances in float64, and in a low precision whose references could not be computed
# in float64: (atol, rtol) for hand vs autodiff, then for hand vs central differences, whose
# own error is far larger than rounding.
_TOLERANCES = {
    "float64": ((1e-9, 1e-7), (1e-6, 1e-5)),
    "float32": ((1e-5, 1e-4), (1e-3, 5e-3)),
    "bfloat16": ((5e-2, 5e-2), (5e-1, 2e-1)),
    "float16": ((1e-2, 1e-2), (2e-1, 1e-1)),
}
_EPS = {"float64": 1e-6, "float32": 1e-3, "bfloat16": 1e-1, "float16": 1e-2}
_LOW = ("float32", "bfloat16", "float16")
# A low-precision hand gradient may differ from the float64 reference by this many times the
# rounding a correct computation of the same forward shows in that dtype (measured: autodiff run
# in the low dtype against autodiff in float64), plus this many units of the dtype's epsilon,
# relative to each value.
_NOISE_FACTOR = 4.0
_EPS_FACTOR = 4.0


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far the hand gradient is from one reference, for one argument."""
    max_abs: float  # max |hand - reference|
    max_rel: float  # max |hand - reference| / max(|hand|, |reference|, atol)
    mean_abs: float  # mean |hand - reference| (what the book prints)
    atol: float
    rtol: float
    ok: bool  # |hand - reference| <= atol + rtol * |reference| everywhere (kinks aside)
    worst: int = 0  # position (in the compared values) of the largest excess over the tolerance
    worst_hand: float = 0.0  # the hand value there
    worst_reference: float = 0.0  # the reference value there
    failed: int = 0  # how many compared values are beyond the tolerance (kinks aside)
    size: int = 0  # how many values were compared
    note: str = ""  # why the comparison failed closed, when it is not a mismatch ("cannot resolve ...")


@dataclasses.dataclass(frozen=True)
class Kink:
    """An element within ``eps`` of a point where the function is not differentiable (ReLU at 0,
    tied maxima, ``abs`` at 0): its one-sided differences disagree, and the hand value is one
    of them (or between), so central differences cannot judge it."""
    index: tuple  # the element's index in its array
    left: float  # (f(x) - f(x - eps)) / eps
    right: float  # (f(x + eps) - f(x)) / eps
    hand: float


@dataclasses.dataclass(frozen=True)
class Entry:
    """The check of one differentiable array (a leaf of an argument)."""
    name: str
    shape: tuple
    dtype: str
    autodiff: Comparison
    numeric: Comparison | None  # None when central differences were skipped
    numeric_elements: int = 0  # how many elements (or directions) central differences checked
    kinks: tuple = ()  # Kink: elements within eps of a non-differentiable point, not counted
    batched: Comparison | None = None  # per-example gradients under vmap against a loop (batched=True)
    numeric_directions: bool = False  # numeric compared v^T J u along random directions, not elements
    autodiff_values: object = None  # the autodiff gradient (to name the worst element's value)
    numeric_indices: object = None  # the flat indices central differences used
    autodiff_independent: bool = True  # False: no rule was replaced, the autodiff column is the hand one
    float64: Comparison | None = None  # low precision: the same rule run on a float64 copy vs autodiff
    directions: bool = False  # mode="forward": autodiff and numeric compare along random directions

    @property
    def ok(self):
        return ((self.autodiff.ok or not self.autodiff_independent)
                and (self.numeric is None or self.numeric.ok)
                and (self.batched is None or self.batched.ok)
                and (self.float64 is None or self.float64.ok))

    def worst(self):
        """Lines naming, for each failing comparison, its worst element and the values there."""
        lines = []
        size = int(np.prod(self.shape))
        comparisons = (("autodiff", self.autodiff if self.autodiff_independent else None),
                       ("numeric", self.numeric), ("vmap", self.batched), ("float64", self.float64))
        for label, c in comparisons:
            if c is None or c.ok:
                continue
            if c.note:
                lines.append(f"  {self.name}: {label}: {c.note}")
                continue
            count = f" ({c.failed} of {c.size} {'directions' if self.directions else 'values'} fail)"
            if self.directions or (label == "numeric" and self.numeric_directions):
                what = "numeric" if label == "numeric" else label
                lines.append(f"  {self.name}: along random direction {c.worst}: hand {c.worst_hand:.6g}, "
                             f"{what} {c.worst_reference:.6g}{count}")
                continue
            index = c.worst
            if label == "numeric" and self.numeric_elements < size:
                index = int(self.numeric_indices[c.worst])
            where = np.unravel_index(index, self.shape) if self.shape else ()
            auto = np.asarray(self.autodiff_values).reshape(-1)[index] if self.autodiff_values is not None else None
            parts = [f"hand {c.worst_hand:.6g}"]
            if label == "vmap":
                parts = [f"under vmap {c.worst_hand:.6g}", f"one by one {c.worst_reference:.6g}"]
            elif label == "float64":
                parts = [f"hand in float64 {c.worst_hand:.6g}", f"autodiff in float64 {c.worst_reference:.6g}"]
            else:
                if auto is not None:
                    parts.append(f"autodiff {float(auto):.6g}")
                if label == "numeric":
                    parts.append(f"numeric {c.worst_reference:.6g}")
            lines.append(f"  {self.name}{list(map(int, where))}: worst {label} mismatch: "
                         + ", ".join(parts) + count)
        return lines


@dataclasses.dataclass(frozen=True)
class GradcheckReport:
    """Result of ``gradcheck``: one ``Entry`` per differentiable array."""
    entries: tuple
    eps: dict  # the central-difference step used, by entry name
    skipped: tuple  # names of leaves not checked, each with the reason
    order: int = 1  # 1: gradients; 2: second derivatives (directional), ...
    rules: HandRules | None = None  # what the autodiff side replaced; None when a reference was given
    references: str = ""  # the precision the references ran in, and why, when it is not the inputs'
    aux: object = None  # has_aux=True: f's auxiliary output at args, unchecked

    @property
    def ok(self):
        return all(e.ok for e in self.entries)

    def book_lines(self):
        """Lines like the book's check: ``W1: 3.1e-10``, the mean |hand - numeric|."""
        return [f"{e.name}: {(e.numeric or e.autodiff).mean_abs:.2g}" for e in self.entries]

    def __str__(self):
        head = (f"{'argument':<16}{'shape':<14}{'dtype':<10}"
                f"{'vs autodiff: max abs':>22}{'max rel':>10}{'':>6}"
                f"{'vs numeric: max abs':>21}{'max rel':>10}{'':>6}")
        lines = [head, "-" * len(head)]
        for e in self.entries:
            verdict = ("ok" if e.autodiff.ok else "FAIL") if e.autodiff_independent else "same"
            row = (f"{e.name:<16}{str(e.shape):<14}{e.dtype:<10}"
                   f"{e.autodiff.max_abs:>22.2e}{e.autodiff.max_rel:>10.2e}{verdict:>6}")
            if e.numeric is None:
                row += f"{'(skipped)':>21}"
            else:
                row += (f"{e.numeric.max_abs:>21.2e}{e.numeric.max_rel:>10.2e}"
                        f"{'ok' if e.numeric.ok else 'FAIL':>6}")
                if e.numeric_directions:
                    row += f"  ({e.numeric_elements} random directions)"
                elif e.numeric_elements < int(np.prod(e.shape)):
                    row += f"  ({e.numeric_elements} of {int(np.prod(e.shape))} elements)"
            if e.float64 is not None:
                row += f"  in float64 {e.float64.max_rel:.2e} {'ok' if e.float64.ok else 'FAIL'}"
            if e.batched is not None:
                row += f"  vmap vs loop {e.batched.max_abs:.2e} {'ok' if e.batched.ok else 'FAIL'}"
            lines.append(row)
            lines += e.worst()
            for k in e.kinks:
                lines.append(f"  {e.name}{list(k.index)}: within eps of a kink (one-sided differences "
                             f"{k.left:.4g} and {k.right:.4g}; hand {k.hand:.4g}): not counted")
        if self.rules is not None:
            lines += str(self.rules).split("\n")
            if not self.rules.replaced:
                lines.append("the autodiff column is the hand computation itself (no rule to replace): "
                             "'same', not counted")
        if self.references:
            lines.append(f"references: {self.references}")
        if self.skipped:
            lines.append(f"not checked: {', '.join(self.skipped)}")
        what = "gradient" if self.order == 1 else f"order-{self.order} derivative"
        lines.append(f"{what} check passed" if self.ok else f"{what} check FAILED")
        return "\n".join(lines)


def _compare(hand, ref, atol, rtol, ignore=None, note=""):
    hand = np.asarray(hand, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    diff = np.abs(hand - ref)
    # The atol floor keeps entries that are zero up to noise from reading as 100% off.
    scale = np.maximum(np.maximum(np.abs(hand), np.abs(ref)), atol)
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    excess = diff - (atol + rtol * np.abs(ref))
    excess[np.isnan(diff)] = np.inf  # NaN on one side only is a mismatch, never a pass
    excess[np.isnan(hand) & np.isnan(ref)] = np.inf
    if ignore is not None and ignore.size:
        excess[ignore] = -np.inf
    worst = int(np.argmax(excess)) if excess.size else 0
    failed = int(np.sum(excess > 0))
    return Comparison(
        max_abs=float(np.nanmax(diff, initial=0.0)), max_rel=float(np.nanmax(rel, initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0, atol=atol, rtol=rtol,
        ok=failed == 0 and not note, worst=worst,
        worst_hand=float(hand[worst]) if hand.size else 0.0, worst_reference=float(ref[worst]) if ref.size else 0.0,
        failed=failed, size=int(diff.size), note=note)


def _at_flat(g, leaves, index):
    """``g`` as a function of leaf ``index`` flattened, the other leaves held."""
    def at(v):
        new = list(leaves)
        new[index] = v.reshape(leaves[index].shape)
        return g(new)
    return at


def _numeric_grad(g, leaves, index, eps, elements, chunk_elems=1 << 24):
    """Central differences ``(g(v + eps) - g(v - eps)) / (2 eps)`` at the flat ``elements``.

    The book's ``numerical_gradient``, vectorised: perturbed copies are built
    and evaluated a chunk at a time under ``vmap``.
    """
    leaf = leaves[index]
    n = leaf.size
    chunk = max(1, min(len(elements), chunk_elems // max(n, 1)))

    g_flat = _at_flat(g, leaves, index)

    @jax.jit
    def diffs(idx):
        e = jax.nn.one_hot(idx, n, dtype=leaf.dtype) * jnp.asarray(eps, leaf.dtype)
        v = leaf.reshape(-1)
        plus = jax.vmap(g_flat)(v[None, :] + e)
        minus = jax.vmap(g_flat)(v[None, :] - e)
        return (plus - minus) / (2 * eps)

    out = []
    for start in range(0, len(elements), chunk):
        idx = np.resize(elements[start:start + chunk], chunk)  # pad the last chunk by repeating
        out.append(np.asarray(diffs(jnp.asarray(idx)), np.float64)[: min(chunk, len(elements) - start)])
    return np.concatenate(out) if out else np.zeros(0)


def _one_sided(g, leaves, index, eps, elements):
    """``(left, right)`` one-sided differences of ``g`` at the flat ``elements`` of leaf ``index``."""
    leaf, at = leaves[index], _at_flat(g, leaves, index)

    @jax.jit
    def sides(idx):
        e = jax.nn.one_hot(idx, leaf.size, dtype=leaf.dtype) * jnp.asarray(eps, leaf.dtype)
        v = leaf.reshape(-1)
        here = at(v)
        return (here - jax.vmap(at)(v[None, :] - e)) / eps, (jax.vmap(at)(v[None, :] + e) - here) / eps

    left, right = sides(jnp.asarray(elements))
    return np.asarray(left, np.float64), np.asarray(right, np.float64)


def _directional(g, leaves, index, eps, directions):
    """Central differences of ``g`` along each row of ``directions`` (flat, leaf ``index``)."""
    leaf, at = leaves[index], _at_flat(g, leaves, index)

    @jax.jit
    def diffs(u):
        v = leaf.reshape(-1)
        step = jnp.asarray(eps, leaf.dtype) * u.astype(leaf.dtype)
        return (jax.vmap(at)(v[None, :] + step) - jax.vmap(at)(v[None, :] - step)) / (2 * eps)

    return np.asarray(diffs(jnp.asarray(directions)), np.float64)


def _forward(g, leaves, index, directions):
    """``<grad g, u>`` for each row ``u`` of ``directions``, by forward mode (``jax.jvp``)."""
    leaf, at = leaves[index], _at_flat(g, leaves, index)

    @jax.jit
    def along(u):
        v = leaf.reshape(-1)
        return jax.vmap(lambda t: jax.jvp(at, (v,), (t.astype(leaf.dtype),))[1])(u)

    return np.asarray(along(jnp.asarray(directions)), np.float64)


_SETTING_TYPES = (bool, int, str)


def _is_array(leaf):
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, complex)) and not isinstance(leaf, bool) \
        or isinstance(leaf, jax.ShapeDtypeStruct)


def _kind(leaf):
    """How a leaf takes part: "float" (checked), "array" (passed as an array, not checked) or
    "static" (a Python setting, a callable, a string: passed unchanged, not checked)."""
    if not _is_array(leaf):
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


def gradcheck(f, *args, reference=None, argnums=None, eps=None, atol=None, rtol=None, numeric=True,
              numeric_elements=None, numeric_directions=None, order=1, batched=False, in_axes=0,
              has_aux=False, mode="reverse", key=None, matmul_precision="highest"):
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

    Low precision: for float32, bfloat16 and float16 inputs the references
    run in float64 on an upcast copy (x64 switched on for them), and the
    low-precision hand gradient is compared with them within a tolerance
    derived from the dtype: ``4 * noise + 4 * eps_dtype * |reference|``,
    where ``noise`` is the largest difference between autodiff run in the
    low dtype and in float64, the rounding a correct computation of the same
    forward shows. The same rule is also run on the float64 copy and compared
    tightly with autodiff there (the ``in float64`` column), so an error below
    the dtype's resolution is still caught. If ``f`` does not run in float64,
    the references run in the inputs' dtype with fixed tolerances, and the
    report says so. Tolerances given that the dtype cannot resolve fail
    closed, with a note.

    If ``f`` does not return a scalar, the check is made on
    ``sum(dout * f(*args))`` for a fixed random cotangent ``dout`` (drawn
    from ``key``), which exercises every entry of the VJP.

    A failing argument's report names its worst element (index, and the hand,
    autodiff and numeric values there) and how many values fail. An element
    whose one-sided differences disagree lies within ``eps`` of a kink (ReLU
    at 0, tied maxima in pooling, ``abs`` at 0): central differences cannot
    judge it, so it is reported as such and not counted against the rule.

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
      numeric_elements: central differences on at most this many elements
        per array, drawn at random from ``key`` (default: all, as the book
        does); each costs two evaluations of ``f``.
      numeric_directions: instead, compare ``v^T J u`` (the hand gradient's
        projection against the central difference of ``f`` along ``u``) for
        this many random directions ``u`` per array: a cost that does not grow
        with the array's size. Use it for large arrays; use elements to find
        the faulty entry.
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
      matmul_precision: ``jax.default_matmul_precision`` for all three
        gradients (default ``"highest"``). GPUs and TPUs run float32 matrix
        products in TF32 or bfloat16 passes by default, whose rounding (about
        1e-3) swamps central differences; None keeps the current setting.
    Returns:
      A ``GradcheckReport``; ``report.ok`` is True only if every counted
      comparison passes and ``str(report)`` is a table per argument.
    """
    options = dict(reference=reference, eps=eps, atol=atol, rtol=rtol, numeric=numeric,
                   numeric_elements=numeric_elements, numeric_directions=numeric_directions, order=order,
                   batched=batched, in_axes=in_axes, has_aux=has_aux, mode=mode, key=key)
    if matmul_precision is not None:
        with jax.default_matmul_precision(matmul_precision):
            return gradcheck(f, *args, argnums=argnums, matmul_precision=None, **options)
    _validate(args, argnums, **options)
    argnums = tuple(range(len(args))) if argnums is None else tuple(
        [argnums] if isinstance(argnums, int) else argnums)
    aux = None
    if has_aux:
        out = f(*args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"gradcheck: has_aux=True needs f to return (value, aux), got {type(out).__name__}"
                            + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
        aux, value = out[1], f
        f = _value_of(value)
    # A Python float left out of argnums is a setting: passed through as the Python value, so it
    # may reach a layer's static argument (dropout's drop_rate); every other float is traced.
    held = frozenset(i for i, a in enumerate(args) if isinstance(a, float) and i not in argnums)
    try:
        return _gradcheck(f, args, argnums, held, aux=aux, **options)
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


def _value_of(f):
    def value(*a):
        return f(*a)[0]
    value.__wrapped__ = f  # keeps f's parameter names for the report
    return value


def _validate(args, argnums, *, eps, atol, rtol, order, numeric_elements, numeric_directions, mode, batched,
              in_axes, **_):
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                      and (value > 0 if name == "eps" else value >= 0)):
            raise ValueError(f"gradcheck: {name} must be None or a finite number "
                             f"{'> 0' if name == 'eps' else '>= 0'}, got {value!r}")
    for name, value in (("order", order), ("numeric_elements", numeric_elements),
                        ("numeric_directions", numeric_directions)):
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"gradcheck: {name} must be a positive integer, got {value!r}")
    if numeric_elements is not None and numeric_directions is not None:
        raise ValueError("gradcheck: give numeric_elements or numeric_directions, not both")
    if mode not in ("reverse", "forward"):
        raise ValueError(f"gradcheck: mode must be 'reverse' or 'forward', got {mode!r}")
    if mode == "forward" and (order != 1 or batched or numeric_elements is not None):
        raise ValueError("gradcheck: mode='forward' checks first derivatives along random directions; it "
                         "takes neither order > 1, batched nor numeric_elements (use numeric_directions)")
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    if len(axes) != len(args) or not all(a is None or isinstance(a, int) and not isinstance(a, bool)
                                         for a in axes):
        raise ValueError(f"gradcheck: in_axes must be an int, None, or a tuple of one int or None per "
                         f"argument ({len(args)}), got {in_axes!r}")
    for i in (tuple(range(len(args))) if argnums is None else
              tuple([argnums] if isinstance(argnums, int) else argnums)):
        if not 0 <= i < len(args):
            raise ValueError(f"gradcheck: argnums contains {i}, but f is given {len(args)} arguments")
    for i, a in enumerate(args):
        for leaf in jax.tree_util.tree_leaves(a):
            if _is_array(leaf) and jnp.iscomplexobj(leaf):
                raise TypeError(
                    f"gradcheck: argument {i} is complex ({jnp.result_type(leaf)}, shape {jnp.shape(leaf)}); "
                    f"complex inputs are not checked directly. Check the real and imaginary parts as two "
                    f"real arguments: gradcheck(lambda re, im: f(re + 1j * im), x.real, x.imag)")


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


def _split(f, args, argnums, held, batched, in_axes):
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
        top = jax.tree_util.tree_leaves(a) == [a]
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


def _references_dtype(f_on, values, kinds, lowest):
    """Whether the references can run on a float64 copy: ``(True, what)`` or ``(False, why)``."""
    if lowest not in _LOW:
        return False, ""
    with jax.enable_x64(True):
        try:
            out = jax.eval_shape(f_on, _upcast(values, kinds))
        except Exception as e:  # noqa: BLE001 - any failure means: not in float64
            return False, f"in {lowest}: f does not run in float64 ({type(e).__name__}: {str(e)[:120]})"
        bad = [leaf.dtype for leaf in jax.tree_util.tree_leaves(out)
               if jnp.issubdtype(leaf.dtype, jnp.inexact) and jnp.dtype(leaf.dtype) != jnp.float64]
    if bad:
        return False, (f"in {lowest}: given float64 inputs f returns {jnp.dtype(bad[0]).name}, so it does "
                       f"not run in float64; tolerances are {lowest}'s fixed ones")
    return True, f"float64, on an upcast copy of the {lowest} inputs"


def _upcast(values, kinds):
    return [jnp.asarray(np.asarray(v, np.float64)) if k == "float" and jnp.dtype(v.dtype).name in _LOW else v
            for v, k in zip(values, kinds)]


def _lowest(dtypes):
    """The least precise of ``dtypes`` (names), by epsilon."""
    return max(dtypes, key=lambda d: float(jnp.finfo(d).eps))


def _cotangent(f_on, example, key):
    """None if ``f`` returns a scalar, else a fixed random ``dout`` per output (float64 values rounded
    to each output's dtype, so that the low-precision and float64 checks use the very same one).

    Checking the VJP against one random cotangent checks every entry of the Jacobian with
    probability 1, at the cost of a single scalar function.
    """
    out = jax.eval_shape(f_on, example)
    paths = jax.tree_util.tree_flatten_with_path(out)[0]
    for path, leaf in paths:
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            where = jax.tree_util.keystr(path) or "its output"
            raise TypeError(f"gradcheck: f returns a {jnp.dtype(leaf.dtype).name} array at {where} "
                            f"(shape {tuple(leaf.shape)}), which has no gradient; if it is an auxiliary "
                            f"output, return (value, aux) and pass has_aux=True")
    leaves = [leaf for _, leaf in paths]
    if len(leaves) == 1 and leaves[0].shape == ():
        return None
    keys = jax.random.split(key, len(leaves))
    return [_rounded(jax.random.normal(k, l.shape, jnp.float32), l.dtype) for k, l in zip(keys, leaves)]


def _rounded(x, dtype):
    """``x`` rounded to ``dtype``, held as float64 NumPy."""
    return np.asarray(jnp.asarray(x, dtype), np.float64)


class _Problem:
    """The scalar functions a check differentiates, built once for the hand rules and the references,
    in the inputs' precision and (``up``) on a float64 copy."""

    def __init__(self, dyn_axes, diff_in_dyn, batched, douts, us):
        self.axes, self.diff_in_dyn = dyn_axes, diff_in_dyn
        self.batched, self.douts, self.us = batched, douts, us

    def example_fn(self, fn_on):
        douts = self.douts

        def s(d):
            outs = jax.tree_util.tree_leaves(fn_on(d))
            if douts is None:
                return outs[0]
            return sum(jnp.sum(jnp.asarray(c, o.dtype) * o) for c, o in zip(douts, outs))
        return s

    def scalar(self, fn_on, base):
        """``g(diff_leaves) -> scalar``; batched: summed over examples; order N: the derivative of
        ``<derivative of order N-1, u>`` for a fixed random ``u`` per leaf."""
        s = self.example_fn(fn_on)

        def g(diff_leaves):
            new = list(base)
            for i, v in zip(self.diff_in_dyn, diff_leaves):
                new[i] = v
            return jnp.sum(jax.vmap(s, in_axes=(self.axes,))(new)) if self.batched else s(new)
        for us in self.us:
            def deriv(g_prev, us=us):
                grad = jax.grad(g_prev)
                return lambda ls: sum(jnp.vdot(jnp.asarray(u, d.dtype), d) for u, d in zip(us, grad(ls)))
            g = deriv(g)
        return g

    def diff(self, base):
        return [base[i] for i in self.diff_in_dyn]


def _gradcheck(f, args, argnums, held, *, aux, reference, eps, atol, rtol, numeric, numeric_elements,
               numeric_directions, order, batched, in_axes, has_aux, mode, key):
    del has_aux
    key = jax.random.key(0) if key is None else key
    leaves, skipped = _split(f, args, argnums, held, batched, in_axes)
    top_of = np.repeat(np.arange(len(args)), [len(jax.tree_util.tree_leaves(a)) for a in args])
    diff_pos = [p for p, k in enumerate(leaves.kinds) if k == "float" and top_of[p] in argnums]
    if not diff_pos:
        raise ValueError("gradcheck: no floating-point argument to check among argnums "
                         f"{argnums}; integer and bool arrays are not differentiable")
    dyn_pos = [p for p, k in enumerate(leaves.kinds) if k != "static"]
    dyn = [leaves.values[p] for p in dyn_pos]
    dyn_kinds = [leaves.kinds[p] for p in dyn_pos]
    dyn_axes = [leaves.axes[p] for p in dyn_pos]
    diff_in_dyn = [dyn_pos.index(p) for p in diff_pos]
    if batched:
        sizes = {jnp.shape(v)[a] if jnp.ndim(v) > a else None for v, a in zip(dyn, dyn_axes) if a is not None}
        if len(sizes) != 1 or None in sizes:
            shapes = [(leaves.names[p], tuple(jnp.shape(leaves.values[p])), leaves.axes[p]) for p in dyn_pos]
            raise ValueError("gradcheck: batched=True needs every batched array to have one size along its "
                             f"in_axes; got (name, shape, axis) {shapes}")
    example = [v if a is None else jnp.take(v, 0, axis=a) for v, a in zip(dyn, dyn_axes)]

    def on(fn):
        """``fn`` as a function of the dynamic leaves (settings and callables held as they are)."""
        def call(values):
            full = list(leaves.values)
            for p, v in zip(dyn_pos, values):
                full[p] = v
            return leaves.call(fn, full)
        return call

    # What the autodiff side replaces, read from the traced function on one example.
    rules = None
    if reference is None:
        rules = strip_rules(jax.make_jaxpr(on(f))(example))[1]
        if not rules.replaced and not numeric:
            kept = f" (kept: {'; '.join(map(str, rules.kept))})" if rules.kept else ""
            raise ValueError("gradcheck: f has no custom rule that without_hand_rules could replace" + kept +
                             ", so the autodiff column would compare f with itself, and numeric=False leaves "
                             "nothing independent to compare; turn numeric on or give reference=")
    independent = reference is not None or bool(rules.replaced)
    # Settings stay Python values when the hand rules are taken out, too.
    f_on = on(f)
    ref_on = without_hand_rules(f_on) if reference is None else on(reference)
    lowest = _lowest([jnp.dtype(v.dtype).name for v, k in zip(dyn, dyn_kinds) if k == "float"])
    upcast, references = _references_dtype(on(f), dyn, dyn_kinds, lowest)

    douts = _cotangent(on(f), example, key)
    diff_lo = [dyn[i] for i in diff_in_dyn]
    us = [[_rounded(jax.random.normal(jax.random.fold_in(key, 1000 + 100 * k + j), v.shape, jnp.float32), v.dtype)
           for j, v in enumerate(diff_lo)] for k in range(1, order)]
    problem = _Problem(dyn_axes, diff_in_dyn, batched, douts, us)
    lo = _Side(problem.scalar(f_on, dyn), problem.scalar(ref_on, dyn), diff_lo, contextlib.nullcontext)
    up = lo
    if upcast:
        with jax.enable_x64(True):
            dyn64 = _upcast(dyn, dyn_kinds)
            up = _Side(problem.scalar(f_on, dyn64), problem.scalar(ref_on, dyn64), problem.diff(dyn64),
                       lambda: jax.enable_x64(True))

    entries, eps_used = [], {}
    hand = ref = ref_lo = hand64 = None
    if mode == "reverse":
        hand = lo.grad(lo.g_hand)
        ref_lo = lo.grad(lo.g_ref)
        ref = up.grad(up.g_ref) if upcast else ref_lo
        hand64 = up.grad(up.g_hand) if upcast else None
    for j, p in enumerate(diff_pos):
        leaf = diff_lo[j]
        check = _Check(name=leaves.names[p], leaf=leaf, j=j, dtype=jnp.dtype(leaf.dtype).name, tol_dtype=lowest,
                       low=upcast, key=key, eps=eps, atol=atol, rtol=rtol, lo=lo, up=up, independent=independent)
        if mode == "forward":
            entries.append(check.forward(numeric, numeric_directions, eps_used))
        else:
            entries.append(check.reverse(hand[j], ref[j], ref_lo[j], None if hand64 is None else hand64[j],
                                         numeric, numeric_elements, numeric_directions, eps_used))
    if batched:
        under, looped = _per_example(problem.example_fn(f_on), dyn, dyn_axes, diff_in_dyn)
        entries = [dataclasses.replace(e, batched=_compare(under[j], looped[j],
                                                           *_TOLERANCES.get(e.dtype, _TOLERANCES["float32"])[0]))
                   for j, e in enumerate(entries)]
    return GradcheckReport(entries=tuple(entries), eps=eps_used, skipped=tuple(skipped), order=order,
                           rules=rules, references=references, aux=aux)


@dataclasses.dataclass
class _Side:
    """The hand and reference scalar functions at one precision, the point, and its x64 setting."""
    g_hand: object
    g_ref: object
    at: list
    x64: object  # a context manager factory

    def grad(self, g):
        with self.x64():
            return [np.asarray(a, np.float64) for a in jax.jit(jax.grad(g))(self.at)]

    def forward(self, g, j, u):
        with self.x64():
            return _forward(g, self.at, j, u)


def _tolerances(dtype, low, noise, user_atol, user_rtol, which):
    """``(atol, rtol, note)`` for one comparison. ``which``: 0 autodiff, 1 numeric.

    Low precision checked through float64: the measured rounding of the dtype (``noise``) and its
    epsilon, plus, for numeric, float64 central differences' own error. A tolerance asked for
    that is tighter than the dtype resolves fails closed with a note.
    """
    if not low:
        atol_d, rtol_d = _TOLERANCES.get(dtype, _TOLERANCES["float32"])[which]
        return (atol_d if user_atol is None else user_atol), (rtol_d if user_rtol is None else user_rtol), ""
    eps_d = float(jnp.finfo(dtype).eps)
    atol_d, rtol_d = _NOISE_FACTOR * noise, _EPS_FACTOR * eps_d
    if which == 1:
        n_atol, n_rtol = _TOLERANCES["float64"][1]
        atol_d, rtol_d = atol_d + n_atol, rtol_d + n_rtol
    if user_atol is None and user_rtol is None:
        return atol_d, rtol_d, ""
    note = ""
    if (user_rtol is not None and user_rtol < _EPS_FACTOR * eps_d) or (
            user_atol is not None and user_atol < _NOISE_FACTOR * noise):
        note = (f"{dtype} cannot resolve the tolerance asked (atol {user_atol}, rtol {user_rtol}): its rounding "
                f"here is about {noise:.2g} absolute and {eps_d:.2g} relative; check in a wider dtype or "
                f"loosen the tolerance")
    return (atol_d if user_atol is None else user_atol), (rtol_d if user_rtol is None else user_rtol), note


@dataclasses.dataclass
class _Check:
    """The comparisons for one differentiable leaf."""
    name: str
    leaf: object
    j: int
    dtype: str  # the leaf's
    tol_dtype: str  # the least precise input's: it sets the rounding of the whole computation
    low: bool  # references in float64 on an upcast copy
    key: object
    eps: float | None
    atol: float | None
    rtol: float | None
    lo: _Side
    up: _Side
    independent: bool

    def tolerances(self, noise, which):
        return _tolerances(self.tol_dtype if self.low else self.dtype, self.low, noise, self.atol, self.rtol, which)

    def step(self, eps_used):
        step = _EPS.get("float64" if self.low else self.dtype, 1e-3) if self.eps is None else self.eps
        eps_used[self.name] = step
        return step

    def in_float64(self, hand64, ref):
        if not self.low:
            return None
        t_atol, t_rtol = _TOLERANCES["float64"][0]
        return _compare(hand64, ref, t_atol if self.atol is None else self.atol,
                        t_rtol if self.rtol is None else self.rtol)

    def reverse(self, hand, ref, ref_lo, hand64, numeric, numeric_elements, numeric_directions, eps_used):
        leaf, j, up = self.leaf, self.j, self.up
        hand_flat = hand.reshape(-1)
        noise = float(np.max(np.abs(ref_lo - ref), initial=0.0)) if self.low else 0.0
        a_atol, a_rtol, a_note = self.tolerances(noise, 0)
        num, kinks, elements, count = None, (), np.arange(leaf.size), 0
        if numeric and numeric_directions is not None:
            step = self.step(eps_used)
            u = np.asarray(jax.random.normal(jax.random.fold_in(self.key, 500 + j), (numeric_directions, leaf.size),
                                             jnp.float32), np.float64)
            # Along a random direction the noise projects to about its 2-norm.
            n_atol, n_rtol, n_note = self.tolerances(float(np.linalg.norm((ref_lo - ref).reshape(-1)))
                                                     if self.low else 0.0, 1)
            # Entries of size 1: each element moves by about eps, as with elements, and the
            # projection grows with the array where the rounding of the difference does not.
            with up.x64():
                central = _directional(up.g_hand, up.at, j, step, u)
            num = _compare(u @ hand_flat, central, n_atol, n_rtol, note=n_note)
            count = numeric_directions
        elif numeric:
            n_atol, n_rtol, n_note = self.tolerances(noise, 1)
            if numeric_elements is not None and numeric_elements < leaf.size:
                chosen = jax.random.choice(jax.random.fold_in(self.key, j + 1), leaf.size, (numeric_elements,),
                                           replace=False)
                elements = np.sort(np.asarray(chosen))
            step = self.step(eps_used)
            hand_at = hand_flat[elements]
            with up.x64():
                central = _numeric_grad(up.g_hand, up.at, j, step, elements)
            num = _compare(hand_at, central, n_atol, n_rtol, note=n_note)
            if not num.ok and not n_note:  # kinks: one-sided differences that disagree, the hand value among them
                bad = np.flatnonzero(~(np.abs(hand_at - central) <= n_atol + n_rtol * np.abs(central)))
                with up.x64():
                    left, right = _one_sided(up.g_hand, up.at, j, step, elements[bad])
                tol = n_atol + n_rtol * np.maximum(np.abs(left), np.abs(right))
                low_side, high_side = np.minimum(left, right) - tol, np.maximum(left, right) + tol
                kink = (np.abs(left - right) > tol) & (hand_at[bad] >= low_side) & (hand_at[bad] <= high_side)
                kinks = tuple(Kink(tuple(int(i) for i in np.unravel_index(elements[b], leaf.shape)),
                                   float(lf), float(rt), float(hand_at[b]))
                              for b, lf, rt in zip(bad[kink], left[kink], right[kink]))
                if kinks:
                    num = _compare(hand_at, central, n_atol, n_rtol, ignore=bad[kink])
            count = len(elements)
        return Entry(name=self.name, shape=tuple(leaf.shape), dtype=self.dtype,
                     autodiff=_compare(hand, ref, a_atol, a_rtol, note=a_note if self.independent else ""),
                     numeric=num, numeric_elements=count, kinks=kinks,
                     numeric_directions=numeric_directions is not None, autodiff_values=ref,
                     numeric_indices=elements, autodiff_independent=self.independent,
                     float64=self.in_float64(hand64, ref))

    def forward(self, numeric, numeric_directions, eps_used):
        leaf, j, lo, up = self.leaf, self.j, self.lo, self.up
        k = numeric_directions or 4
        u = np.asarray(jax.random.normal(jax.random.fold_in(self.key, 700 + j), (k, leaf.size), jnp.float32),
                       np.float64)
        u = _rounded(u, leaf.dtype)
        hand = lo.forward(lo.g_hand, j, u)
        ref_lo = lo.forward(lo.g_ref, j, u)
        ref = up.forward(up.g_ref, j, u) if self.low else ref_lo
        hand64 = up.forward(up.g_hand, j, u) if self.low else None
        noise = float(np.max(np.abs(ref_lo - ref), initial=0.0)) if self.low else 0.0
        a_atol, a_rtol, a_note = self.tolerances(noise, 0)
        num = None
        if numeric:
            n_atol, n_rtol, n_note = self.tolerances(noise, 1)
            step = self.step(eps_used)
            with up.x64():
                central = _directional(up.g_hand, up.at, j, step, u)
            num = _compare(hand, central, n_atol, n_rtol, note=n_note)
        return Entry(name=self.name, shape=tuple(leaf.shape), dtype=self.dtype,
                     autodiff=_compare(hand, ref, a_atol, a_rtol, note=a_note if self.independent else ""),
                     numeric=num, numeric_elements=k if numeric else 0, numeric_directions=True,
                     autodiff_independent=self.independent, float64=self.in_float64(hand64, ref), directions=True)


def _per_example(s_hand, dyn, dyn_axes, diff_in_dyn):
    """``(under_vmap, looped)``: per-example gradients ``vmap(grad(f), in_axes)`` of the hand rules,
    and the same computed one example at a time."""
    def on_example(diff_leaves, others):
        new = list(others)
        for i, v in zip(diff_in_dyn, diff_leaves):
            new[i] = v
        return s_hand(new)

    one = jax.grad(on_example)
    diff_axes = [dyn_axes[i] for i in diff_in_dyn]
    under = jax.jit(jax.vmap(one, in_axes=(diff_axes, dyn_axes)))([dyn[i] for i in diff_in_dyn], dyn)
    n = next(jnp.shape(v)[a] for v, a in zip(dyn, dyn_axes) if a is not None)
    one = jax.jit(one)
    take = [lambda v, i, a=a: v if a is None else jnp.take(v, i, axis=a) for a in dyn_axes]
    looped = []
    for i in range(n):
        example = [t(v, i) for t, v in zip(take, dyn)]
        looped.append(one([example[d] for d in diff_in_dyn], example))
    return ([np.asarray(u, np.float64) for u in under],
            [np.stack([np.asarray(r[j], np.float64) for r in looped]) for j in range(len(diff_in_dyn))])


def assert_gradcheck(f, *args, **kwargs):
    """Runs ``gradcheck`` and raises ``AssertionError`` with its table if any comparison fails."""
    report = gradcheck(f, *args, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradient check failed\n{report}")
    return report
