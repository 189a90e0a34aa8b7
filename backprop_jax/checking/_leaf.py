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

    def _diff(self, **rows):
        return self.check.up.differences(self.check.g_hand_up, self.j, self.step, **rows)

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
        bad = mismatches(proj, central, d_atol, d_rtol)
        kink = bad & kinks(proj, left, right, d_atol, d_rtol)
        for shrink in ((10, 100) if self.check.up.at[self.j].dtype == jnp.float64 else ()):
            doubt = np.flatnonzero(bad & ~kink)
            if not doubt.size:
                break
            _, l2, r2 = self.check.up.differences(self.check.g_hand_up, self.j, self.step / shrink,
                                                  directions=u[doubt])
            now = kinks(proj[doubt], l2, r2, d_atol + self.floor * (shrink - 1), d_rtol)
            kink[doubt[now]] = True
            left[doubt[now]], right[doubt[now]] = l2[now], r2[now]
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
        for those not yet met). A second kink within the step makes a one-sided difference miss the
        one-sided derivative; in float64 the step shrinks (by 10, then 100) for the values still in doubt.
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
        found = kinks(hand[elements], left, right, n_atol, n_rtol)
        if agree is not None:
            tied = ~found & kinks(hand[elements], left, right, n_atol, n_rtol, agree[elements])
            self.as_autodiff.update(elements[tied].tolist())
            found |= tied
        for shrink in ((10, 100) if self.check.up.at[self.j].dtype == jnp.float64 else ()):
            doubt = elements[~found]
            if not doubt.size:
                break
            _, left, right = self.check.up.differences(self.check.g_hand_up, self.j, self.step / shrink,
                                                        elements=doubt)
            now = kinks(hand[doubt], left, right, n_atol + self.floor * (shrink - 1), n_rtol)
            self.sides.update((e, (lf, rt)) for e, lf, rt, k in zip(doubt.tolist(), left, right, now) if k)
            found[np.flatnonzero(~found)[now]] = True
        mask[elements] = found
        return mask

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


