"""What ``gradcheck`` found: one ``Entry`` per array, one ``RuleCheck`` per hand rule, the report."""

import dataclasses

import numpy as np

from backprop_jax.checking._jaxpr import HandRules

_SHOWN_KINKS = 5  # kink positions named in the table; the rest are counted


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far the hand gradient is from one reference, for one argument."""
    max_abs: float  # max |hand - reference| (kinks and excluded values aside)
    max_rel: float  # max |hand - reference| / max(|hand|, |reference|, atol)
    mean_abs: float  # mean |hand - reference| (what the book prints)
    atol: float
    rtol: float
    ok: bool  # |hand - reference| <= atol + rtol * |reference| everywhere counted, and no note
    worst: int = 0  # position (in the compared values) of the largest excess over the tolerance
    worst_hand: float = 0.0  # the hand value there
    worst_reference: float = 0.0  # the reference value there
    failed: int = 0  # how many counted values are beyond the tolerance
    size: int = 0  # how many values were compared
    note: str = ""  # why the comparison failed closed, when it is not a mismatch
    kinks: int = 0  # values at kinks: judged by the interval of one-sided differences instead
    excluded: int = 0  # values left out, with the reason in ``excluded_why``
    excluded_why: str = ""


@dataclasses.dataclass(frozen=True)
class Kink:
    """A value at (or within ``eps`` of) a point where the function is not differentiable (ReLU at 0,
    tied maxima, ``abs`` at 0): its one-sided differences disagree and the hand value lies between
    them, so neither central differences nor another rule's choice of subgradient can judge it."""
    index: tuple  # the element's index in its array (a direction's number, for directions)
    left: float  # (f(x) - f(x - eps)) / eps
    right: float  # (f(x + eps) - f(x)) / eps
    hand: float
    as_autodiff: bool = False  # outside the interval, but equal to autodiff's value (a tie of several values)
    direction: bool = False  # a random direction's number, not an element's index


@dataclasses.dataclass(frozen=True)
class RuleCheck:
    """One hand rule (every call of it at one place) checked on its own, at the inputs it met."""
    name: str  # the Python function the rule was made from
    where: tuple  # the constructs around it, outermost first
    exercised: bool | None  # received a non-zero cotangent here (None: not known, a custom_jvp)
    fwd: float = 0.0  # max relative |fwd's output - primal's output|
    linear: float = 0.0  # max relative deviation of bwd(a g1 + b g2) from a bwd(g1) + b bwd(g2)
    local: float = 0.0  # max relative |bwd - autodiff of its primal| at the inputs met (kinks included)
    dtype: str = ""  # a cotangent whose dtype is not its input's, when there is one
    fwd_tol: float = 0.0
    linear_tol: float = 0.0
    dot: float | None = None  # the dot-product test's max rel |<J u, v> - <u, J^T v>| (None: not run)
    note: str = ""  # a documented deviation of this rule from autodiff of its own forward
    skipped: str = ""  # why the rule could not be checked on its own
    key: tuple = dataclasses.field(default=(), repr=False, compare=False)  # (name, kind, where)

    @property
    def problems(self):
        found = []
        if self.fwd > self.fwd_tol:
            found.append(f"its fwd returns other values than its primal (max rel {self.fwd:.2g})")
        if self.dtype:
            found.append(f"cotangent of the wrong dtype ({self.dtype})")
        if self.linear > self.linear_tol:
            found.append(f"its backward is not linear in the cotangent (max rel {self.linear:.2g})")
        if self.dot is not None and self.dot > self.linear_tol:
            found.append(f"its backward is not the transpose of its primal's derivative: <J u, v> != <u, J^T v> "
                         f"for random u, v beside the inputs met (max rel {self.dot:.2g})")
        return found

    @property
    def ok(self):
        return not self.problems

    def __str__(self):
        where = f" (in {' > '.join(self.where)})" if self.where else ""
        if self.exercised is False:
            state = "not exercised here (no cotangent reached it): not compared"
        elif self.skipped:
            state = f"not checked on its own: {self.skipped}"
        else:
            state = "; ".join(self.problems) or (f"fwd = primal, linear, dtypes kept"
                                                   f"{', <J u, v> = <u, J^T v>' if self.dot is not None else ''}; "
                                                   f"vs autodiff of its primal here {self.local:.2g}")
        line = f"  {self.name}{where}: {'FAIL ' if not self.ok else ''}{state}"
        return line + (f" [{self.note}]" if self.note else "")


