"""The comparisons: central and one-sided differences, kinks, and hand against a reference.

The book's ``numerical_gradient`` is ``(f(x + h) - f(x - h)) / 2h``. With
``f(x)`` evaluated once more, the same two evaluations give both one-sided
differences, ``(f(x) - f(x - h)) / h`` and ``(f(x + h) - f(x)) / h``: where
they disagree the function has a kink within ``h`` (ReLU at 0, tied maxima),
and there only the interval between them can judge a hand value.
"""

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._report import Comparison, Kink


def _at_flat(g, leaves, index):
    """``g`` as a function of leaf ``index`` flattened, the other leaves held."""
    def at(v):
        new = list(leaves)
        new[index] = v.reshape(leaves[index].shape)
        return g(new)
    return at


class Differences:
    """Central and one-sided differences of ``g`` in leaf ``index``: compiled once per leaf and mode
    (elements or directions), the step a traced argument, rows evaluated a fixed-size chunk of
    perturbed copies at a time under ``vmap`` (the last chunk padded), ``g`` at the point itself
    evaluated in the same program."""

    def __init__(self, g, leaves, index, chunk_elems=1 << 24):
        self.leaf, at = leaves[index], _at_flat(g, leaves, index)
        n = self.leaf.size
        self.chunk = max(1, min(256, chunk_elems // max(n, 1)))
        v = self.leaf.reshape(-1)
        dtype = self.leaf.dtype

        def evaluate(steps, eps):
            steps = steps * eps.astype(dtype)
            return jax.vmap(at)(v[None, :] + steps), jax.vmap(at)(v[None, :] - steps)

        # An element -1 is the point itself (a row of zeros).
        self._elements = jax.jit(lambda idx, eps: evaluate(jax.nn.one_hot(idx, n, dtype=dtype), eps))
        self._directions = jax.jit(lambda u, eps: evaluate(u.astype(dtype), eps))

    def __call__(self, eps, *, elements=None, directions=None):
        """``(central, left, right)`` at the flat ``elements``, or along each row of ``directions``."""
        by_elements = directions is None
        source = np.asarray(elements if by_elements else directions)
        here = np.full((1,), -1) if by_elements else np.zeros((1, source.shape[1]))
        rows = np.concatenate([source.reshape((-1,) + here.shape[1:]), here])
        fn = self._elements if by_elements else self._directions
        plus, minus = [], []
        for start in range(0, len(rows), self.chunk):
            part = rows[start:start + self.chunk]
            padded = np.concatenate([part, np.repeat(part[-1:], self.chunk - len(part), axis=0)])
            p, m = fn(jnp.asarray(padded), jnp.asarray(eps, jnp.float64 if self.leaf.dtype == jnp.float64
                                                      else jnp.float32))
            plus.append(np.asarray(p, np.float64)[:len(part)])
            minus.append(np.asarray(m, np.float64)[:len(part)])
        plus, minus = np.concatenate(plus), np.concatenate(minus)
        f0, plus, minus = plus[-1], plus[:-1], minus[:-1]
        return (plus - minus) / (2 * eps), (f0 - minus) / eps, (plus - f0) / eps


def kinks(hand, left, right, atol, rtol, agree=None):
    """Which values lie at a kink: one-sided differences that disagree beyond the tolerance, with the
    hand value between them (so the hand rule chose one of the function's one-sided slopes), or,
    where ``agree`` is given, equal to the independent autodiff value.

    The interval alone is too narrow where several values tie: the second of two tied maxima in a
    top-k, an element of a tie under ``sort``. Moving one of them alone reaches only the extreme
    ranks, while a right derivative (the gradient of f just beside the tie, which both the hand rule
    and autodiff give) may take the rank in between."""
    hand, left, right = (np.asarray(a, np.float64) for a in (hand, left, right))
    tol = atol + rtol * np.maximum(np.abs(left), np.abs(right))
    low, high = np.minimum(left, right) - tol, np.maximum(left, right) + tol
    with np.errstate(invalid="ignore"):
        inside = (hand >= low) & (hand <= high)
        return (np.abs(left - right) > tol) & (inside if agree is None else inside | agree)


def kink_list(positions, hand, left, right, shape=None, as_autodiff=(), directions=False):
    """``Kink`` records, ``positions`` flat indices into ``shape`` (or direction numbers); those in
    ``as_autodiff`` passed as equal to autodiff, outside their interval."""
    def where(p):
        return tuple(int(i) for i in np.unravel_index(int(p), shape)) if shape else (int(p),)
    return tuple(Kink(where(p), float(lf), float(rt), float(h), int(p) in as_autodiff, directions)
                 for p, h, lf, rt in zip(positions, hand, left, right))


def mismatches(hand, ref, atol, rtol):
    """Where ``|hand - ref| > atol + rtol |ref|``, a non-finite value on either side included."""
    hand, ref = np.asarray(hand, np.float64).reshape(-1), np.asarray(ref, np.float64).reshape(-1)
    with np.errstate(invalid="ignore"):
        return ~(np.abs(hand - ref) <= atol + rtol * np.abs(ref))


def compare(hand, ref, atol, rtol, ignore=None, note="", excluded=None, excluded_why=""):
    """A ``Comparison``; ``ignore`` marks kinks (judged apart, counted in ``kinks``), ``excluded`` values
    left out for the reason given."""
    hand = np.asarray(hand, dtype=np.float64).reshape(-1)
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    skip = np.zeros(hand.shape, bool)
    n_kinks = n_excluded = 0
    if ignore is not None:
        skip |= ignore
        n_kinks = int(ignore.sum())
    if excluded is not None:
        n_excluded = int((excluded & ~skip).sum())
        skip |= excluded
    counted = ~skip
    with np.errstate(invalid="ignore"):
        diff = np.abs(hand - ref)
        # The atol floor keeps entries that are zero up to noise from reading as 100% off.
        scale = np.maximum(np.maximum(np.abs(hand), np.abs(ref)), atol)
        rel = np.divide(diff, scale, out=np.zeros_like(diff), where=scale > 0)
        excess = diff - (atol + rtol * np.abs(ref))
    excess[hand == ref] = -np.inf  # identical values agree (equal infinities too: references are checked apart)
    excess[np.isnan(excess)] = np.inf  # any other non-finite value is a mismatch, never a pass
    excess[skip] = -np.inf
    shown_diff = np.where(counted & np.isfinite(diff), diff, 0.0)
    shown_rel = np.where(counted & np.isfinite(rel), rel, 0.0)
    worst = int(np.argmax(excess)) if excess.size else 0
    failed = int(np.sum(excess > 0))
    if failed and not np.isfinite(diff[worst]):
        shown_diff[worst] = shown_rel[worst] = np.inf
    return Comparison(
        max_abs=float(np.max(shown_diff, initial=0.0)), max_rel=float(np.max(shown_rel, initial=0.0)),
        mean_abs=float(shown_diff[counted].mean()) if counted.any() else 0.0, atol=atol, rtol=rtol,
        ok=failed == 0 and not note, worst=worst,
        worst_hand=float(hand[worst]) if hand.size else 0.0, worst_reference=float(ref[worst]) if ref.size else 0.0,
        failed=failed, size=int(diff.size), note=note, kinks=n_kinks, excluded=n_excluded,
        excluded_why=excluded_why if n_excluded else "")


def forward_along(g, leaves, index, directions):
    """``<grad g, u>`` for each row ``u`` of ``directions``, by forward mode (``jax.jvp``)."""
    leaf, at = leaves[index], _at_flat(g, leaves, index)

    @jax.jit
    def along(u):
        v = leaf.reshape(-1)
        return jax.vmap(lambda t: jax.jvp(at, (v,), (t.astype(leaf.dtype),))[1])(u)

    return np.asarray(along(jnp.asarray(directions)), np.float64)
