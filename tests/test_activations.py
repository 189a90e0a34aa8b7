"""ReLU and Sigmoid layers (sec. 5.5)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import DTYPES, TRANSFORMS, assert_close, normal


def test_relu_mask_is_the_books():
    x = jnp.array([[1.0, -0.5], [-2.0, 3.0]])
    out, mask = bj.relu.fwd(x)
    np.testing.assert_array_equal(mask, [[False, True], [True, False]])
    np.testing.assert_array_equal(out, [[1.0, 0.0], [0.0, 3.0]])
    (dx,) = bj.relu.bwd(mask, jnp.array([[5.0, 6.0], [7.0, 8.0]]))
    np.testing.assert_array_equal(dx, [[5.0, 0.0], [0.0, 8.0]])


def test_relu_derivative_at_zero_is_zero_like_jax_nn():
    x = jnp.array([-1.0, 0.0, 1.0])
    hand = jax.grad(lambda x: jnp.sum(bj.relu(x)))(x)
    np.testing.assert_array_equal(hand, [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(hand, jax.grad(lambda x: jnp.sum(jax.nn.relu(x)))(x))


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer, expr, prim", [
    (bj.relu, lambda x: jnp.maximum(x, 0.0), jax.nn.relu),
    (bj.sigmoid, lambda x: 1.0 / (1.0 + jnp.exp(-x)), jax.nn.sigmoid),
])
def test_gradient_matches_independent_expression_and_jax_nn(transform, dtype, layer, expr, prim):
    x = normal(0, (4, 5), dtype) * 3
    dout = normal(1, (4, 5), dtype)
    hand = transform(jax.grad(lambda x: jnp.sum(dout * layer(x))))(x)
    x64, dout64 = x.astype(jnp.float64), dout.astype(jnp.float64)
    by_expr = jax.grad(lambda x: jnp.sum(dout64 * expr(x)))(x64)
    by_prim = jax.grad(lambda x: jnp.sum(dout64 * prim(x)))(x64)
    assert hand.dtype == dtype
    assert_close(hand, by_expr, dtype)
    assert_close(hand, by_prim, dtype)
    assert_close(layer(x), prim(x64), dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_sigmoid_is_finite_and_exact_at_extremes(dtype):
    x = jnp.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype)
    out = bj.sigmoid(x)
    assert bool(jnp.all(jnp.isfinite(out)))
    np.testing.assert_allclose(np.asarray(out, np.float64), [0.0, 0.0, 0.5, 1.0, 1.0], rtol=0, atol=1e-30)
    dx = jax.grad(lambda x: jnp.sum(bj.sigmoid(x)))(x)
    # y * (1 - y), written out in float64: e^-|x| / (1 + e^-|x|)^2, 0 to float64's range at 1e4.
    a = np.abs(np.asarray(x, np.float64))
    expected = np.exp(-a) / (1 + np.exp(-a)) ** 2
    np.testing.assert_allclose(np.asarray(dx, np.float64), expected, rtol=0, atol=1e-30)


def test_sigmoid_backward_uses_the_saved_output():
    x = jnp.array([-2.0, 0.5, 3.0])
    out, res = bj.sigmoid.fwd(x)
    np.testing.assert_array_equal(res, out)
    dout = jnp.array([1.0, 2.0, 3.0])
    (dx,) = bj.sigmoid.bwd(res, dout)
    s = 1 / (1 + np.exp(-np.asarray(x)))
    np.testing.assert_allclose(dx, np.asarray(dout) * s * (1 - s), rtol=1e-14)


def test_sigmoid_second_derivative_reverse_over_reverse():
    x = jnp.linspace(-4.0, 4.0, 9)
    d2 = jax.vmap(jax.grad(jax.grad(bj.sigmoid)))(x)
    s = 1 / (1 + np.exp(-np.asarray(x)))
    np.testing.assert_allclose(d2, s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layer", [bj.relu, bj.sigmoid])
def test_integer_input_is_a_type_error(layer):
    with pytest.raises(TypeError, match=r"x must be a real floating-point array, got dtype int\d+ with shape \(3,\)"):
        layer(jnp.arange(3))
