"""Gradient check: the hand rule against autodiff and central differences.

The book checks its backward pass against a numerical gradient (sec. 5.7.3).
``gradcheck`` does that and adds a third opinion, JAX's automatic
differentiation of the same forward with the hand rules taken out.
"""

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._autodiff import without_hand_rules
from backprop_jax.checking._jaxpr import leaf_names

# Default tolerances by dtype: (atol, rtol) for hand vs autodiff, then for
# hand vs central differences, whose own error is far larger than rounding.
_TOLERANCES = {
    "float64": ((1e-9, 1e-7), (1e-6, 1e-5)),
    "float32": ((1e-5, 1e-4), (1e-3, 5e-3)),
    "bfloat16": ((5e-2, 5e-2), (5e-1, 2e-1)),
    "float16": ((1e-2, 1e-2), (2e-1, 1e-1)),
}
_EPS = {"float64": 1e-6, "float32": 1e-3, "bfloat16": 1e-1, "float16": 1e-2}


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

    @property
    def ok(self):
        return (self.autodiff.ok and (self.numeric is None or self.numeric.ok)
                and (self.batched is None or self.batched.ok))

    def worst(self):
        """Lines naming, for each failing comparison, its worst element and the values there."""
        lines = []
        size = int(np.prod(self.shape))
        for label, c in (("autodiff", self.autodiff), ("numeric", self.numeric), ("vmap", self.batched)):
            if c is None or c.ok:
                continue
            if label == "numeric" and self.numeric_directions:
                lines.append(f"  {self.name}: along random direction {c.worst}: hand {c.worst_hand:.6g}, "
                             f"numeric {c.worst_reference:.6g}")
                continue
            index = c.worst
            if label == "numeric" and self.numeric_elements < size:
                index = int(self.numeric_indices[c.worst])
            where = np.unravel_index(index, self.shape) if self.shape else ()
            auto = np.asarray(self.autodiff_values).reshape(-1)[index] if self.autodiff_values is not None else None
            parts = [f"hand {c.worst_hand:.6g}"]
            if label == "vmap":
                parts = [f"under vmap {c.worst_hand:.6g}", f"one by one {c.worst_reference:.6g}"]
            else:
                if auto is not None:
                    parts.append(f"autodiff {float(auto):.6g}")
                if label == "numeric":
                    parts.append(f"numeric {c.worst_reference:.6g}")
            lines.append(f"  {self.name}{list(map(int, where))}: worst {label} mismatch: " + ", ".join(parts))
        return lines


@dataclasses.dataclass(frozen=True)
class GradcheckReport:
    """Result of ``gradcheck``: one ``Entry`` per differentiable array."""
    entries: tuple
    eps: dict  # the central-difference step used, by entry name
    skipped: tuple  # names of leaves not checked, each with the reason
    order: int = 1  # 1: gradients; 2: second derivatives (directional), ...

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
            row = (f"{e.name:<16}{str(e.shape):<14}{e.dtype:<10}"
                   f"{e.autodiff.max_abs:>22.2e}{e.autodiff.max_rel:>10.2e}"
                   f"{'ok' if e.autodiff.ok else 'FAIL':>6}")
            if e.numeric is None:
                row += f"{'(skipped)':>21}"
            else:
                row += (f"{e.numeric.max_abs:>21.2e}{e.numeric.max_rel:>10.2e}"
                        f"{'ok' if e.numeric.ok else 'FAIL':>6}")
                if e.numeric_directions:
                    row += f"  ({e.numeric_elements} random directions)"
                elif e.numeric_elements < int(np.prod(e.shape)):
                    row += f"  ({e.numeric_elements} of {int(np.prod(e.shape))} elements)"
            if e.batched is not None:
                row += f"  vmap vs loop {e.batched.max_abs:.2e} {'ok' if e.batched.ok else 'FAIL'}"
            lines.append(row)
            lines += e.worst()
            for k in e.kinks:
                lines.append(f"  {e.name}{list(k.index)}: within eps of a kink (one-sided differences "
                             f"{k.left:.4g} and {k.right:.4g}; hand {k.hand:.4g}): not counted")
        if self.skipped:
            lines.append(f"not checked: {', '.join(self.skipped)}")
        what = "gradient" if self.order == 1 else f"order-{self.order} derivative"
        lines.append(f"{what} check passed" if self.ok else f"{what} check FAILED")
        return "\n".join(lines)


