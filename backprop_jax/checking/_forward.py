"""Forward mode: ``jax.jvp`` of the hand rules along random directions, against autodiff and central
differences, for ``custom_jvp`` rules where reverse mode cannot go (inside ``lax.while_loop``)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._leaf import LeafNumerics
from backprop_jax.checking._numeric import compare, kink_list, mismatches
from backprop_jax.checking._policy import LOCATE_ELEMENTS, tolerances
from backprop_jax.checking._problem import finite, rounded
from backprop_jax.checking._report import Entry


def forward_entry(check, j, p, rules, elements=None):
    """Forward mode along random directions; where every one crosses a kink, along the unit
    directions of ``elements`` (up to 256 of them), which name the elements as reverse mode does."""
    o, leaf = check.options, check.lo.at[j]
    name, dtype, low = check.leaves.names[p], jnp.dtype(leaf.dtype).name, check.low
    independent = o.reference is not None or bool(rules.replaced)
    tol_dtype = check.lowest if low else dtype
    if elements is None:
        k = o.numeric_directions or 4
        u = rounded(np.asarray(jax.random.normal(jax.random.fold_in(o.prng(), 700 + j), (k, leaf.size),
                                                  jnp.float32), np.float64), leaf.dtype)
    else:
        k, u = len(elements), np.eye(leaf.size)[elements]
    g_hand = check.problem.scalar(check.f_on, check.dyn)
    hand = check.lo.forward(g_hand, j, u)
    ref_lo = check.lo.forward(check.problem.scalar(check.ref_on, check.dyn), j, u)
    ref = check.up.forward(check.problem.scalar(check.up.ref, check.dyn64), j, u) if low else ref_lo
    hand64 = check.up.forward(check.g_hand_up, j, u) if low else None
    both = finite(ref_lo) & finite(ref)
    noise = float(np.max(np.abs(ref_lo - ref)[both], initial=0.0)) if low else 0.0
    a_atol, a_rtol, a_note = tolerances(tol_dtype, low, noise, o.atol, o.rtol, 0)
    t_atol, t_rtol = check.options.batched_tolerances("float64")
    num, kink, kink_records = None, np.zeros(k, bool), ()
    if o.numeric:
        n_atol, n_rtol, n_note = tolerances(tol_dtype, low, noise, o.atol, o.rtol, 1)
        step = o.step(dtype, low)
        floor = check.rounding_of(j, step)
        n_atol += floor
        check.eps_used[name] = step
        central, left, right = check.up.differences(check.g_hand_up, j, step, directions=u)
        # A direction that crosses a kink is judged by its one-sided slopes in every column, as in
        # reverse mode (autodiff's choice there is not the rule's).
        doubt = mismatches(hand, central, n_atol, n_rtol) | mismatches(hand, ref, a_atol, a_rtol)
        if hand64 is not None:
            doubt |= mismatches(hand64, ref, t_atol, t_rtol)
        at = np.flatnonzero(doubt)
        if at.size:
            found, finer, lf, rt = LeafNumerics(check, j, step, None, "", floor).classify(
                hand[at], left[at], right[at], n_atol, n_rtol, directions=u[at])
            kink[at] = found
            central[at] = np.where(np.isnan(finer), central[at], finer)
            kink_records = kink_list(at[found], hand[at][found], lf[found], rt[found], directions=True)
        num = compare(hand, central, n_atol, n_rtol, ignore=kink, note=n_note)
    float64 = compare(hand64, ref, t_atol, t_rtol, ignore=kink) if low else None
    if elements is None and num is not None and num.kinks == num.size:
        return forward_entry(check, j, p, rules, o.chosen_elements(leaf.size, min(LOCATE_ELEMENTS, leaf.size),
                                                                 900 + j))
    if elements is not None:
        kink_records = tuple(dataclasses.replace(r, index=tuple(int(i) for i in np.unravel_index(
            elements[r.index[0]], leaf.shape)), direction=False) for r in kink_records)
    return Entry(name=name, shape=tuple(leaf.shape), dtype=dtype,
                 autodiff=compare(hand, ref, a_atol, a_rtol, ignore=kink, note=a_note if independent else ""),
                 numeric=num, numeric_elements=k if o.numeric else 0, numeric_directions=elements is None,
                 numeric_indices=elements, autodiff_independent=independent, float64=float64,
                 directions=elements is None, kinks=kink_records)
