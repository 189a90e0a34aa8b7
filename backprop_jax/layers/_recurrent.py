"""The sequel's recurrent layers (*Deep Learning from Scratch 2*, ch. 5-6): RNN and LSTM, one step
and over time, with backpropagation through time written out by hand.

Shapes in the sequel's names: batch N, time T, input D, hidden H. The time
layers take ``xs`` of shape (N, T, D) and the initial state explicitly
(``h0``, and ``c0`` for the LSTM): truncated BPTT passes the last state of
one block as the first of the next, outside the layer, never in hidden
state. Their forward is a ``lax.scan`` over time; their backward is one
hand-written reverse loop over time (``lax.scan(..., reverse=True)``) that
accumulates ``dWx``, ``dWh`` and ``db`` and carries ``dh`` (and ``dc``) back
to ``h0`` (and ``c0``), as the sequel's ``TimeRNN.backward`` and
``TimeLSTM.backward``.
"""

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs, require_ndim


def _check(fn, xs, h0, Wx, Wh, b, gates):
    xs, h0 = as_float_array(fn, "xs", xs), as_float_array(fn, "h0", h0)
    Wx, Wh, b = (as_float_array(fn, n, a) for n, a in (("Wx", Wx), ("Wh", Wh), ("b", b)))
    require_ndim(fn, "xs", xs, 3, "(N, T, D)")
    require_ndim(fn, "Wx", Wx, 2, f"(D, {gates}H)")
    dtypes = {name: a.dtype for name, a in (("xs", xs), ("h0", h0), ("Wx", Wx), ("Wh", Wh), ("b", b))}
    if len(set(dtypes.values())) > 1:  # the scan carries h in one dtype: a mix would fail inside it
        raise TypeError(f"{fn}: every array must have one dtype, got "
                        + ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items()))
    N, T, D = xs.shape
    H = Wh.shape[0]
    shapes = {"Wx": (Wx.shape, (D, gates * H)), "Wh": (Wh.shape, (H, gates * H)), "b": (b.shape, (gates * H,)),
              "h0": (h0.shape, (N, H))}
    for name, (got, want) in shapes.items():
        if tuple(got) != want:
            raise ValueError(f"{fn}: {name} must have shape {want} for xs of shape {xs.shape} and Wh of shape "
                             f"{Wh.shape} (H = {H}), got {tuple(got)}")
    return xs, h0, Wx, Wh, b


# --- RNN (sec. 5.3) -----------------------------------------------------------------------------

def rnn_cell(x, h_prev, Wx, Wh, b):
    """One step of the sequel's ``RNN``: ``h_next = tanh(h_prev @ Wh + x @ Wx + b)``.

    Args: x (N, D), h_prev (N, H), Wx (D, H), Wh (H, H), b (H,). Returns h_next (N, H).
    Differentiated through ``time_rnn``'s hand rule when used over time; alone it is plain jnp.
    """
    return jnp.tanh(jnp.dot(h_prev, Wh) + jnp.dot(x, Wx) + b[None, :])


@jax.custom_vjp
def time_rnn(xs, h0, Wx, Wh, b):
    """The sequel's ``TimeRNN`` (sec. 5.3.2): ``rnn_cell`` over every time step.

    Args:
      xs: float array (N, T, D).
      h0: the initial hidden state (N, H) (zeros for a new sequence, the
        previous block's ``h_last`` for truncated BPTT).
      Wx: (D, H).
      Wh: (H, H).
      b: (H,).
    Returns:
      ``(hs, h_last)``: every hidden state (N, T, H) and the last (N, H).

    Backward, the sequel's loop run in reverse: with ``dh`` carried from the
    step after (``dh_last`` at the end), ``dt = (dhs[t] + dh) * (1 - h_t**2)``,
    ``db += sum(dt)``, ``dWh += h_{t-1}.T @ dt``, ``dWx += x_t.T @ dt``,
    ``dx_t = dt @ Wx.T`` and ``dh = dt @ Wh.T``; the final ``dh`` is ``dh0``.
    """
    return _time_rnn_fwd(xs, h0, Wx, Wh, b)[0]