def _compare(hand, ref, atol, rtol, ignore=None):
    hand = np.asarray(hand, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    diff = np.abs(hand - ref)
    # The atol floor keeps entries that are zero up to noise from reading as 100% off.
    scale = np.maximum(np.maximum(np.abs(hand), np.abs(ref)), atol)
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    excess = diff - (atol + rtol * np.abs(ref))
    if ignore is not None and ignore.size:
        excess[ignore] = -np.inf
    worst = int(np.argmax(excess)) if excess.size else 0
    return Comparison(
        max_abs=float(diff.max(initial=0.0)), max_rel=float(rel.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0, atol=atol, rtol=rtol,
        ok=bool(np.all(excess <= 0)), worst=worst,
        worst_hand=float(hand[worst]) if hand.size else 0.0, worst_reference=float(ref[worst]) if ref.size else 0.0)


def _scalarize(f, args, key):
    """``f`` if it returns a scalar, else ``<dout, f(args)>`` for a fixed random ``dout``.

    Checking the VJP against one random cotangent checks every entry of the
    Jacobian with probability 1, at the cost of a single scalar function.
    """
    out = jax.eval_shape(f, *args)
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) == 1 and leaves[0].shape == ():
        return lambda *a: jax.tree_util.tree_leaves(f(*a))[0]
    keys = jax.random.split(key, len(leaves))
    douts = [jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)]
    return lambda *a: sum(jnp.sum(d * o) for d, o in zip(douts, jax.tree_util.tree_leaves(f(*a))))


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
        out.append(np.asarray(diffs(jnp.asarray(idx)))[: min(chunk, len(elements) - start)])
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
        step = jnp.asarray(eps, leaf.dtype) * u
        return (jax.vmap(at)(v[None, :] + step) - jax.vmap(at)(v[None, :] - step)) / (2 * eps)

    return np.asarray(diffs(directions), np.float64)


def _static(a):
    """Python ints, bools, strings and None are settings (a stride, a flag), not inputs."""
    return a is None or isinstance(a, (bool, int, str)) and not isinstance(a, float)


