"""The check's settings, each resolved once: tolerances by dtype, the step, what central differences cover.

Defaults in float64, and in a low precision whose references could not be
computed in float64, are fixed; in a low precision checked against float64
references they are derived from the dtype and from the rounding a correct
computation of the same forward shows there (``noise``).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

# (atol, rtol) for hand vs autodiff, then for hand vs central differences, whose own error is far
# larger than rounding.
TOLERANCES = {
    "float64": ((1e-9, 1e-7), (1e-6, 1e-5)),
    "float32": ((1e-5, 1e-4), (1e-3, 5e-3)),
    "bfloat16": ((5e-2, 5e-2), (5e-1, 2e-1)),
    "float16": ((1e-2, 1e-2), (2e-1, 1e-1)),
}
STEPS = {"float64": 1e-6, "float32": 1e-3, "bfloat16": 1e-1, "float16": 1e-2}
LOW = ("float32", "bfloat16", "float16")
# A low-precision hand gradient may differ from the float64 reference by this many times the
# rounding a correct computation of the same forward shows in that dtype (measured: autodiff run
# in the low dtype against autodiff in float64), plus this many units of the dtype's epsilon,
# relative to each value.
NOISE_FACTOR = 4.0
EPS_FACTOR = 4.0
# Arrays of at most this many values are checked by central differences element by element; larger
# ones along random directions (every element takes part in each), element by element only where
# a direction fails, to name the element.
ELEMENTS_UP_TO = 256
AUTO_DIRECTIONS = 8
LOCATE_ELEMENTS = 256
# Central differences of f lose about eps * |f| / h to rounding (f(x + h) and f(x - h) agree to
# eps * |f| and their difference is divided by h): a sum over a million elements is |f| ~ 1e6, so
# its differences in float64 at h = 1e-6 carry ~1e-4 of noise. This many times that is added to the
# numeric tolerances, and so to what separates a kink from noise (the default tolerances only).
ROUNDING_FACTOR = 8.0
# A rule on its own: its fwd against its primal, its backward's linearity, relative to the values'
# size, in float64 and (where no float64 copy runs) as this many units of the dtype's epsilon.
RULE_TOL_FLOAT64 = 1e-10
RULE_EPS_FACTOR = 64.0


def tolerances(dtype, low, noise, user_atol, user_rtol, which):
    """``(atol, rtol, note)`` for one comparison. ``which``: 0 autodiff, 1 numeric.

    Low precision checked through float64: the measured rounding of the dtype (``noise``) and its
    epsilon, plus, for numeric, float64 central differences' own error. A tolerance asked for
    that is tighter than the dtype resolves fails closed with a note.
    """
    if not low:
        atol_d, rtol_d = TOLERANCES.get(dtype, TOLERANCES["float32"])[which]
        return (atol_d if user_atol is None else user_atol), (rtol_d if user_rtol is None else user_rtol), ""
    eps_d = float(jnp.finfo(dtype).eps)
    atol_d, rtol_d = NOISE_FACTOR * noise, EPS_FACTOR * eps_d
    if which == 1:
        n_atol, n_rtol = TOLERANCES["float64"][1]
        atol_d, rtol_d = atol_d + n_atol, rtol_d + n_rtol
    if user_atol is None and user_rtol is None:
        return atol_d, rtol_d, ""
    note = ""
    if (user_rtol is not None and user_rtol < EPS_FACTOR * eps_d) or (
            user_atol is not None and user_atol < NOISE_FACTOR * noise):
        note = (f"{dtype} cannot resolve the tolerance asked (atol {user_atol}, rtol {user_rtol}): its rounding "
                f"here is about {noise:.2g} absolute and {eps_d:.2g} relative; check in a wider dtype or "
                f"loosen the tolerance")
    return (atol_d if user_atol is None else user_atol), (rtol_d if user_rtol is None else user_rtol), note


def rounding_floor(dtype, f_scale, step):
    """The absolute noise of a difference quotient of f (``|f| ~ f_scale``, evaluated in ``dtype``)."""
    return ROUNDING_FACTOR * float(jnp.finfo(dtype).eps) * f_scale / step


def rule_tolerance(dtype):
    """How far a rule's fwd may be from its primal, and its backward from linear, relatively."""
    return RULE_TOL_FLOAT64 if dtype == "float64" else RULE_EPS_FACTOR * float(jnp.finfo(dtype).eps)


