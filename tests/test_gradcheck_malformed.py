"""What the checker says about a malformed rule or a point it cannot check: one line, naming it."""

import jax
import jax.numpy as jnp
import pytest

import backprop_jax as bj


def tanh_affine(bwd):
    """A ``custom_vjp`` for ``tanh(x @ W)`` with the backward given."""
    def tanh_affine(x, W):
        return jnp.tanh(x @ W)

    rule = jax.custom_vjp(tanh_affine)
    rule.defvjp(lambda x, W: (tanh_affine(x, W), (x, W)), bwd)
    return rule


def right_bwd(res, dout):
    x, W = res
    d = dout * (1 - jnp.tanh(x @ W) ** 2)
    return d @ W.T, x.T @ d


X, W = jnp.linspace(-1, 1, 6).reshape(2, 3), jnp.full((3, 4), 0.1)


def one_line_error(bwd, kind=TypeError):
    with pytest.raises(kind) as caught:
        bj.gradcheck(lambda x, W: jnp.sum(tanh_affine(bwd)(x, W)), X, W)
    text = str(caught.value)
    assert "\n" not in text
    return text


def test_a_backward_giving_a_cotangent_of_the_wrong_shape_is_named():
    text = one_line_error(lambda r, g: (right_bwd(r, g)[0], right_bwd(r, g)[1].T))
    assert "the bwd of the rule `tanh_affine` is malformed" in text and "float64[4,3]" in text


@pytest.mark.parametrize("bwd", [lambda r, g: right_bwd(r, g)[:1], lambda r, g: right_bwd(r, g) + (g,),
                                 lambda r, g: right_bwd(r, g)[0]], ids=["one", "three", "bare"])
def test_a_backward_giving_a_wrong_number_of_cotangents_is_named(bwd):
    assert "the bwd of the rule `tanh_affine` is malformed: got bwd output structure" in one_line_error(bwd)


@pytest.mark.parametrize("out", [lambda y: y[0], lambda y: y.astype(jnp.float32)], ids=["shape", "dtype"])
def test_a_fwd_returning_another_type_than_its_primal_is_named(out):
    # JAX's own jax.grad runs this rule without complaint; the checker must not pass it.
    rule = jax.custom_vjp(jnp.tanh)
    rule.defvjp(lambda x: (out(jnp.tanh(x)), x), lambda x, g: (g * (1 - jnp.tanh(x) ** 2),))
    with pytest.raises(TypeError, match=r"^gradcheck: the fwd of the rule `tanh` is malformed: the fwd rule "
                                        r"output's first element had shapes/dtypes of: float(64\[3\]|32\[2,3\])"):
        bj.gradcheck(lambda x: jnp.sum(rule(x)), X)


def test_a_cotangent_in_a_narrower_dtype_is_blamed_for_its_dtype_only():
    report = bj.gradcheck(lambda x, W: jnp.sum(tanh_affine(
        lambda r, g: (right_bwd(r, g)[0].astype(jnp.float32), right_bwd(r, g)[1]))(x, W)), X, W)
    (check,) = report.rule_checks
    # The rule is linear in its cotangent; float32 rounding is not a failure of linearity.
    assert check.problems == ["cotangent of the wrong dtype (argument 0: a float32 cotangent for a float64 input)"]
    assert not report.ok


def test_a_function_returning_nothing_is_a_one_line_error():
    with pytest.raises(TypeError, match=r"^gradcheck: f returns no array \(it returns NoneType\)"):
        bj.gradcheck(lambda x: None, X)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_a_point_that_is_not_finite_is_refused_with_its_position(bad):
    with pytest.raises(ValueError, match=rf"^gradcheck: x\[1, 2\] is {bad} \(1 of 6 values are not finite\)"):
        bj.gradcheck(lambda x: jnp.sum(jnp.tanh(x)), X.at[1, 2].set(bad))


def test_forward_mode_names_the_custom_vjp_rule_it_cannot_differentiate():
    with pytest.raises(ValueError, match=r"^gradcheck: mode='forward' .* custom_vjp rule \(`tanh_affine`\)"):
        bj.gradcheck(lambda x, W: jnp.sum(tanh_affine(right_bwd)(x, W)), X, W, mode="forward")
