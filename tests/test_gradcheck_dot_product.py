"""The dot-product test, ``<J u, v> = <u, J^T v>``: the wrong rules the three columns cannot see."""

import jax
import jax.numpy as jnp
import numpy as np

import backprop_jax as bj
from conftest import normal


def tanh_rule(bwd):
    """``tanh`` with the backward given, ``bwd(x, dout) -> dx``."""
    def tanh(x):
        return jnp.tanh(x)

    rule = jax.custom_vjp(tanh)
    rule.defvjp(lambda x: (jnp.tanh(x), x), lambda x, dout: (bwd(x, dout),))
    return rule


# Right only for a constant cotangent: it scales the local derivative by the mean of dout.
MEAN_OF_DOUT = tanh_rule(lambda x, dout: jnp.mean(dout) * (1 - jnp.tanh(x) ** 2))
X = jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)


def test_a_backward_right_only_for_the_cotangent_f_sends_passes_the_columns_and_fails_the_dot_product():
    # Wrong, independently of the checker: its VJP against JAX's for a cotangent that is not constant.
    v = normal(0, (2, 3))
    ours = jax.vjp(MEAN_OF_DOUT, X)[1](v)[0]
    jaxs = jax.vjp(jnp.tanh, X)[1](v)[0]
    assert not np.allclose(ours, jaxs)
    # Under a sum the cotangent is all ones: autodiff, central differences and the rule checks agree.
    loss = lambda x: jnp.sum(MEAN_OF_DOUT(x))
    assert bj.gradcheck(loss, X).ok
    report = bj.gradcheck(loss, X, dot_product=True)
    (check,) = report.rule_checks
    assert not report.ok and check.dot > 1e-3
    assert "its backward is not the transpose of its primal's derivative" in str(report), str(report)


def test_a_wrong_backward_for_an_output_f_does_not_use_fails_the_dot_product():
    @jax.custom_vjp
    def sin_cos(x):
        return jnp.sin(x), jnp.cos(x)

    # d cos = -sin: the second term's sign is wrong, and f never sends a cotangent there.
    sin_cos.defvjp(lambda x: (sin_cos(x), x), lambda x, d: (d[0] * jnp.cos(x) + d[1] * jnp.sin(x),))
    loss = lambda x: jnp.sum(sin_cos(x)[0])
    assert bj.gradcheck(loss, X).ok
    assert not bj.gradcheck(loss, X, dot_product=True).ok


def test_right_rules_at_ties_and_kinks_pass_the_dot_product(sample):
    (x, _), _ = sample
    digit = jnp.asarray(np.asarray(x[:1], np.float64)).reshape(1, 1, 28, 28)[:, :, 4:12, 8:16]
    assert 0 < np.count_nonzero(digit == 0) < digit.size  # ReLU at exactly 0, tied maxima under pooling
    w = normal(1, (1, 1, 4, 4))
    report = bj.gradcheck(lambda x: jnp.sum(bj.max_pooling(bj.relu(x), 2, 2, 2) * w), digit, dot_product=True)
    assert report.ok and report.entries[0].kinks, str(report)
    assert [r.name for r in report.rule_checks] == ["relu", "max_pooling"]
    assert all(r.dot is not None and r.dot < 1e-10 for r in report.rule_checks), str(report)
    assert "<J u, v> = <u, J^T v>" in str(report)