@dataclasses.dataclass(frozen=True)
class Options:
    """``gradcheck``'s keyword arguments, validated; every default is resolved by the methods below."""
    reference: object = None
    eps: float | None = None
    atol: float | None = None
    rtol: float | None = None
    numeric: bool = True
    numeric_elements: int | None = None
    numeric_directions: int | None = None
    order: int = 1
    batched: bool = False
    in_axes: object = 0
    has_aux: bool = False
    mode: str = "reverse"
    key: object = None
    dot_product: bool = False

    def prng(self):
        return jax.random.key(0) if self.key is None else self.key

    def step(self, dtype, low):
        """The central-difference step: float64's when the differences run on a float64 copy."""
        return STEPS.get("float64" if low else dtype, 1e-3) if self.eps is None else self.eps

    def plan(self, size):
        """How central differences cover an array of ``size`` values: ``("elements", n)`` (n of them at
        random, all when n >= size) or ``("directions", k, auto)``."""
        if self.numeric_directions is not None:
            return "directions", self.numeric_directions, False
        if self.numeric_elements is not None:
            return "elements", min(self.numeric_elements, size)
        if size <= ELEMENTS_UP_TO:
            return "elements", size
        return "directions", AUTO_DIRECTIONS, True

    def chosen_elements(self, size, n, salt):
        """``n`` of ``size`` flat indices, sorted, drawn from the key (all when ``n >= size``)."""
        if n >= size:
            return np.arange(size)
        chosen = jax.random.choice(jax.random.fold_in(self.prng(), salt), size, (n,), replace=False)
        return np.sort(np.asarray(chosen))

    def batched_tolerances(self, dtype):
        atol, rtol = TOLERANCES.get(dtype, TOLERANCES["float32"])[0]
        return (atol if self.atol is None else self.atol), (rtol if self.rtol is None else self.rtol)


def validate(args, argnums, options):
    """Raises ``ValueError``/``TypeError`` naming the first bad setting."""
    o = options
    for name, value in (("eps", o.eps), ("atol", o.atol), ("rtol", o.rtol)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                      and math.isfinite(value) and (value > 0 if name == "eps" else value >= 0)):
            raise ValueError(f"gradcheck: {name} must be None or a finite number "
                             f"{'> 0' if name == 'eps' else '>= 0'}, got {value!r}")
    for name, value in (("order", o.order), ("numeric_elements", o.numeric_elements),
                        ("numeric_directions", o.numeric_directions)):
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise ValueError(f"gradcheck: {name} must be a positive integer, got {value!r}")
    if o.numeric_elements is not None and o.numeric_directions is not None:
        raise ValueError("gradcheck: give numeric_elements or numeric_directions, not both")
    if o.mode not in ("reverse", "forward"):
        raise ValueError(f"gradcheck: mode must be 'reverse' or 'forward', got {o.mode!r}")
    if o.mode == "forward" and (o.order != 1 or o.batched or o.numeric_elements is not None):
        raise ValueError("gradcheck: mode='forward' checks first derivatives along random directions; it "
                         "takes neither order > 1, batched nor numeric_elements (use numeric_directions)")
    axes = o.in_axes if isinstance(o.in_axes, tuple) else (o.in_axes,) * len(args)
    if len(axes) != len(args) or not all(a is None or isinstance(a, int) and not isinstance(a, bool)
                                         for a in axes):
        raise ValueError(f"gradcheck: in_axes must be an int, None, or a tuple of one int or None per "
                         f"argument ({len(args)}), got {o.in_axes!r}")
    for i in argnums:
        if not 0 <= i < len(args):
            raise ValueError(f"gradcheck: argnums contains {i}, but f is given {len(args)} arguments")
