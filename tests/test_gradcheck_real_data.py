"""The checker on real data, both ways: right rules at ties, kinks, zero biases, overflow and mixed
precision pass; the same points with a wrong rule fail. Each rule checked on its own."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import backprop_jax as bj
from conftest import normal
from test_sharding import run_with_devices


def rule(fwd, bwd, primal=None):
    """A custom_vjp from a forward ``(out, residuals)`` and a backward (and a primal, if it differs)."""
    f = jax.custom_vjp(primal or (lambda *a: fwd(*a)[0]))
    f.defvjp(fwd, bwd)
    return f


def square(factor=1.0, only=None):
    """x**2 whose backward is ``factor`` times right (only in dtype ``only``, if given)."""
    def bwd(x, d):
        return ((factor if only is None or x.dtype == only else 1.0) * 2 * x * d,)
    return rule(lambda x: (x * x, x), bwd)


@pytest.fixture(scope="module")
def digits(sample):
    (x, t), _ = sample
    return np.asarray(x[:4], np.float64), np.asarray(t[:4])


# --- kinks and ties -------------------------------------------------------------------------

def test_the_book_conv_net_on_real_digits_with_zero_biases_passes_and_a_wrong_pooling_rule_fails(digits):
    x, t = digits
    img = jnp.asarray(x[:1]).reshape(1, 1, 28, 28)
    model = bj.conv_net.model(filter_num=3, hidden_size=10, dtype=jnp.float64)
    params, state = model.init(jax.random.key(0))
    assert not np.any(params["b1"])  # the book's zero biases: ReLU at exactly 0 on the background
    report = bj.gradcheck(model.loss_fn(state), params, img, jnp.asarray(t[:1]), argnums=0, numeric_directions=3)
    assert report.ok, str(report)
    assert any(e.kinks for e in report.entries) and "within eps of a kink" in str(report)
    # Tied maxima: a digit's background under 2 x 2 pooling.
    w = normal(0, (1, 1, 14, 14))
    pool = bj.gradcheck(lambda x: jnp.sum(bj.max_pooling(x, 2, 2, 2) * w), img, numeric_elements=50)
    assert pool.ok and pool.entries[0].autodiff.kinks > 100, str(pool)
    # The same points, the rule 1% off where the maximum is unique: caught.
    wrong = rule(lambda x: bj.max_pooling.fwd(x, 2, 2, 2, 0),
                 lambda res, d: (1.01 * bj.max_pooling.bwd(2, 2, 2, 0, res, d)[0],))
    assert not bj.gradcheck(lambda x: jnp.sum(wrong(x) * w), img, numeric_elements=50).ok


def test_random_directions_through_relu_at_zero_are_judged_by_their_one_sided_slopes(digits):
    pixels = jnp.asarray(digits[0][0, 200:300])  # background zeros and strokes
    w = normal(1, (100,))
    f = lambda b: jnp.sum(bj.relu(pixels * 2 - 1 + b) * w) + jnp.sum(bj.relu(pixels + b) * w)  # noqa: E731
    report = bj.gradcheck(f, jnp.zeros(100), numeric_directions=4)
    assert report.ok and report.entries[0].kinks, str(report)
    wrong = rule(lambda x: (jnp.maximum(x, 0), x > 0), lambda m, d: (1.01 * d * m,))
    assert not bj.gradcheck(lambda b: jnp.sum(wrong(pixels * 2 - 1 + b) * w), jnp.zeros(100),
                            numeric_directions=4).ok


def test_jax_nn_relu_at_exact_zeros_is_not_a_false_alarm(digits):
    # Its rules taken out, jax.nn.relu is maximum(x, 0), whose derivative at a tie is 1/2.
    pixels = jnp.asarray(digits[0][1, 300:340])
    w = normal(2, (40,))
    report = bj.gradcheck(lambda x: jnp.sum(jax.nn.relu(x) * w), pixels)
    assert report.ok and report.entries[0].autodiff.kinks >= 1, str(report)


def test_a_hand_value_outside_the_one_sided_interval_still_fails():
    f = rule(lambda x: (jnp.maximum(x, 0), x),
             lambda x, d: (jnp.where(x > 0, d, jnp.where(x < 0, 0.0, 2.0 * d)),))  # right but at the kink: 2
    report = bj.gradcheck(lambda x: jnp.sum(f(x)), jnp.array([0.0, 1.0, -1.0]))
    assert not report.ok and "x[0]" in str(report)


def top_two(second):
    """The two largest of each row; the backward routes the cotangent to the elements top_k picked, the
    second one's scaled by ``second``."""
    def bwd(x, d):
        _, i = jax.lax.top_k(x, 2)
        rows = jnp.arange(x.shape[0])[:, None]
        return (jnp.zeros_like(x).at[rows, i].add(d * jnp.array([[1.0, second]])),)
    return rule(lambda x: (jax.lax.top_k(x, 2)[0], x), bwd)


