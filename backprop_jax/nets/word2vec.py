"""The sequel's word2vec (*Deep Learning from Scratch 2*, ch. 3-4) as ``Model``s: ``SimpleCBOW`` and
``SimpleSkipGram`` (sec. 3.4, 3.5: one-hot words, ``matmul`` and ``softmax_with_loss``), ``CBOW``
and ``SkipGram`` (sec. 4.3: ``embedding`` and negative sampling), and the data each trains on.

Every gradient comes from the layers' hand rules; the sequel's ``backward`` of each net is the
chain of those rules (``dout * 1 / C`` to each context's input layer, ``dh`` summed over the loss
layers). The word vectors are ``params["W_in"]`` (V, H), the sequel's ``model.word_vecs``: query
them with ``similarity.most_similar`` and ``similarity.analogy``.

Parameters: ``W_in`` (V, H) and ``W_out``, (H, V) in the simple nets and (V, H) (a row per
word, as ``embedding`` reads it) in the negative-sampling nets; both ``0.01 * N(0, 1)`` as the
sequel's.
"""

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.layers import UnigramSampler, embedding, matmul, softmax_with_loss
from backprop_jax.layers import embedding_dot, sigmoid_with_loss
from backprop_jax.nets._model import Model


def create_contexts_target(corpus, window_size=1):
    """The sequel's ``create_contexts_target`` (sec. 3.3.1): for every word with ``window_size``
    words on each side, those words (left to right, itself left out) and the word.

    Args: corpus int word ids (words,). Returns ``(contexts, target)``: int32
    (words - 2 * window_size, 2 * window_size) and (words - 2 * window_size,).
    """
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer):
        raise ValueError(f"create_contexts_target: corpus must be a 1-D array of word ids, got shape {corpus.shape} "
                         f"and dtype {corpus.dtype}")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1:
        raise ValueError(f"create_contexts_target: window_size must be an integer >= 1, got {window_size!r}")
    n = len(corpus) - 2 * window_size
    if n < 1:
        raise ValueError(f"create_contexts_target: a corpus of {len(corpus)} words has no word with "
                         f"{window_size} words on each side")
    offsets = [t for t in range(-window_size, window_size + 1) if t != 0]
    contexts = np.stack([corpus[window_size + t:window_size + t + n] for t in offsets], axis=1)
    return contexts.astype(np.int32), corpus[window_size:window_size + n].astype(np.int32)


def convert_one_hot(corpus, vocab_size, dtype=np.float32):
    """The sequel's ``convert_one_hot`` (sec. 3.3.2): ids of shape (N,) or (N, C) as one-hot rows
    (N, V) or (N, C, V). The sequel's are int32; ``dtype`` float32 by default, as ``matmul`` takes
    floats (the values are the same)."""
    corpus = np.asarray(corpus)
    if corpus.ndim not in (1, 2) or not np.issubdtype(corpus.dtype, np.integer):
        raise ValueError(f"convert_one_hot: corpus must be word ids of shape (N,) or (N, C), got shape "
                         f"{corpus.shape} and dtype {corpus.dtype}")
    if corpus.size and (corpus.min() < 0 or corpus.max() >= vocab_size):
        raise ValueError(f"convert_one_hot: word ids must be from 0 to vocab_size - 1 = {vocab_size - 1}, got "
                         f"{corpus.min()} to {corpus.max()}")
    return (corpus[..., None] == np.arange(vocab_size)).astype(dtype)


def _init(key, vocab_size, hidden_size, out_shape, dtype):
    k_in, k_out = jax.random.split(key)
    return {"W_in": (0.01 * jax.random.normal(k_in, (vocab_size, hidden_size))).astype(dtype),
            "W_out": (0.01 * jax.random.normal(k_out, out_shape)).astype(dtype)}


def _check_ndim(name, x, ndim, layout):
    if jnp.ndim(x) != ndim:
        raise ValueError(f"{name}: x must be {layout}, got shape {jnp.shape(x)}")


# --- chapter 3: one-hot words, MatMul and Softmax-with-Loss ----------------------------------

