"""Softmax, cross-entropy and the Softmax-with-Loss layer (sec. 5.6.3)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import backprop_jax as bj
from conftest import DTYPES, TRANSFORMS, assert_close, normal


def reference_loss(x, labels):
    """Independent expression: optax's cross-entropy on integer labels, averaged."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(x, labels))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_loss_and_gradient_match_optax(transform, dtype, one_hot):
    x = normal(0, (6, 4), dtype) * 3
    labels = jnp.array([0, 3, 1, 2, 3, 0])
    t = jax.nn.one_hot(labels, 4, dtype=dtype) if one_hot else labels
    loss, dx = transform(jax.value_and_grad(bj.softmax_with_loss))(x, t)
    ref_loss, ref_dx = jax.value_and_grad(reference_loss)(x.astype(jnp.float64), labels)
    assert loss.dtype == dtype and dx.dtype == dtype
    assert_close(loss, ref_loss, dtype)
    assert_close(dx, ref_dx, dtype)


def test_backward_by_hand_is_y_minus_t_over_n():
    x = normal(0, (3, 5))
    labels = jnp.array([4, 0, 2])
    loss, res = bj.softmax_with_loss.fwd(x, labels)
    dx, dt = bj.softmax_with_loss.bwd(res, jnp.float64(1.0))
    y = np.exp(np.asarray(x)) / np.exp(np.asarray(x)).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(dx, (y - np.eye(5)[np.asarray(labels)]) / 3, rtol=1e-12)
    assert dt is None


def test_incoming_cotangent_scales_the_gradient():
    x, labels = normal(0, (4, 3)), jnp.array([0, 1, 2, 1])
    g1 = jax.grad(bj.softmax_with_loss)(x, labels)
    g2 = jax.grad(lambda x: 2 * bj.softmax_with_loss(x, labels))(x)
    g3 = jax.grad(lambda x: -0.5 * bj.softmax_with_loss(x, labels))(x)
    np.testing.assert_allclose(g2, 2 * g1, rtol=1e-14)
    np.testing.assert_allclose(g3, -0.5 * g1, rtol=1e-14)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_huge_logits_give_finite_exact_loss(dtype):
    x = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]], dtype)
    labels = jnp.array([1, 1])
    loss, dx = jax.value_and_grad(bj.softmax_with_loss)(x, labels)
    # Row 0 puts all mass on class 0, so -log p(1) = 2e4; row 1 is exact: 0.
    np.testing.assert_allclose(float(loss), 1e4, rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(dx)))
    np.testing.assert_allclose(dx, [[0.5, -0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-7)


def test_labels_are_constants_even_when_one_hot_is_float():
    x = normal(0, (2, 3))
    t = jnp.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    dt = jax.grad(bj.softmax_with_loss, argnums=1)(x, t)
    np.testing.assert_array_equal(dt, jnp.zeros_like(t))


@pytest.mark.parametrize("t, message", [
    (jnp.array([0, 1]), r"integer labels t must have shape \(N,\) = \(3,\) to match x of shape \(3, 4\), got t of shape \(2,\)"),
    (jnp.zeros((3, 5)), r"one-hot labels t must have the shape \(N, C\) = \(3, 4\) of x, got t of shape \(3, 5\)"),
    (jnp.zeros((2, 4)), r"one-hot labels t must have the shape \(N, C\) = \(3, 4\) of x, got t of shape \(2, 4\)"),
])
def test_label_shape_errors_name_the_shapes(t, message):
    with pytest.raises(ValueError, match=message):
        jax.jit(bj.softmax_with_loss)(jnp.zeros((3, 4)), t)


def test_bool_labels_and_non_2d_scores_are_rejected():
    with pytest.raises(TypeError, match=r"labels t must be integer class indices"):
        bj.softmax_with_loss(jnp.zeros((2, 2)), jnp.array([True, False]))
    with pytest.raises(ValueError, match=r"x must have shape \(N, C\), got shape \(4,\)"):
        bj.softmax_with_loss(jnp.zeros(4), jnp.array(1))
    with pytest.raises(ValueError, match=r"the batch is empty"):
        bj.softmax_with_loss(jnp.zeros((0, 4)), jnp.zeros(0, jnp.int32))
    with pytest.raises(TypeError, match=r"x must be a real floating-point array"):
        bj.softmax_with_loss(jnp.zeros((2, 2), jnp.int32), jnp.array([0, 1]))


def test_softmax_matches_the_definition():
    x = normal(0, (3, 4)) * 10
    e = np.exp(np.asarray(x))
    np.testing.assert_allclose(bj.softmax(x), e / e.sum(axis=-1, keepdims=True), rtol=1e-12)
    assert bool(jnp.all(jnp.isfinite(bj.softmax(jnp.array([1e4, 0.0], jnp.float32)))))


def test_cross_entropy_error_is_the_books():
    y = jnp.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0])
    t = jnp.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], jnp.float64)
    # The book's worked example (sec. 4.2.2): 0.510825457099338.
    np.testing.assert_allclose(bj.cross_entropy_error(y, t), -np.log(0.6 + 1e-7), rtol=1e-12)
    np.testing.assert_allclose(bj.cross_entropy_error(y, jnp.array(2)), -np.log(0.6 + 1e-7), rtol=1e-12)
    batch = jnp.stack([y, y[::-1]])
    np.testing.assert_allclose(bj.cross_entropy_error(batch, jnp.array([2, 7])),
                               -(np.log(0.6 + 1e-7) + np.log(0.6 + 1e-7)) / 2, rtol=1e-12)


