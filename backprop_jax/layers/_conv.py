"""Convolution and max pooling through im2col (sec. 7.4)."""

import functools

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, batch_sharded, like_inputs, replicated, require_ndim


def _out_size(fn, x_shape, filter_h, filter_w, stride, pad):
    """``(out_h, out_w)``, or a ``ValueError`` naming the shapes."""
    N, C, H, W = x_shape
    window = "pool" if fn.startswith("max_pooling") else "filter"
    for name, value, low in ((f"{window}_h", filter_h, 1), (f"{window}_w", filter_w, 1), ("stride", stride, 1),
                             ("pad", pad, 0)):
        if isinstance(value, jax.core.Tracer):
            raise TypeError(f"{fn}: {name} must be a Python int, known while tracing, got a traced value; "
                            f"under jax.jit mark it static (static_argnums) or close over it")
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{fn}: {name} must be an integer >= {low}, got {value!r}")
    if filter_h > H + 2 * pad or filter_w > W + 2 * pad:
        raise ValueError(f"{fn}: the {filter_h}x{filter_w} window is larger than the input "
                         f"{H}x{W} padded by {pad} (x of shape {tuple(x_shape)})")
    if (H + 2 * pad - filter_h) % stride or (W + 2 * pad - filter_w) % stride:
        raise ValueError(f"{fn}: stride {stride} does not divide the input {H}x{W} padded by {pad} "
                         f"minus the {filter_h}x{filter_w} window evenly (x of shape {tuple(x_shape)}); "
                         f"choose stride and pad so that (H + 2*pad - FH) % stride == 0")
    return (H + 2 * pad - filter_h) // stride + 1, (W + 2 * pad - filter_w) // stride + 1