def test_a_tie_of_several_values_is_judged_where_one_sided_slopes_cannot_reach():
    # Four tied values, the second of the top two weighted more: moving the one top_k ranks second
    # reaches only rank 1 (slope 1) or no rank (0), yet its right derivative, the gradient just beside
    # the tie where it is second, is 2.
    x = jnp.array([[0.5, 0.5, 0.5, 0.5], [1.0, 4.0, 2.0, 3.0]])
    loss = lambda f: (lambda x: jnp.sum(f(x) * jnp.array([[1.0, 2.0]])))
    expected = jax.grad(loss(lambda x: jax.lax.top_k(x, 2)[0]))(x)
    assert expected[0, 1] == 2.0  # JAX's own derivative of top_k, independent of the rule
    report = bj.gradcheck(loss(top_two(1.0)), x)
    assert report.ok and "hand 2, as autodiff" in str(report), str(report)
    # The same tie, the rule 1% off for the second: its value is neither a one-sided slope nor autodiff's.
    assert not bj.gradcheck(loss(top_two(1.01)), x).ok

def test_everything_at_a_kink_fails_closed():
    report = bj.gradcheck(lambda x: jnp.sum(jnp.abs(x)), jnp.zeros(3))
    assert not report.ok and "every value compared lay at a kink" in str(report), str(report)
    # A step too large for f's curvature parts the one-sided differences as a kink does: it says so.
    report = bj.gradcheck(lambda x: jnp.sum(jnp.sin(x)), jnp.array([0.5, 1.0, 1.5]), eps=0.1)
    assert not report.ok and "or with a smaller eps than 0.1" in str(report), str(report)


# --- low precision ----------------------------------------------------------------------------

def overflow_elsewhere(rule_):
    return lambda x: jnp.sum(rule_(x[:3])) + jnp.sum(jnp.exp(x[3:] * 6))  # exp(12) overflows float16


def test_overflow_elsewhere_in_float16_never_makes_the_tolerance_nan():
    x = (normal(0, (6,)) + 2).astype(jnp.float16)
    right = bj.gradcheck(overflow_elsewhere(square()), x)
    assert right.ok and right.entries[0].autodiff.excluded >= 1, str(right)
    assert "float16 overflows there" in str(right)
    wrong = bj.gradcheck(overflow_elsewhere(square(1.1, only=jnp.float16)), x)
    assert not wrong.ok and not wrong.entries[0].autodiff.ok, str(wrong)


def test_a_naive_sigmoid_at_minus_100_in_float32():
    naive = lambda z: 1 / (1 + jnp.exp(-z))  # noqa: E731
    x = jnp.array([-100.0, 1.0, 2.0], jnp.float32)
    assert bj.gradcheck(lambda x: jnp.sum(naive(x)) + jnp.sum(square()(x)), x).ok
    assert not bj.gradcheck(lambda x: jnp.sum(naive(x)) + jnp.sum(square(1.01)(x)), x).ok


def small_net(digits, dtype, hidden=20):
    x, t = digits
    params = bj.two_layer_net.init(jax.random.key(0), 784, hidden, 10, dtype=dtype)
    return params, jnp.asarray(x, dtype), jnp.asarray(t)


def test_batched_checks_get_float64_references_per_example(digits):
    params, x, t = small_net(digits, jnp.float32)
    per_example = lambda p, x, t: bj.two_layer_net.loss(p, x[None], t[None])  # noqa: E731
    report = bj.gradcheck(per_example, params, x, t, batched=True, in_axes=(None, 0, 0), argnums=0)
    assert report.ok and report.references.startswith("float64"), str(report)
    wrong = square(1.03)
    p16 = {k: v.astype(jnp.bfloat16) for k, v in params.items()}
    bad = lambda p, x, t: per_example(p, x, t) + jnp.sum(wrong(p["W2"]))  # noqa: E731
    caught = bj.gradcheck(bad, p16, x.astype(jnp.bfloat16), t, batched=True, in_axes=(None, 0, 0), argnums=0)
    assert not caught.ok, str(caught)


def mixed(p, x, t, extra=None):
    """bfloat16 compute, the loss cast to float32: the usual mixed-precision recipe."""
    q = {k: v.astype(jnp.bfloat16) for k, v in p.items()}
    h = bj.relu(bj.affine(x.astype(jnp.bfloat16), q["W1"], q["b1"]))
    loss = bj.softmax_with_loss(bj.affine(h, q["W2"], q["b2"]).astype(jnp.float32), t)
    return loss if extra is None else loss + jnp.sum(extra(q["W2"]).astype(jnp.float32))


