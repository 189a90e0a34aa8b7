"""A catalogue of wrong hand rules, each of which ``gradcheck`` must catch, and the project's
correct layers, all of which must pass, in float64 and float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import normal


def rule(fwd, bwd):
    """A custom_vjp from a forward ``(out, residuals)`` and a backward."""
    @jax.custom_vjp
    def f(*args):
        return fwd(*args)[0]
    f.defvjp(fwd, bwd)
    return f


# Each: a wrong rule and the arguments to check it at. The right rule is in the comment.
def scaled():  # dx = 2 x dout
    return rule(lambda x: (x * x, x), lambda x, d: (1.01 * 2 * x * d,)), (normal(0, (4, 3)) + 2,)


def transposed_dW():  # dW = x.T @ dout
    f = rule(lambda x, W: (x @ W, (x, W)), lambda r, d: (d @ r[1].T, (r[0].T @ d).T))
    return f, (normal(0, (5, 3)), normal(1, (3, 3)))


def ignores_dout():  # dx = dout * mask
    return rule(lambda x: (jnp.maximum(x, 0), x > 0), lambda m, d: (m.astype(d.dtype),)), (normal(0, (6,)),)


def wrong_reduction():  # db = dout.sum(axis=0)
    f = rule(lambda x, b: (x + b[None, :], None), lambda r, d: (d, d.sum(axis=1)))
    return f, (normal(0, (3, 3)), normal(1, (3,)))


CATALOGUE = {"scaled by 1.01": scaled, "transposed dW": transposed_dW, "ignores dout": ignores_dout,
             "wrong broadcast reduction": wrong_reduction}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_each_wrong_rule_is_caught_by_autodiff_and_by_central_differences(name, dtype):
    f, args = CATALOGUE[name]()
    args = tuple(a.astype(dtype) for a in args)
    report = bj.gradcheck(f, *args)
    assert not report.ok
    failing = [e for e in report.entries if not e.ok]
    assert failing and all(not e.autodiff.ok and not e.numeric.ok for e in failing), str(report)
    assert "worst autodiff mismatch" in str(report)
    # The fast mode catches them too, along a few random directions.
    assert not bj.gradcheck(f, *args, numeric_directions=3).ok


def test_the_report_names_the_worst_element_and_its_three_values():
    def wrong_at_one(x):
        return x * x, x

    def bwd(x, d):
        return (2 * x * d * jnp.where(jnp.arange(x.size).reshape(x.shape) == 7, 1.5, 1.0),)

    f = rule(wrong_at_one, bwd)
    x = normal(0, (3, 4)) + 2
    report = bj.gradcheck(lambda x: jnp.sum(f(x)), x)
    entry = report.entries[0]
    assert np.unravel_index(entry.autodiff.worst, (3, 4)) == (1, 3)  # flat 7
    true = float(2 * x[1, 3])
    assert entry.autodiff.worst_hand == pytest.approx(1.5 * true) and entry.autodiff.worst_reference == pytest.approx(true)
    assert f"x[1, 3]: worst autodiff mismatch: hand {1.5 * true:.6g}, autodiff {true:.6g}" in str(report)
    assert f"x[1, 3]: worst numeric mismatch: hand {1.5 * true:.6g}" in str(report)


def test_a_wrong_second_derivative_is_caught_with_order_2():
    # Sigmoid whose backward is right but holds its residual constant: right at first order,
    # wrong at second (the derivative of (1 - out) * out with respect to x is lost).
    def fwd(x):
        out = 1 / (1 + jnp.exp(-x))
        return out, jax.lax.stop_gradient(out)

    f = rule(fwd, lambda out, d: (d * (1 - out) * out,))
    x = normal(0, (5,))
    assert bj.gradcheck(f, x).ok
    second = bj.gradcheck(f, x, order=2)
    assert not second.ok and "order-2 derivative check FAILED" in str(second)
    assert not second.entries[0].autodiff.ok and not second.entries[0].numeric.ok
    # The project's own sigmoid is right at second (and third) order.
    assert bj.gradcheck(bj.sigmoid, x, order=2).ok and bj.gradcheck(bj.sigmoid, x, order=3).ok


def test_a_rule_that_breaks_only_under_vmap_is_caught_with_batched():
    # A rule written in NumPy, as the book's, through a callback that assumes one example.
    def da_numpy(d, x):
        return np.full(d.shape[:-1], np.sum(d * x), d.dtype)  # sums over every example it is given

    def bwd(x, d):
        da = jax.pure_callback(da_numpy, jax.ShapeDtypeStruct((), d.dtype), d, x, vmap_method="expand_dims")
        return None, da

    scale = rule(lambda x, a: (a * x, (x, a)), lambda r, d: (d * r[1], bwd(r[0], d)[1]))
    loss = lambda x, a: jnp.sum(scale(x, a) ** 2)  # one example: x (6,), a scalar
    xs, a = normal(0, (4, 6)), jnp.full((4,), 0.7)
    one = bj.gradcheck(loss, xs[0], a[0])
    assert one.ok, str(one)  # right for one example
    batched = bj.gradcheck(loss, xs, a, batched=True, numeric=False)
    assert not batched.ok and any(e.batched is not None and not e.batched.ok for e in batched.entries)
    assert "worst vmap mismatch" in str(batched)
    # The project's layers give the same per-example gradients under vmap as in a loop.
    params, x = {"W": normal(1, (4, 6, 3)), "b": normal(2, (4, 3))}, normal(3, (4, 2, 6))
    ok = bj.gradcheck(lambda p, x: jnp.sum(bj.sigmoid(bj.affine(x, p["W"], p["b"]))), params, x, batched=True)
    assert ok.ok and all(e.batched.ok for e in ok.entries)


def test_complex_inputs_are_refused_and_checked_through_their_real_parts():
    w = jnp.array([1.0 + 2.0j, -0.5 + 1.0j])
    z = jnp.array([0.3 - 1.0j, 2.0 + 0.5j])

    def cmul(conjugate):
        f = jax.custom_vjp(lambda z: z * w)
        f.defvjp(lambda z: (z * w, None), lambda r, d: (d * (jnp.conj(w) if conjugate else w),))
        return f

    with pytest.raises(TypeError, match=r"argument 0 is complex \(complex128, shape \(2,\)\).*x.real, x.imag"):
        bj.gradcheck(lambda z: jnp.sum(jnp.abs(cmul(False)(z)) ** 2), z)
    # JAX's convention: the VJP is the transpose of the (complex-linear) JVP, d * w.
    _, vjp = jax.vjp(lambda z: z * w, z)
    np.testing.assert_allclose(vjp(jnp.ones(2, z.dtype))[0], w)
    for conjugate, right in ((False, True), (True, False)):
        f = cmul(conjugate)
        report = bj.gradcheck(lambda re, im: jnp.sum(jnp.abs(f(re + 1j * im)) ** 2), z.real, z.imag)
        assert report.ok == right, str(report)


def test_an_input_within_eps_of_a_kink_is_named_not_failed():
    # The book's own check hits this: a hidden unit with pre-activation 7.3e-5 under a 1e-4 step.
    x = jnp.array([0.5, -0.3, 7.3e-5, 1.2])
    report = bj.gradcheck(lambda x: jnp.sum(bj.relu(x) * jnp.arange(1.0, 5.0)), x, eps=1e-4)
    assert report.ok, str(report)
    (kink,) = report.entries[0].kinks
    assert kink.index == (2,) and kink.left == pytest.approx(3 * 7.3e-5 / 1e-4, rel=1e-6)
    assert kink.right == pytest.approx(3.0) and kink.hand == 3.0
    assert "x[2]: within eps of a kink" in str(report)
    # A wrong rule near the kink is still a failure elsewhere.
    wrong = rule(lambda x: (jnp.maximum(x, 0), x > 0), lambda m, d: (1.1 * d * m,))
    assert not bj.gradcheck(lambda x: jnp.sum(wrong(x)), x, eps=1e-4).ok


def test_settings_and_non_differentiable_arguments_are_held_fixed_with_a_note():
    W = normal(0, (3, 4))
    report = bj.gradcheck(lambda W, lam: bj.weight_decay([W], lam), W, 0.1)  # lam: nondiff_argnums
    assert report.ok and [e.name for e in report.entries] == ["W"]
    assert report.skipped == ("argument 1 (passed to a non-differentiable argument, held fixed)",)
    x, Wc, b = normal(1, (2, 1, 5, 5)), normal(2, (2, 1, 3, 3)), normal(3, (2,))
    conv = bj.gradcheck(bj.convolution, x, Wc, b, 2, 1)  # stride and pad as Python ints
    assert conv.ok and conv.skipped == ("argument 3 (a Python int, a setting)", "argument 4 (a Python int, a setting)")


def test_directional_mode_costs_the_same_for_any_size():
    big = normal(0, (300, 200)) + 3
    f = lambda x: jnp.sum(bj.sigmoid(x))
    report = bj.gradcheck(f, big, numeric_directions=4)
    assert report.ok and report.entries[0].numeric_elements == 4 and report.entries[0].numeric_directions
    with pytest.raises(ValueError, match="give numeric_elements or numeric_directions, not both"):
        bj.gradcheck(f, big, numeric_directions=4, numeric_elements=3)


LAYERS = {
    "mul": lambda d: (bj.mul, (normal(0, (3, 4), d), normal(1, (1, 4), d))),
    "add": lambda d: (bj.add, (normal(0, (3, 4), d), normal(1, (1, 4), d))),
    "relu": lambda d: (bj.relu, (normal(0, (3, 4), d) + 0.5,)),
    "sigmoid": lambda d: (bj.sigmoid, (normal(0, (3, 4), d),)),
    "affine": lambda d: (bj.affine, (normal(0, (3, 2, 2), d), normal(1, (4, 5), d), normal(2, (5,), d))),
    "softmax_with_loss": lambda d: (bj.softmax_with_loss, (normal(0, (4, 3), d), jnp.array([0, 2, 1, 1]))),
    "weight_decay": lambda d: (lambda W: bj.weight_decay([W], 0.1), (normal(0, (3, 4), d),)),
    "batch_norm": lambda d: (lambda x, g, b: bj.batch_norm(x, g, b, bj.init_batch_norm_state(3), True)[0],
                             (normal(0, (5, 3), d), normal(1, (3,), d) + 1, normal(2, (3,), d))),
    "dropout": lambda d: (lambda x: bj.dropout(x, jax.random.key(0), 0.5, True), (normal(0, (3, 4), d),)),
    "convolution": lambda d: (lambda x, W, b: bj.convolution(x, W, b, 1, 1),
                              (normal(0, (2, 2, 4, 4), d), normal(1, (3, 2, 3, 3), d), normal(2, (3,), d))),
    "max_pooling": lambda d: (lambda x: bj.max_pooling(x, 2, 2, 2),
                              (jnp.arange(32.0, dtype=d).reshape(1, 2, 4, 4) / 7 + normal(0, (1, 2, 4, 4), d) * 0.01,)),
}


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_of_the_project_passes(name, dtype):
    f, args = LAYERS[name](dtype)
    report = bj.gradcheck(f, *args)
    assert report.ok, str(report)
