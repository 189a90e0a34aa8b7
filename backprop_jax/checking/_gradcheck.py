"""Gradient check: the hand rule against autodiff and central differences.

The book checks its backward pass against a numerical gradient (sec. 5.7.3).
``gradcheck`` does that and adds a third opinion, JAX's automatic
differentiation of the same forward with the hand rules taken out.
"""

import dataclasses
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
    ok: bool  # |hand - reference| <= atol + rtol * |reference| everywhere


@dataclasses.dataclass(frozen=True)
class Entry:
    """The check of one differentiable array (a leaf of an argument)."""
    name: str
    shape: tuple
    dtype: str
    autodiff: Comparison
    numeric: Comparison | None  # None when central differences were skipped
    numeric_elements: int = 0  # how many elements central differences checked

    @property
    def ok(self):
        return self.autodiff.ok and (self.numeric is None or self.numeric.ok)


@dataclasses.dataclass(frozen=True)
class GradcheckReport:
    """Result of ``gradcheck``: one ``Entry`` per differentiable array."""
    entries: tuple
    eps: dict  # the central-difference step used, by entry name
    skipped: tuple  # names of non-differentiable (integer or bool) leaves

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
                if e.numeric_elements < int(np.prod(e.shape)):
                    row += f"  ({e.numeric_elements} of {int(np.prod(e.shape))} elements)"
            lines.append(row)
        if self.skipped:
            lines.append(f"not differentiable, skipped: {', '.join(self.skipped)}")
        lines.append("gradient check passed" if self.ok else "gradient check FAILED")
        return "\n".join(lines)