def test_mixed_precision_is_checked_against_float64_and_a_1_percent_error_is_caught(digits):
    params, x, t = small_net(digits, jnp.float32)
    right = bj.gradcheck(mixed, params, x, t, argnums=0)
    assert right.ok and "casts to lower precision raised to float64" in right.references, str(right)
    wrong = bj.gradcheck(lambda p, x, t: mixed(p, x, t, square(1.01)), params, x, t, argnums=0)
    assert not wrong.ok and not wrong.entries[1].float64.ok, str(wrong)


# --- each rule on its own ---------------------------------------------------------------------

def test_a_rule_that_never_ran_is_not_counted():
    x = normal(0, (5,))
    wrong = square(1.5)
    branch = lambda x: jax.lax.switch(0, [lambda x: jnp.sum(jnp.sin(x)), lambda x: jnp.sum(wrong(x))], x)  # noqa
    report = bj.gradcheck(branch, x)
    assert report.ok and "not exercised here" in str(report)
    assert [r.exercised for r in report.rule_checks] == [False]
    closed = bj.gradcheck(branch, x, numeric=False)
    assert not closed.ok and "nothing independent was compared" in str(closed), str(closed)
    taken = lambda x: jax.lax.switch(1, [lambda x: jnp.sum(jnp.sin(x)), lambda x: jnp.sum(wrong(x))], x)  # noqa
    assert not bj.gradcheck(taken, x, numeric=False).ok


def test_the_whole_rule_fwd_dtypes_and_linearity():
    x = normal(0, (6,))
    forgets = rule(lambda x: (jnp.tanh(x), x), lambda x, d: ((1 - jnp.tanh(x) ** 2) * d,),
                   primal=lambda x: jnp.tanh(x) + 0.5)
    report = bj.gradcheck(lambda x: jnp.sum(forgets(x) ** 2), x)
    assert not report.ok and "its fwd returns other values than its primal" in str(report)
    wide = rule(lambda x: (x * x, x), lambda x, d: ((2 * x * d).astype(jnp.float64),))
    report = bj.gradcheck(lambda x: jnp.sum(wide(x)), x.astype(jnp.float32))
    assert not report.ok and "a float64 cotangent for a float32 input" in str(report)
    absolute = rule(lambda x: (x * x, x), lambda x, d: (2 * x * jnp.abs(d),))
    report = bj.gradcheck(lambda x: jnp.sum(absolute(x) * jnp.linspace(0.5, 1.5, 6)), x, numeric=False)
    assert not report.ok and "not linear in the cotangent" in str(report)
    right = bj.gradcheck(lambda x: jnp.sum(bj.sigmoid(x) ** 2), x)
    assert right.ok and all(r.ok and r.exercised for r in right.rule_checks)


def test_the_rule_to_blame_is_named():
    bad = rule(lambda x: (jnp.sin(x), x), lambda x, d: (1.01 * jnp.cos(x) * d,))
    x, W, b = normal(0, (3, 4)), normal(1, (4, 4)), normal(2, (4,))

    def f(W):
        h, _ = jax.lax.scan(lambda h, _: (bad(bj.affine(h, W, b)), None), x, None, length=2)
        return jnp.sum(bj.sigmoid(h))
    report = bj.gradcheck(f, W)
    assert not report.ok
    assert "the rule of `<lambda>` (in scan) disagrees with autodiff; the other 2 rules agree" in str(report)


def test_a_custom_jvp_rule_to_blame_is_named_beside_custom_vjp_rules():
    @jax.custom_jvp
    def sin(x):
        return jnp.sin(x)

    sin.defjvp(lambda p, t: (jnp.sin(p[0]), 1.01 * jnp.cos(p[0]) * t[0]))
    x, W, b = normal(0, (3, 4)), normal(1, (4, 4)), normal(2, (4,))
    report = bj.gradcheck(lambda W: jnp.sum(bj.sigmoid(sin(bj.affine(x, W, b)))), W)
    assert not report.ok
    assert "the rule of `sin` disagrees with autodiff; the other 2 rules agree" in str(report), str(report)


def test_sigmoid_with_loss_names_the_books_1e_7():
    x, t = normal(3, (5,)), jnp.array([0, 1, 1, 0, 1])
    report = bj.gradcheck(lambda x: bj.sigmoid_with_loss(x, t), x)
    assert not report.ok and "ignores the 1e-7 its forward adds inside log" in str(report)


