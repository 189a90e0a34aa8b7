"""The sequel's layers (Deep Learning from Scratch 2): each hand rule against autodiff of the same
computation written out here as a Python loop over time in plain jnp, against gradcheck (whose
autodiff side must enter the layers' scans), and under jit, vmap and grad-of-grad."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import backprop_jax as bj
from conftest import TRANSFORMS, lstm_loop, normal

N, T, D, H, V = 3, 5, 4, 6, 7


def rnn_loop(xs, h0, Wx, Wh, b):
    """The sequel's TimeRNN.forward, its RNN.forward written out: t = h @ Wh + x @ Wx + b, h = tanh(t)."""
    h, hs = h0, []
    for t in range(xs.shape[1]):
        h = jnp.tanh(h @ Wh + xs[:, t, :] @ Wx + b[None, :])
        hs.append(h)
    return jnp.stack(hs, axis=1), h


def rnn_args(dtype=jnp.float64):
    return (normal(0, (N, T, D), dtype), normal(1, (N, H), dtype), 0.5 * normal(2, (D, H), dtype),
            0.5 * normal(3, (H, H), dtype), normal(4, (H,), dtype))


def lstm_args(dtype=jnp.float64):
    return (normal(0, (N, T, D), dtype), normal(1, (N, H), dtype), normal(5, (N, H), dtype),
            0.5 * normal(2, (D, 4 * H), dtype), 0.5 * normal(3, (H, 4 * H), dtype), normal(4, (4 * H,), dtype))