def gradcheck(f, *args, reference=None, argnums=None, eps=None, atol=None, rtol=None, numeric=True,
              numeric_elements=None, numeric_directions=None, order=1, batched=False, key=None,
              matmul_precision="highest"):
    """Compares the hand rule with autodiff and with central differences.

    For every differentiable array among ``args`` (leaves of pytrees such as
    parameter dicts included; integer and bool leaves such as labels are
    skipped), three gradients of ``f`` are computed:

    1. the hand rule: ``jax.grad`` of ``f``, which runs its custom VJPs;
    2. autodiff: ``jax.grad`` of ``reference`` (default:
       ``without_hand_rules(f)``, the same forward with every custom VJP
       replaced by JAX's automatic differentiation);
    3. numeric: central differences of ``f`` (the book's numerical gradient).

    If ``f`` does not return a scalar, the check is made on
    ``sum(dout * f(*args))`` for a fixed random cotangent ``dout`` (drawn
    from ``key``), which exercises every entry of the VJP.

    A failing argument's report names its worst element (index, and the hand,
    autodiff and numeric values there). An element whose one-sided
    differences disagree lies within ``eps`` of a kink (ReLU at 0, tied
    maxima in pooling, ``abs`` at 0): central differences cannot judge it, so
    it is reported as such and not counted against the rule.

    Args:
      f: function of ``args``.
      *args: arrays, Python floats or pytrees of them. Python ints, bools and
        strings (a stride, a flag) are passed through unchanged and not
        checked. A Python float that ``f`` passes to a non-differentiable
        argument of a layer (``nondiff_argnums``: ``weight_decay``'s ``lam``,
        ``dropout``'s ``drop_rate``) is found, held fixed and noted.
        Complex arrays are refused: check ``lambda re, im: f(re + 1j * im)``
        at ``x.real, x.imag`` instead, which checks the real and imaginary
        parts of the rule as two real gradients.
      reference: function with ``f``'s signature to differentiate
        automatically in place of ``without_hand_rules(f)``.
      argnums: indices of the arguments to check (default: all).
      eps: central-difference step (default by dtype: 1e-6 for float64,
        1e-3 for float32).
      atol, rtol: tolerances for all comparisons. By default they depend on
        the dtype: tight in float64, looser in float32, and looser for the
        numeric comparison than for the autodiff one.
      numeric: set False to skip central differences.
      numeric_elements: central differences on at most this many elements
        per array, drawn at random from ``key`` (default: all, as the book
        does); each costs two evaluations of ``f``.
      numeric_directions: instead, compare ``v^T J u`` (the hand gradient's
        projection against the central difference of ``f`` along ``u``) for
        this many random directions ``u`` per array: a cost that does not grow
        with the array's size, and every element takes part in each
        direction. Use it for large arrays; use elements to find the faulty
        entry.
      order: 2 checks second derivatives (and N the N-th): the derivative of
        ``<grad f, u>`` for a random ``u``, differentiated through the hand
        rules, against the same of ``without_hand_rules(f)`` and against
        central differences of the hand first derivative. A rule that is
        right at first order but whose own backward is not differentiable
        correctly (a ``stop_gradient`` on a residual) fails here.
      batched: check the rules under ``jax.vmap``, as per-example gradients
        use them: every array argument has a leading batch axis and ``f`` is
        applied to one example (it sees no batch axis). All three gradients
        are then per-example gradients computed under ``vmap``, and they are
        also compared with the same rules run one example at a time in a
        loop, which catches a rule that breaks only under ``vmap``.
      key: PRNG key for the random cotangent, directions and elements
        (default ``jax.random.key(0)``).
      matmul_precision: ``jax.default_matmul_precision`` for all three
        gradients (default ``"highest"``). GPUs and TPUs run float32 matrix
        products in TF32 or bfloat16 passes by default, whose rounding (about
        1e-3) swamps central differences; None keeps the current setting.
    Returns:
      A ``GradcheckReport``; ``report.ok`` is True only if every comparison
      passes and ``str(report)`` is a table per argument.
    """
    options = dict(reference=reference, eps=eps, atol=atol, rtol=rtol, numeric=numeric,
                   numeric_elements=numeric_elements, numeric_directions=numeric_directions, order=order,
                   batched=batched, key=key)
    if matmul_precision is not None:
        with jax.default_matmul_precision(matmul_precision):
            return gradcheck(f, *args, argnums=argnums, matmul_precision=None, **options)
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
    argnums = tuple(range(len(args))) if argnums is None else tuple(
        [argnums] if isinstance(argnums, int) else argnums)
    for i in argnums:
        if not 0 <= i < len(args):
            raise ValueError(f"gradcheck: argnums contains {i}, but f is given {len(args)} arguments")
    for i, a in enumerate(args):
        for leaf in jax.tree_util.tree_leaves(a):
            if not _static(leaf) and jnp.iscomplexobj(leaf):
                raise TypeError(
                    f"gradcheck: argument {i} is complex ({jnp.result_type(leaf)}, shape {jnp.shape(leaf)}); "
                    f"complex inputs are not checked directly. Check the real and imaginary parts as two "
                    f"real arguments: gradcheck(lambda re, im: f(re + 1j * im), x.real, x.imag)")
    try:
        return _gradcheck(f, args, argnums, frozenset(), **options)
    except jax.errors.UnexpectedTracerError as e:
        if "nondiff_argnums" not in str(e):
            raise
    # A Python float went to a layer's non-differentiable argument: find which, hold those fixed.
    floats = [i for i, a in enumerate(args) if isinstance(a, float)]
    for held in (frozenset(c) for n in range(1, len(floats) + 1) for c in itertools.combinations(floats, n)):
        try:
            return _gradcheck(f, args, argnums, held, **options)
        except jax.errors.UnexpectedTracerError as e:
            if "nondiff_argnums" not in str(e):
                raise
    raise TypeError("gradcheck: f passes a traced value to a layer's non-differentiable argument "
                    "(nondiff_argnums, such as a stride or weight_decay's lam); pass that setting as a "
                    "Python number, or close over it")


