"""A catalogue of wrong hand rules, each of which ``gradcheck`` must catch, and the project's
correct layers, all of which must pass, in float64 and float32."""

import os
import subprocess
import sys
import textwrap

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


def test_an_input_within_eps_of_a_kink_is_judged_at_a_smaller_step_not_failed():
    # The book's own check hits this: a hidden unit with pre-activation 7.3e-5 under a 1e-4 step. Its
    # one-sided differences there are 3 * 7.3e-5 / 1e-4 = 2.19 and 3, its central one 2.595; at a step
    # of 1e-5 the kink is outside the step, the one-sided differences agree, and the slope is 3.
    x = jnp.array([0.5, -0.3, 7.3e-5, 1.2])
    report = bj.gradcheck(lambda x: jnp.sum(bj.relu(x) * jnp.arange(1.0, 5.0)), x, eps=1e-4)
    assert report.ok and not report.entries[0].kinks, str(report)
    assert report.entries[0].numeric.max_abs < 1e-9, str(report)
    # At the kink itself, the value is named as one.
    at_kink = bj.gradcheck(lambda x: jnp.sum(bj.relu(x) * jnp.arange(1.0, 5.0)), x.at[2].set(0.0), eps=1e-4)
    (kink,) = at_kink.entries[0].kinks
    assert at_kink.ok and kink.index == (2,) and kink.hand == 0.0
    assert kink.left == pytest.approx(0.0, abs=1e-9) and kink.right == pytest.approx(3.0)
    # A wrong rule near the kink is still a failure elsewhere.
    wrong = rule(lambda x: (jnp.maximum(x, 0), x > 0), lambda m, d: (1.1 * d * m,))
    assert not bj.gradcheck(lambda x: jnp.sum(wrong(x)), x, eps=1e-4).ok


def test_settings_pass_through_and_a_static_argument_given_a_traced_float_is_named():
    W = normal(0, (3, 4))
    report = bj.gradcheck(lambda W, lam: bj.weight_decay([W], lam), W, 0.1)  # lam is traced, and checked
    assert report.ok and [e.name for e in report.entries] == ["W", "lam"]
    x, key = normal(4, (3, 4)), jax.random.key(0)
    drop = lambda x, rate: bj.dropout(x, key, rate, True)  # noqa: E731  drop_rate is nondiff_argnums
    with pytest.raises(TypeError, match="argument 1 is a Python float that gradcheck traces: leave it out of argnums"):
        bj.gradcheck(drop, x, 0.5)
    report = bj.gradcheck(drop, x, 0.5, argnums=0)
    assert report.ok and [e.name for e in report.entries] == ["x"]
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


# --- Rules wherever research code hides them: each wrong rule must be caught by the autodiff
# column alone (numeric=False), and the function without hand rules must hold no custom rule.

def scaled_sigmoid(k):
    """Sigmoid whose hand backward is ``k`` times the right one (dx = dout * y * (1 - y))."""
    f = jax.custom_vjp(lambda x: 1 / (1 + jnp.exp(-x)))
    f.defvjp(lambda x: ((1 / (1 + jnp.exp(-x))),) * 2, lambda y, d: (k * d * y * (1 - y),))
    return f


def scaled_softplus(k):
    """A custom_jvp softplus whose tangent is ``k`` times the right one (sigmoid(x) * t)."""
    @jax.custom_jvp
    def softplus(x):
        return jnp.log1p(jnp.exp(x))
    softplus.defjvp(lambda p, t: (softplus(p[0]), k * t[0] / (1 + jnp.exp(-p[0]))))
    return softplus


def vjp_inside_jvp(k):
    """A custom_jvp (wrong by ``k``) whose forward calls a custom_vjp (right)."""
    inner = scaled_sigmoid(1.0)

    @jax.custom_jvp
    def twice(x):
        return 2 * inner(x)

    def jvp(p, t):
        y = 1 / (1 + jnp.exp(-p[0]))
        return twice(p[0]), k * 2 * y * (1 - y) * t[0]
    twice.defjvp(jvp)
    return twice