def weighted(f, n_out):
    """``sum(w_k * out_k)`` with fixed random weights: every output and every time step gets a cotangent."""
    def loss(*args):
        outs = f(*args)
        return sum(jnp.sum(normal(10 + k, o.shape) * o) for k, o in enumerate(outs[:n_out]))
    return loss


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_time_rnn_backward_through_time_is_autodiff_of_the_loop(transform):
    args = rnn_args()
    ours = transform(bj.time_rnn)(*args)
    theirs = rnn_loop(*args)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    hand = transform(jax.grad(weighted(bj.time_rnn, 2), argnums=range(5)))(*args)
    auto = jax.grad(weighted(rnn_loop, 2), argnums=range(5))(*args)
    for a, b in zip(hand, auto):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_time_lstm_backward_through_time_is_autodiff_of_the_loop(transform):
    args = lstm_args()
    for a, b in zip(transform(bj.time_lstm)(*args), lstm_loop(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    hand = transform(jax.grad(weighted(bj.time_lstm, 3), argnums=range(6)))(*args)
    auto = jax.grad(weighted(lstm_loop, 3), argnums=range(6))(*args)
    for a, b in zip(hand, auto):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # One step is the cell: the layer over T = 1 is lstm_cell.
    x1 = args[0][:, :1]
    _, h1, c1 = bj.time_lstm(x1, *args[1:])
    h, c = bj.lstm_cell(x1[:, 0], *args[1:])
    np.testing.assert_allclose(h1, h, rtol=1e-12)
    np.testing.assert_allclose(c1, c, rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_gradcheck_enters_the_scans_and_passes_the_rules(dtype):
    for f, args, n in ((bj.time_rnn, rnn_args(dtype), 2), (bj.time_lstm, lstm_args(dtype), 3)):
        report = bj.gradcheck(weighted(f, n), *args, numeric_elements=20)
        assert report.ok, str(report)
        assert report.rules.replaced and report.entries[0].autodiff_independent


def test_a_wrong_backward_through_time_is_caught():
    # The sequel's loop, but forgetting to carry dh back from the step after: a classic BPTT bug.
    @jax.custom_vjp
    def truncated(xs, h0, Wx, Wh, b):
        return bj.time_rnn(xs, h0, Wx, Wh, b)

    def fwd(*args):
        return bj.time_rnn.fwd(*args)

    def bwd(res, cts):
        xs, h0, Wx, Wh, b, hs = res
        dhs, _ = cts
        h_prev = jnp.concatenate([h0[None], hs[:-1]])
        dt = jnp.swapaxes(dhs, 0, 1) * (1 - hs ** 2)  # no dh from t + 1
        dWx = jnp.einsum("tnd,tnh->dh", jnp.swapaxes(xs, 0, 1), dt)
        dWh = jnp.einsum("tnk,tnh->kh", h_prev, dt)
        return (jnp.swapaxes(dt @ Wx.T, 0, 1), dt[0] @ Wh.T, dWx, dWh, dt.sum((0, 1)))

    truncated.defvjp(fwd, bwd)
    report = bj.gradcheck(weighted(truncated, 2), *rnn_args(), numeric=False)
    assert not report.ok, str(report)


def test_time_layers_refuse_mixed_dtypes_by_name():
    xs, h0, Wx, Wh, b = rnn_args()
    with pytest.raises(TypeError, match="time_rnn: every array must have one dtype, got xs float64, h0 float32"):
        bj.time_rnn(xs, h0.astype(jnp.float32), Wx, Wh, b)
    lstm = lstm_args()
    with pytest.raises(TypeError, match="time_lstm: every array must have one dtype, got h0 float64, c0 float32"):
        bj.time_lstm(lstm[0], lstm[1], lstm[2].astype(jnp.float32), *lstm[3:])
    with pytest.raises(TypeError, match="time_gru: every array must have one dtype"):
        bj.time_gru(xs.astype(jnp.float32), h0, 0.5 * normal(2, (D, 3 * H)), 0.5 * normal(3, (H, 3 * H)),
                    normal(4, (3 * H,)))


def test_time_layers_under_vmap_and_grad_of_grad():
    args = rnn_args()
    batched = [jnp.stack([a, a * 1.1]) for a in args]
    per_example = jax.vmap(jax.grad(weighted(bj.time_rnn, 2), argnums=2))(*batched)
    looped = [jax.grad(weighted(bj.time_rnn, 2), argnums=2)(*[a[k] for a in batched]) for k in range(2)]
    np.testing.assert_allclose(per_example, np.stack(looped), rtol=1e-12)
    assert bj.gradcheck(weighted(bj.time_rnn, 2), *args, order=2, numeric_elements=10).ok


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_matmul_backward_is_the_sequels(transform):
    x, W, dout = normal(0, (N, D)), normal(1, (D, H)), normal(2, (N, H))
    np.testing.assert_allclose(transform(bj.matmul)(x, W), np.asarray(x) @ np.asarray(W), rtol=1e-12)
    _, vjp = jax.vjp(transform(bj.matmul), x, W)
    dx, dW = vjp(dout)
    # MatMul.backward: dx = np.dot(dout, W.T); dW = np.dot(self.x.T, dout).
    np.testing.assert_allclose(dx, np.dot(np.asarray(dout), np.asarray(W).T), rtol=1e-12)
    np.testing.assert_allclose(dW, np.dot(np.asarray(x).T, np.asarray(dout)), rtol=1e-12)
    assert bj.gradcheck(bj.matmul, x, W, order=2).ok
    per_row = jax.vmap(jax.grad(lambda x, W: jnp.sum(bj.matmul(x[None], W) ** 2)), in_axes=(0, None))(x, W)
    np.testing.assert_allclose(per_row, 2 * (np.asarray(x) @ np.asarray(W)) @ np.asarray(W).T, rtol=1e-12)
    with pytest.raises(ValueError, match=r"matmul: x \(3, 4\) and W \(6, 6\) do not chain"):
        bj.matmul(x, normal(3, (H, H)))


def test_embedding_adds_dout_into_repeated_rows():
    W = normal(0, (V, D))
    idx = jnp.array([[1, 3, 1], [0, 1, 6]])
    out = bj.embedding(W, idx)
    np.testing.assert_array_equal(out, np.asarray(W)[np.asarray(idx)])
    dout = normal(1, (2, 3, D))
    dW = jax.grad(lambda W: jnp.sum(dout * bj.embedding(W, idx)))(W)
    # The sequel's np.add.at(dW, idx, dout), written out.
    expected = np.zeros((V, D))
    np.add.at(expected, np.asarray(idx).reshape(-1), np.asarray(dout).reshape(-1, D))
    np.testing.assert_allclose(dW, expected, rtol=1e-12)
    np.testing.assert_allclose(dW[1], dout[0, 0] + dout[0, 2] + dout[1, 1], rtol=1e-12)  # three times
    with pytest.raises(TypeError, match="idx must be integer word ids"):
        bj.embedding(W, jnp.ones(3))


def test_time_affine_and_time_softmax_with_loss_as_the_sequel():
    xs, W, b = normal(0, (N, T, D)), normal(1, (D, V)), normal(2, (V,))
    assert bj.gradcheck(bj.time_affine, xs, W, b).ok
    scores = normal(3, (N, T, V))
    ts = jnp.array([[0, 2, -1, 4, 1], [6, -1, -1, 3, 3], [5, 5, 0, -1, 2]])
    # The sequel's forward: ys = softmax; ls = log(ys[arange, ts]) * mask; loss = -sum(ls) / mask.sum().
    ys = np.exp(np.asarray(scores)) / np.exp(np.asarray(scores)).sum(axis=2, keepdims=True)
    flat_t, mask = np.asarray(ts).reshape(-1), np.asarray(ts).reshape(-1) != -1
    ls = np.log(ys.reshape(-1, V)[np.arange(N * T), np.where(mask, flat_t, 0)]) * mask
    np.testing.assert_allclose(bj.time_softmax_with_loss(scores, ts), -ls.sum() / mask.sum(), rtol=1e-12)
    dx = jax.grad(bj.time_softmax_with_loss)(scores, ts)
    assert np.all(np.asarray(dx).reshape(-1, V)[~mask] == 0)  # ignored positions get no gradient
    assert bj.gradcheck(lambda x: bj.time_softmax_with_loss(x, ts), scores).ok
    with pytest.raises(ValueError, match=r"ts must be integer labels of shape \(N, T\)"):
        bj.time_softmax_with_loss(scores, ts[:, :2])


def test_clip_grads_is_the_sequels():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}  # total norm 13
    transform = bj.optimizers.clip_grads(5.0)
    clipped, _ = transform.update(grads, transform.init(grads))
    rate = 5.0 / (13.0 + 1e-6)  # the sequel's rate, applied because it is below 1
    np.testing.assert_allclose(clipped["a"], np.array([3.0, 4.0]) * rate, rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], np.array([[12.0]]) * rate, rtol=1e-6)
    kept, _ = bj.optimizers.clip_grads(20.0).update(grads, optax.EmptyState())
    np.testing.assert_array_equal(kept["a"], grads["a"])


def test_clip_grads_sums_float64_gradients_in_float64():
    # The sequel's common/util.py clip_grads at 842ae31c, written out in NumPy (float64 throughout):
    # total_norm = sqrt(sum of np.sum(grad ** 2)); rate = max_norm / (total_norm + 1e-6); grad *= rate.
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((7, 5)) * 3, rng.standard_normal(11) / 7]
    total_norm = 0
    for grad in grads:
        total_norm += np.sum(grad ** 2)
    total_norm = np.sqrt(total_norm)
    rate = 1.0 / (total_norm + 1e-6)
    expected = [grad * rate for grad in grads]
    clipped, _ = bj.optimizers.clip_grads(1.0).update([jnp.asarray(g) for g in grads], optax.EmptyState())
    for a, b in zip(clipped, expected):
        assert a.dtype == jnp.float64
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=0)
    # float16 gradients are summed where their squares do not overflow, and stay float16.
    half, _ = bj.optimizers.clip_grads(1.0).update([jnp.full(4, 300.0, jnp.float16)], optax.EmptyState())
    assert half[0].dtype == jnp.float16 and np.allclose(np.asarray(half[0], np.float64), 0.5, rtol=1e-3)