def simple_cbow(vocab_size, hidden_size, *, dtype=jnp.float32):
    """The sequel's ``SimpleCBOW`` (sec. 3.4) as a ``Model``: x the contexts, one-hot (N, C, V)
    (the sequel's C = 2); ``h = (h0 + h1 + ...) * (1 / C)`` with ``h_c = matmul(x[:, c], W_in)``;
    scores ``matmul(h, W_out)`` (N, V) under ``softmax_with_loss`` against the target (one-hot
    (N, V) or ids (N,)). Train on ``simple_data``'s ``(contexts, target)``; the trainer records
    accuracy (the target predicted from its contexts)."""
    V, H = vocab_size, hidden_size

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        _check_ndim("simple_cbow", x, 3, f"one-hot contexts (N, C, {V})")
        C = x.shape[1]
        h = matmul(x[:, 0], params["W_in"])
        for c in range(1, C):
            h = h + matmul(x[:, c], params["W_in"])
        h = h * (1 / C)  # the sequel's (h0 + h1) * 0.5 for C = 2
        return matmul(h, params["W_out"]), state

    return Model(init=lambda key: (_init(key, V, H, (H, V), dtype), {}), apply=apply,
                 weight_mask=lambda params: {k: True for k in params})


def _contexts_loss(scores, t):
    """The sequel's ``SimpleSkipGram`` loss: ``softmax_with_loss(scores, t[:, c])`` summed over the contexts."""
    if jnp.ndim(t) not in (2, 3) or jnp.shape(t)[0] != jnp.shape(scores)[0]:
        raise ValueError(f"simple_skip_gram: t must be the contexts, ids (N, C) or one-hot (N, C, V), for scores "
                         f"{jnp.shape(scores)}, got shape {jnp.shape(t)}")
    loss = softmax_with_loss(scores, t[:, 0])
    for c in range(1, jnp.shape(t)[1]):
        loss = loss + softmax_with_loss(scores, t[:, c])
    return loss


def simple_skip_gram(vocab_size, hidden_size, *, dtype=jnp.float32):
    """The sequel's ``SimpleSkipGram`` (sec. 3.5.2) as a ``Model``: x the target, one-hot (N, V);
    scores ``matmul(matmul(x, W_in), W_out)`` (N, V); the loss the sum over the contexts
    ``t`` (one-hot (N, C, V) or ids (N, C)) of ``softmax_with_loss(scores, t[:, c])``, the
    sequel's ``l1 + l2``. Train on ``simple_data``'s pair swapped: ``(target, contexts)``."""
    V, H = vocab_size, hidden_size

    def apply(params, state, x, *, key=None, train=False):
        del key, train
        _check_ndim("simple_skip_gram", x, 2, f"the one-hot target (N, {V})")
        return matmul(matmul(x, params["W_in"]), params["W_out"]), state

    return Model(init=lambda key: (_init(key, V, H, (H, V), dtype), {}), apply=apply, criterion=_contexts_loss,
                 metric="loss", weight_mask=lambda params: {k: True for k in params})


def simple_data(corpus, vocab_size, window_size=1):
    """``(contexts, target)`` one-hot, float32 (N, 2 * window_size, V) and (N, V), as the sequel's
    ``ch03/train.py`` makes them (``create_contexts_target``, then ``convert_one_hot``)."""
    contexts, target = create_contexts_target(corpus, window_size)
    return convert_one_hot(contexts, vocab_size), convert_one_hot(target, vocab_size)


# --- chapter 4: Embedding and negative sampling ----------------------------------------------

def _negatives(sampler, key, words, train):
    """Negatives for ``words`` (any shape): drawn with ``key`` in training, with key 0 in evaluation
    (one fixed sample, so that test losses compare from epoch to epoch)."""
    if key is None:
        if train:
            raise ValueError("word2vec: training draws negative samples and needs a PRNG key (pass key=...)")
        key = jax.random.key(0)
    flat = sampler.sample(key, words.reshape(-1))
    return flat.reshape(*words.shape, sampler.sample_size)


def _scores(h, W_out, target, negatives):
    """``embedding_dot`` of ``h`` at the target (column 0) and at each negative: (N, 1 + S)."""
    columns = [embedding_dot(h, W_out, target)]
    columns += [embedding_dot(h, W_out, negatives[:, i]) for i in range(negatives.shape[1])]
    return jnp.stack(columns, axis=1)


def negative_sampling_criterion(scores, t):
    """The sequel's ``NegativeSamplingLoss`` on the scores of ``cbow``/``skip_gram``:
    ``sigmoid_with_loss(scores[..., k], t[..., k])`` summed over every column ``k`` (the target,
    labelled 1, then the negatives, labelled 0) and, for ``skip_gram``, over the contexts.

    Args: scores float (N, 1 + S) or (N, C, 1 + S); t labels of the same shape
    (``negative_sampling_data``). Returns a scalar.
    """
    if jnp.shape(t) != jnp.shape(scores):
        raise ValueError(f"word2vec: t must be the labels of the scores, shape {jnp.shape(scores)} (1 then 0 for "
                         f"each negative), got shape {jnp.shape(t)}")
    scores = scores.reshape(scores.shape[0], -1, scores.shape[-1])
    t = jnp.reshape(t, scores.shape)
    loss = 0
    for c in range(scores.shape[1]):
        for k in range(scores.shape[2]):
            loss = loss + sigmoid_with_loss(scores[:, c, k], t[:, c, k])
    return loss