BAD = scaled_sigmoid(1.01)
CONSTRUCTS = {
    "scan": lambda x: jax.lax.scan(lambda h, _: (BAD(h), None), x, None, length=3)[0],
    "cond": lambda x: jax.lax.cond(jnp.sum(x) > -1e9, BAD, jnp.sin, x),
    "switch": lambda x: jax.lax.switch(1, [jnp.sin, BAD, jnp.cos], x),
    "fori_loop": lambda x: jax.lax.fori_loop(0, 3, lambda i, h: BAD(h), x),
    "checkpoint": lambda x: jax.checkpoint(BAD)(x),
    "checkpoint with a policy": lambda x: jax.checkpoint(
        lambda x: BAD(x @ jnp.eye(4, dtype=x.dtype)), policy=jax.checkpoint_policies.dots_saveable)(x),
    "nested jit": lambda x: jax.jit(lambda x: jax.jit(BAD)(x) * 2)(x),
    "vmap": lambda x: jax.vmap(BAD)(x),
    "named_call": lambda x: jax.named_call(BAD, name="block")(x),
    "custom_jvp": lambda x: scaled_softplus(1.01)(x),
    "custom_vjp inside custom_jvp": lambda x: vjp_inside_jvp(1.01)(x),
    "scan in cond in checkpoint": lambda x: jax.checkpoint(lambda x: jax.lax.cond(
        True, lambda x: jax.lax.scan(lambda h, _: (BAD(h), None), x, None, length=2)[0], jnp.cos, x))(x),
}


def custom_calls(f, *args):
    return [name for name in ("custom_vjp_call", "custom_jvp_call") if name in str(jax.make_jaxpr(f)(*args))]


@pytest.mark.parametrize("construct", list(CONSTRUCTS))
def test_a_wrong_rule_is_caught_by_autodiff_wherever_it_sits(construct):
    f = CONSTRUCTS[construct]
    x = normal(0, (3, 4))
    report = bj.gradcheck(f, x, numeric=False)
    assert not report.ok and not report.entries[0].autodiff.ok, str(report)
    assert report.rules.replaced and custom_calls(f, x)  # there was a rule, and it is gone below
    assert custom_calls(bj.without_hand_rules(f), x) == []
    # The autodiff side really is autodiff: the right rule in the same place agrees with plain jnp.
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(bj.without_hand_rules(f)(x)))(x),
                               jax.grad(lambda x: jnp.sum(bj.without_hand_rules(f)(x)))(x))


def test_the_report_says_which_rules_were_replaced_and_where():
    f = CONSTRUCTS["scan"]
    rules = bj.hand_rules(f, normal(0, (3, 4)))
    assert [str(r) for r in rules.replaced] == ["<lambda> x3 (in scan)"]
    report = bj.gradcheck(lambda x: jnp.sum(bj.sigmoid(CONSTRUCTS["scan"](x)) + scaled_softplus(1.0)(x)),
                          normal(0, (3, 4)), numeric=False)
    text = str(report)
    assert "replaced by autodiff: <lambda> x3 (in scan), sigmoid x1, softplus x1 (custom_jvp)" in text, text
    nested = bj.hand_rules(CONSTRUCTS["scan in cond in checkpoint"], normal(0, (3, 4)))
    assert [(r.where, r.count) for r in nested.replaced] == [(("checkpoint", "cond", "scan"), 2)]


def test_the_right_rules_in_the_same_places_pass():
    good = scaled_sigmoid(1.0)
    x = normal(0, (3, 4))
    for f in (lambda x: jax.lax.scan(lambda h, _: (good(h), None), x, None, length=3)[0],
              lambda x: jax.checkpoint(good)(x), lambda x: scaled_softplus(1.0)(x),
              lambda x: vjp_inside_jvp(1.0)(x)):
        report = bj.gradcheck(f, x)
        assert report.ok, str(report)


