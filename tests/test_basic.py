"""Multiplication and addition nodes (sec. 5.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import DTYPES, TRANSFORMS, assert_close, normal


def test_mul_book_apple_chain_by_hand():
    # The book's manual chain, run through .fwd and .bwd (sec. 5.4.1).
    apple_price, res_apple = bj.mul.fwd(100.0, 2.0)
    price, res_tax = bj.mul.fwd(apple_price, 1.1)
    dapple_price, dtax = bj.mul.bwd(res_tax, jnp.float64(1.0))
    dapple, dapple_num = bj.mul.bwd(res_apple, dapple_price)
    np.testing.assert_allclose([price, dapple, dapple_num, dtax], [220, 2.2, 110, 200], rtol=1e-14)


def test_add_backward_passes_dout_unchanged():
    x, y = normal(0, (3,)), normal(1, (3,))
    _, res = bj.add.fwd(x, y)
    dout = normal(2, (3,))
    dx, dy = bj.add.bwd(res, dout)
    np.testing.assert_array_equal(dx, dout)
    np.testing.assert_array_equal(dy, dout)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op, expr", [(bj.mul, lambda x, y: x * y), (bj.add, lambda x, y: x + y)])
@pytest.mark.parametrize("x_shape, y_shape", [((4, 3), (4, 3)), ((), (5,)), ((4, 1), (1, 3)), ((3,), (2, 3))])
def test_broadcast_gradients_match_independent_autodiff(transform, dtype, op, expr, x_shape, y_shape):
    # Rank promotion ((3,) against (2, 3)) is exactly what is under test here.
    with jax.numpy_rank_promotion("allow"):
        _check_broadcast_gradients(transform, dtype, op, expr, x_shape, y_shape)


def _check_broadcast_gradients(transform, dtype, op, expr, x_shape, y_shape):
    x, y = normal(0, x_shape, dtype), normal(1, y_shape, dtype)
    dout = normal(2, jnp.broadcast_shapes(x_shape, y_shape), dtype)
    hand = transform(jax.grad(lambda x, y: jnp.sum(dout * op(x, y)), argnums=(0, 1)))(x, y)
    ref = jax.grad(lambda x, y: jnp.sum(dout.astype(jnp.float64) * expr(x, y)), argnums=(0, 1))(
        x.astype(jnp.float64), y.astype(jnp.float64))
    for h, r, inp in zip(hand, ref, (x, y)):
        assert h.shape == inp.shape and h.dtype == inp.dtype
        assert_close(h, r, dtype)
    assert_close(op(x, y), expr(x.astype(jnp.float64), y.astype(jnp.float64)), dtype)


def test_scalar_price_times_counts_gives_scalar_dprice():
    counts = jnp.array([2.0, 3.0, 4.0])
    dprice, dcounts = jax.grad(lambda p, c: jnp.sum(bj.mul(p, c)), argnums=(0, 1))(100.0, counts)
    assert jnp.shape(dprice) == ()
    assert float(dprice) == 9.0
    np.testing.assert_array_equal(dcounts, [100.0, 100.0, 100.0])


@pytest.mark.parametrize("op", [bj.mul, bj.add])
def test_integer_input_is_a_type_error(op):
    with pytest.raises(TypeError, match=r"y must be a real floating-point array, got dtype int\d+"):
        op(100.0, 2)


@pytest.mark.parametrize("op", [bj.mul, bj.add])
def test_shapes_that_do_not_broadcast_are_named(op):
    with pytest.raises(ValueError, match=r"x of shape \(2,\) and y of shape \(3,\) do not broadcast"):
        jax.jit(op)(jnp.ones(2), jnp.ones(3))
