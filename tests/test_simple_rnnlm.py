"""The sequel's SimpleRnnlm (ch05/simple_rnnlm.py at 842ae31c): its forward and backward written out
in NumPy in the book's order (TimeEmbedding, TimeRNN, TimeAffine, TimeSoftmaxWithLoss of
common/time_layers.py), over two updates whose hidden state carries (stateful=True)."""

import jax
import jax.numpy as jnp
import numpy as np

import backprop_jax as bj
from backprop_jax.nets import rnnlm, simple_rnnlm

V, D, H, N, T = 9, 4, 5, 2, 3


def book_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=1, keepdims=True)


def book_simple_rnnlm(p, xs_ids, ts, h):
    """SimpleRnnlm.forward and .backward(1): (loss, grads, h_last)."""
    embed_W, Wx, Wh, b, affine_W, affine_b = (p[k] for k in simple_rnnlm.BOOK_ORDER)
    xs = embed_W[xs_ids]  # TimeEmbedding.forward
    hs, h_prevs = np.empty((N, T, H)), []
    for t in range(T):  # TimeRNN.forward, RNN.forward each step
        h_prevs.append(h)
        h = np.tanh(np.dot(h, Wh) + np.dot(xs[:, t, :], Wx) + b)
        hs[:, t, :] = h
    rx = hs.reshape(N * T, -1)  # TimeAffine.forward
    scores = (np.dot(rx, affine_W) + affine_b).reshape(N, T, -1)
    rs, rt = scores.reshape(N * T, V), ts.reshape(N * T)  # TimeSoftmaxWithLoss.forward
    mask = rt != -1
    ys = book_softmax(rs)
    ls = np.log(ys[np.arange(N * T), rt])
    ls *= mask
    loss = -np.sum(ls) / mask.sum()
    dx = ys.copy()  # TimeSoftmaxWithLoss.backward
    dx[np.arange(N * T), rt] -= 1
    dx /= mask.sum()
    dx *= mask[:, np.newaxis]
    dout = dx  # TimeAffine.backward
    db_affine = np.sum(dout, axis=0)
    dW_affine = np.dot(rx.T, dout)
    dhs = np.dot(dout, affine_W.T).reshape(N, T, H)
    dxs, dh = np.empty((N, T, D)), 0  # TimeRNN.backward
    dWx, dWh, db = 0, 0, 0
    for t in reversed(range(T)):
        dh_next = dhs[:, t, :] + dh
        dt = dh_next * (1 - hs[:, t, :] ** 2)  # RNN.backward
        db += np.sum(dt, axis=0)
        dWh += np.dot(h_prevs[t].T, dt)
        dh = np.dot(dt, Wh.T)
        dWx += np.dot(xs[:, t, :].T, dt)
        dxs[:, t, :] = np.dot(dt, Wx.T)
    dembed = np.zeros_like(embed_W)  # TimeEmbedding.backward: Embedding.backward each step
    for t in range(T):
        np.add.at(dembed, xs_ids[:, t], dxs[:, t, :])
    grads = dict(zip(simple_rnnlm.BOOK_ORDER, (dembed, dWx, dWh, db, dW_affine, db_affine)))
    return loss, grads, h


def test_simple_rnnlm_is_the_sequels_over_two_stateful_updates():
    model = simple_rnnlm.model(V, N, D, H, dtype=jnp.float64)
    params, state = model.init(jax.random.key(0))
    assert {k: v.shape for k, v in params.items()} == {
        "W_embed": (V, D), "rnn_Wx": (D, H), "rnn_Wh": (H, H), "rnn_b": (H,), "W_affine": (H, V), "b_affine": (V,)}
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.standard_normal(v.shape) * 0.5) for k, v in params.items()}
    p = {k: np.asarray(v) for k, v in params.items()}
    corpus = rng.integers(0, V, N * T * 2 + 1)
    x, t = rnnlm.training_data(corpus, N, T)  # two blocks of N windows
    h = np.zeros((N, H))
    for block in range(2):
        xb, tb = x[block * N:(block + 1) * N], t[block * N:(block + 1) * N]
        loss, grads, h = book_simple_rnnlm(p, xb, tb, h)
        (ours, state_next), g = jax.value_and_grad(lambda q: model.loss(q, state, xb, tb), has_aux=True)(params)
        np.testing.assert_allclose(ours, loss, rtol=1e-13)
        for k in grads:
            np.testing.assert_allclose(g[k], grads[k], rtol=1e-11, atol=1e-14, err_msg=k)
        np.testing.assert_allclose(state_next["h0"], h, rtol=1e-13)  # the next update starts here
        state = state_next
    report = bj.gradcheck(model.loss_fn(), params, x[:N], t[:N])
    assert report.ok and "time_rnn" in {r.name for r in report.rules.replaced}, str(report)


def test_simple_rnnlm_learns_a_repeating_text():
    corpus = np.tile(np.arange(V), 40)
    x, t = rnnlm.training_data(corpus, 4, 5)
    model = simple_rnnlm.model(V, 4, 8, 8)
    _, history = bj.train(model, ((x, t), (x[:8], t[:8])),
                          bj.TrainConfig(iters_num=200, batch_size=4, learning_rate=0.1))
    assert history[-1].test_perplexity < 0.5 * history[0].test_perplexity
