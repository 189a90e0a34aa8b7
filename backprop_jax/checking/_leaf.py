"""Central differences for one array: its elements or random directions, and the kinks among them."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._numeric import compare, kink_list, kinks, mismatches
from backprop_jax.checking._policy import LOCATE_ELEMENTS, tolerances
from backprop_jax.checking._problem import finite


def not_finite(name, shape, ref, what):
    """A note naming the first element where a reference is not finite, or ""."""
    bad = np.flatnonzero(~finite(ref))
    if not bad.size:
        return ""
    where = list(map(int, np.unravel_index(bad[0], shape))) if shape else []
    return (f"the {what} reference is not finite at {name}{where} ({ref[bad[0]]}) and {bad.size - 1} more: "
            f"nothing can judge the hand value there")


class LeafNumerics:
    """Central (and one-sided) differences for one leaf: elements or random directions, kinks."""

    def __init__(self, check, j, step, overflow, overflow_why, floor=0.0):
        self.check, self.j, self.step = check, j, step
        self.floor = floor  # the rounding of a difference quotient at ``step`` (in the tolerances given)
        self.overflow, self.overflow_why = overflow, overflow_why
        self.sides = {}  # flat element -> (left, right)
        self.mode, self.elements, self.directions = None, None, None
        self.result = self.located = self.located_at = None
        self.dir_kinks = ()
        self.auto = False
        self.as_autodiff = set()  # elements at a kink passed as equal to autodiff, outside their interval
        self.tied = None  # the last classification's kinks passed only as equal to autodiff

    def _diff(self, **rows):
        return self.check.up.differences(self.check.g_hand_up, self.j, self.step, **rows)

    def classify(self, values, left, right, atol, rtol, agree=None, **rows):
        """Which of ``rows`` (elements or directions, with hand ``values`` and one-sided differences
        ``left``, ``right`` at the step) lie at a kink: ``(kink, central, left, right)``, ``central``
        where a smaller step proved f smooth (NaN elsewhere), ``left`` and ``right`` at the last step
        taken; with ``agree``, ``self.tied`` marks the kinks passed only as equal to autodiff.

        One-sided differences that disagree at the step need not mean a kink: a smooth f's differ by
        ``h |f''|`` (sin(100 x) at h = 1e-6: 1e-2, beyond float64's tolerance) and a kink just beside
        the point leaves the step's interval skewed. In float64 the step shrinks (by 10, then 100)
        while they disagree: where they come to agree, f is smooth within that step and its central
        difference there judges the value; only where they disagree at every step is it a kink,
        judged by the interval at the smallest step (or, with ``agree``, equal to autodiff)."""
        n = len(values)
        central, last_left, last_right = np.full(n, np.nan), np.array(left, float), np.array(right, float)
        tol_of = lambda lf, rt, extra: atol + extra + rtol * np.maximum(np.abs(lf), np.abs(rt))  # noqa: E731
        open_ = np.abs(last_left - last_right) > tol_of(last_left, last_right, 0.0)
        extra = np.zeros(n)
        for shrink in ((10, 100) if self.check.up.at[self.j].dtype == jnp.float64 else ()):
            at = np.flatnonzero(open_)
            if not at.size:
                break
            c, lf, rt = self.check.up.differences(self.check.g_hand_up, self.j, self.step / shrink,
                                                  **{k: v[at] for k, v in rows.items()})
            extra[at] = self.floor * (shrink - 1)  # rounding grows as the step shrinks
            smooth = np.abs(lf - rt) <= tol_of(lf, rt, extra[at])
            central[at[smooth]] = c[smooth]
            last_left[at], last_right[at] = lf, rt
            open_[at[smooth]] = False
        kink = open_ & kinks(values, last_left, last_right, atol + extra, rtol, agree)
        if agree is not None:  # passed as autodiff's value, outside the interval (a tie of several values)
            self.tied = kink & ~kinks(values, last_left, last_right, atol + extra, rtol)
        return kink, central, last_left, last_right

    def run(self, plan, hand, ref, ref_lo, n_atol, n_rtol, n_note, low):
        self.tol, self._hand = (n_atol, n_rtol), hand
        if plan[0] == "elements":
            self.mode = "elements"
            self.elements = self.check.options.chosen_elements(hand.size, plan[1], self.j + 1)
            central, left, right = self._diff(elements=self.elements)
            self.sides.update(zip(self.elements.tolist(), zip(left, right)))
            self.central = central
            return
        self.mode, k, self.auto = "directions", plan[1], plan[2]
        key = self.check.options.prng()
        u = np.asarray(jax.random.normal(jax.random.fold_in(key, 500 + self.j), (k, hand.size), jnp.float32),
                       np.float64)
        central, left, right = self._diff(directions=u)
        # Along a random direction the rounding projects to about its 2-norm.
        both = finite(ref_lo) & finite(ref)
        noise = float(np.linalg.norm((ref_lo - ref)[both])) if low else 0.0
        o = self.check.options
        d_atol, d_rtol, d_note = tolerances(self.check.lowest if low else jnp.dtype(
            self.check.lo.at[self.j].dtype).name, low, noise, o.atol, o.rtol, 1)
        d_atol += self.floor
        proj = u @ hand
        kink = np.zeros(k, bool)
        at = np.flatnonzero(mismatches(proj, central, d_atol, d_rtol))
        if at.size:
            found, finer, lf, rt = self.classify(proj[at], left[at], right[at], d_atol, d_rtol, directions=u[at])
            kink[at] = found
            central[at] = np.where(np.isnan(finer), central[at], finer)
            left[at], right[at] = lf, rt
        self.dir_kinks = kink_list(np.flatnonzero(kink), proj[kink], left[kink], right[kink], directions=True)
        self.result = compare(proj, central, d_atol, d_rtol, ignore=kink, note=d_note)
        self.directions = u
        if (not self.result.ok and not d_note) or self.result.kinks == self.result.size:
            # Name the element: central differences where the hand and autodiff differ most, and at random.
            worst = np.argsort(-np.nan_to_num(np.abs(hand - ref), nan=np.inf))[:32]
            sample = o.chosen_elements(hand.size, min(LOCATE_ELEMENTS, hand.size), 900 + self.j)
            self.located_at = np.union1d(worst, sample)
            central2, left2, right2 = self._diff(elements=self.located_at)
            self.sides.update(zip(self.located_at.tolist(), zip(left2, right2)))
            self.central2 = central2

    def bad_elements(self):
        n_atol, n_rtol = self.tol
        if self.mode == "elements":
            return self.elements[mismatches(self._hand[self.elements], self.central, n_atol, n_rtol)]
        if self.located_at is not None:
            return self.located_at[mismatches(self._hand[self.located_at], self.central2, n_atol, n_rtol)]
        return np.zeros(0, int)

    def kinks_at(self, elements, hand, n_atol, n_rtol, agree=None):
        """A mask over the leaf: the ``elements`` that lie at kinks (one-sided differences computed
        for those not yet met), classified by ``classify``: in float64 at smaller steps too.
        ``agree`` (a mask over the leaf, or None): where the hand value equals an independent autodiff
        value, which passes a kink's value outside the interval of its one-sided differences."""
        mask = np.zeros(hand.size, bool)
        # Where more values mismatch than can be classified cheaply, a sample decides: one value that
        # is not at a kink is a failure the verdict stands on; only a sample all at kinks needs them all.
        cap = max(64, min(4096, (1 << 26) // max(hand.size, 1)))
        if elements.size > cap:
            sample = np.sort(np.asarray(jax.random.choice(jax.random.fold_in(self.check.options.prng(), 77 + self.j),
                                                          elements, (cap,), replace=False)))
            found = self.kinks_at(sample, hand, n_atol, n_rtol, agree)
            if not found[sample].all():
                return found
        missing = np.array([e for e in elements.tolist() if e not in self.sides], int)
        if missing.size:
            _, left, right = self._diff(elements=missing)
            self.sides.update(zip(missing.tolist(), zip(left, right)))
        if not elements.size:
            return mask
        left = np.array([self.sides[e][0] for e in elements.tolist()])
        right = np.array([self.sides[e][1] for e in elements.tolist()])
        found, finer, left, right = self.classify(hand[elements], left, right, n_atol, n_rtol,
                                                   None if agree is None else agree[elements], elements=elements)
        smooth = ~np.isnan(finer)
        self._refine(elements[smooth], finer[smooth])
        self.sides.update((e, (lf, rt)) for e, lf, rt, k in zip(elements.tolist(), left, right, found) if k)
        if agree is not None:
            self.as_autodiff.update(elements[self.tied].tolist())
        mask[elements] = found
        return mask

    def _refine(self, elements, central):
        """The central differences of ``elements`` replaced by those at a smaller step (where f proved
        smooth), wherever the numeric columns hold them."""
        for e, c in zip(elements.tolist(), central):
            for held, values in ((self.elements, getattr(self, "central", None)),
                                 (self.located_at, getattr(self, "central2", None))):
                if held is not None and values is not None:
                    i = np.searchsorted(held, e)
                    if i < len(held) and held[i] == e:
                        values[i] = c

    def fill(self, entry, kink, hand, ref, n_atol, n_rtol, n_note):
        """``entry`` with the numeric column, located elements and kinks."""
        if self.mode is None:
            return dataclasses.replace(entry, kinks=self._kinks(kink, hand, entry.shape))
        if self.mode == "elements":
            num = compare(hand[self.elements], self.central, n_atol, n_rtol, ignore=kink[self.elements],
                          note=n_note, excluded=self.overflow[self.elements], excluded_why=self.overflow_why)
            return dataclasses.replace(entry, numeric=num, numeric_elements=len(self.elements),
                                       numeric_indices=self.elements, kinks=self._kinks(kink, hand, entry.shape))
        located = None
        if self.located_at is not None:
            located = compare(hand[self.located_at], self.central2, n_atol, n_rtol, ignore=kink[self.located_at],
                              excluded=self.overflow[self.located_at], excluded_why=self.overflow_why)
        num, directions = self.result, True
        if located is not None and (num.kinks == num.size or len(self.located_at) == hand.size):
            # Every direction crossed a kink, or the elements cover the whole array: judge by elements.
            num, directions, located = located, False, None
        kink_records = self._kinks(kink, hand, entry.shape) + (self.dir_kinks if directions else ())
        return dataclasses.replace(
            entry, numeric=num, numeric_directions=directions,
            numeric_elements=len(self.directions) if directions else len(self.located_at),
            numeric_indices=None if directions else self.located_at, located=located,
            located_indices=self.located_at, kinks=kink_records)

    def _kinks(self, kink, hand, shape):
        at = np.flatnonzero(kink)
        left = [self.sides[e][0] for e in at.tolist()]
        right = [self.sides[e][1] for e in at.tolist()]
        return kink_list(at, hand[at], left, right, shape, self.as_autodiff)