def _time_rnn_fwd(xs, h0, Wx, Wh, b):
    xs, h0, Wx, Wh, b = _check("time_rnn", xs, h0, Wx, Wh, b, 1)

    def step(h_prev, x):
        h_next = rnn_cell(x, h_prev, Wx, Wh, b)
        return h_next, h_next

    h_last, hs = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))  # hs: (T, N, H)
    return (jnp.swapaxes(hs, 0, 1), h_last), (xs, h0, Wx, Wh, b, hs)


def _time_rnn_bwd(res, cotangents):
    xs, h0, Wx, Wh, b, hs = res
    dhs, dh_last = cotangents
    h_prevs = jnp.concatenate([h0[None], hs[:-1]], axis=0)  # h_{t-1} for every t

    def step(carry, inputs):
        dh, dWx, dWh, db = carry
        x, h_prev, h_next, dh_t = inputs
        dt = (dh_t + dh) * (1 - h_next ** 2)
        db = db + jnp.sum(dt, axis=0)
        dWh = dWh + jnp.dot(h_prev.T, dt)
        dWx = dWx + jnp.dot(x.T, dt)
        dx = jnp.dot(dt, Wx.T)
        dh_prev = jnp.dot(dt, Wh.T)
        return (dh_prev, dWx, dWh, db), dx

    zero = (dh_last, jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros_like(b))
    (dh0, dWx, dWh, db), dxs = jax.lax.scan(
        step, zero, (jnp.swapaxes(xs, 0, 1), h_prevs, hs, jnp.swapaxes(dhs, 0, 1)), reverse=True)
    return like_inputs((jnp.swapaxes(dxs, 0, 1), dh0, dWx, dWh, db), (xs, h0, Wx, Wh, b))


time_rnn.defvjp(_time_rnn_fwd, _time_rnn_bwd)


# --- LSTM (sec. 6.3) ----------------------------------------------------------------------------

def _gates(A, H):
    """The sequel's layout of the four gates in one (N, 4H) array: f, g, i, o."""
    f, g, i, o = A[:, :H], A[:, H:2 * H], A[:, 2 * H:3 * H], A[:, 3 * H:]
    return jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(i), jax.nn.sigmoid(o)


def lstm_cell(x, h_prev, c_prev, Wx, Wh, b):
    """One step of the sequel's ``LSTM``: ``A = x @ Wx + h_prev @ Wh + b`` split into the gates
    ``f, g, i, o`` (sigmoid, tanh, sigmoid, sigmoid), ``c_next = f * c_prev + g * i``,
    ``h_next = o * tanh(c_next)``.

    Args: x (N, D), h_prev and c_prev (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns ``(h_next, c_next)``, each (N, H).
    """
    f, g, i, o = _gates(jnp.dot(x, Wx) + jnp.dot(h_prev, Wh) + b[None, :], h_prev.shape[1])
    c_next = f * c_prev + g * i
    return o * jnp.tanh(c_next), c_next


@jax.custom_vjp
def time_lstm(xs, h0, c0, Wx, Wh, b):
    """The sequel's ``TimeLSTM`` (sec. 6.3): ``lstm_cell`` over every time step.

    Args:
      xs: float array (N, T, D).
      h0: the initial hidden state (N, H).
      c0: the initial cell state (N, H).
      Wx: (D, 4H), the gates in the order f, g, i, o.
      Wh: (H, 4H), the same order.
      b: (4H,), the same order.
    Returns:
      ``(hs, h_last, c_last)``: hs (N, T, H), the last states (N, H) each.

    Backward, the sequel's ``LSTM.backward`` in a reverse loop: with ``dh``
    (total: ``dhs[t]`` plus what the next step sends back) and ``dc``,
    ``ds = dc + dh * o * (1 - tanh(c)**2)``, ``dc_prev = ds * f``,
    ``df = ds * c_prev * f(1 - f)``, ``dg = ds * i * (1 - g**2)``,
    ``di = ds * g * i(1 - i)``, ``do = dh * tanh(c) * o(1 - o)``,
    ``dA = [df, dg, di, do]``, ``dh_prev = dA @ Wh.T``; then, the loop done,
    the sums over time of the sequel's per-step ``dWx += x.T @ dA``,
    ``dWh += h_prev.T @ dA``, ``db += sum(dA)`` and its ``dx = dA @ Wx.T``, each
    one product over every step at once (as the forward computes every step's
    ``x @ Wx`` at once): only ``dh`` and ``dc`` must go step by step.
    """
    return _time_lstm_fwd(xs, h0, c0, Wx, Wh, b)[0]