def test_a_rule_inside_shard_map_is_replaced_on_simulated_devices():
    code = textwrap.dedent('''
        import jax, jax.numpy as jnp
        from jax.sharding import PartitionSpec as P, AxisType
        jax.config.update("jax_enable_x64", True)
        import backprop_jax as bj
        bad = jax.custom_vjp(lambda x: 1 / (1 + jnp.exp(-x)))
        bad.defvjp(lambda x: ((1 / (1 + jnp.exp(-x))),) * 2, lambda y, d: (1.01 * d * y * (1 - y),))
        mesh = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Auto,))
        f = lambda x: jax.shard_map(bad, mesh=mesh, in_specs=P("data"), out_specs=P("data"))(x)
        x = jax.random.normal(jax.random.key(0), (8, 3))
        report = bj.gradcheck(f, x, numeric=False)
        assert not report.ok and "(in shard_map)" in str(report), report
        assert "custom_vjp_call" not in str(jax.make_jaxpr(bj.without_hand_rules(f))(x))
        good = lambda x: jax.shard_map(lambda x: jax.lax.psum(jnp.sum(bj.sigmoid(x)), "data"), mesh=mesh,
                                       in_specs=P("data"), out_specs=P())(x)
        assert bj.gradcheck(good, x).ok
        print("shard_map checked")
    ''')
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "4", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0 and "shard_map checked" in result.stdout, result.stdout + result.stderr


def test_a_custom_jvp_rule_in_a_while_loop_is_checked_in_forward_mode():
    def f(k):
        softplus = scaled_softplus(k)
        return lambda x: jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, softplus(c[1])), (0, x))[1]
    x = normal(0, (3, 4))
    wrong = bj.gradcheck(f(1.01), x, mode="forward", numeric=False)
    assert not wrong.ok and "(in while)" in str(wrong), str(wrong)
    right = bj.gradcheck(f(1.0), x, mode="forward")
    assert right.ok and right.entries[0].numeric_elements == 4, str(right)
    with pytest.raises(ValueError, match="mode='forward'"):
        bj.gradcheck(f(1.0), x, mode="forward", order=2)


def test_nothing_independent_is_never_a_pass():
    x = normal(0, (3, 4))
    plain = lambda x: jnp.sum(jnp.sin(x))
    with pytest.raises(ValueError, match="no custom rule that without_hand_rules could replace"):
        bj.gradcheck(plain, x, numeric=False)
    report = bj.gradcheck(plain, x)  # central differences still judge it; the autodiff column does not count
    assert report.ok and not report.entries[0].autodiff_independent
    assert "same" in str(report) and "not counted" in str(report)
    # The gradient of a function holding rules has them run through already: nothing left to replace.
    with pytest.raises(ValueError, match="nothing independent"):
        bj.gradcheck(jax.grad(lambda x: jnp.sum(BAD(x))), x, numeric=False)
    of_grad = bj.gradcheck(jax.grad(lambda x: jnp.sum(BAD(x))), x)
    assert not of_grad.entries[0].autodiff_independent and "replaced by autodiff: nothing" in str(of_grad)


def test_a_rule_whose_forward_has_no_derivative_is_kept_and_named():
    def host_sigmoid(x):
        return jax.pure_callback(lambda v: (1 / (1 + np.exp(-v))).astype(v.dtype),
                                 jax.ShapeDtypeStruct(x.shape, x.dtype), x, vmap_method="sequential")
    f = jax.custom_vjp(host_sigmoid)
    f.defvjp(lambda x: (host_sigmoid(x),) * 2, lambda y, d: (d * y * (1 - y),))
    x = normal(0, (3, 4))
    rules = bj.hand_rules(f, x)
    assert not rules.replaced and "pure_callback" in str(rules.kept[0]), rules
    with pytest.raises(ValueError, match=r"kept: host_sigmoid \(custom_vjp\).*pure_callback"):
        bj.gradcheck(f, x, numeric=False)
    report = bj.gradcheck(f, x)
    assert report.ok and "kept, not compared: host_sigmoid" in str(report)


