"""The sequel's word2vec (ch. 3-4): each net's loss and gradients against its forward and backward
in the sequel's code at 842ae31c (ch03/simple_cbow.py, ch03/simple_skip_gram.py, ch04/cbow.py,
ch04/skip_gram.py, ch04/negative_sampling_layer.py, common/util.py) written out here in NumPy in
the book's order, and gradcheck of each."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax.nets import word2vec

CORPUS = np.array([0, 1, 2, 3, 4, 1, 5, 6, 2, 0, 3, 1, 6, 4, 5, 2])  # 7 words, some repeated
V, H = 7, 5


def book_create_contexts_target(corpus, window_size=1):
    target = corpus[window_size:-window_size]
    contexts = []
    for idx in range(window_size, len(corpus) - window_size):
        cs = []
        for t in range(-window_size, window_size + 1):
            if t == 0:
                continue
            cs.append(corpus[idx + t])
        contexts.append(cs)
    return np.array(contexts), np.array(target)


def book_softmax_with_loss(x, t):
    """The sequel's SoftmaxWithLoss.forward / backward (common/layers.py) for one-hot t."""
    x = x - x.max(axis=1, keepdims=True)
    y = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    t = t.argmax(axis=1)
    batch_size = y.shape[0]
    loss = -np.sum(np.log(y[np.arange(batch_size), t] + 1e-7)) / batch_size
    dx = y.copy()
    dx[np.arange(batch_size), t] -= 1
    return loss, dx / batch_size


def book_sigmoid_with_loss(x, t):
    y = 1 / (1 + np.exp(-x))
    picked = np.where(t == 1, y, 1 - y)
    return -np.sum(np.log(picked + 1e-7)) / len(x), (y - t) / len(x)  # (loss, dx for dout = 1)


def params_of(model, seed=0):
    params, _ = model.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.standard_normal(v.shape) * 0.5, jnp.float64) for k, v in params.items()}


@pytest.mark.parametrize("window_size", [1, 2])
def test_contexts_target_and_one_hot_as_the_sequel(window_size):
    contexts, target = word2vec.create_contexts_target(CORPUS, window_size)
    book = book_create_contexts_target(CORPUS, window_size)
    np.testing.assert_array_equal(contexts, book[0])
    np.testing.assert_array_equal(target, book[1])
    one_hot = word2vec.convert_one_hot(contexts, V)
    assert one_hot.shape == (*contexts.shape, V)
    for idx_0, word_ids in enumerate(contexts):  # the sequel's loop for 2-D ids
        for idx_1, word_id in enumerate(word_ids):
            assert one_hot[idx_0, idx_1, word_id] == 1 and one_hot[idx_0, idx_1].sum() == 1
    with pytest.raises(ValueError, match="no word with 9 words on each side"):
        word2vec.create_contexts_target(CORPUS, 9)


def test_simple_cbow_is_the_sequels_forward_and_backward():
    model = word2vec.simple_cbow(V, H)
    contexts, target = word2vec.simple_data(CORPUS, V)
    contexts, target = contexts.astype(np.float64), target.astype(np.float64)
    params = params_of(model)
    W_in, W_out = np.asarray(params["W_in"]), np.asarray(params["W_out"])
    # SimpleCBOW.forward: h0, h1 = in_layer0/1.forward(contexts[:, 0/1]); h = (h0 + h1) * 0.5.
    h0 = contexts[:, 0] @ W_in
    h1 = contexts[:, 1] @ W_in
    h = (h0 + h1) * 0.5
    score = h @ W_out
    loss, ds = book_softmax_with_loss(score, target)
    # SimpleCBOW.backward: ds, da = out_layer.backward(ds), da *= 0.5, in_layer1/0.backward(da).
    dW_out = h.T @ ds
    da = ds @ W_out.T
    da *= 0.5
    dW_in = contexts[:, 1].T @ da + contexts[:, 0].T @ da
    ours, grads = jax.value_and_grad(model.loss_fn())(params, contexts, target)
    # softmax_with_loss takes no 1e-7 inside its log (the layers guide): the loss differs by about
    # 1e-7 / y; the gradients are the book's exactly.
    np.testing.assert_allclose(ours, loss, atol=2e-6)
    np.testing.assert_allclose(grads["W_out"], dW_out, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["W_in"], dW_in, rtol=1e-12, atol=1e-15)
    assert bj.gradcheck(model.loss_fn(), params, contexts, target, argnums=0).ok  # the one-hot data are constants


def test_simple_skip_gram_is_the_sequels_forward_and_backward():
    model = word2vec.simple_skip_gram(V, H)
    contexts, target = word2vec.simple_data(CORPUS, V)
    contexts, target = contexts.astype(np.float64), target.astype(np.float64)
    params = params_of(model, 1)
    W_in, W_out = np.asarray(params["W_in"]), np.asarray(params["W_out"])
    # SimpleSkipGram.forward: h = in_layer(target), s = out_layer(h), loss = l1 + l2.
    h = target @ W_in
    s = h @ W_out
    l1, dl1 = book_softmax_with_loss(s, contexts[:, 0])
    l2, dl2 = book_softmax_with_loss(s, contexts[:, 1])
    loss = l1 + l2
    ds = dl1 + dl2
    dW_out = h.T @ ds
    dh = ds @ W_out.T
    dW_in = target.T @ dh
    ours, grads = jax.value_and_grad(model.loss_fn())(params, target, contexts)
    np.testing.assert_allclose(ours, loss, atol=4e-6)
    np.testing.assert_allclose(grads["W_out"], dW_out, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["W_in"], dW_in, rtol=1e-12, atol=1e-15)
    # The contexts as ids give the same loss.
    ids, _ = word2vec.create_contexts_target(CORPUS)
    np.testing.assert_allclose(model.loss_fn()(params, target, ids), ours, rtol=1e-14)
    assert bj.gradcheck(model.loss_fn(), params, target, contexts, argnums=0).ok