@dataclasses.dataclass(frozen=True)
class Entry:
    """The check of one differentiable array (a leaf of an argument)."""
    name: str
    shape: tuple
    dtype: str
    autodiff: Comparison
    numeric: Comparison | None  # None when central differences were skipped
    numeric_elements: int = 0  # how many elements (or directions) central differences checked
    kinks: tuple = ()  # Kink: values at kinks, judged by their one-sided differences in every column
    batched: Comparison | None = None  # per-example gradients under vmap against a loop (batched=True)
    numeric_directions: bool = False  # numeric compared v^T J u along random directions, not elements
    autodiff_values: object = None  # the autodiff gradient (to name the worst element's value)
    numeric_indices: object = None  # the flat indices central differences used
    autodiff_independent: bool = True  # False: no rule was replaced and exercised; autodiff is the hand one
    float64: Comparison | None = None  # low precision: the same rule run on a float64 copy vs autodiff
    directions: bool = False  # mode="forward": autodiff and numeric compare along random directions
    located: Comparison | None = None  # directions failed: central differences per element, to name it
    located_indices: object = None
    blame: tuple = ()  # rules whose autodiff replacement alone reproduces a failing autodiff column

    @property
    def ok(self):
        return ((self.autodiff.ok or not self.autodiff_independent)
                and (self.numeric is None or self.numeric.ok)
                and (self.batched is None or self.batched.ok)
                and (self.float64 is None or self.float64.ok))

    @property
    def only_kinks(self):
        """Every value central differences compared lay at a kink: nothing differentiable was compared."""
        return self.numeric is not None and self.numeric.size > 0 and self.numeric.kinks == self.numeric.size

    def _where(self, c, label):
        index = c.worst
        if label == "numeric" and self.numeric_indices is not None:
            index = int(self.numeric_indices[c.worst])
        if label == "located":
            index = int(self.located_indices[c.worst])
        return index, (np.unravel_index(index, self.shape) if self.shape else ())

    def worst(self):
        """Lines naming, for each failing comparison, its worst value and the values there."""
        lines = []
        comparisons = (("autodiff", self.autodiff if self.autodiff_independent else None),
                       ("numeric", self.numeric), ("vmap", self.batched), ("float64", self.float64),
                       ("located", self.located))
        for label, c in comparisons:
            if c is None or (c.ok and label != "located"):
                continue
            if c.note:
                lines.append(f"  {self.name}: {label}: {c.note}")
                continue
            if c.failed == 0:
                continue
            count = f" ({c.failed} of {c.size} {'directions' if self._directional(label) else 'values'} fail)"
            if self._directional(label):
                lines.append(f"  {self.name}: along random direction {c.worst}: hand {c.worst_hand:.6g}, "
                             f"{'numeric' if label == 'numeric' else label} {c.worst_reference:.6g}{count}")
                continue
            index, where = self._where(c, label)
            auto = (np.asarray(self.autodiff_values).reshape(-1)[index]
                    if self.autodiff_values is not None else None)
            parts = [f"hand {c.worst_hand:.6g}"]
            if label == "vmap":
                parts = [f"under vmap {c.worst_hand:.6g}", f"one by one {c.worst_reference:.6g}"]
            elif label == "float64":
                parts = [f"hand in float64 {c.worst_hand:.6g}", f"autodiff in float64 {c.worst_reference:.6g}"]
            else:
                if auto is not None:
                    parts.append(f"autodiff {float(auto):.6g}")
                if label in ("numeric", "located"):
                    parts.append(f"numeric {c.worst_reference:.6g}")
            shown = "numeric, per element" if label == "located" else label
            lines.append(f"  {self.name}{list(map(int, where))}: worst {shown} mismatch: "
                         + ", ".join(parts) + count)
        for label, c in comparisons:
            if c is not None and c.excluded:
                lines.append(f"  {self.name}: {label}: {c.excluded} values left out: {c.excluded_why}")
        return lines

    def _directional(self, label):
        return self.directions or (label == "numeric" and self.numeric_directions)

    def kink_lines(self):
        if not self.kinks:
            return []
        kinds = {k.direction for k in self.kinks}
        what = {frozenset([True]): "directions", frozenset([False]): "values"}.get(
            frozenset(kinds), "values and directions")
        shown = ", ".join(
            (f"direction {k.index[0]}" if k.direction else f"{self.name}{list(k.index)}")
            + f" (one-sided {k.left:.4g} and {k.right:.4g}; hand {k.hand:.4g}"
            f"{', as autodiff' if k.as_autodiff else ''})" for k in self.kinks[:_SHOWN_KINKS])
        more = f", and {len(self.kinks) - _SHOWN_KINKS} more" if len(self.kinks) > _SHOWN_KINKS else ""
        n = len(self.kinks)
        what = what[:-1] + " lies" if n == 1 else what + " lie"
        tied = sum(k.as_autodiff for k in self.kinks)
        tied = (f" ({tied} outside it, where several values tie, passed as equal to autodiff)" if tied else "")
        return [f"  {self.name}: {n} {what} within eps of a kink, judged by the interval between their one-sided "
                f"differences in every column{tied}: {shown}{more}"]


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
    rule_checks: tuple = ()  # RuleCheck: each hand rule on its own
    rule_note: str = ""  # why the rules could not be checked on their own, when they could not
    note: str = ""  # why the whole check failed closed, when it did

    @property
    def ok(self):
        return (not self.note and all(e.ok for e in self.entries)
                and all(r.ok for r in self.rule_checks))

    def book_lines(self):
        """Lines like the book's check: ``W1: 3.1e-10``, the mean |hand - numeric| over the elements
        compared. Where central differences went along random directions, the mean is over the
        directions (``W1: 1.2e-10 (along 8 random directions)``), of |v^T J u - central difference|, not
        the book's per-element quantity; without central differences it is against autodiff, and says so."""
        def why(e):
            if e.numeric is None:
                return " (against autodiff: no central differences)"
            return f" (along {e.numeric_elements} random directions)" if e.numeric_directions else ""
        return [f"{e.name}: {(e.numeric or e.autodiff).mean_abs:.2g}{why(e)}" for e in self.entries]

    def __str__(self):
        head = (f"{'argument':<16}{'shape':<14}{'dtype':<10}"
                f"{'vs autodiff: max abs':>22}{'max rel':>10}{'':>6}"
                f"{'vs numeric: max abs':>21}{'max rel':>10}{'':>6}")
        lines = [head, "-" * len(head)]
        for e in self.entries:
            lines.append(_row(e))
            lines += e.worst()
            for rule in e.blame:
                lines.append(f"  {e.name}: {rule}")
            lines += e.kink_lines()
        if self.rules is not None:
            lines += str(self.rules).split("\n")
            if not self.rules.replaced:
                lines.append("the autodiff column is the hand computation itself (no rule to replace): "
                             "'same', not counted")
            elif self.entries and not self.entries[0].autodiff_independent:
                lines.append("no replaced rule was exercised at these inputs: the autodiff column is the hand "
                             "computation itself, 'same', not counted")
        if self.rule_checks:
            lines.append("each rule on its own:")
            lines += [str(r) for r in self.rule_checks]
        elif self.rule_note:
            lines.append(f"each rule on its own: {self.rule_note}")
        if self.references:
            lines.append(f"references: {self.references}")
        if self.skipped:
            lines.append(f"not checked: {', '.join(self.skipped)}")
        if self.note:
            lines.append(self.note)
        what = "gradient" if self.order == 1 else f"order-{self.order} derivative"
        lines.append(f"{what} check passed" if self.ok else f"{what} check FAILED")
        return "\n".join(lines)


def _row(e):
    verdict = ("ok" if e.autodiff.ok else "FAIL") if e.autodiff_independent else "same"
    row = (f"{e.name:<16}{str(e.shape):<14}{e.dtype:<10}"
           f"{e.autodiff.max_abs:>22.2e}{e.autodiff.max_rel:>10.2e}{verdict:>6}")
    if e.numeric is None:
        row += f"{'(skipped)':>21}"
    else:
        row += (f"{e.numeric.max_abs:>21.2e}{e.numeric.max_rel:>10.2e}"
                f"{'ok' if e.numeric.ok else 'FAIL':>6}")
        size = int(np.prod(e.shape))
        if e.numeric_directions:
            row += f"  ({e.numeric_elements} random directions)"
        elif e.numeric_elements < size:
            row += f"  ({e.numeric_elements} of {size} elements)"
    if e.float64 is not None:
        row += f"  in float64 {e.float64.max_rel:.2e} {'ok' if e.float64.ok else 'FAIL'}"
    if e.batched is not None:
        row += f"  vmap vs loop {e.batched.max_abs:.2e} {'ok' if e.batched.ok else 'FAIL'}"
    return row
