"""Softmax, cross-entropy and the Softmax-with-Loss layer (sec. 5.6.3)."""

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.layers._checks import as_float_array, require_ndim


def softmax(x):
    """Softmax over the last axis: the book's ``softmax`` (sec. 3.5).

    Args:
      x: float array of shape (..., C), the scores.
    Returns:
      Probabilities of the same shape, summing to 1 over the last axis.
      Computed stably (the maximum is subtracted first) by ``jax.nn.softmax``.
    """
    x = as_float_array("softmax", "x", x)
    return jax.nn.softmax(x, axis=-1)


def _check_labels(fn, x, t):
    """Returns ``(t, is_one_hot)`` after checking ``t`` against ``x`` of shape (N, C): its shape
    always, its values too where they are known (outside ``jit``)."""
    known = not isinstance(t, jax.core.Tracer)
    t = jnp.asarray(t)
    N, C = x.shape
    if jnp.issubdtype(t.dtype, jnp.integer):
        if t.shape != (N,):
            raise ValueError(
                f"{fn}: integer labels t must have shape (N,) = ({N},) to match "
                f"x of shape {x.shape}, got t of shape {t.shape}")
        if known:
            values = np.asarray(t)
            bad = np.flatnonzero((values < 0) | (values >= C))
            if bad.size:
                raise ValueError(f"{fn}: labels t must be classes 0 to {C - 1} (x has C = {C} columns), "
                                 f"got {values[bad[0]]} at index {bad[0]}")
        return t, False
    if jnp.issubdtype(t.dtype, jnp.floating):
        if t.shape != x.shape:
            raise ValueError(
                f"{fn}: one-hot labels t must have the shape (N, C) = {x.shape} "
                f"of x, got t of shape {t.shape}")
        if known:
            values = np.asarray(t, np.float64)
            sums = values.sum(axis=1)
            tolerance = max(1e-3, 10 * float(jnp.finfo(t.dtype).eps))
            bad = np.flatnonzero((np.abs(sums - 1) > tolerance) | np.any(values < 0, axis=1))
            if bad.size:
                raise ValueError(f"{fn}: each row of one-hot labels t must be non-negative and sum to 1, "
                                 f"but row {bad[0]} sums to {sums[bad[0]]:.6g} (min {values[bad[0]].min():.6g})")
        return t, True
    raise TypeError(
        f"{fn}: labels t must be integer class indices of shape (N,) or float "
        f"one-hot rows of shape (N, C), got dtype {t.dtype} with shape {t.shape}")


def cross_entropy_error(y, t):
    """Mean cross-entropy of probabilities: the book's ``cross_entropy_error`` (sec. 4.2.4).

    Args:
      y: float array of shape (N, C) (or (C,) for one sample) of probabilities.
      t: integer labels of shape (N,) (or a scalar) or one-hot rows of y's shape.
    Returns:
      ``-sum(log(y[n, t[n]] + 1e-7)) / N``, a scalar. The 1e-7 is the book's
      guard against ``log(0)``; ``softmax_with_loss`` does not need it.

    Soft labels (rows such as ``[0.3, 0.7]``) are reduced to their arg-max, as
    the book's ``if t.size == y.size: t = t.argmax(axis=1)`` does: only the
    largest entry's class counts. ``softmax_with_loss`` instead uses the whole
    distribution, ``-sum(t * log(softmax(x))) / N``.
    """
    y = as_float_array("cross_entropy_error", "y", y)
    t = jnp.asarray(t)
    if y.ndim == 1:
        y = y[None, :]
        t = t.reshape(1, -1) if t.ndim == 1 else t.reshape(1)
    require_ndim("cross_entropy_error", "y", y, 2, "(N, C)")
    t, is_one_hot = _check_labels("cross_entropy_error", y, t)
    if is_one_hot:
        t = jnp.argmax(t, axis=1)
    batch_size = y.shape[0]
    picked = jnp.take_along_axis(y, t[:, None], axis=1)
    return -jnp.sum(jnp.log(picked + 1e-7)) / batch_size