def cbow(vocab_size, hidden_size, window_size, corpus, *, sample_size=5, power=0.75, dtype=jnp.float32):
    """The sequel's ``CBOW`` (sec. 4.3.1) as a ``Model`` over rows of ``negative_sampling_data``:
    x (N, 2 * window_size + 1) ids, the contexts then the target. ``h`` is the mean of the
    contexts' ``embedding`` rows of ``W_in`` (``h *= 1 / len(in_layers)``); the scores (N, 1 + S)
    are ``embedding_dot(h, W_out, .)`` at the target and at ``sample_size`` negatives drawn
    from ``corpus`` (``UnigramSampler``, ``count ** power``) with the trainer's key, and
    ``negative_sampling_criterion`` is the loss. The trainer records the loss."""
    sampler = UnigramSampler.of(corpus, power, sample_size)
    V, H, C = vocab_size, hidden_size, 2 * window_size

    def apply(params, state, x, *, key=None, train=False):
        _check_ndim("cbow", x, 2, f"(N, {C + 1}): the {C} context ids, then the target's")
        if x.shape[1] != C + 1:
            raise ValueError(f"cbow: x must be (N, {C + 1}): the {C} context ids, then the target's, got {x.shape}")
        contexts, target = x[:, :C], x[:, C]
        h = embedding(params["W_in"], contexts[:, 0])
        for c in range(1, C):
            h = h + embedding(params["W_in"], contexts[:, c])
        h = h * (1 / C)
        return _scores(h, params["W_out"], target, _negatives(sampler, key, target, train)), state

    return Model(init=lambda key: (_init(key, V, H, (V, H), dtype), {}), apply=apply,
                 criterion=negative_sampling_criterion, metric="loss",
                 weight_mask=lambda params: {k: True for k in params})


def skip_gram(vocab_size, hidden_size, window_size, corpus, *, sample_size=5, power=0.75, dtype=jnp.float32):
    """The sequel's ``SkipGram`` (sec. 4.3, ``ch04/skip_gram.py``) as a ``Model`` over rows of
    ``negative_sampling_data(..., skip_gram=True)``: x (N, 1 + 2 * window_size) ids, the target
    then the contexts. ``h = embedding(W_in, target)``; for each context ``c`` its own loss layer:
    the scores (N, C, 1 + S) are ``embedding_dot(h, W_out, .)`` at the context word and at
    ``sample_size`` negatives drawn for it; ``negative_sampling_criterion`` sums the losses of
    every context (``dh`` summed over the loss layers by the rules)."""
    sampler = UnigramSampler.of(corpus, power, sample_size)
    V, H, C = vocab_size, hidden_size, 2 * window_size

    def apply(params, state, x, *, key=None, train=False):
        _check_ndim("skip_gram", x, 2, f"(N, {C + 1}): the target's id, then the {C} contexts'")
        if x.shape[1] != C + 1:
            raise ValueError(f"skip_gram: x must be (N, {C + 1}): the target's id, then the {C} contexts', "
                             f"got {x.shape}")
        target, contexts = x[:, 0], x[:, 1:]
        h = embedding(params["W_in"], target)
        negatives = _negatives(sampler, key, contexts, train)  # (N, C, S)
        scores = [_scores(h, params["W_out"], contexts[:, c], negatives[:, c]) for c in range(C)]
        return jnp.stack(scores, axis=1), state

    return Model(init=lambda key: (_init(key, V, H, (V, H), dtype), {}), apply=apply,
                 criterion=negative_sampling_criterion, metric="loss",
                 weight_mask=lambda params: {k: True for k in params})


def negative_sampling_data(corpus, window_size=1, sample_size=5, *, skip_gram=False):
    """``(x, t)`` for ``cbow`` (or ``skip_gram``): x int32 (N, 2 * window_size + 1), the contexts
    then the target (the target then the contexts); t int32 labels (N, 1 + sample_size) (or
    (N, 2 * window_size, 1 + sample_size)): 1 for the target (the sequel's ``correct_label``),
    0 for each negative (``negative_label``)."""
    contexts, target = create_contexts_target(corpus, window_size)
    if skip_gram:
        x = np.concatenate([target[:, None], contexts], axis=1)
        shape = (len(target), 2 * window_size, 1 + sample_size)
    else:
        x = np.concatenate([contexts, target[:, None]], axis=1)
        shape = (len(target), 1 + sample_size)
    t = np.zeros(shape, np.int32)
    t[..., 0] = 1
    return x, t
