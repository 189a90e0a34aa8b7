"""Convolution and max pooling through XLA's convolution and reduce-window, backward by hand.

The same layers as the book's im2col ones (sec. 7.4, ``_conv.py``), for devices where
materialising im2col's matrix (one row per output position, C*FH*FW wide) costs more than the
arithmetic: the forward is one ``lax.conv_general_dilated`` or ``lax.reduce_window``, and the
backward is written out: ``dW`` as a convolution of ``x`` with ``dout``, ``dx`` as the transposed
convolution of ``dout`` with the flipped filters, pooling's ``dx`` routed to the book's
``arg_max`` of each window. ``CONV_METHODS`` names both ways; ``default_conv_method`` picks one
per device.
"""

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from backprop_jax.layers._checks import as_float_array, like_inputs, require_ndim
from backprop_jax.layers._conv import _out_size, convolution, max_pooling

_NCHW = ("NCHW", "OIHW", "NCHW")  # x (N, C, H, W), W (FN, C, FH, FW), out (N, FN, out_h, out_w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def convolution_xla(x, W, b, stride=1, pad=0):
    """Convolution layer through XLA's convolution: ``convolution``'s contract, not its im2col.

    Args:
      x: float array of shape (N, C, H, W).
      W: float filters of shape (FN, C, FH, FW).
      b: float array of shape (FN,).
      stride: a Python int (static, ``nondiff_argnums``, like ``pad``), as ``convolution``'s.
      pad: zeros added on every side, a Python int.
    Returns:
      An array of shape (N, FN, out_h, out_w), out_h = (H + 2*pad - FH) / stride + 1.

    Backward: ``db = sum(dout)`` over (N, out_h, out_w);
    ``dW[f, c, i, j] = sum dout[n, f, oh, ow] * x_pad[n, c, oh*stride + i, ow*stride + j]``, a
    convolution of ``x`` (images as channels) with ``dout`` (spread out by ``stride``) as its
    filter; ``dx`` the transposed convolution: ``dout`` spread out by ``stride``, padded by
    ``FH - 1 - pad``, convolved with the filters flipped in both spatial axes.
    """
    return _convolution_fwd(x, W, b, stride, pad)[0]


def _convolution_fwd(x, W, b, stride, pad):
    x, W, b = _check_convolution(x, W, b, stride, pad)
    out = lax.conv_general_dilated(x, W, (stride, stride), [(pad, pad)] * 2, dimension_numbers=_NCHW)
    return out + b[None, :, None, None], (x, W, b)


def _convolution_bwd(stride, pad, res, dout):
    x, W, b = res
    FN, C, FH, FW = W.shape
    db = jnp.sum(dout, axis=(0, 2, 3))
    dW = lax.conv_general_dilated(x, dout, (1, 1), [(pad, pad)] * 2, rhs_dilation=(stride, stride),
                                  dimension_numbers=("CNHW", "IOHW", "CNHW"))
    dx = lax.conv_general_dilated(dout, W[:, :, ::-1, ::-1], (1, 1), [(FH - 1 - pad,) * 2, (FW - 1 - pad,) * 2],
                                  lhs_dilation=(stride, stride), dimension_numbers=("NCHW", "IOHW", "NCHW"))
    return like_inputs((dx.astype(x.dtype), dW.astype(W.dtype), db.astype(b.dtype)), (x, W, b))


convolution_xla.defvjp(_convolution_fwd, _convolution_bwd)