def book_negative_sampling_loss(h, W, target, negative_sample):
    """NegativeSamplingLoss.forward and .backward(1) at the given negatives: (loss, dh, dW)."""
    dW = np.zeros_like(W)
    batch_size = target.shape[0]
    layers = [(target, np.ones(batch_size, dtype=np.int32))]
    layers += [(negative_sample[:, i], np.zeros(batch_size, dtype=np.int32)) for i in range(negative_sample.shape[1])]
    loss, dh = 0, 0
    for idx, label in layers:
        target_W = W[idx]  # EmbeddingDot.forward
        score = np.sum(target_W * h, axis=1)
        l, dscore = book_sigmoid_with_loss(score, label)
        loss += l
        dout = dscore.reshape(dscore.shape[0], 1)  # EmbeddingDot.backward
        np.add.at(dW, idx, dout * h)
        dh += dout * target_W
    return loss, dh, dW


def test_cbow_is_the_sequels_forward_and_backward_at_its_negatives():
    window = 2
    model = word2vec.cbow(V, H, window, CORPUS, sample_size=3)
    x, t = word2vec.negative_sampling_data(CORPUS, window, 3)
    params = params_of(model, 2)
    key = jax.random.key(7)
    contexts, target = x[:, :4], x[:, 4]
    negatives = np.asarray(bj.UnigramSampler.of(CORPUS, 0.75, 3).sample(key, target))
    W_in, W_out = np.asarray(params["W_in"]), np.asarray(params["W_out"])
    # CBOW.forward: h += in_layers[i].forward(contexts[:, i]); h *= 1 / len(in_layers).
    h = 0
    for i in range(4):
        h += W_in[contexts[:, i]]
    h *= 1 / 4
    loss, dh, dW_out = book_negative_sampling_loss(h, W_out, target, negatives)
    # CBOW.backward: dout = ns_loss.backward(1); dout *= 1 / len(in_layers); each Embedding.backward.
    dout = dh * (1 / 4)
    dW_in = np.zeros_like(W_in)
    for i in range(4):
        np.add.at(dW_in, contexts[:, i], dout)
    ours, grads = jax.value_and_grad(model.loss_fn(key=key))(params, x, t)
    np.testing.assert_allclose(ours, loss, rtol=1e-13)
    np.testing.assert_allclose(grads["W_out"], dW_out, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["W_in"], dW_in, rtol=1e-12, atol=1e-15)
    # The model's loss is the library's negative_sampling_loss of the same pieces.
    np.testing.assert_allclose(bj.negative_sampling_loss(jnp.asarray(h), params["W_out"], target, negatives), ours,
                               rtol=1e-13)
    # rtol 1e-5: sigmoid_with_loss's rule is the sequel's (y - t) / N, which leaves out the 1e-7
    # inside the forward's log (1e-7 / y relative, as in test_seq2seq's negative sampling check).
    report = bj.gradcheck(model.loss_fn(key=key), params, x, t, rtol=1e-5)
    assert report.ok and {"embedding", "embedding_dot", "sigmoid_with_loss"} <= {
        r.name for r in report.rules.replaced}, str(report)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.loss(params, {}, x, t)


def test_skip_gram_is_the_sequels_forward_and_backward_at_its_negatives():
    model = word2vec.skip_gram(V, H, 1, CORPUS, sample_size=2)
    x, t = word2vec.negative_sampling_data(CORPUS, 1, 2, skip_gram=True)
    assert x.shape == (14, 3) and t.shape == (14, 2, 3)
    params = params_of(model, 3)
    key = jax.random.key(8)
    target, contexts = x[:, 0], x[:, 1:]
    negatives = np.asarray(bj.UnigramSampler.of(CORPUS, 0.75, 2).sample(key, contexts.reshape(-1))).reshape(14, 2, 2)
    W_in, W_out = np.asarray(params["W_in"]), np.asarray(params["W_out"])
    # SkipGram.forward: h = in_layer.forward(target); loss += loss_layers[i].forward(h, contexts[:, i]).
    h = W_in[target]
    loss, dh, dW_out = 0, 0, 0
    for i in range(2):
        l, d, dW = book_negative_sampling_loss(h, W_out, contexts[:, i], negatives[:, i])
        loss += l
        dh += d  # SkipGram.backward: dh += layer.backward(dout)
        dW_out = dW_out + dW
    dW_in = np.zeros_like(W_in)
    np.add.at(dW_in, target, dh)  # in_layer.backward(dh)
    ours, grads = jax.value_and_grad(model.loss_fn(key=key))(params, x, t)
    np.testing.assert_allclose(ours, loss, rtol=1e-13)
    np.testing.assert_allclose(grads["W_out"], dW_out, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grads["W_in"], dW_in, rtol=1e-12, atol=1e-15)
    assert bj.gradcheck(model.loss_fn(key=key), params, x, t, rtol=1e-5).ok


def test_cbow_learns_the_words_around_it():
    # A text whose contexts decide the middle word: CBOW trained by the library's trainer.
    corpus = np.tile([0, 1, 2, 3, 4, 5, 6], 30)
    model = word2vec.cbow(V, 8, 1, corpus, sample_size=2)
    x, t = word2vec.negative_sampling_data(corpus, 1, 2)
    _, history = bj.train(model, ((x, t), (x[:20], t[:20])),
                          bj.TrainConfig(iters_num=300, batch_size=20, optimizer="adam", learning_rate=0.05))
    assert history[-1].train_loss < 0.3 * history[0].train_loss
