"""The sequel's layers for sequences of words (*Deep Learning from Scratch 2*, ch. 4-6): Embedding,
Affine and Softmax-with-Loss over time.

Shapes in the sequel's names: batch N, time T, vector D, vocabulary V.
"""

import functools

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs, require_ndim


@jax.custom_vjp
def matmul(x, W):
    """The sequel's ``MatMul`` (sec. 1.3.4): ``x @ W``, the affine layer without its bias.

    Args: x (N, D), W (D, H), floats. Returns (N, H).

    Backward: ``dx = dout @ W.T``, ``dW = x.T @ dout`` (the repeat node's sum over the batch).
    """
    return _matmul_fwd(x, W)[0]


def _matmul_fwd(x, W):
    x, W = as_float_array("matmul", "x", x), as_float_array("matmul", "W", W)
    require_ndim("matmul", "x", x, 2, "(N, D)")
    require_ndim("matmul", "W", W, 2, "(D, H)")
    if x.shape[1] != W.shape[0]:
        raise ValueError(f"matmul: x {x.shape} and W {W.shape} do not chain: x has {x.shape[1]} columns, "
                         f"W {W.shape[0]} rows")
    return x @ W, (x, W)


def _matmul_bwd(res, dout):
    x, W = res
    return like_inputs((dout @ W.T, x.T @ dout), (x, W))


matmul.defvjp(_matmul_fwd, _matmul_bwd)


@jax.custom_vjp
def embedding(W, idx):
    """The sequel's ``Embedding`` (sec. 4.1) and ``TimeEmbedding`` (sec. 5.4): the rows ``W[idx]``.

    Args:
      W: float array (V, D), one row per word.
      idx: integer word ids of any shape: (N,) for ``Embedding``, (N, T) for ``TimeEmbedding``.
    Returns:
      ``W[idx]``, of shape ``idx.shape + (D,)``.

    Backward: ``dW`` is zero but for the rows in ``idx``, into which ``dout``
    is added, a row that appears several times getting the sum (the sequel's
    ``np.add.at(dW, idx, dout)``, not ``dW[idx] = dout``). The ids get no
    cotangent.
    """
    return _embedding_fwd(W, idx)[0]


def _embedding_fwd(W, idx):
    W = as_float_array("embedding", "W", W)
    require_ndim("embedding", "W", W, 2, "(V, D)")
    idx = jnp.asarray(idx)
    if not jnp.issubdtype(idx.dtype, jnp.integer):
        raise TypeError(f"embedding: idx must be integer word ids, got dtype {idx.dtype} with shape {idx.shape}")
    return W[idx], (W, idx)


def _embedding_bwd(res, dout):
    W, idx = res
    dW = jnp.zeros_like(W).at[idx.reshape(-1)].add(dout.reshape(-1, W.shape[1]).astype(W.dtype))
    return like_inputs((dW,), (W,)) + (None,)


embedding.defvjp(_embedding_fwd, _embedding_bwd)


@jax.custom_vjp
def time_affine(xs, W, b):
    """The sequel's ``TimeAffine`` (sec. 5.4): the same affine map at every time step.

    Args: xs (N, T, D), W (D, M), b (M,). Returns ``xs @ W + b``, (N, T, M).

    Backward, on the (N*T, D) rows as the sequel does: ``db = sum(dout)``,
    ``dW = rx.T @ dout``, ``dx = dout @ W.T``.
    """
    return _time_affine_fwd(xs, W, b)[0]


def _time_affine_fwd(xs, W, b):
    xs, W, b = (as_float_array("time_affine", n, a) for n, a in (("xs", xs), ("W", W), ("b", b)))
    require_ndim("time_affine", "xs", xs, 3, "(N, T, D)")
    require_ndim("time_affine", "W", W, 2, "(D, M)")
    if xs.shape[2] != W.shape[0] or b.shape != (W.shape[1],):
        raise ValueError(f"time_affine: xs {xs.shape}, W {W.shape} and b {b.shape} do not fit "
                         f"(N, T, D), (D, M), (M,)")
    N, T, D = xs.shape
    out = jnp.dot(xs.reshape(N * T, D), W) + b[None, :]
    return out.reshape(N, T, -1), (xs, W, b)


def _time_affine_bwd(res, dout):
    xs, W, b = res
    N, T, D = xs.shape
    dout = dout.reshape(N * T, -1)
    rx = xs.reshape(N * T, D)
    db = jnp.sum(dout, axis=0)
    dW = jnp.dot(rx.T, dout)
    dx = jnp.dot(dout, W.T).reshape(N, T, D)
    return like_inputs((dx.astype(xs.dtype), dW.astype(W.dtype), db.astype(b.dtype)), res)