@jax.custom_vjp
def softmax_with_loss(x, t):
    """Softmax-with-Loss layer: the book's ``SoftmaxWithLoss`` (sec. 5.6.3).

    Args:
      x: float array of shape (N, C), the scores (logits).
      t: the labels, either integer class indices 0 to C-1 of shape (N,) or
        float rows of shape (N, C), non-negative, that each sum to 1 (one-hot,
        as in the book).
    Returns:
      The mean cross-entropy of ``softmax(x)`` against ``t``, a scalar.

    Labels are checked where their values are known: called outside ``jit``,
    a label outside 0..C-1 or a row that does not sum to 1 raises
    ``ValueError``. Under ``jit`` only shapes are known while tracing; an
    integer label outside 0..C-1 then makes the loss NaN (never a silently
    wrong finite value), and rows are not checked. That NaN flags the
    caller's error, so it stays: under ``jax_debug_nans`` JAX runs the
    function again without ``jit``, where the label is checked and the
    ``ValueError`` names it.

    The forward goes through ``log_softmax``, so the loss is finite even for
    scores of magnitude 1e4 and no 1e-7 is added inside the log: the hand
    rule below is the exact gradient of this forward. The labels are treated
    as constants (they get no cotangent).

    Backward: ``dx = (y - t) / N * dout`` with ``y = softmax(x)`` (for float
    rows, ``(y * sum(t) - t) / N``: the same when rows sum to 1, and exact
    under ``jit``, where their sums are not checked); unlike
    the book, the incoming ``dout`` is honoured, so the gradient of
    ``2 * loss`` is twice as large.
    """
    return _softmax_with_loss_fwd(x, t)[0]


def _softmax_with_loss_fwd(x, t):
    x = as_float_array("softmax_with_loss", "x", x)
    require_ndim("softmax_with_loss", "x", x, 2, "(N, C)")
    if x.shape[0] == 0:
        raise ValueError(f"softmax_with_loss: the batch is empty (x of shape {x.shape})")
    t, is_one_hot = _check_labels("softmax_with_loss", x, t)
    t = jax.lax.stop_gradient(t)
    batch_size = x.shape[0]
    logy = jax.nn.log_softmax(x, axis=1)
    if is_one_hot:
        loss = -jnp.sum(t * logy) / batch_size
    else:
        loss = -jnp.sum(jnp.take_along_axis(logy, t[:, None], axis=1)) / batch_size
        # Under jit the labels' values are unknown while tracing: one outside 0..C-1 makes the loss NaN.
        loss = jnp.where(jnp.all((t >= 0) & (t < x.shape[1])), loss, jnp.nan)
    y = jnp.exp(logy)
    return loss.astype(x.dtype), (y, t)


def _softmax_with_loss_bwd(res, dout):
    y, t = res
    batch_size = y.shape[0]
    if t.ndim == 2:  # one-hot (or soft) labels
        # The book's (y - t) / N assumes each row of t sums to 1; y * sum(t) - t is the exact derivative of
        # -sum(t * log y) for any row (under jit the rows' sums cannot be checked), and the same numbers
        # when they do sum to 1.
        dx = (y * jnp.sum(t, axis=1, keepdims=True) - t) / batch_size
    else:
        # The book's dx[np.arange(batch_size), t] -= 1, as a subtraction of one-hot rows: the same
        # numbers, and it keeps a batch-sharded y sharded (a scatter would not, under explicit sharding).
        dx = (y - jax.nn.one_hot(t, y.shape[1], dtype=y.dtype)) / batch_size
    dx = (dx * dout).astype(y.dtype)
    return dx, None


softmax_with_loss.defvjp(_softmax_with_loss_fwd, _softmax_with_loss_bwd)