# --- layers where plain JAX runs --------------------------------------------------------------

def test_check_grads_runs_on_convolution_and_pooling_at_orders_1_and_2():
    x, W, b = (np.asarray(normal(i, s)) for i, s in enumerate([(1, 1, 5, 5), (2, 1, 3, 3), (2,)]))
    check_grads(lambda x, W, b: bj.convolution(x, W, b, 1, 0), (x, W, b), order=2, modes=["rev"])
    check_grads(lambda x: bj.max_pooling(x, 2, 2, 2), (x[:, :, :4, :4],), order=2, modes=["rev"])


def test_soft_labels_under_jit_get_the_exact_gradient():
    s, t = normal(4, (3, 4)), jnp.full((3, 4), 0.3)  # rows sum to 1.2: unchecked under jit
    hand = jax.jit(jax.grad(bj.softmax_with_loss))(s, t)
    exact = jax.grad(lambda s: -jnp.sum(t * jax.nn.log_softmax(s, axis=1)) / 3)(s)
    np.testing.assert_allclose(hand, exact, atol=1e-14)


EXPLICIT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    import backprop_jax as bj
    from jax.sharding import PartitionSpec as P, AxisType
    mesh = jax.make_mesh((2, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    with jax.set_mesh(mesh):
        x = jax.device_put(jnp.ones((8, 3)), P("data"))
        W, b = jnp.ones((3, 2)), jnp.zeros(2)
        loss = lambda W, b, x: jnp.sum(bj.affine(x, W, b) ** 2)
        plain = lambda W, b, x: jnp.sum((x @ W + b) ** 2)
        for name, args in (("arrays", (W, b)), ("numpy", (np.ones((3, 2), np.float32), np.zeros(2, np.float32))),
                           ("split columns", (jax.device_put(W, P(None, "model")), b))):
            hand = jax.jit(jax.grad(loss, argnums=(0, 1)))(*args, x)
            auto = jax.jit(jax.grad(plain, argnums=(0, 1)))(*args, x)
            for h, a in zip(hand, auto):
                np.testing.assert_allclose(np.asarray(h), np.asarray(a), rtol=1e-6)
            print(name, "matches")
''')


@pytest.mark.slow
def test_affine_under_an_explicit_mesh_with_unsharded_parameters():
    result = run_with_devices(EXPLICIT, n=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("matches") == 3, result.stdout


# --- inputs -----------------------------------------------------------------------------------

def test_empty_arrays_and_wrong_containers_are_named():
    with pytest.raises(ValueError, match=r"no floating-point argument with values to check.*x \(empty, shape \(0,\)\)"):
        bj.gradcheck(lambda x: jnp.sum(x), jnp.zeros((0,)))
    with pytest.raises(TypeError, match=r"f cannot be called with the arguments given \(a: \(3,\) float64\): TypeError"):
        bj.gradcheck(lambda x: jnp.sum(x * 2.0 @ jnp.ones(3)), {"a": jnp.ones(3)})


def test_the_default_check_is_elements_for_small_arrays_and_directions_for_large(digits):
    params, x, t = small_net(digits, jnp.float64)
    report = bj.gradcheck(bj.two_layer_net.loss, params, x, t, argnums=0)
    by_name = {e.name: e for e in report.entries}
    assert report.ok, str(report)
    assert by_name["W1"].numeric_directions and by_name["W1"].numeric_elements == 8
    assert not by_name["b2"].numeric_directions and by_name["b2"].numeric_elements == 10
    # A wrong rule in one element of a large array: the directions fail, and elements name it.
    g = np.abs(np.asarray(jax.grad(bj.two_layer_net.loss)(params, x, t)["W1"]))
    i, j = np.unravel_index(np.argmax(g), g.shape)  # an element whose gradient is not zero
    one = rule(lambda W: (W * 1.0, None), lambda _, d: (d.at[i, j].multiply(1.5),))
    bad = bj.gradcheck(lambda p, x, t: bj.two_layer_net.loss({**p, "W1": one(p["W1"])}, x, t), params, x, t,
                       argnums=0, key=jax.random.key(3))
    assert not bad.ok and f"W1[{i}, {j}]: worst numeric, per element mismatch" in str(bad), str(bad)


SHARD_MAP = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jax.sharding import PartitionSpec as P
    import backprop_jax as bj
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("d",))
    for factor in (1.0, 1.01):
        sin = jax.custom_vjp(jnp.sin)
        sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, d, factor=factor: (factor * d * jnp.cos(x),))
        f = jax.shard_map(lambda x: jax.lax.psum(jnp.sum(sin(x)), "d"), mesh=mesh, in_specs=P("d"), out_specs=P())
        report = bj.gradcheck(f, jnp.linspace(-1.0, 1.0, 8), numeric=False)
        print(factor, report.ok, "each rule on its own: the rules could not be checked" in str(report))
''')


@pytest.mark.slow
def test_rules_inside_shard_map_are_judged_and_the_report_says_they_were_not_checked_on_their_own():
    result = run_with_devices(SHARD_MAP, n=4)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["1.0 True True", "1.01 False True"], result.stdout


# --- the rounding of central differences ------------------------------------------------------

def square_off_at(i, factor):
    """x**2 whose backward is ``factor`` times right at flat element ``i`` only."""
    return rule(lambda x: (x * x, x), lambda x, d: ((2 * x * d).reshape(-1).at[i].multiply(factor).reshape(x.shape),))


def test_a_large_value_of_f_is_rounding_for_central_differences_not_a_kink():
    # f(x +- h) agree to eps * 1e6 = 2e-10, so a difference quotient at h = 1e-6 carries ~2e-4 of
    # noise: more than the float64 tolerances, and no kink (tanh(x**2) is smooth).
    x = normal(0, (4, 4))
    report = bj.gradcheck(lambda x: 1e6 + jnp.sum(jnp.tanh(square_off_at(6, 1.0)(x))), x)
    assert report.ok and not report.entries[0].kinks, str(report)
    # The rule 0.01% off at one element: below that noise, caught by autodiff and not excused as a kink.
    bad = bj.gradcheck(lambda x: 1e6 + jnp.sum(jnp.tanh(square_off_at(6, 1.0001)(x))), x)
    assert not bad.ok and not bad.entries[0].autodiff.ok and not bad.entries[0].kinks, str(bad)


@pytest.mark.slow
def test_a_rule_wrong_at_one_of_a_million_elements_is_not_excused_as_a_kink():
    x = normal(0, (1000, 1000))
    bad = bj.gradcheck(lambda x: jnp.sum(jnp.tanh(square_off_at(123456, 1.0001)(x))), x)
    assert not bad.ok and "x[123, 456]: worst autodiff mismatch" in str(bad), str(bad)
    assert not bad.entries[0].kinks, str(bad)


def test_f_that_is_not_finite_at_the_point_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"^gradcheck: f is nan at the point given; a gradient is checked only"):
        bj.gradcheck(lambda x: jnp.sum(jnp.log(x)), jnp.array([-1.0, 1.0]))