def _time_lstm_fwd(xs, h0, c0, Wx, Wh, b):
    xs, h0, Wx, Wh, b = _check("time_lstm", xs, h0, Wx, Wh, b, 4)
    c0 = as_float_array("time_lstm", "c0", c0)
    if c0.shape != h0.shape:
        raise ValueError(f"time_lstm: c0 must have the shape of h0 {h0.shape}, got {c0.shape}")
    if c0.dtype != h0.dtype:
        raise TypeError(f"time_lstm: every array must have one dtype, got h0 {h0.dtype}, c0 {c0.dtype}")
    H = Wh.shape[0]
    xWx = jnp.einsum("ntd,dk->tnk", xs, Wx) + b[None, None, :]  # x @ Wx + b of every step: (T, N, 4H)

    def step(carry, xw):
        h_prev, c_prev = carry
        f, g, i, o = _gates(xw + jnp.dot(h_prev, Wh), H)
        c_next = f * c_prev + g * i
        h_next = o * jnp.tanh(c_next)
        return (h_next, c_next), (h_next, c_next, f, g, i, o)

    (h_last, c_last), saved = jax.lax.scan(step, (h0, c0), xWx)
    hs = saved[0]
    return (jnp.swapaxes(hs, 0, 1), h_last, c_last), (xs, h0, c0, Wx, Wh, b, saved)


def _time_lstm_bwd(res, cotangents):
    xs, h0, c0, Wx, Wh, b, (hs, cs, fs, gs, is_, os_) = res
    dhs, dh_last, dc_last = cotangents
    h_prevs = jnp.concatenate([h0[None], hs[:-1]], axis=0)
    c_prevs = jnp.concatenate([c0[None], cs[:-1]], axis=0)

    def step(carry, inputs):
        dh, dc = carry
        c_prev, c_next, f, g, i, o, dh_t = inputs
        dh_next = dh_t + dh
        tanh_c_next = jnp.tanh(c_next)
        ds = dc + (dh_next * o) * (1 - tanh_c_next ** 2)
        dc_prev = ds * f
        di = ds * g * (i * (1 - i))
        df = ds * c_prev * (f * (1 - f))
        do = dh_next * tanh_c_next * (o * (1 - o))
        dg = ds * i * (1 - g ** 2)
        dA = jnp.concatenate([df, dg, di, do], axis=1)
        dh_prev = jnp.dot(dA, Wh.T)
        return (dh_prev, dc_prev), dA

    (dh0, dc0), dAs = jax.lax.scan(step, (dh_last, dc_last), (c_prevs, cs, fs, gs, is_, os_, jnp.swapaxes(dhs, 0, 1)),
                                   reverse=True)  # dAs: (T, N, 4H)
    dWx = jnp.einsum("ntd,tnk->dk", xs, dAs)
    dWh = jnp.einsum("tnh,tnk->hk", h_prevs, dAs)
    db = jnp.sum(dAs, axis=(0, 1))
    dxs = jnp.einsum("tnk,dk->ntd", dAs, Wx)
    return like_inputs((dxs, dh0, dc0, dWx, dWh, db), (xs, h0, c0, Wx, Wh, b))


time_lstm.defvjp(_time_lstm_fwd, _time_lstm_bwd)


# --- bidirectional LSTM (the sequel's time_layers.py, sec. 8.4.1) ------------------------------

@jax.custom_vjp
def time_bilstm(xs, Wx1, Wh1, b1, Wx2, Wh2, b2):
    """The sequel's ``TimeBiLSTM`` (sec. 8.4.1, ``common/time_layers.py``): one ``time_lstm`` reads
    ``xs`` forwards, another (``Wx2``, ``Wh2``, ``b2``) backwards, each from zero states (the
    sequel's ``stateful=False``); their hidden states side by side.

    Args:
      xs: float (N, T, D).
      Wx1: the forward LSTM's (D, 4H), gates f, g, i, o.
      Wh1: the forward LSTM's (H, 4H).
      b1: the forward LSTM's (4H,).
      Wx2: the backward LSTM's (D, 4H).
      Wh2: the backward LSTM's (H, 4H).
      b2: the backward LSTM's (4H,).
    Returns:
      hs (N, T, 2H): ``[o1, o2]`` with ``o2`` the backward LSTM's states put back in time order.

    Backward, the sequel's: ``do1, do2 = dhs[..., :H], dhs[..., H:]``; ``dxs1`` from the forward
    LSTM's rule at ``do1``; ``dxs2`` from the backward LSTM's at ``do2[:, ::-1]``, reversed;
    ``dxs = dxs1 + dxs2``.
    """
    return _time_bilstm_fwd(xs, Wx1, Wh1, b1, Wx2, Wh2, b2)[0]


