"""The gradient checker and ``without_hand_rules``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import normal


def make_scaled_square(factor):
    """A custom VJP for x**2 whose backward is ``factor`` times the true one."""
    @jax.custom_vjp
    def square(x):
        return x * x

    square.defvjp(lambda x: (x * x, x), lambda x, dout: (factor * 2 * x * dout,))
    return square


def two_layer_loss(params, x, t):
    h = bj.relu(bj.affine(x, params["W1"], params["b1"]))
    return bj.softmax_with_loss(bj.affine(h, params["W2"], params["b2"]), t)


def small_net(dtype=jnp.float64, d_in=6, hidden=5):
    params = {"W1": normal(0, (d_in, hidden), dtype), "b1": normal(1, (hidden,), dtype) * 0.1,
              "W2": normal(2, (hidden, 3), dtype), "b2": jnp.zeros(3, dtype)}
    return params, normal(3, (4, d_in), dtype), jnp.array([0, 2, 1, 2])


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_a_rule_off_by_one_percent_is_caught(dtype):
    x = normal(0, (5,), dtype) + 2
    loss = lambda x: jnp.sum(make_scaled_square(1.01)(x))
    report = bj.gradcheck(loss, x)
    assert not report.ok
    (entry,) = report.entries
    assert not entry.autodiff.ok and not entry.numeric.ok
    np.testing.assert_allclose(entry.autodiff.max_rel, 0.01 / 1.01, rtol=1e-2)
    assert "FAIL" in str(report) and "gradient check FAILED" in str(report)
    with pytest.raises(AssertionError, match=r"gradient check failed[\s\S]*x .*FAIL"):
        bj.assert_gradcheck(loss, x)


def test_a_correct_custom_rule_passes_via_its_plain_forward():
    x = normal(0, (5,)) + 2
    report = bj.assert_gradcheck(lambda x: jnp.sum(make_scaled_square(1.0)(x)), x)
    assert report.ok and report.entries[0].numeric.max_rel < 1e-8


def test_two_layer_net_per_parameter_report():
    params, x, t = small_net()
    report = bj.gradcheck(two_layer_loss, params, x, t)
    assert report.ok, str(report)
    assert [e.name for e in report.entries] == ["W1", "W2", "b1", "b2", "x"]
    assert report.skipped == ("t (integer or bool)",)
    lines = report.book_lines()
    assert [l.split(":")[0] for l in lines] == ["W1", "W2", "b1", "b2", "x"]
    assert all(float(l.split(": ")[1]) < 1e-8 for l in lines)
    text = str(report)
    assert "vs autodiff" in text and "vs numeric" in text and "gradient check passed" in text


def test_numeric_gradient_is_the_central_difference():
    # The numeric column must be what the book's formula gives, computed here.
    x = jnp.array([0.3, -1.2, 2.0])
    f = lambda x: jnp.sum(jnp.sin(x) * x)
    report = bj.gradcheck(f, x, eps=1e-4, numeric=True)
    h = 1e-4
    num = [(f(x.at[i].add(h)) - f(x.at[i].add(-h))) / (2 * h) for i in range(3)]
    exact = np.cos(np.asarray(x)) * np.asarray(x) + np.sin(np.asarray(x))
    np.testing.assert_allclose(report.entries[0].numeric.max_abs, np.max(np.abs(exact - np.asarray(num))), rtol=1e-6)


def test_float32_defaults_are_looser_than_float64():
    params, x, t = small_net(jnp.float32)
    report = bj.gradcheck(two_layer_loss, params, x, t)
    assert report.ok, str(report)
    e = report.entries[0]
    assert e.dtype == "float32" and e.autodiff.rtol > 1e-7 and e.numeric.atol > 1e-6


def test_matrix_products_run_at_full_precision():
    # GPUs multiply float32 matrices in TF32 by default; its rounding would swamp central
    # differences, so every evaluation inside the check is traced at "highest" precision.
    seen = []
    def f(x):
        seen.append(jax.config.jax_default_matmul_precision)
        return jnp.sum(x @ x.T)
    x = jnp.ones((3, 2), jnp.float32)
    bj.gradcheck(f, x)
    assert seen and set(seen) == {"highest"}, seen
    seen.clear()
    with jax.default_matmul_precision("bfloat16"):
        bj.gradcheck(f, x, matmul_precision=None, numeric_elements=1)
    assert seen and set(seen) == {"bfloat16"}, seen


def test_non_scalar_output_is_checked_through_a_random_cotangent():
    x = normal(0, (3, 4))
    assert bj.gradcheck(bj.sigmoid, x).ok
    bad = make_scaled_square(0.99)
    assert not bj.gradcheck(bad, x).ok


def test_argnums_and_skips():
    x = normal(0, (3, 4))
    t = jax.nn.one_hot(jnp.array([0, 1, 3]), 4)
    # One-hot labels are floats, yet constants of the layer: check x only.
    report = bj.gradcheck(bj.softmax_with_loss, x, t, argnums=0)
    assert report.ok and [e.name for e in report.entries] == ["x"]
    with pytest.raises(ValueError, match="no floating-point argument"):
        bj.gradcheck(bj.softmax_with_loss, x, jnp.array([0, 1, 3]), argnums=1)
    with pytest.raises(ValueError, match="argnums contains 5"):
        bj.gradcheck(bj.relu, x, argnums=5)


def test_numeric_can_be_skipped_and_reference_given():
    x = normal(0, (4,))
    report = bj.gradcheck(bj.relu, x, numeric=False, reference=jax.nn.relu)
    assert report.ok and report.entries[0].numeric is None and "(skipped)" in str(report)
    wrong = bj.gradcheck(bj.relu, x, numeric=False, reference=lambda x: 2 * jax.nn.relu(x))
    assert not wrong.ok


def test_without_hand_rules_removes_every_custom_vjp_and_keeps_values(monkeypatch):
    # Spy on affine's backward. JAX caches traces by function and shape, so
    # shapes no other test uses make sure the spy is what gets traced.
    calls, original = [], bj.affine.bwd
    monkeypatch.setattr(bj.affine, "bwd", lambda res, dout: calls.append(1) or original(res, dout))
    params, x, t = small_net(d_in=11, hidden=13)
    loss = lambda p, x, t: jax.jit(two_layer_loss)(p, x, t)
    plain = bj.without_hand_rules(loss)
    assert "custom_vjp_call" in str(jax.make_jaxpr(loss)(params, x, t))
    assert "custom_vjp_call" not in str(jax.make_jaxpr(plain)(params, x, t))
    np.testing.assert_allclose(plain(params, x, t), loss(params, x, t), rtol=1e-15)
    jax.grad(plain)(params, x, t)
    assert calls == []
    jax.grad(loss)(params, x, t)
    assert calls == [1, 1]
    # And its gradient ignores a wrong hand rule.
    bad = make_scaled_square(3.0)
    g = jax.grad(bj.without_hand_rules(lambda x: jnp.sum(bad(x))))(x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-15)


def test_without_hand_rules_keeps_jax_own_custom_jvp_functions():
    # jax.nn.relu and jax.nn.softmax carry custom JVP rules: they must evaluate unchanged.
    f = lambda x: jnp.sum(jax.nn.relu(x) * jax.nn.softmax(x) * bj.sigmoid(x))
    x = normal(0, (5,))
    np.testing.assert_allclose(bj.without_hand_rules(f)(x), f(x), rtol=1e-15)
    np.testing.assert_allclose(jax.grad(bj.without_hand_rules(f))(x), jax.grad(f)(x), rtol=1e-12)


def test_numeric_elements_samples_large_arrays_and_still_catches_a_wrong_rule():
    x = normal(0, (40, 30)) + 3
    report = bj.gradcheck(lambda x: jnp.sum(make_scaled_square(1.0)(x)), x, numeric_elements=25)
    assert report.ok and report.entries[0].numeric_elements == 25
    assert "(25 of 1200 elements)" in str(report)
    bad = bj.gradcheck(lambda x: jnp.sum(make_scaled_square(1.01)(x)), x, numeric_elements=25)
    assert not bad.entries[0].numeric.ok and not bad.entries[0].autodiff.ok
    full = bj.gradcheck(lambda x: jnp.sum(make_scaled_square(1.0)(x)), x[:2, :3], numeric_elements=100)
    assert full.entries[0].numeric_elements == 6 and "elements)" not in str(full)
    with pytest.raises(ValueError, match="numeric_elements must be a positive integer, got 0"):
        bj.gradcheck(bj.relu, x, numeric_elements=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"eps": 0}, r"eps must be None or a finite number > 0, got 0"),
    ({"eps": float("nan")}, r"eps must be None or a finite number > 0, got nan"),
    ({"atol": -1}, r"atol must be None or a finite number >= 0, got -1"),
    ({"rtol": float("inf")}, r"rtol must be None or a finite number >= 0, got inf"),
])
def test_bad_tolerances_are_refused_not_reported_as_failures(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bj.gradcheck(lambda x: jnp.sum(bj.relu(x)), jnp.ones(3), **kwargs)