def _gradcheck(f, args, argnums, held, *, reference, eps, atol, rtol, numeric, numeric_elements,
               numeric_directions, order, batched, key):
    key = jax.random.key(0) if key is None else key
    static = {i: a for i, a in enumerate(args) if _static(a) or i in held}
    dynamic = [i for i in range(len(args)) if i not in static]
    dyn_args = tuple(jax.tree_util.tree_map(jnp.asarray, args[i]) for i in dynamic)

    def with_static(fn):
        def call(*dyn):
            full = list(args)
            for i, a in zip(dynamic, dyn):
                full[i] = a
            for i, a in static.items():
                full[i] = a
            return fn(*full)
        return call

    f_dyn = with_static(f)
    # Settings stay Python values when the hand rules are taken out, too.
    ref_dyn = without_hand_rules(f_dyn) if reference is None else with_static(reference)
    flat, tree = jax.tree_util.tree_flatten(dyn_args)
    full = list(args)
    for i, a in zip(dynamic, dyn_args):
        full[i] = a
    all_names = leaf_names(f, full, dynamic)  # f's own parameter names
    offsets = np.cumsum([0] + [len(jax.tree_util.tree_leaves(a)) for a in dyn_args])
    checked = {p for d, i in enumerate(dynamic) if i in argnums for p in range(offsets[d], offsets[d + 1])}
    names, diff_pos, skipped = [], [], []
    for i in sorted(static):
        if i in argnums:
            reason = ("passed to a non-differentiable argument, held fixed" if i in held
                      else f"a Python {type(args[i]).__name__}, a setting")
            skipped.append(f"argument {i} ({reason})")
    for pos, (name, leaf) in enumerate(zip(all_names, flat)):
        if pos not in checked:
            continue
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            names.append(name)
            diff_pos.append(pos)
        else:
            skipped.append(f"{name} (integer or bool)")
    if not diff_pos:
        raise ValueError("gradcheck: no floating-point argument to check among argnums "
                         f"{argnums}; integer and bool arrays are not differentiable")

    if batched:
        sizes = {jnp.shape(leaf)[0] if jnp.ndim(leaf) else None for leaf in flat}
        if len(sizes) != 1 or None in sizes:
            raise ValueError("gradcheck: batched=True needs every array argument to have the same leading "
                             f"batch axis, got shapes {[tuple(jnp.shape(leaf)) for leaf in flat]}")

    def on_leaves(fn):
        """``g(diff_leaves) -> scalar``; batched: the sum over examples of ``fn`` on each, under vmap."""
        example = jax.tree_util.tree_map(lambda a: a[0], dyn_args) if batched else dyn_args
        scalar_fn = _scalarize(fn, example, key)

        def on_all(all_leaves):
            return scalar_fn(*jax.tree_util.tree_unflatten(tree, all_leaves))

        def g(diff_leaves):
            new = list(flat)
            for pos, leaf in zip(diff_pos, diff_leaves):
                new[pos] = leaf
            return jnp.sum(jax.vmap(on_all)(new)) if batched else on_all(new)
        return g, on_all

    leaves = [flat[p] for p in diff_pos]
    (g_hand, hand_example), (g_ref, _) = on_leaves(f_dyn), on_leaves(ref_dyn)
    # Order N: the derivative of <derivative of order N-1, u> for a random u per leaf.
    for k in range(1, order):
        us = [jax.random.normal(jax.random.fold_in(key, 1000 + 100 * k + j), leaf.shape, leaf.dtype)
              for j, leaf in enumerate(leaves)]

        def directional(g, us=us):
            grad = jax.grad(g)
            return lambda ls: sum(jnp.vdot(u, d) for u, d in zip(us, grad(ls)))
        g_hand, g_ref = directional(g_hand), directional(g_ref)

    hand = jax.jit(jax.grad(g_hand))(leaves)
    auto = jax.jit(jax.grad(g_ref))(leaves)
    per_example = _loop_over_examples(hand_example, flat, diff_pos, hand) if batched else None

    entries, eps_used = [], {}
    for j, (name, leaf) in enumerate(zip(names, leaves)):
        dtype = jnp.dtype(leaf.dtype).name
        (a_atol, a_rtol), (n_atol, n_rtol) = _TOLERANCES.get(dtype, _TOLERANCES["float32"])
        if atol is not None:
            a_atol = n_atol = atol
        if rtol is not None:
            a_rtol = n_rtol = rtol
        hand_flat = np.asarray(hand[j], np.float64).reshape(-1)
        num, kinks, elements, count = None, (), np.arange(leaf.size), 0
        if numeric and numeric_directions is not None:
            step = _EPS.get(dtype, 1e-3) if eps is None else eps
            eps_used[name] = step
            u = jax.random.normal(jax.random.fold_in(key, 500 + j), (numeric_directions, leaf.size), leaf.dtype)
            # Entries of size 1: each element moves by about eps, as with elements, and the
            # projection grows with the array where the rounding of the difference does not.
            num = _compare(np.asarray(u, np.float64) @ hand_flat, _directional(g_hand, leaves, j, step, u),
                           n_atol, n_rtol)
            count = numeric_directions
        elif numeric:
            if numeric_elements is not None and numeric_elements < leaf.size:
                chosen = jax.random.choice(jax.random.fold_in(key, j + 1), leaf.size, (numeric_elements,),
                                           replace=False)
                elements = np.sort(np.asarray(chosen))
            step = _EPS.get(dtype, 1e-3) if eps is None else eps
            eps_used[name] = step
            hand_at = hand_flat[elements]
            central = _numeric_grad(g_hand, leaves, j, step, elements)
            num = _compare(hand_at, central, n_atol, n_rtol)
            if not num.ok:  # kinks: one-sided differences that disagree, the hand value among them
                bad = np.flatnonzero(np.abs(hand_at - central) > n_atol + n_rtol * np.abs(central))
                left, right = _one_sided(g_hand, leaves, j, step, elements[bad])
                tol = n_atol + n_rtol * np.maximum(np.abs(left), np.abs(right))
                low, high = np.minimum(left, right) - tol, np.maximum(left, right) + tol
                kink = (np.abs(left - right) > tol) & (hand_at[bad] >= low) & (hand_at[bad] <= high)
                kinks = tuple(Kink(tuple(int(i) for i in np.unravel_index(elements[b], leaf.shape)),
                                   float(lf), float(rt), float(hand_at[b]))
                              for b, lf, rt in zip(bad[kink], left[kink], right[kink]))
                if kinks:
                    num = _compare(hand_at, central, n_atol, n_rtol, ignore=bad[kink])
            count = len(elements)
        vm = None
        if per_example is not None:
            vm = _compare(per_example[0][j], per_example[1][j], a_atol, a_rtol)
        entries.append(Entry(name=name, shape=tuple(leaf.shape), dtype=dtype,
                             autodiff=_compare(hand[j], auto[j], a_atol, a_rtol), numeric=num,
                             numeric_elements=count, kinks=kinks, batched=vm,
                             numeric_directions=numeric_directions is not None, autodiff_values=auto[j],
                             numeric_indices=elements))
    return GradcheckReport(entries=tuple(entries), eps=eps_used, skipped=tuple(skipped), order=order)


def _loop_over_examples(g_example, flat, diff_pos, under_vmap):
    """``(under_vmap, looped)``: the per-example gradients computed under ``vmap`` (the hand
    gradient of the summed check), and the same computed one example at a time."""
    def on_example(diff_leaves, others):
        new = list(others)
        for pos, leaf in zip(diff_pos, diff_leaves):
            new[pos] = leaf
        return g_example(new)

    one = jax.jit(jax.grad(on_example))
    n = jnp.shape(flat[0])[0]
    looped = [one([flat[p][i] for p in diff_pos], [leaf[i] for leaf in flat]) for i in range(n)]
    return under_vmap, [np.stack([np.asarray(r[j]) for r in looped]) for j in range(len(diff_pos))]


def assert_gradcheck(f, *args, **kwargs):
    """Runs ``gradcheck`` and raises ``AssertionError`` with its table if any comparison fails."""
    report = gradcheck(f, *args, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradient check failed\n{report}")
    return report