def _time_bilstm_fwd(xs, Wx1, Wh1, b1, Wx2, Wh2, b2):
    xs = as_float_array("time_bilstm", "xs", xs)
    require_ndim("time_bilstm", "xs", xs, 3, "(N, T, D)")
    zeros = jnp.zeros((xs.shape[0], Wh1.shape[0]), xs.dtype)
    (o1, _, _), res1 = _time_lstm_fwd(xs, zeros, zeros, Wx1, Wh1, b1)
    (o2, _, _), res2 = _time_lstm_fwd(xs[:, ::-1], zeros, zeros, Wx2, Wh2, b2)
    return jnp.concatenate((o1, o2[:, ::-1]), axis=2), (res1, res2)


def _time_bilstm_bwd(res, dhs):
    res1, res2 = res
    H = dhs.shape[2] // 2
    do1, do2 = dhs[:, :, :H], dhs[:, :, H:]
    zero = jnp.zeros((dhs.shape[0], H), dhs.dtype)
    dxs1, _, _, dWx1, dWh1, db1 = _time_lstm_bwd(res1, (do1, zero, zero))
    do2 = do2[:, ::-1]
    dxs2, _, _, dWx2, dWh2, db2 = _time_lstm_bwd(res2, (do2, zero, zero))
    dxs2 = dxs2[:, ::-1]
    return dxs1 + dxs2, dWx1, dWh1, db1, dWx2, dWh2, db2


time_bilstm.defvjp(_time_bilstm_fwd, _time_bilstm_bwd)


# --- GRU (the sequel's time_layers.py, beyond the text) ----------------------------------------

def _gru_step(x, h_prev, Wx, Wh, b):
    """The gates and the next state of one step: ``(h_next, z, r, h_hat)``."""
    H = h_prev.shape[1]
    z = jax.nn.sigmoid(jnp.dot(x, Wx[:, :H]) + jnp.dot(h_prev, Wh[:, :H]) + b[None, :H])
    r = jax.nn.sigmoid(jnp.dot(x, Wx[:, H:2 * H]) + jnp.dot(h_prev, Wh[:, H:2 * H]) + b[None, H:2 * H])
    h_hat = jnp.tanh(jnp.dot(x, Wx[:, 2 * H:]) + jnp.dot(r * h_prev, Wh[:, 2 * H:]) + b[None, 2 * H:])
    return (1 - z) * h_prev + z * h_hat, z, r, h_hat


def gru_cell(x, h_prev, Wx, Wh, b):
    """One step of the sequel's ``GRU`` (``common/time_layers.py``, with its bias since the
    sequel's commit e1fb440; gates in the order z, r, h in (D, 3H), (H, 3H) and (3H,)):
    ``z = sigmoid(x Wxz + h Whz + bz)``, ``r = sigmoid(x Wxr + h Whr + br)``,
    ``h_hat = tanh(x Wxh + (r * h) Whh + bh)``, ``h_next = (1 - z) * h + z * h_hat``.

    Args: x (N, D), h_prev (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,). Returns h_next (N, H).
    """
    return _gru_step(x, h_prev, Wx, Wh, b)[0]


