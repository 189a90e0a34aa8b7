"""Convolution and max pooling through XLA's convolution and reduce-window, backward by hand:
against autodiff of jax.lax written here, against the book's im2col layers, against central
differences, and the book's nets giving the same numbers either way."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import normal

# (stride, pad, filter) valid for 7x7 inputs; pad 3 > filter - 1 makes the transposed
# convolution's padding negative.
CONFIGS = [(1, 0, 3), (2, 1, 3), (1, 3, 3), (3, 1, 3), (2, 0, 1), (1, 1, 2)]
HIGHEST = jax.lax.Precision.HIGHEST
# Every configuration in float64, two in float32 (XLA compiles each anew; the suite's time is short).
CONV_CASES = ([(*c, jnp.float64, 1e-11) for c in CONFIGS]
              + [(*c, jnp.float32, 2e-4) for c in (CONFIGS[1], CONFIGS[2])])


def lax_conv(x, W, b, stride, pad):
    out = jax.lax.conv_general_dilated(x, W, (stride, stride), [(pad, pad), (pad, pad)], precision=HIGHEST)
    return out + b[None, :, None, None]


def book_max_pool(x, size, stride, pad):
    """The book's Pooling.forward and backward for one dout, in NumPy loops: each window's
    np.argmax (the first maximum in row-major order) gets dout. Returns (out, dx_of(dout))."""
    x = np.pad(np.asarray(x, np.float64), [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    N, C, H, W = x.shape
    oh, ow = (H - size) // stride + 1, (W - size) // stride + 1
    out, arg = np.zeros((N, C, oh, ow)), np.zeros((N, C, oh, ow), int)
    for n, c, i, j in itertools.product(range(N), range(C), range(oh), range(ow)):
        window = x[n, c, i * stride:i * stride + size, j * stride:j * stride + size].reshape(-1)
        arg[n, c, i, j], out[n, c, i, j] = np.argmax(window), np.max(window)

    def dx_of(dout):
        dx = np.zeros_like(x)
        for n, c, i, j in itertools.product(range(N), range(C), range(oh), range(ow)):
            y, xx = divmod(arg[n, c, i, j], size)
            dx[n, c, i * stride + y, j * stride + xx] += dout[n, c, i, j]
        return dx[:, :, pad:H - pad, pad:W - pad]

    return out, dx_of


@pytest.mark.parametrize("stride, pad, size, dtype, tol", CONV_CASES)
def test_convolution_xla_matches_autodiff_of_lax_conv_and_im2col(stride, pad, size, dtype, tol):
    x, W, b = normal(0, (2, 3, 7, 7), dtype), normal(1, (4, 3, size, size), dtype), normal(2, (4,), dtype)
    with jax.default_matmul_precision("highest"):
        out = jax.jit(bj.convolution_xla, static_argnums=(3, 4))(x, W, b, stride, pad)
        ref = lax_conv(x, W, b, stride, pad)
        assert out.shape == ref.shape and out.dtype == dtype
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(out, bj.convolution(x, W, b, stride, pad), rtol=tol, atol=tol)
        dout = normal(3, ref.shape, dtype)
        loss = lambda conv: lambda x, W, b: jnp.sum(dout * conv(x, W, b, stride, pad))
        hand = jax.jit(jax.grad(loss(bj.convolution_xla), argnums=(0, 1, 2)))(x, W, b)
        auto = jax.grad(loss(lax_conv), argnums=(0, 1, 2))(x, W, b)
        book = jax.grad(loss(bj.convolution), argnums=(0, 1, 2))(x, W, b)
        # The gradient is the hand rule's: its bwd called directly gives the same.
        _, res = bj.convolution_xla.fwd(x, W, b, stride, pad)
        direct = bj.convolution_xla.bwd(stride, pad, res, dout)
    for name, h, a, k, d in zip(("dx", "dW", "db"), hand, auto, book, direct):
        assert h.dtype == dtype, name
        scale = float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(h, a, rtol=tol, atol=tol * scale, err_msg=name)
        np.testing.assert_allclose(h, k, rtol=tol, atol=tol * scale, err_msg=name)
        np.testing.assert_allclose(h, d, rtol=1e-6, atol=1e-6 * scale, err_msg=name)


@pytest.mark.parametrize("stride, pad, size", CONFIGS[:3])
def test_convolution_xla_gradcheck(stride, pad, size):
    x, W, b = normal(0, (1, 2, 7, 7)), normal(1, (2, 2, size, size)), normal(2, (2,))
    bj.assert_gradcheck(lambda x, W, b: bj.convolution_xla(x, W, b, stride, pad), x, W, b)


@pytest.mark.parametrize("size, stride, pad, dtype", [
    (2, 2, 0, jnp.float64), (3, 2, 1, jnp.float64), (3, 1, 1, jnp.float64), (3, 3, 1, jnp.float64),
    (2, 2, 0, jnp.float32), (2, 1, 0, jnp.float32)])
def test_max_pooling_xla_is_the_books_pooling_with_its_ties(size, stride, pad, dtype):
    # Values on a coarse grid: many windows hold their maximum twice (and padding zeros tie too).
    x = (jnp.round(2 * normal(0, (2, 3, 7, 7))) / 2).astype(dtype)
    if (7 + 2 * pad - size) % stride:
        x = (jnp.round(2 * normal(0, (2, 3, 8, 8))) / 2).astype(dtype)
    book_out, book_dx = book_max_pool(x, size, stride, pad)
    out = jax.jit(bj.max_pooling_xla, static_argnums=(1, 2, 3, 4))(x, size, size, stride, pad)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, book_out)
    dout = normal(1, out.shape, dtype)
    dx = jax.jit(jax.grad(lambda x: jnp.sum(dout * bj.max_pooling_xla(x, size, size, stride, pad))))(x)
    np.testing.assert_allclose(dx, book_dx(np.asarray(dout, np.float64)), rtol=1e-6, atol=1e-6)
    im2col = jax.grad(lambda x: jnp.sum(dout * bj.max_pooling(x, size, size, stride, pad)))(x)
    np.testing.assert_array_equal(dx, im2col)


def test_max_pooling_xla_gradcheck_and_eager():
    x = normal(0, (1, 2, 6, 6))
    bj.assert_gradcheck(lambda x: bj.max_pooling_xla(x, 2, 2, 2, 0), x)
    dx = jax.grad(lambda x: jnp.sum(bj.max_pooling_xla(x, 2, 2, 2, 0)))(jnp.array([[[[1.0, 5.0], [5.0, 2.0]]]]))
    np.testing.assert_array_equal(dx, [[[[0.0, 1.0], [0.0, 0.0]]]])  # row-major first: (0, 1)


@pytest.mark.parametrize("net", ["conv_net", "deep_conv_net"])
def test_the_books_conv_nets_give_the_same_numbers_under_both_methods(net, sample):
    (x, t), _ = sample
    x, t = jnp.asarray(x[:6], jnp.float64), jnp.asarray(t[:6])
    models = {m: getattr(bj, net).model(dtype=jnp.float64, conv_method=m) for m in ("im2col", "xla")}
    params, state = models["im2col"].init(jax.random.key(0))
    results = {}
    for method, model in models.items():
        loss = lambda p: model.loss(p, state, x, t, key=jax.random.key(1), train=True)[0]
        results[method] = jax.jit(jax.value_and_grad(loss))(params)
    (loss_a, grads_a), (loss_b, grads_b) = results["im2col"], results["xla"]
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-12)
    for k in grads_a:
        np.testing.assert_allclose(grads_a[k], grads_b[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_methods_by_name_and_the_default_per_device():
    assert bj.conv_method("xla") == bj.ConvMethod(bj.convolution_xla, bj.max_pooling_xla)
    assert bj.conv_method("im2col") == bj.ConvMethod(bj.convolution, bj.max_pooling)
    assert bj.default_conv_method("cpu") == "im2col" and bj.default_conv_method("gpu") == "xla"
    assert bj.conv_method() is bj.CONV_METHODS[bj.default_conv_method(jax.default_backend())]
    with pytest.raises(ValueError, match=r"unknown convolution method 'fft'; choose one of \['im2col', 'xla'\]"):
        bj.nn.Convolution(4, 3, method="fft")
    with pytest.raises(ValueError, match="unknown convolution method"):
        bj.conv_net.model(conv_method="cudnn")


@pytest.mark.parametrize("call, message", [
    (lambda: bj.convolution_xla(jnp.ones((1, 1, 5, 5)), jnp.ones((2, 3, 3, 3)), jnp.ones(2)),
     r"convolution_xla: x of shape \(1, 1, 5, 5\) has 1 channels but W of shape \(2, 3, 3, 3\) expects 3"),
    (lambda: bj.convolution_xla(jnp.ones((1, 3, 5, 5)), jnp.ones((2, 3, 3, 3)), jnp.ones(3)),
     r"b must have shape \(FN,\) = \(2,\) for W of shape \(2, 3, 3, 3\), got \(3,\)"),
    (lambda: bj.convolution_xla(jnp.ones((1, 3, 6, 6)), jnp.ones((2, 3, 3, 3)), jnp.ones(2), 2, 0),
     r"convolution_xla: stride 2 does not divide the input 6x6 padded by 0 minus the 3x3 window evenly"),
    (lambda: bj.max_pooling_xla(jnp.ones((1, 1, 5, 5)), 2, 2, 2, 0),
     r"max_pooling_xla: stride 2 does not divide the input 5x5"),
    (lambda: bj.max_pooling_xla(jnp.ones((1, 1, 4, 4)), 0, 2), r"max_pooling_xla: pool_h must be an integer >= 1"),
    (lambda: bj.max_pooling_xla(jnp.ones((4, 4)), 2, 2), r"x must have shape \(N, C, H, W\), got shape \(4, 4\)"),
])
def test_bad_shapes_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()