def sin_100(factor):
    """sin(100 x) whose backward is ``factor`` times right: a curvature of 1e4."""
    return rule(lambda x: (jnp.sin(100 * x), x), lambda x, d: (factor * 100 * jnp.cos(100 * x) * d,))


def test_curvature_is_not_a_kink():
    # At h = 1e-6 the one-sided differences of sin(100 x) differ by h |f''| ~ 1e-2, beyond float64's
    # tolerance; they agree at a smaller step, so there is no kink (sin is smooth).
    x = jnp.linspace(0.1, 0.9, 8)
    loss = lambda f: (lambda x: jnp.sum(f(x[:5])) + jnp.sum(x[5:] ** 2))
    right = bj.gradcheck(loss(sin_100(1.0)), x)
    assert right.ok and not right.entries[0].kinks, str(right)
    # The rule 0.001% off: autodiff sees it, and no kink excuses it.
    bad = bj.gradcheck(loss(sin_100(1.00001)), x)
    assert not bad.ok and not bad.entries[0].autodiff.ok and not bad.entries[0].kinks, str(bad)


def test_forward_mode_at_relu_zeros_is_judged_by_elements_and_curvature_is_not_a_kink():
    # Every random direction crosses the kink at x[1]: the check goes along the elements instead.
    x = jnp.array([0.0, 0.0, 1.0, -1.0])
    report = bj.gradcheck(lambda x: jnp.sum(jax.nn.relu(x) * jnp.arange(4.0)), x, mode="forward")
    assert report.ok and "x[1] (one-sided 0 and 1; hand 0)" in str(report), str(report)

    @jax.custom_jvp
    def sin_100(x):
        return jnp.sin(100 * x)

    sin_100.defjvp(lambda p, t: (jnp.sin(100 * p[0]), 1.00001 * 100 * jnp.cos(100 * p[0]) * t[0]))
    bad = bj.gradcheck(lambda x: jnp.sum(sin_100(x)), jnp.linspace(0.1, 0.9, 8), mode="forward")
    assert not bad.ok and not bad.entries[0].autodiff.ok and not bad.entries[0].kinks, str(bad)