def im2col(x, filter_h, filter_w, stride=1, pad=0):
    """The book's ``im2col``: every window of x as one row.

    Args:
      x: float array of shape (N, C, H, W).
      filter_h: the window's height, a Python int.
      filter_w: the window's width, a Python int.
      stride: a Python int.
      pad: zeros added on every side, a Python int.
    Returns:
      ``col`` of shape (N*out_h*out_w, C*filter_h*filter_w): row (n, i, j)
      holds the window at output position (i, j) of image n, channel-major.
    """
    x = jnp.asarray(x)
    require_ndim("im2col", "x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    out_h, out_w = _out_size("im2col", x.shape, filter_h, filter_w, stride, pad)
    img = jnp.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    rows = []
    for y in range(filter_h):
        y_max = y + stride * out_h
        for xx in range(filter_w):
            x_max = xx + stride * out_w
            rows.append(img[:, :, y:y_max:stride, xx:x_max:stride])
    col = jnp.stack(rows, axis=2).reshape(N, C, filter_h, filter_w, out_h, out_w)
    # Under explicit sharding, the rows stay split as the images were (batch_sharded).
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(N * out_h * out_w, -1, out_sharding=batch_sharded(x, 2))


def col2im(col, x_shape, filter_h, filter_w, stride=1, pad=0):
    """The book's ``col2im``: adds every row of ``col`` back into its window.

    The adjoint of ``im2col`` (overlapping windows add up).

    Args:
      col: array of shape (N*out_h*out_w, C*filter_h*filter_w).
      x_shape: (N, C, H, W) of the image.
    Returns:
      An array of shape ``x_shape``.
    """
    N, C, H, W = x_shape
    out_h, out_w = _out_size("col2im", x_shape, filter_h, filter_w, stride, pad)
    expected = (N * out_h * out_w, C * filter_h * filter_w)
    if tuple(col.shape) != expected:
        raise ValueError(f"col2im: col must have shape {expected} for x_shape {tuple(x_shape)}, "
                         f"got {tuple(col.shape)}")
    col = col.reshape(N, out_h, out_w, C, filter_h, filter_w,
                      out_sharding=batch_sharded(col, 6)).transpose(0, 3, 4, 5, 1, 2)
    img_h, img_w = H + 2 * pad + stride - 1, W + 2 * pad + stride - 1
    img = jnp.zeros((N, C, img_h, img_w), col.dtype)
    for y in range(filter_h):
        y_last = y + stride * (out_h - 1)
        for xx in range(filter_w):
            x_last = xx + stride * (out_w - 1)
            # The book's img[:, :, y:y_max:stride, x:x_max:stride] += col[:, :, y, x],
            # written as a strided placement (padding with interior zeros) and a
            # dense add, which XLA runs much faster than a strided scatter.
            img = img + jax.lax.pad(col[:, :, y, xx, :, :], jnp.zeros((), col.dtype),
                                    [(0, 0, 0), (0, 0, 0), (y, img_h - y_last - 1, stride - 1),
                                     (xx, img_w - x_last - 1, stride - 1)])
    return img[:, :, pad:H + pad, pad:W + pad]


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def convolution(x, W, b, stride=1, pad=0):
    """Convolution layer: the book's ``Convolution`` (sec. 7.4.3).

    Args:
      x: float array of shape (N, C, H, W).
      W: float filters of shape (FN, C, FH, FW).
      b: float array of shape (FN,).
      stride: a Python int (static, ``nondiff_argnums``, like ``pad``): under
        ``jax.jit`` pass both with ``static_argnums=(3, 4)`` or close over them;
        a traced value raises JAX's ``UnexpectedTracerError``.
      pad: zeros added on every side, a Python int.
    Returns:
      An array of shape (N, FN, out_h, out_w), out_h = (H + 2*pad - FH) / stride + 1.

    Forward: ``col = im2col(x)``, ``col_W = W.reshape(FN, -1).T``,
    ``out = col @ col_W + b``. Backward: ``db = sum(dout)``,
    ``dW = col.T @ dout``, ``dcol = dout @ col_W.T``, ``dx = col2im(dcol)``.
    """
    return _convolution_fwd(x, W, b, stride, pad)[0]


def _convolution_fwd(x, W, b, stride, pad):
    x = as_float_array("convolution", "x", x)
    W = as_float_array("convolution", "W", W)
    b = as_float_array("convolution", "b", b)
    require_ndim("convolution", "x", x, 4, "(N, C, H, W)")
    require_ndim("convolution", "W", W, 4, "(FN, C, FH, FW)")
    FN, C, FH, FW = W.shape
    N, xC, H, Wd = x.shape
    if xC != C:
        raise ValueError(f"convolution: x of shape {x.shape} has {xC} channels but W of shape "
                         f"{W.shape} expects {C}")
    if b.shape != (FN,):
        raise ValueError(f"convolution: b must have shape (FN,) = ({FN},) for W of shape {W.shape}, "
                         f"got {b.shape}")
    out_h, out_w = _out_size("convolution", x.shape, FH, FW, stride, pad)
    col = im2col(x, FH, FW, stride, pad)
    col_W = W.reshape(FN, -1).T
    out = jnp.dot(col, col_W) + b[None, :]
    out = out.reshape(N, out_h, out_w, FN, out_sharding=batch_sharded(x, 4)).transpose(0, 3, 1, 2)
    return out, (x, W, b, col)


def _convolution_bwd(stride, pad, res, dout):
    x, W, b, col = res
    FN, C, FH, FW = W.shape
    dout = jnp.asarray(dout)  # a NumPy cotangent (jax.test_util.check_grads passes one) has no out_sharding
    dout = dout.transpose(0, 2, 3, 1).reshape(-1, FN, out_sharding=batch_sharded(dout, 2))
    db = jnp.sum(dout, axis=0)
    dW = jnp.dot(col.T, dout, out_sharding=replicated(W)).transpose(1, 0).reshape(FN, C, FH, FW)
    dcol = jnp.dot(dout, W.reshape(FN, -1))  # dout @ col_W.T
    dx = col2im(dcol, x.shape, FH, FW, stride, pad)
    return like_inputs((dx.astype(x.dtype), dW.astype(W.dtype), db.astype(b.dtype)), (x, W, b))


convolution.defvjp(_convolution_fwd, _convolution_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def max_pooling(x, pool_h, pool_w, stride=2, pad=0):
    """Max pooling layer: the book's ``Pooling`` (sec. 7.4.4).

    Args:
      x: float array of shape (N, C, H, W).
      pool_h: the window's height, a Python int.
      pool_w: the window's width, a Python int.
      stride: a Python int.
      pad: zeros added on every side, as in the book (so a window over
        padding and negative values yields 0), a Python int.

    The four ints are static (``nondiff_argnums``): under ``jax.jit`` pass
    them with ``static_argnums=(1, 2, 3, 4)`` or close over them.
    Returns:
      An array of shape (N, C, out_h, out_w): the maximum of each window.

    ``stride`` defaults to 2, as the book's ``Pooling(pool_h, pool_w, stride=2,
    pad=0)`` (``common/layers.py`` since its commit 77a0807; stride 1 before):
    ``max_pooling(x, 2, 2)`` is non-overlapping 2x2 pooling, exactly like
    ``Pooling(2, 2)`` and the pooling of the book's ``SimpleConvNet`` and ``DeepConvNet``.

    Backward: ``dout`` goes to the ``arg_max`` of each window and nowhere else.
    Ties: ``argmax`` picks the first maximal element of a window in row-major
    order, so that element alone gets the gradient (the book's behaviour;
    ``jax.lax.reduce_window``'s own derivative may pick another).
    """
    return _max_pooling_fwd(x, pool_h, pool_w, stride, pad)[0]


def _max_pooling_fwd(x, pool_h, pool_w, stride, pad):
    x = as_float_array("max_pooling", "x", x)
    require_ndim("max_pooling", "x", x, 4, "(N, C, H, W)")
    N, C, H, W = x.shape
    out_h, out_w = _out_size("max_pooling", x.shape, pool_h, pool_w, stride, pad)
    col = im2col(x, pool_h, pool_w, stride, pad).reshape(-1, pool_h * pool_w, out_sharding=batch_sharded(x, 2))
    arg_max = jnp.argmax(col, axis=1)
    out = jnp.max(col, axis=1).reshape(N, out_h, out_w, C, out_sharding=batch_sharded(x, 4)).transpose(0, 3, 1, 2)
    return out, (x, arg_max)


def _max_pooling_bwd(pool_h, pool_w, stride, pad, res, dout):
    x, arg_max = res
    dout = jnp.asarray(dout).transpose(0, 2, 3, 1)  # a NumPy cotangent too
    pool_size = pool_h * pool_w
    # The book's dmax[np.arange(arg_max.size), arg_max] = dout.flatten(), as
    # a one-hot product: a dense op, much faster than a scatter on CPU.
    dmax = jax.nn.one_hot(arg_max, pool_size, dtype=dout.dtype) * dout.reshape(
        -1, 1, out_sharding=batch_sharded(dout, 2))
    dcol = dmax.reshape(dout.shape[0] * dout.shape[1] * dout.shape[2], -1, out_sharding=batch_sharded(dmax, 2))
    dx = col2im(dcol, x.shape, pool_h, pool_w, stride, pad)
    return (dx.astype(x.dtype),)


max_pooling.defvjp(_max_pooling_fwd, _max_pooling_bwd)
