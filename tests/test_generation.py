"""The sequel's text generation (ch07/rnnlm_gen.py at 842ae31c): RnnlmGen.generate and
BetterRnnlmGen.generate written out as the book's loop, the model's predict as plain jnp (the LSTM
as a Python loop), drawing with the same keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backprop_jax.nets import generation, rnnlm
from conftest import lstm_loop

V = 8


def book_predict(p, x, states):
    """Rnnlm.predict / BetterRnnlm.predict (train_flg=False) for x (1, 1), the LSTMs stateful."""
    xs = p["W_embed"][x]
    new = []
    for layer, (h, c) in enumerate(states):
        xs, h, c = lstm_loop(xs, h, c, p[f"lstm{layer}_Wx"], p[f"lstm{layer}_Wh"], p[f"lstm{layer}_b"])
        new.append((h, c))
    W = p["W_affine"] if "W_affine" in p else p["W_embed"].T
    return xs @ W + p["b_affine"][None, None, :], new


def book_generate(p, start_id, skip_ids, sample_size, key, states):
    word_ids = [start_id]
    x = start_id
    k = 0
    while len(word_ids) < sample_size:
        x = np.array(x).reshape(1, 1)
        score, states = book_predict(p, x, states)
        score = np.asarray(score).flatten()
        p_ = np.exp(score - score.max()) / np.sum(np.exp(score - score.max()))  # softmax(score.flatten())
        # np.random.choice(len(p), size=1, p=p), drawn with the k-th key
        sampled = int(jax.random.categorical(jax.random.fold_in(key, k), jnp.log(jnp.asarray(p_))))
        k += 1
        if (skip_ids is None) or (sampled not in skip_ids):
            x = sampled
            word_ids.append(int(x))
    return word_ids, k


@pytest.mark.parametrize("layers, tie", [(1, False), (2, True)])
def test_generate_is_the_sequels_loop(layers, tie):
    params = rnnlm.init(jax.random.key(layers), V, 6, 6, lstm_layers=layers, tie_weights=tie, dtype=jnp.float64)
    params = {k: v * 40 if k.startswith("W") else v for k, v in params.items()}  # sharper, varied distributions
    key = jax.random.key(5)
    skip_ids = [0, 5]
    zeros = [(jnp.zeros((1, 6)), jnp.zeros((1, 6)))] * layers
    ours = generation.generate(params, 3, key=key, sample_size=25, skip_ids=skip_ids)
    book, draws = book_generate(params, 3, skip_ids, 25, key, zeros)
    assert ours.tolist() == book
    assert draws > 24  # some draws were skipped: the state moved on while the same word was fed again
    assert ours[0] == 3 and not set(ours[1:].tolist()) & set(skip_ids)
    assert len(set(ours.tolist())) > 2  # it samples, it does not repeat one word
    # The book's prefix ("the meaning of life is"): predict each word but the last, then generate from it.
    prefix = [1, 4, 6]
    states = zeros
    for x in prefix:
        _, states = book_predict(params, np.array(x).reshape(1, 1), states)
    state = generation.state_after(params, prefix)
    for layer, (h, c) in enumerate(states):
        np.testing.assert_allclose(state[f"h{layer}"], h, rtol=1e-12)
        np.testing.assert_allclose(state[f"c{layer}"], c, rtol=1e-12)
    ours = generation.generate(params, 0, key=key, sample_size=10, skip_ids=skip_ids, state=state)
    assert ours.tolist() == book_generate(params, 0, skip_ids, 10, key, states)[0]


def test_generate_refuses_what_it_cannot_do():
    params = rnnlm.init(jax.random.key(0), V, 4, 4)
    with pytest.raises(ValueError, match="generate: skip_ids must be word ids from 0 to 7, got \\[9\\]"):
        generation.generate(params, 0, key=jax.random.key(0), skip_ids=[9])
    with pytest.raises(ValueError, match="skip_ids leave no word of the 8 to keep"):
        generation.generate(params, 0, key=jax.random.key(0), skip_ids=range(8))
    with pytest.raises(ValueError, match="sample_size must be an integer >= 1, got 0"):
        generation.generate(params, 0, key=jax.random.key(0), sample_size=0)
    with pytest.raises(ValueError, match=r"sample_size must be at most 2\*\*31 - 1 = 2147483647 .*, got 2147483648"):
        generation.generate(params, 0, key=jax.random.key(0), sample_size=2 ** 31)