def test_embedding_dot_and_sigmoid_with_loss_as_the_sequel():
    h, W, idx = normal(0, (4, D)), normal(1, (V, D)), jnp.array([2, 5, 2, 0])
    np.testing.assert_allclose(bj.embedding_dot(h, W, idx), np.sum(np.asarray(W)[np.asarray(idx)] * h, axis=1),
                               rtol=1e-12)
    assert bj.gradcheck(bj.embedding_dot, h, W, idx).ok
    x, t = normal(2, (6,)), jnp.array([1, 0, 0, 1, 1, 0])
    y = 1 / (1 + np.exp(-np.asarray(x)))
    # The sequel's cross_entropy_error(np.c_[1 - y, y], t): -sum(log(p[arange, t] + 1e-7)) / N.
    p = np.c_[1 - y, y]
    np.testing.assert_allclose(bj.sigmoid_with_loss(x, t), -np.sum(np.log(p[np.arange(6), t] + 1e-7)) / 6,
                               rtol=1e-12)
    np.testing.assert_allclose(jax.grad(bj.sigmoid_with_loss)(x, t), (y - np.asarray(t)) / 6, rtol=1e-12)


def test_time_dropout_is_inverted_as_the_sequels():
    xs, key = normal(0, (2, 3, 50)), jax.random.key(3)
    out = bj.time_dropout(xs, key, 0.4, True)
    kept = np.asarray(out) != 0
    np.testing.assert_allclose(np.asarray(out)[kept], np.asarray(xs)[kept] / 0.6, rtol=1e-12)
    np.testing.assert_array_equal(bj.time_dropout(xs, key, 0.4, False), xs)
    dx = jax.grad(lambda x: jnp.sum(bj.time_dropout(x, key, 0.4, True)))(xs)
    np.testing.assert_allclose(dx, kept / 0.6, rtol=1e-12)