def _check_convolution(x, W, b, stride, pad):
    x, W, b = (as_float_array("convolution_xla", name, a) for name, a in (("x", x), ("W", W), ("b", b)))
    require_ndim("convolution_xla", "x", x, 4, "(N, C, H, W)")
    require_ndim("convolution_xla", "W", W, 4, "(FN, C, FH, FW)")
    FN, C, FH, FW = W.shape
    if x.shape[1] != C:
        raise ValueError(f"convolution_xla: x of shape {x.shape} has {x.shape[1]} channels but W of shape "
                         f"{W.shape} expects {C}")
    if b.shape != (FN,):
        raise ValueError(f"convolution_xla: b must have shape (FN,) = ({FN},) for W of shape {W.shape}, "
                         f"got {b.shape}")
    _out_size("convolution_xla", x.shape, FH, FW, stride, pad)
    return x, W, b


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def max_pooling_xla(x, pool_h, pool_w, stride=2, pad=0):
    """Max pooling through XLA's reduce-window: ``max_pooling``'s contract, not its im2col.

    Args:
      x: float array of shape (N, C, H, W).
      pool_h: the window's height, a Python int (static, ``nondiff_argnums``, like the others).
      pool_w: the window's width, a Python int.
      stride: a Python int.
      pad: zeros added on every side, as the book's, a Python int.
    Returns:
      An array of shape (N, C, out_h, out_w): the maximum of each window.

    Backward: ``dout`` goes to the book's ``arg_max`` of each window, its first maximal element in
    row-major order, and nowhere else; found again from ``x`` and ``out`` (the window offsets in
    order, each taking the windows whose maximum it holds and no earlier offset took), so the
    forward keeps no index array.
    """
    return _max_pooling_fwd(x, pool_h, pool_w, stride, pad)[0]


def _max_pooling_fwd(x, pool_h, pool_w, stride, pad):
    x = as_float_array("max_pooling_xla", "x", x)
    require_ndim("max_pooling_xla", "x", x, 4, "(N, C, H, W)")
    _out_size("max_pooling_xla", x.shape, pool_h, pool_w, stride, pad)
    img = jnp.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    out = lax.reduce_window(img, np.array(-np.inf, x.dtype), lax.max, (1, 1, pool_h, pool_w),
                            (1, 1, stride, stride), "VALID")
    return out, (x, out)


def _max_pooling_bwd(pool_h, pool_w, stride, pad, res, dout):
    x, out = res
    N, C, H, W = x.shape
    out_h, out_w = out.shape[2:]
    img = jnp.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    img_h, img_w = H + 2 * pad, W + 2 * pad
    dimg = jnp.zeros(img.shape, dout.dtype)
    taken = jnp.zeros(out.shape, bool)  # windows whose arg_max an earlier offset held
    for y in range(pool_h):
        y_last = y + stride * (out_h - 1)
        for xx in range(pool_w):
            x_last = xx + stride * (out_w - 1)
            arg_max = (img[:, :, y:y_last + 1:stride, xx:x_last + 1:stride] == out) & ~taken
            taken = taken | arg_max
            # dout placed back at this offset of every window (as col2im places a column).
            dimg = dimg + lax.pad(jnp.where(arg_max, dout, 0), jnp.zeros((), dout.dtype),
                                  [(0, 0, 0), (0, 0, 0), (y, img_h - y_last - 1, stride - 1),
                                   (xx, img_w - x_last - 1, stride - 1)])
    return (dimg[:, :, pad:pad + H, pad:pad + W].astype(x.dtype),)


max_pooling_xla.defvjp(_max_pooling_fwd, _max_pooling_bwd)


class ConvMethod(NamedTuple):
    """One way to compute the convolutional layers: both functions share their contracts."""
    convolution: Callable  # (x, W, b, stride, pad) -> out
    max_pooling: Callable  # (x, pool_h, pool_w, stride, pad) -> out


CONV_METHODS = {"im2col": ConvMethod(convolution, max_pooling),
                "xla": ConvMethod(convolution_xla, max_pooling_xla)}


def default_conv_method(backend=None):
    """The convolution method for ``backend`` (default: JAX's default backend).

    ``"im2col"`` on CPUs, where it measured faster (``benchmarks/bench.py``'s convolution layer and
    DeepConvNet, on 2 cores); ``"xla"`` elsewhere, unmeasured: chosen on the reasoning that im2col
    writes and reads a matrix FH*FW times the size of its input where a GPU's convolution
    (cuDNN) needs none.
    """
    backend = jax.default_backend() if backend is None else backend
    return "im2col" if backend == "cpu" else "xla"


def conv_method(name=None):
    """The ``ConvMethod`` called ``name`` (``"im2col"`` or ``"xla"``; None: ``default_conv_method()``)."""
    name = default_conv_method(jax.default_backend()) if name is None else name
    if name not in CONV_METHODS:
        raise ValueError(f"unknown convolution method {name!r}; choose one of {sorted(CONV_METHODS)}")
    return CONV_METHODS[name]