def test_each_failing_argument_says_how_many_values_fail():
    def bwd(x, d):
        return (2 * x * d * jnp.where(jnp.arange(x.size).reshape(x.shape) % 4 == 0, 1.5, 1.0),)
    f = rule(lambda x: (x * x, x), bwd)
    report = bj.gradcheck(lambda x: jnp.sum(f(x)), normal(0, (3, 4)) + 2)
    assert report.entries[0].autodiff.failed == 3 and report.entries[0].autodiff.size == 12
    assert "(3 of 12 values fail)" in str(report)


# --- Low precision: references in float64, tolerances from the dtype's rounding.

def low(seed, shape, dtype):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32).astype(dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_right_rules_pass_and_wrong_ones_fail_in_low_precision(dtype):
    x = low(0, (30, 20), dtype)
    right = bj.gradcheck(scaled_sigmoid(1.0), x)
    assert right.ok and "float64, on an upcast copy" in right.references, str(right)
    wrong = bj.gradcheck(scaled_sigmoid(1.2), x)  # 20% off: beyond any of these dtypes' rounding
    assert not wrong.ok and not wrong.entries[0].autodiff.ok, str(wrong)
    # 1% off: the same rule run on the float64 copy is caught even where the dtype cannot resolve it.
    one_percent = bj.gradcheck(scaled_sigmoid(1.01), x)
    assert not one_percent.ok and not one_percent.entries[0].float64.ok
    # The project's own layers pass in every dtype.
    args = (low(1, (8, 5), dtype), low(2, (5, 4), dtype), low(3, (4,), dtype))
    net = bj.gradcheck(lambda x, W, b: bj.sigmoid(bj.affine(x, W, b)), *args)
    assert net.ok, str(net)


def test_float32_cases_that_used_to_fail_right_rules():
    x = low(0, (300, 300), jnp.float32)
    big = bj.gradcheck(bj.sigmoid, x, numeric_elements=100)
    assert big.ok and big.entries[0].kinks == (), str(big)  # a smooth sigmoid has no kinks
    assert not bj.gradcheck(scaled_sigmoid(1.01), x, numeric=False).ok  # 1% is resolved in float32
    million = low(1, (1000, 1000), jnp.float32)
    assert bj.gradcheck(lambda x: jnp.sum(bj.sigmoid(x)), million, numeric_directions=3).ok
    caught = bj.gradcheck(lambda x: jnp.sum(scaled_sigmoid(1.01)(x)), million, numeric_directions=3)
    assert not caught.entries[0].autodiff.ok and not caught.entries[0].numeric.ok


def test_a_tolerance_the_dtype_cannot_resolve_fails_closed():
    report = bj.gradcheck(scaled_sigmoid(1.0), low(0, (4, 3), jnp.bfloat16), rtol=1e-4)
    assert not report.ok and "bfloat16 cannot resolve the tolerance asked" in str(report), str(report)


def test_a_function_that_does_not_run_in_float64_is_checked_in_its_own_dtype_and_says_so():
    # A cast inside is raised to float64 with the rest of the function: float64 references.
    cast = bj.gradcheck(lambda x: bj.sigmoid(x.astype(jnp.float32)), low(0, (4, 3), jnp.float32))
    assert cast.ok and "casts to lower precision raised to float64" in cast.references, str(cast)
    assert cast.entries[0].float64 is not None and cast.entries[0].float64.ok
    # A function that refuses float64 inputs is checked in its own dtype, and the report says so.
    def float32_only(x):
        if x.dtype != jnp.float32:
            raise TypeError(f"float32 only, got {x.dtype}")
        return bj.sigmoid(x)
    report = bj.gradcheck(float32_only, low(0, (4, 3), jnp.float32))
    assert report.ok and "does not run in float64" in report.references, str(report)
    assert report.entries[0].float64 is None


# --- Any pytree, auxiliary outputs, shared parameters under vmap.

def test_has_aux_returns_the_auxiliary_output_unchecked():
    x, gamma, beta = normal(0, (5, 3)), normal(1, (3,)) + 1, normal(2, (3,))
    state = bj.init_batch_norm_state(3)
    report = bj.gradcheck(lambda x, g, b: bj.batch_norm(x, g, b, state, True), x, gamma, beta, has_aux=True)
    assert report.ok and [e.name for e in report.entries] == ["x", "g", "b"], str(report)
    np.testing.assert_allclose(report.aux["running_mean"], 0.1 * jnp.mean(x, axis=0))  # the book's momentum 0.9
    with pytest.raises(TypeError, match=r"int32 array at \[1\].*has_aux=True"):
        bj.gradcheck(lambda x: (bj.sigmoid(x), jnp.argmax(x).astype(jnp.int32)), x)
    with pytest.raises(TypeError, match="has_aux=True needs f to return"):
        bj.gradcheck(bj.sigmoid, x, has_aux=True)


def test_non_array_leaves_pass_through_and_are_listed():
    params = {"W": normal(0, (4, 3)), "act": jax.nn.relu, "name": "dense"}
    f = lambda p, x: jnp.sum(p["act"](bj.affine(x, p["W"], jnp.zeros(3))))
    report = bj.gradcheck(f, params, normal(1, (2, 4)) + 0.5)
    assert report.ok and [e.name for e in report.entries] == ["W", "x"], str(report)
    assert "act (a callable, passed unchanged)" in report.skipped and "name (a Python str, a setting)" in report.skipped
    with pytest.raises(TypeError, match=r"gradcheck: w\[1\] is a Python list of numbers"):
        bj.gradcheck(lambda w: jnp.sum(jnp.asarray(w[1]) ** 2), [normal(0, (2,)), [1.0, 2.0]])


def test_batched_takes_in_axes_with_shared_parameters():
    W, xs = normal(0, (4, 3)), normal(1, (6, 4))
    loss = lambda W, x: jnp.sum(bj.sigmoid(x @ W))  # one example x: (4,)
    report = bj.gradcheck(loss, W, xs, batched=True, in_axes=(None, 0))
    assert report.ok and all(e.batched.ok for e in report.entries), str(report)
    # The shared gradient is the sum of the per-example ones: written out in plain jnp.
    y = 1 / (1 + jnp.exp(-(xs @ W)))
    per_example = jnp.einsum("bi,bj->bij", xs, y * (1 - y))
    hand = jax.grad(lambda W: jnp.sum(jax.vmap(loss, in_axes=(None, 0))(W, xs)))(W)
    np.testing.assert_allclose(hand, per_example.sum(0), rtol=1e-12)
    with pytest.raises(ValueError, match="in_axes must be"):
        bj.gradcheck(loss, W, xs, batched=True, in_axes=(None,))


@pytest.mark.slow
def test_the_mutation_catalogue_on_real_data_no_false_alarm_and_every_mutant_caught():
    # benchmarks/gradcheck_catalogue.py, on two layers (pooling over tied zeros) in float64 and float16.
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gradcheck_catalogue.py"
    spec = importlib.util.spec_from_file_location("gradcheck_catalogue", path)
    catalogue = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(catalogue)
    rows = catalogue.run(["affine", "max_pooling"], ("float64", "float16"), checkers=("bj.gradcheck",),
                         log=lambda line: None)
    summary = catalogue.summary(rows, checkers=("bj.gradcheck",))["bj.gradcheck"]
    assert summary["right_rules"] == 4 and summary["false_alarms"] == 0, summary
    assert summary["mutants"] >= 20 and summary["caught"] == summary["mutants"], summary