def _compare(hand, ref, atol, rtol):
    hand = np.asarray(hand, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    diff = np.abs(hand - ref)
    # The atol floor keeps entries that are zero up to noise from reading as 100% off.
    scale = np.maximum(np.maximum(np.abs(hand), np.abs(ref)), atol)
    rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
    return Comparison(
        max_abs=float(diff.max(initial=0.0)), max_rel=float(rel.max(initial=0.0)),
        mean_abs=float(diff.mean()) if diff.size else 0.0, atol=atol, rtol=rtol,
        ok=bool(np.all(diff <= atol + rtol * np.abs(ref))))


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


def _numeric_grad(g, leaves, index, eps, elements, chunk_elems=1 << 24):
    """Central differences ``(g(v + eps) - g(v - eps)) / (2 eps)`` at the flat ``elements``.

    The book's ``numerical_gradient``, vectorised: perturbed copies are built
    and evaluated a chunk at a time under ``vmap``.
    """
    leaf = leaves[index]
    n = leaf.size
    chunk = max(1, min(len(elements), chunk_elems // max(n, 1)))

    def g_flat(v):
        new = list(leaves)
        new[index] = v.reshape(leaf.shape)
        return g(new)

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


def gradcheck(f, *args, reference=None, argnums=None, eps=None, atol=None,
              rtol=None, numeric=True, numeric_elements=None, key=None, matmul_precision="highest"):
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

    Args:
      f: function of ``args``.
      *args: arrays, Python floats or pytrees of them.
      reference: function with ``f``'s signature to differentiate
        automatically in place of ``without_hand_rules(f)``.
      argnums: indices of the arguments to check (default: all).
      eps: central-difference step (default by dtype: 1e-6 for float64,
        1e-3 for float32).
      atol, rtol: tolerances for both comparisons. By default they depend on
        the dtype: tight in float64, looser in float32, and looser for the
        numeric comparison than for the autodiff one.
      numeric: set False to skip central differences (they cost two
        evaluations of ``f`` per element).
      numeric_elements: check central differences on at most this many
        elements per array, drawn at random from ``key`` (default: all, as
        the book does); for large networks.
      key: PRNG key for the random cotangent (default ``jax.random.key(0)``).
      matmul_precision: ``jax.default_matmul_precision`` for all three
        gradients (default ``"highest"``). GPUs and TPUs run float32 matrix
        products in TF32 or bfloat16 passes by default, whose rounding (about
        1e-3) swamps central differences; None keeps the current setting.
    Returns:
      A ``GradcheckReport``; ``report.ok`` is True only if every comparison
      passes and ``str(report)`` is a table per argument.
    """
    if matmul_precision is not None:
        with jax.default_matmul_precision(matmul_precision):
            return gradcheck(f, *args, reference=reference, argnums=argnums, eps=eps, atol=atol,
                             rtol=rtol, numeric=numeric, numeric_elements=numeric_elements, key=key,
                             matmul_precision=None)
    for name, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                      and (value > 0 if name == "eps" else value >= 0)):
            raise ValueError(f"gradcheck: {name} must be None or a finite number "
                             f"{'> 0' if name == 'eps' else '>= 0'}, got {value!r}")
    args = tuple(jax.tree_util.tree_map(jnp.asarray, a) for a in args)
    argnums = tuple(range(len(args))) if argnums is None else tuple(
        [argnums] if isinstance(argnums, int) else argnums)
    for i in argnums:
        if not 0 <= i < len(args):
            raise ValueError(f"gradcheck: argnums contains {i}, but f is given {len(args)} arguments")
    key = jax.random.key(0) if key is None else key
    reference = without_hand_rules(f) if reference is None else reference

    flat, tree = jax.tree_util.tree_flatten(args)
    all_names = leaf_names(f, args, range(len(args)))
    offsets = np.cumsum([0] + [len(jax.tree_util.tree_leaves(a)) for a in args])
    checked = {p for i in argnums for p in range(offsets[i], offsets[i + 1])}
    names, diff_pos, skipped = [], [], []
    for pos, (name, leaf) in enumerate(zip(all_names, flat)):
        if pos not in checked:
            continue
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            names.append(name)
            diff_pos.append(pos)
        else:
            skipped.append(name)
    if not diff_pos:
        raise ValueError("gradcheck: no floating-point argument to check among argnums "
                         f"{argnums}; integer and bool arrays are not differentiable")

    def on_leaves(fn):
        scalar_fn = _scalarize(fn, args, key)

        def g(diff_leaves):
            new = list(flat)
            for pos, leaf in zip(diff_pos, diff_leaves):
                new[pos] = leaf
            return scalar_fn(*jax.tree_util.tree_unflatten(tree, new))
        return g

    leaves = [flat[p] for p in diff_pos]
    hand = jax.jit(jax.grad(on_leaves(f)))(leaves)
    auto = jax.jit(jax.grad(on_leaves(reference)))(leaves)
    g = on_leaves(f)

    entries, eps_used = [], {}
    for j, (name, leaf) in enumerate(zip(names, leaves)):
        dtype = jnp.dtype(leaf.dtype).name
        (a_atol, a_rtol), (n_atol, n_rtol) = _TOLERANCES.get(dtype, _TOLERANCES["float32"])
        if atol is not None:
            a_atol = n_atol = atol
        if rtol is not None:
            a_rtol = n_rtol = rtol
        num, elements = None, np.arange(leaf.size)
        if numeric_elements is not None and numeric_elements < leaf.size:
            if numeric_elements < 1:
                raise ValueError(f"gradcheck: numeric_elements must be >= 1, got {numeric_elements}")
            chosen = jax.random.choice(jax.random.fold_in(key, j + 1), leaf.size, (numeric_elements,),
                                       replace=False)
            elements = np.sort(np.asarray(chosen))
        if numeric:
            step = _EPS.get(dtype, 1e-3) if eps is None else eps
            eps_used[name] = step
            hand_at = np.asarray(hand[j]).reshape(-1)[elements]
            num = _compare(hand_at, _numeric_grad(g, leaves, j, step, elements), n_atol, n_rtol)
        entries.append(Entry(name=name, shape=tuple(leaf.shape), dtype=dtype,
                             autodiff=_compare(hand[j], auto[j], a_atol, a_rtol),
                             numeric=num, numeric_elements=len(elements) if numeric else 0))
    return GradcheckReport(entries=tuple(entries), eps=eps_used, skipped=tuple(skipped))


def assert_gradcheck(f, *args, **kwargs):
    """Runs ``gradcheck`` and raises ``AssertionError`` with its table if any comparison fails."""
    report = gradcheck(f, *args, **kwargs)
    if not report.ok:
        raise AssertionError(f"gradient check failed\n{report}")
    return report
