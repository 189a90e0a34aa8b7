"""Convolution and max pooling through im2col (sec. 7.4), against jax.lax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import assert_close, normal

CONFIGS = [(1, 0), (2, 1), (1, 2), (2, 0)]  # (stride, pad) valid for 7x7 inputs and 3x3 windows


def lax_conv(x, W, b, stride, pad):
    out = jax.lax.conv_general_dilated(x, W, (stride, stride), [(pad, pad), (pad, pad)],
                                       precision=jax.lax.Precision.HIGHEST)
    return out + b[None, :, None, None]


def lax_max_pool(x, size, stride, pad):
    # The book pads with zeros before pooling; so does this reference.
    x = jnp.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, size, size), (1, 1, stride, stride), "VALID")


@pytest.mark.parametrize("stride, pad", CONFIGS)
def test_im2col_rows_are_the_windows_and_col2im_is_its_adjoint(stride, pad):
    x = normal(0, (2, 3, 7, 7))
    col = bj.im2col(x, 3, 3, stride, pad)
    out_h = (7 + 2 * pad - 3) // stride + 1
    assert col.shape == (2 * out_h * out_h, 3 * 3 * 3)
    xp = np.pad(np.asarray(x), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    # Row (n=1, i=out_h-1, j=0) is the window at the bottom-left output position.
    row = col[1 * out_h * out_h + (out_h - 1) * out_h + 0]
    i = (out_h - 1) * stride
    np.testing.assert_array_equal(row, xp[1, :, i:i + 3, 0:3].reshape(-1))
    # <im2col(x), c> == <x, col2im(c)> for any c: col2im is the adjoint.
    c = normal(1, col.shape)
    np.testing.assert_allclose(jnp.vdot(col, c), jnp.vdot(x, bj.col2im(c, x.shape, 3, 3, stride, pad)), rtol=1e-12)


# Eager mode dispatches every im2col slice separately and is slow; it is
# covered once, for (stride, pad) = (1, 0), in test_convolution_eager below.
TRANSFORM_DTYPES = [pytest.param(jax.jit, jnp.float64, id="jit-float64"),
                    pytest.param(jax.jit, jnp.float32, id="jit-float32"),
                    pytest.param(jax.jit, jnp.bfloat16, id="jit-bfloat16")]


@pytest.mark.parametrize("transform, dtype", TRANSFORM_DTYPES)
@pytest.mark.parametrize("stride, pad", CONFIGS)
def test_convolution_matches_lax_conv(transform, dtype, stride, pad):
    x, W, b = normal(0, (2, 3, 7, 7), dtype), normal(1, (4, 3, 3, 3), dtype), normal(2, (4,), dtype)
    out = transform(lambda x, W, b: bj.convolution(x, W, b, stride, pad))(x, W, b)
    up = lambda a: a.astype(jnp.float64)
    ref = lax_conv(up(x), up(W), up(b), stride, pad)
    assert out.shape == ref.shape and out.dtype == dtype
    assert_close(out, ref, dtype) if dtype != jnp.bfloat16 else np.testing.assert_allclose(
        np.asarray(out, np.float64), ref, atol=0.2, rtol=0.05)
    dout = normal(3, ref.shape)
    hand = transform(jax.grad(lambda x, W, b: jnp.sum(up(dout) * bj.convolution(x, W, b, stride, pad)),
                              argnums=(0, 1, 2)))(up(x), up(W), up(b))
    auto = jax.grad(lambda x, W, b: jnp.sum(dout * lax_conv(x, W, b, stride, pad)), argnums=(0, 1, 2))(
        up(x), up(W), up(b))
    for h, r in zip(hand, auto):
        np.testing.assert_allclose(h, r, rtol=1e-10, atol=1e-10)


def test_convolution_eager():
    x, W, b = normal(0, (2, 3, 7, 7)), normal(1, (4, 3, 3, 3)), normal(2, (4,))
    np.testing.assert_allclose(bj.convolution(x, W, b), lax_conv(x, W, b, 1, 0), rtol=1e-12, atol=1e-12)
    dout = normal(3, (2, 4, 5, 5))
    hand = jax.grad(lambda x: jnp.sum(dout * bj.convolution(x, W, b)))(x)
    auto = jax.grad(lambda x: jnp.sum(dout * lax_conv(x, W, b, 1, 0)))(x)
    np.testing.assert_allclose(hand, auto, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("stride, pad", CONFIGS)
def test_convolution_gradcheck(stride, pad):
    x, W, b = normal(0, (1, 2, 5, 5)), normal(1, (2, 2, 3, 3)), normal(2, (2,))
    bj.assert_gradcheck(lambda x, W, b: bj.convolution(x, W, b, stride, pad), x, W, b)


@pytest.mark.parametrize("transform", [jax.jit])  # eager: the tie test below
@pytest.mark.parametrize("stride, pad", CONFIGS + [(3, 0)])
def test_max_pooling_matches_reduce_window(transform, stride, pad):
    size = 3 if (7 + 2 * pad - 3) % stride == 0 else 2
    x = normal(0, (2, 3, 7, 7)) if size == 3 else normal(0, (2, 3, 8, 8))
    out = transform(lambda x: bj.max_pooling(x, size, size, stride, pad))(x)
    np.testing.assert_array_equal(out, lax_max_pool(x, size, stride, pad))
    dout = normal(1, out.shape)
    hand = transform(jax.grad(lambda x: jnp.sum(dout * bj.max_pooling(x, size, size, stride, pad))))(x)
    auto = jax.grad(lambda x: jnp.sum(dout * lax_max_pool(x, size, stride, pad)))(x)
    np.testing.assert_allclose(hand, auto, rtol=1e-12, atol=1e-15)  # no ties in random data
    bj.assert_gradcheck(lambda x: bj.max_pooling(x, size, size, stride, pad), x)


def test_max_pooling_ties_send_the_gradient_to_the_first_maximum():
    x = jnp.array([[[[1.0, 5.0], [5.0, 2.0]]]])  # two maxima in one 2x2 window
    out, res = bj.max_pooling.fwd(x, 2, 2, 2, 0)
    assert float(out[0, 0, 0, 0]) == 5.0
    dx = jax.grad(lambda x: jnp.sum(bj.max_pooling(x, 2, 2, 2, 0)))(x)
    np.testing.assert_array_equal(dx, [[[[0.0, 1.0], [0.0, 0.0]]]])  # row-major first: (0, 1)


@pytest.mark.parametrize("call, message", [
    (lambda: bj.convolution(jnp.ones((1, 3, 4, 4)), jnp.ones((2, 3, 5, 5)), jnp.ones(2)),
     r"the 5x5 window is larger than the input 4x4 padded by 0 \(x of shape \(1, 3, 4, 4\)\)"),
    (lambda: bj.convolution(jnp.ones((1, 3, 6, 6)), jnp.ones((2, 3, 3, 3)), jnp.ones(2), 2, 0),
     r"stride 2 does not divide the input 6x6 padded by 0 minus the 3x3 window evenly"),
    (lambda: bj.convolution(jnp.ones((1, 1, 5, 5)), jnp.ones((2, 3, 3, 3)), jnp.ones(2)),
     r"x of shape \(1, 1, 5, 5\) has 1 channels but W of shape \(2, 3, 3, 3\) expects 3"),
    (lambda: bj.convolution(jnp.ones((1, 3, 5, 5)), jnp.ones((2, 3, 3, 3)), jnp.ones(3)),
     r"b must have shape \(FN,\) = \(2,\) for W of shape \(2, 3, 3, 3\), got \(3,\)"),
    (lambda: bj.convolution(jnp.ones((3, 5, 5)), jnp.ones((2, 3, 3, 3)), jnp.ones(2)),
     r"x must have shape \(N, C, H, W\), got shape \(3, 5, 5\)"),
    (lambda: bj.max_pooling(jnp.ones((1, 1, 5, 5)), 2, 2, 2, 0),
     r"max_pooling: stride 2 does not divide the input 5x5"),
    (lambda: bj.max_pooling(jnp.ones((1, 1, 5, 5)), 2, 2, 0, 0), r"stride must be an integer >= 1, got 0"),
    (lambda: bj.max_pooling(jnp.ones((1, 1, 4, 4)), 0, 2), r"max_pooling: pool_h must be an integer >= 1, got 0"),
    (lambda: bj.im2col(jnp.ones((1, 1, 4, 4)), 2, 0), r"im2col: filter_w must be an integer >= 1, got 0"),
    (lambda: bj.col2im(jnp.ones((3, 4)), (1, 1, 3, 3), 2, 2), r"col must have shape \(4, 4\)"),
])
def test_bad_shapes_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_static_arguments_traced_by_jit_get_a_clear_error():
    x = jnp.ones((1, 1, 4, 4))
    with pytest.raises(TypeError, match=r"im2col: stride must be a Python int, known while tracing"):
        jax.jit(bj.im2col, static_argnums=(1, 2))(x, 2, 2, 2, 0)
    # The documented ways: static arguments, or a closure.
    W, b = jnp.ones((2, 1, 3, 3)), jnp.zeros(2)
    static = jax.jit(bj.convolution, static_argnums=(3, 4))(x, W, b, 1, 0)
    closed = jax.jit(lambda x, W, b: bj.convolution(x, W, b, 1, 0))(x, W, b)
    np.testing.assert_array_equal(static, closed)
    np.testing.assert_array_equal(static, jnp.full((1, 2, 2, 2), 9.0))


def test_pooling_stride_defaults_as_the_books_pooling_class():
    x = normal(0, (2, 3, 6, 6), jnp.float32)
    # Book 1's common/layers.py at 07b1161 (commit 77a0807): Pooling(pool_h, pool_w, stride=2, pad=0),
    # out_h = int(1 + (H - pool_h) / stride); col.reshape(-1, pool_h * pool_w), np.max(col, axis=1),
    # out.reshape(N, out_h, out_w, C).transpose(0, 3, 1, 2).
    book = np.asarray(x).reshape(2, 3, 3, 2, 3, 2).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 4)
    book = np.max(book, axis=1).reshape(2, 3, 3, 3).transpose(0, 3, 1, 2)
    assert bj.max_pooling(x, 2, 2).shape == (2, 3, int(1 + (6 - 2) / 2), int(1 + (6 - 2) / 2))
    np.testing.assert_array_equal(bj.max_pooling(x, 2, 2), book)
    # Stride 1 (the book's default before 77a0807) is said explicitly: overlapping windows.
    assert bj.max_pooling(x, 2, 2, 1).shape == (2, 3, 5, 5)
    # The layer library's MaxPooling takes the same default.
    _, params, _ = bj.nn.MaxPooling(2, 2).init(None, (2, 3, 6, 6))
    out, _ = bj.nn.MaxPooling(2, 2).apply({}, {}, x)
    np.testing.assert_array_equal(out, bj.max_pooling(x, 2, 2, 2))