@pytest.mark.parametrize("loss_fn", [bj.softmax_with_loss, bj.cross_entropy_error])
def test_label_values_are_checked_where_known(loss_fn):
    x = jnp.full((3, 4), 0.25)
    with pytest.raises(ValueError, match=r"labels t must be classes 0 to 3 \(x has C = 4 columns\), got -1 at index 2"):
        loss_fn(x, jnp.array([0, 1, -1]))
    with pytest.raises(ValueError, match=r"got 4 at index 0"):
        loss_fn(x, np.array([4, 1, 2]))
    rows = jnp.eye(4)[jnp.array([0, 1, 2])]
    with pytest.raises(ValueError, match=r"each row of one-hot labels t must be non-negative and sum to 1, "
                                         r"but row 1 sums to 2"):
        loss_fn(x, rows.at[1, 3].set(1.0))
    with pytest.raises(ValueError, match=r"row 0 sums to 1 \(min -0.5\)"):
        loss_fn(x, rows.at[0, 0].set(0.5).at[0, 1].set(-0.5).at[0, 2].set(1.0))
    smoothed = 0.9 * rows + 0.1 / 4  # label smoothing: rows still sum to 1
    assert np.isfinite(loss_fn(x, smoothed))


def test_out_of_range_labels_under_jit_give_a_nan_loss_never_a_wrong_finite_one():
    x = normal(0, (3, 4), jnp.float32)
    for t in ([0, 1, -1], [0, 1, 4]):
        assert np.isnan(jax.jit(bj.softmax_with_loss)(x, jnp.array(t)))
    good = jnp.array([0, 1, 3])
    expected = -jnp.mean(jax.nn.log_softmax(x)[jnp.arange(3), good])  # the definition, written out
    np.testing.assert_allclose(jax.jit(bj.softmax_with_loss)(x, good), expected, rtol=1e-6)


def test_soft_labels_cross_entropy_takes_the_arg_max_softmax_with_loss_the_whole_row():
    x = jnp.array([[1.0, 2.0, 0.5], [0.1, -1.0, 0.3]], jnp.float64)
    soft = jnp.array([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]], jnp.float64)
    y = np.exp(np.asarray(x)) / np.exp(np.asarray(x)).sum(axis=1, keepdims=True)
    # The book's cross_entropy_error: t = t.argmax(axis=1), then -sum(log(y[arange, t] + 1e-7)) / N.
    book = -np.sum(np.log(y[np.arange(2), np.asarray(soft).argmax(axis=1)] + 1e-7)) / 2
    np.testing.assert_allclose(bj.cross_entropy_error(y, soft), book, rtol=1e-12)
    # softmax_with_loss: every entry of the row weighs its class.
    whole = -np.sum(np.asarray(soft) * np.log(y)) / 2
    np.testing.assert_allclose(bj.softmax_with_loss(x, soft), whole, rtol=1e-12)
    assert abs(whole - book) > 0.1
