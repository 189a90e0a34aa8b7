"""What a check differentiates: the scalar functions, the point at each precision, per-example gradients."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.checking._numeric import Differences, forward_along
from backprop_jax.checking._policy import LOW


def least_precise(dtypes):
    """The least precise of ``dtypes`` (names), by epsilon."""
    return max(dtypes, key=lambda d: float(jnp.finfo(d).eps))


def upcast(values, kinds):
    return [jnp.asarray(np.asarray(v, np.float64)) if k == "float" and jnp.dtype(v.dtype).name in LOW else v
            for v, k in zip(values, kinds)]


def rounded(x, dtype):
    """``x`` rounded to ``dtype``, held as float64 NumPy."""
    return np.asarray(jnp.asarray(x, dtype), np.float64)


def finite(a):
    return np.isfinite(np.asarray(a, np.float64))


class Problem:
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

    def scalar(self, fn_on, base, order=None):
        """``g(diff_leaves) -> scalar``; batched: summed over examples; order N: the derivative of
        ``<derivative of order N-1, u>`` for a fixed random ``u`` per leaf."""
        s = self.example_fn(fn_on)

        def g(diff_leaves):
            new = list(base)
            for i, v in zip(self.diff_in_dyn, diff_leaves):
                new[i] = v
            return jnp.sum(jax.vmap(s, in_axes=(self.axes,))(new)) if self.batched else s(new)
        for us in self.us[:None if order is None else order - 1]:
            def deriv(g_prev, us=us):
                grad = jax.grad(g_prev)
                return lambda ls: sum(jnp.vdot(jnp.asarray(u, d.dtype), d) for u, d in zip(us, grad(ls)))
            g = deriv(g)
        return g

    def diff(self, base):
        return [base[i] for i in self.diff_in_dyn]


@dataclasses.dataclass
class Side:
    """One precision: the point (the differentiable leaves), its x64 setting, and ``f`` and the
    reference as functions of the dynamic leaves there (raised to float64 on the float64 copy of
    a function that casts inside)."""
    at: list
    x64: object  # a context manager factory
    f: object
    ref: object
    _differences: dict = dataclasses.field(default_factory=dict, repr=False)  # (id(g), j) -> (g, Differences)
    value: float | None = None  # g at the point, from the last gradient taken

    def grad(self, g):
        with self.x64():
            value, grads = jax.jit(jax.value_and_grad(g))(self.at)
            self.value = float(value)
            return [np.asarray(a, np.float64) for a in grads]

    def forward(self, g, j, u):
        with self.x64():
            return forward_along(g, self.at, j, u)

    def differences(self, g, j, step, **rows):
        """``(central, left, right)`` of ``g`` in leaf ``j``; the compiled program kept per (g, j)."""
        key = (id(g), j)
        with self.x64():
            if key not in self._differences:
                self._differences[key] = (g, Differences(g, self.at, j))
            return self._differences[key][1](step, **rows)


def per_example(s_hand, dyn, dyn_axes, diff_in_dyn):
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