def attention_loop(hs_enc, hs_dec):
    """The sequel's TimeAttention.forward: for each t, a = softmax(sum(hs * h)), c = sum(hs * a)."""
    outs = []
    for t in range(hs_dec.shape[1]):
        s = jnp.sum(hs_enc * hs_dec[:, t, None, :], axis=2)
        a = jnp.exp(s - s.max(axis=1, keepdims=True))
        a = a / a.sum(axis=1, keepdims=True)
        outs.append(jnp.sum(hs_enc * a[:, :, None], axis=1))
    return jnp.stack(outs, axis=1)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_attention_as_the_sequel(transform):
    hs_enc, hs_dec = normal(0, (N, T, H)), normal(1, (N, 4, H))
    np.testing.assert_allclose(transform(bj.time_attention)(hs_enc, hs_dec), attention_loop(hs_enc, hs_dec),
                               rtol=1e-12)
    w = normal(2, (N, 4, H))
    hand = transform(jax.grad(lambda e, d: jnp.sum(w * bj.time_attention(e, d)), argnums=(0, 1)))(hs_enc, hs_dec)
    auto = jax.grad(lambda e, d: jnp.sum(w * attention_loop(e, d)), argnums=(0, 1))(hs_enc, hs_dec)
    for a, b in zip(hand, auto):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    report = bj.gradcheck(bj.time_attention, hs_enc, hs_dec)
    assert report.ok and {r.name for r in report.rules.replaced} >= {"weight_sum", "attention_weight"}, str(report)
    a = bj.attention_weights(hs_enc, hs_dec)
    assert a.shape == (N, 4, T) and np.allclose(np.asarray(a).sum(axis=2), 1)


def gru_loop(xs, h0, Wx, Wh, b):
    """The sequel's TimeGRU.forward, its GRU.forward written out as common/time_layers.py has it at
    842ae31c (the bias b since commit e1fb440): gates z, r, h."""
    Hn, h, hs = h0.shape[1], h0, []
    Wxz, Wxr, Wxh = Wx[:, :Hn], Wx[:, Hn:2 * Hn], Wx[:, 2 * Hn:]
    Whz, Whr, Whh = Wh[:, :Hn], Wh[:, Hn:2 * Hn], Wh[:, 2 * Hn:]
    bz, br, bh = b[None, :Hn], b[None, Hn:2 * Hn], b[None, 2 * Hn:]  # (1, H): the book broadcasts (H,)
    for t in range(xs.shape[1]):
        x = xs[:, t, :]
        z = 1 / (1 + jnp.exp(-(x @ Wxz + h @ Whz + bz)))
        r = 1 / (1 + jnp.exp(-(x @ Wxr + h @ Whr + br)))
        h_hat = jnp.tanh(x @ Wxh + (r * h) @ Whh + bh)
        h = (1 - z) * h + z * h_hat
        hs.append(h)
    return jnp.stack(hs, axis=1), h