@jax.custom_vjp
def time_gru(xs, h0, Wx, Wh, b):
    """The sequel's ``TimeGRU`` (``common/time_layers.py`` at its commit e1fb440 and after):
    ``gru_cell`` over every time step.

    Args: xs (N, T, D), h0 (N, H), Wx (D, 3H), Wh (H, 3H), b (3H,), the gates in the order
    z, r, h. Returns ``(hs, h_last)``: (N, T, H) and (N, H).

    Backward, the sequel's ``GRU.backward`` in a reverse loop: ``dh_hat = dh * z``,
    ``dh_prev = dh * (1 - z)``; through tanh ``dt = dh_hat * (1 - h_hat**2)``, ``dbh = sum(dt)``,
    ``dWhh = (r*h_prev).T @ dt``, ``dhr = dt @ Whh.T``, ``dh_prev += r * dhr``; the update gate
    ``dz = dh * h_hat - dh * h_prev``, ``dt = dz * z(1 - z)``, ``dbz = sum(dt)``; the reset gate
    ``dr = dhr * h_prev``, ``dt = dr * r(1 - r)``, ``dbr = sum(dt)``; each adding into ``dWx``,
    ``dWh``, ``dx`` and ``dh_prev``, and ``db = [dbz, dbr, dbh]``.
    """
    return _time_gru_fwd(xs, h0, Wx, Wh, b)[0]


def _time_gru_fwd(xs, h0, Wx, Wh, b):
    xs, h0, Wx, Wh, b = _check("time_gru", xs, h0, Wx, Wh, b, 3)

    def step(h_prev, x):
        h_next, z, r, h_hat = _gru_step(x, h_prev, Wx, Wh, b)
        return h_next, (h_next, z, r, h_hat)

    h_last, saved = jax.lax.scan(step, h0, jnp.swapaxes(xs, 0, 1))
    return (jnp.swapaxes(saved[0], 0, 1), h_last), (xs, h0, Wx, Wh, b, saved)


def _time_gru_bwd(res, cotangents):
    xs, h0, Wx, Wh, b, (hs, zs, rs, h_hats) = res
    dhs, dh_last = cotangents
    H = Wh.shape[0]
    Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H:2 * H], Wx[:, 2 * H:]
    Whz, Whr, Whh = Wh[:, :H], Wh[:, H:2 * H], Wh[:, 2 * H:]
    h_prevs = jnp.concatenate([h0[None], hs[:-1]], axis=0)

    def step(carry, inputs):
        dh, dWx, dWh, db = carry
        x, h_prev, z, r, h_hat, dh_t = inputs
        dh_next = dh_t + dh
        dh_hat = dh_next * z
        dh_prev = dh_next * (1 - z)
        dt = dh_hat * (1 - h_hat ** 2)  # tanh
        dbh = jnp.sum(dt, axis=0)
        dWhh = jnp.dot((r * h_prev).T, dt)
        dhr = jnp.dot(dt, Whh.T)
        dWxh = jnp.dot(x.T, dt)
        dx = jnp.dot(dt, Wxh.T)
        dh_prev = dh_prev + r * dhr
        dz = dh_next * h_hat - dh_next * h_prev  # update gate
        dt = dz * z * (1 - z)
        dbz = jnp.sum(dt, axis=0)
        dWhz = jnp.dot(h_prev.T, dt)
        dh_prev = dh_prev + jnp.dot(dt, Whz.T)
        dWxz = jnp.dot(x.T, dt)
        dx = dx + jnp.dot(dt, Wxz.T)
        dr = dhr * h_prev  # reset gate
        dt = dr * r * (1 - r)
        dbr = jnp.sum(dt, axis=0)
        dWhr = jnp.dot(h_prev.T, dt)
        dh_prev = dh_prev + jnp.dot(dt, Whr.T)
        dWxr = jnp.dot(x.T, dt)
        dx = dx + jnp.dot(dt, Wxr.T)
        dWx = dWx + jnp.concatenate([dWxz, dWxr, dWxh], axis=1)
        dWh = dWh + jnp.concatenate([dWhz, dWhr, dWhh], axis=1)
        db = db + jnp.concatenate([dbz, dbr, dbh])
        return (dh_prev, dWx, dWh, db), dx

    zero = (dh_last, jnp.zeros_like(Wx), jnp.zeros_like(Wh), jnp.zeros_like(b))
    (dh0, dWx, dWh, db), dxs = jax.lax.scan(
        step, zero, (jnp.swapaxes(xs, 0, 1), h_prevs, zs, rs, h_hats, jnp.swapaxes(dhs, 0, 1)), reverse=True)
    return like_inputs((jnp.swapaxes(dxs, 0, 1), dh0, dWx, dWh, db), (xs, h0, Wx, Wh, b))


time_gru.defvjp(_time_gru_fwd, _time_gru_bwd)