time_affine.defvjp(_time_affine_fwd, _time_affine_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def time_softmax_with_loss(xs, ts, ignore_label=-1):
    """The sequel's ``TimeSoftmaxWithLoss`` (sec. 5.4): Softmax-with-Loss at every time step.

    Args:
      xs: float scores (N, T, V).
      ts: integer labels (N, T) (or one-hot rows (N, T, V), reduced to their
        arg-max as the sequel does).
      ignore_label: a Python int (static); positions labelled so count neither
        in the loss nor in its normaliser (padding).
    Returns:
      ``-sum(mask * log(softmax(xs)[ts])) / sum(mask)``, a scalar; NaN when
      every position is ignored, as the sequel's division by zero.

    Backward: ``dx = (softmax(xs) - onehot(ts)) * dout / sum(mask) * mask``.
    """
    return _time_softmax_with_loss_fwd(xs, ts, ignore_label)[0]


def _time_softmax_with_loss_fwd(xs, ts, ignore_label):
    xs = as_float_array("time_softmax_with_loss", "xs", xs)
    require_ndim("time_softmax_with_loss", "xs", xs, 3, "(N, T, V)")
    ts = jnp.asarray(ts)
    if ts.ndim == 3:
        ts = jnp.argmax(ts, axis=2)
    if ts.shape != xs.shape[:2] or not jnp.issubdtype(ts.dtype, jnp.integer):
        raise ValueError(f"time_softmax_with_loss: ts must be integer labels of shape (N, T) = {xs.shape[:2]}, "
                         f"got {ts.dtype} {ts.shape}")
    N, T, V = xs.shape
    mask = ts != ignore_label
    logy = jax.nn.log_softmax(xs, axis=2)
    picked = jnp.take_along_axis(logy, jnp.where(mask, ts, 0)[:, :, None], axis=2)[:, :, 0]
    count = jnp.sum(mask)
    loss = -jnp.sum(jnp.where(mask, picked, 0.0)) / count
    return loss.astype(xs.dtype), (jnp.exp(logy), ts, mask, count)


def _time_softmax_with_loss_bwd(ignore_label, res, dout):
    del ignore_label
    ys, ts, mask, count = res
    dx = ys - jax.nn.one_hot(jnp.where(mask, ts, 0), ys.shape[2], dtype=ys.dtype)  # the sequel's dx[.., ts] -= 1
    dx = dx * dout / count
    dx = dx * mask[:, :, None].astype(ys.dtype)
    return dx.astype(ys.dtype), None


time_softmax_with_loss.defvjp(_time_softmax_with_loss_fwd, _time_softmax_with_loss_bwd)


@jax.custom_vjp
def embedding_dot(h, W, idx):
    """The sequel's ``EmbeddingDot`` (sec. 4.2.4): the dot product of each row of ``h`` with the
    embedding of its word, ``sum(W[idx] * h, axis=1)``.

    Args: h (N, D), W (V, D), idx integer (N,). Returns (N,).

    Backward: ``dtarget_W = dout[:, None] * h`` added into the rows ``idx`` of
    ``dW`` (as ``Embedding``'s backward), ``dh = dout[:, None] * W[idx]``.
    """
    return _embedding_dot_fwd(h, W, idx)[0]


def _embedding_dot_fwd(h, W, idx):
    h = as_float_array("embedding_dot", "h", h)
    target_W, (W, idx) = _embedding_fwd(W, idx)
    if target_W.shape != h.shape:
        raise ValueError(f"embedding_dot: h must have the shape (N, D) = {target_W.shape} of W[idx], got {h.shape}")
    return jnp.sum(target_W * h, axis=1), (h, W, idx, target_W)


def _embedding_dot_bwd(res, dout):
    h, W, idx, target_W = res
    dout = dout[:, None]
    dtarget_W = dout * h
    dW = _embedding_bwd((W, idx), dtarget_W)[0]  # Embedding's backward: rows added into
    dh = dout * target_W
    return like_inputs((dh, dW), (h, W)) + (None,)


embedding_dot.defvjp(_embedding_dot_fwd, _embedding_dot_bwd)


@jax.custom_vjp
def sigmoid_with_loss(x, t):
    """The sequel's ``SigmoidWithLoss`` (sec. 4.2.3): binary cross-entropy of ``sigmoid(x)``.

    Args: x float scores (N,); t labels 0 or 1 (N,), integers or floats.
    Returns: ``-mean(log(y if t == 1 else 1 - y) + 1e-7 inside)``, the sequel's
      ``cross_entropy_error(np.c_[1 - y, y], t)``.

    Backward: ``dx = (y - t) * dout / N``.
    """
    return _sigmoid_with_loss_fwd(x, t)[0]


def _sigmoid_with_loss_fwd(x, t):
    x = as_float_array("sigmoid_with_loss", "x", x)
    t = jnp.asarray(t)
    if t.shape != x.shape or x.ndim != 1:
        raise ValueError(f"sigmoid_with_loss: x and t must both have shape (N,), got {x.shape} and {t.shape}")
    y = jax.nn.sigmoid(x)
    picked = jnp.where(t == 1, y, 1 - y)
    loss = -jnp.sum(jnp.log(picked + 1e-7)) / x.shape[0]
    return loss.astype(x.dtype), (y, t)


def _sigmoid_with_loss_bwd(res, dout):
    y, t = res
    return ((y - t.astype(y.dtype)) * dout / y.shape[0]).astype(y.dtype), None


sigmoid_with_loss.defvjp(_sigmoid_with_loss_fwd, _sigmoid_with_loss_bwd)


@jax.custom_vjp
def time_sigmoid_with_loss(xs, ts):
    """The sequel's ``TimeSigmoidWithLoss`` (``common/time_layers.py``): ``sigmoid_with_loss`` at
    every time step, the mean over the T steps.

    Args: xs float scores (N, T); ts labels 0 or 1 (N, T), integers or floats.
    Returns: ``sum_t sigmoid_with_loss(xs[:, t], ts[:, t]) / T``, each step's loss with the
      sequel's ``1e-7`` inside the log.

    Backward, the sequel's: ``dout *= 1 / T``, then each step's ``SigmoidWithLoss.backward``:
    ``dxs[:, t] = (y[:, t] - ts[:, t]) * dout / N``.
    """
    return _time_sigmoid_with_loss_fwd(xs, ts)[0]


def _time_sigmoid_with_loss_fwd(xs, ts):
    xs = as_float_array("time_sigmoid_with_loss", "xs", xs)
    ts = jnp.asarray(ts)
    if xs.ndim != 2 or ts.shape != xs.shape:
        raise ValueError(f"time_sigmoid_with_loss: xs and ts must both have shape (N, T), got {xs.shape} and "
                         f"{ts.shape}")
    N, T = xs.shape
    y = jax.nn.sigmoid(xs)
    picked = jnp.where(ts == 1, y, 1 - y)
    loss = jnp.sum(-jnp.sum(jnp.log(picked + 1e-7), axis=0) / N) / T  # each step's mean, then over T
    return loss.astype(xs.dtype), (y, ts)


def _time_sigmoid_with_loss_bwd(res, dout):
    y, ts = res
    N, T = y.shape
    dout = dout * (1 / T)
    dxs = (y - ts.astype(y.dtype)) * dout / N
    return dxs.astype(y.dtype), None


time_sigmoid_with_loss.defvjp(_time_sigmoid_with_loss_fwd, _time_sigmoid_with_loss_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def time_dropout(xs, key, drop_rate=0.5, train=True):
    """The sequel's ``TimeDropout`` (sec. 6.5.2): unlike the first book's dropout it is *inverted*,
    ``xs * mask / (1 - drop_rate)`` in training and ``xs`` unchanged in evaluation.

    Args: xs float array of any shape; key a PRNG key (no cotangent); drop_rate, train: Python
    values (static). Backward: ``dout * mask`` (the scaled mask).
    """
    return _time_dropout_fwd(xs, key, drop_rate, train)[0]


def _time_dropout_fwd(xs, key, drop_rate, train):
    xs = as_float_array("time_dropout", "xs", xs)
    if not 0 <= drop_rate < 1:
        raise ValueError(f"time_dropout: drop_rate must be in [0, 1), got {drop_rate}")
    if not train:
        return xs, jnp.ones((), xs.dtype)
    mask = (jax.random.uniform(key, xs.shape) > drop_rate).astype(xs.dtype) / (1.0 - drop_rate)
    return xs * mask, mask


def _time_dropout_bwd(drop_rate, train, mask, dout):
    del drop_rate, train
    return (dout * mask).astype(dout.dtype), None


time_dropout.defvjp(_time_dropout_fwd, _time_dropout_bwd)