def gru_args(dtype=jnp.float64):
    return (normal(0, (N, T, D), dtype), normal(1, (N, H), dtype), 0.5 * normal(2, (D, 3 * H), dtype),
            0.5 * normal(3, (H, 3 * H), dtype), normal(4, (3 * H,), dtype))


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_time_gru_with_its_bias_is_autodiff_of_the_books_loop(transform):
    args = gru_args()
    for a, b in zip(transform(bj.time_gru)(*args), gru_loop(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    hand = transform(jax.grad(weighted(bj.time_gru, 2), argnums=range(5)))(*args)
    auto = jax.grad(weighted(gru_loop, 2), argnums=range(5))(*args)
    for a, b in zip(hand, auto):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(hand[4]))) > 1e-3  # the bias gets a gradient: db is really computed
    np.testing.assert_allclose(bj.time_gru(args[0][:, :1], *args[1:])[1], bj.gru_cell(args[0][:, 0], *args[1:]),
                               rtol=1e-12)


def test_time_gru_passes_gradcheck():
    report = bj.gradcheck(weighted(bj.time_gru, 2), *gru_args(), numeric_elements=20)
    assert report.ok and "time_gru" in {r.name for r in report.rules.replaced}, str(report)


def bilstm_loop(xs, Wx1, Wh1, b1, Wx2, Wh2, b2):
    """The sequel's TimeBiLSTM.forward (common/time_layers.py at 842ae31c): o1 = forward_lstm(xs),
    o2 = backward_lstm(xs[:, ::-1])[:, ::-1], concatenate((o1, o2), axis=2); states from zeros."""
    zeros = jnp.zeros((xs.shape[0], Wh1.shape[0]), xs.dtype)
    o1 = lstm_loop(xs, zeros, zeros, Wx1, Wh1, b1)[0]
    o2 = lstm_loop(xs[:, ::-1], zeros, zeros, Wx2, Wh2, b2)[0]
    o2 = o2[:, ::-1]
    return jnp.concatenate((o1, o2), axis=2)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_time_bilstm_as_the_sequel(transform):
    args = (normal(0, (N, T, D)), 0.5 * normal(2, (D, 4 * H)), 0.5 * normal(3, (H, 4 * H)), normal(4, (4 * H,)),
            0.5 * normal(5, (D, 4 * H)), 0.5 * normal(6, (H, 4 * H)), normal(7, (4 * H,)))
    hs = transform(bj.time_bilstm)(*args)
    assert hs.shape == (N, T, 2 * H)
    np.testing.assert_allclose(hs, bilstm_loop(*args), rtol=1e-12)
    w = normal(10, (N, T, 2 * H))
    hand = transform(jax.grad(lambda *a: jnp.sum(w * bj.time_bilstm(*a)), argnums=range(7)))(*args)
    auto = jax.grad(lambda *a: jnp.sum(w * bilstm_loop(*a)), argnums=range(7))(*args)
    for a, b in zip(hand, auto):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    report = bj.gradcheck(lambda *a: jnp.sum(w * bj.time_bilstm(*a)), *args, numeric_elements=20)
    assert report.ok and "time_bilstm" in {r.name for r in report.rules.replaced}, str(report)


def test_time_sigmoid_with_loss_as_the_sequel():
    xs = normal(0, (N, T))
    ts = (normal(1, (N, T)) > 0).astype(jnp.int32)
    # The sequel's TimeSigmoidWithLoss at 842ae31c: loss += SigmoidWithLoss.forward(xs[:, t], ts[:, t]),
    # loss / T; backward: dout *= 1 / T, dxs[:, t] = (y - t) * dout / batch_size.
    x, t = np.asarray(xs), np.asarray(ts)
    loss, dxs = 0, np.empty(x.shape)
    for step in range(T):
        y = 1 / (1 + np.exp(-x[:, step]))
        p = np.c_[1 - y, y]
        loss += -np.sum(np.log(p[np.arange(N), t[:, step]] + 1e-7)) / N
        dxs[:, step] = (y - t[:, step]) * (1 * (1 / T)) / N
    loss /= T
    ours, grad = jax.value_and_grad(bj.time_sigmoid_with_loss)(xs, ts)
    np.testing.assert_allclose(ours, loss, rtol=1e-13)
    np.testing.assert_allclose(grad, dxs, rtol=1e-12)
    # The rule leaves out the 1e-7 inside the log, as the sequel's: 1e-7 / y relative to autodiff.
    assert bj.gradcheck(bj.time_sigmoid_with_loss, xs, ts, rtol=1e-5).ok
    with pytest.raises(ValueError, match=r"time_sigmoid_with_loss: xs and ts must both have shape \(N, T\)"):
        bj.time_sigmoid_with_loss(xs, ts[:, :2])
