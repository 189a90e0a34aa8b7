"""The sequel's words and sequences as networks: negative sampling, its character datasets, and
seq2seq (plain, peeky, attention) composed of the hand-rule layers, each against the sequel's
computation written out here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import lstm_loop, normal

N, D, V = 3, 4, 7


# --- negative sampling (sec. 4.2) ------------------------------------------------------------------

def test_the_unigram_sampler_weights_counts_by_the_power_and_never_draws_the_target():
    corpus = np.array([0, 1, 2, 3, 4, 1, 1, 2, 5, 6, 6, 6, 6])
    sampler = bj.UnigramSampler.of(corpus, power=0.75, sample_size=3)
    counts = np.array([1, 3, 2, 1, 1, 1, 4], np.float64)  # the sequel's Counter, id by id
    np.testing.assert_allclose(sampler.word_p, counts ** 0.75 / np.sum(counts ** 0.75), rtol=1e-6)
    target = jnp.array([6, 1, 0, 6] * 250)
    negatives = np.asarray(sampler.sample(jax.random.key(0), target))
    assert negatives.shape == (1000, 3) and negatives.dtype == np.int32
    assert not np.any(negatives == np.asarray(target)[:, None])  # never the target
    assert all(len(set(row)) == 3 for row in negatives)  # without replacement within a row
    # One draw a row: word 6 (count 4) comes about 4 ** 0.75 = 2.8 times as often as word 3 (count 1).
    single = np.asarray(bj.UnigramSampler.of(corpus, sample_size=1).sample(jax.random.key(1), jnp.ones(4000, jnp.int32)))
    assert 2.3 < np.sum(single == 6) / np.sum(single == 3) < 3.4
    again = np.asarray(sampler.sample(jax.random.key(0), target))
    np.testing.assert_array_equal(again, negatives)  # a function of the key alone
    with pytest.raises(ValueError, match="sample_size must be from 1 to the number of words seen less one"):
        bj.UnigramSampler.of(corpus, sample_size=7)


def sequel_negative_sampling(h, W, target, negatives):
    """The sequel's NegativeSamplingLoss forward and backward written out in NumPy."""
    h, W = np.asarray(h, np.float64), np.asarray(W, np.float64)
    n = len(target)
    loss, dh, dW = 0.0, np.zeros_like(h), np.zeros_like(W)
    for idx, label in [(np.asarray(target), 1)] + [(np.asarray(negatives)[:, i], 0) for i in range(negatives.shape[1])]:
        score = np.sum(W[idx] * h, axis=1)  # EmbeddingDot.forward
        y = 1 / (1 + np.exp(-score))  # SigmoidWithLoss.forward
        p = y if label == 1 else 1 - y
        loss += -np.sum(np.log(p + 1e-7)) / n
        dscore = (y - label) / n  # SigmoidWithLoss.backward, dout = 1
        np.add.at(dW, idx, dscore[:, None] * h)  # EmbeddingDot.backward into Embedding.backward
        dh += dscore[:, None] * W[idx]
    return loss, dh, dW


def test_negative_sampling_loss_and_its_gradients_are_the_sequels():
    h, W = normal(0, (N, D)), normal(1, (V, D))
    target = jnp.array([2, 5, 2])
    sampler = bj.UnigramSampler.of(np.arange(V).repeat(2), sample_size=4)
    negatives = sampler.sample(jax.random.key(3), target)
    loss, (dh, dW) = jax.value_and_grad(bj.negative_sampling_loss, argnums=(0, 1))(h, W, target, negatives)
    ref_loss, ref_dh, ref_dW = sequel_negative_sampling(h, W, target, negatives)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    np.testing.assert_allclose(dh, ref_dh, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(dW, ref_dW, rtol=1e-10, atol=1e-14)
    # The sequel's rule (y - t) / N is the derivative without the forward's 1e-7 inside the log:
    # it differs from autodiff of the forward by about 1e-7 / y, hence rtol 1e-5.
    report = bj.gradcheck(bj.negative_sampling_loss, h, W, target, negatives, rtol=1e-5)
    assert report.ok and "embedding_dot x5" in str(report) and "sigmoid_with_loss x5" in str(report), report
    with pytest.raises(ValueError, match=r"negatives must be \(N, S\) with N = 3 targets, got shape \(2, 4\)"):
        bj.negative_sampling_loss(h, W, target, negatives[:2])


# --- seq2seq on the sequel's addition problems (ch. 7) ------------------------------------------

def test_addition_problems_are_in_the_sequels_format_and_load_as_its_load_data(tmp_path):
    from backprop_jax import datasets

    lines = datasets.addition_lines(200, seed=3)
    assert all(len(line) == 12 and line[7] == "_" for line in lines)
    for line in lines[:20]:
        a, b = map(int, line[:7].split("+"))
        assert 0 <= a < 1000 and 0 <= b < 1000 and int(line[8:]) == a + b
    path = tmp_path / "addition.txt"
    path.write_text("".join(line + "\n" for line in lines))
    loaded = datasets.load_sequence(path, seed=1984)
    # The sequel's sequence.load_data written out: split at '_', ids by first appearance, the
    # global RNG seeded and shuffled, the last tenth held out.
    questions, answers = [line[:line.find("_")] for line in lines], [line[line.find("_"):] for line in lines]
    char_to_id = {}
    for q, a in zip(questions, answers):
        for c in list(q) + list(a):
            if c not in char_to_id:
                char_to_id[c] = len(char_to_id)
    x = np.array([[char_to_id[c] for c in q] for q in questions])
    t = np.array([[char_to_id[c] for c in a] for a in answers])
    indices = np.arange(len(x))
    np.random.seed(1984)
    np.random.shuffle(indices)
    x, t = x[indices], t[indices]
    split_at = len(x) - len(x) // 10
    np.testing.assert_array_equal(loaded.train[0], x[:split_at])
    np.testing.assert_array_equal(loaded.train[1], t[:split_at])
    np.testing.assert_array_equal(loaded.test[0], x[split_at:])
    np.testing.assert_array_equal(loaded.test[1], t[split_at:])
    assert loaded.char_to_id == char_to_id and loaded.decode(loaded.test[1][0]) == answers[indices[split_at]]
    path.write_text("1+1    _2   \n12+1   _13\n")
    with pytest.raises(datasets.DatasetError, match="line 2: its answer is 3 characters wide, line 1.s 5"):
        datasets.load_sequence(path)
    with pytest.raises(datasets.DatasetError, match="line 1: '1\\+1' has no question before a '_'"):
        datasets.load_sequence(["1+1"])


def seq2seq_loss_written_out(params, x, t, question_length, kind):
    """The sequel's Seq2seq.forward (PeekySeq2seq's, AttentionSeq2seq's) in plain jnp: W[ids]
    embeddings, the LSTM as a Python loop, attention step by step, the affine map and the mean
    cross-entropy through log_softmax."""
    q, a = x[:, :question_length], x[:, question_length:]
    zeros = jnp.zeros((x.shape[0], params["enc_Wh"].shape[0]))
    enc_hs, h, _ = lstm_loop(params["enc_W_embed"][q], zeros, zeros, params["enc_Wx"], params["enc_Wh"],
                             params["enc_b"])
    xs = params["dec_W_embed"][a[:, :-1]]
    if kind == "peeky":
        rep = jnp.repeat(h[:, None, :], xs.shape[1], axis=1)
        xs = jnp.concatenate([rep, xs], axis=2)
    hs, _, _ = lstm_loop(xs, h, jnp.zeros_like(h), params["dec_Wx"], params["dec_Wh"], params["dec_b"])
    if kind == "peeky":
        hs = jnp.concatenate([rep, hs], axis=2)
    if kind == "attention":  # AttentionWeight then WeightSum at every decoder step
        contexts = []
        for step in range(hs.shape[1]):
            a_t = jax.nn.softmax(jnp.sum(enc_hs * hs[:, step][:, None, :], axis=2), axis=1)
            contexts.append(jnp.sum(enc_hs * a_t[:, :, None], axis=1))
        hs = jnp.concatenate([jnp.stack(contexts, axis=1), hs], axis=2)
    scores = hs @ params["W_affine"] + params["b_affine"][None, None, :]
    logp = jax.nn.log_softmax(scores, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, t[..., None], axis=-1))


@pytest.mark.parametrize("kind", ["plain", "peeky", "attention"])
def test_seq2seq_forward_and_gradients_are_the_written_out_network(kind):
    from backprop_jax.nets import seq2seq

    V, Tq, Ta = 9, 4, 3
    model = seq2seq.model(V, Tq, wordvec_size=5, hidden_size=6, peeky=kind == "peeky",
                          attention=kind == "attention", dtype=jnp.float64)
    params, state = model.init(jax.random.key(0))
    assert seq2seq.kind(params) == kind
    assert params["dec_Wx"].shape == ((6 + 5 if kind == "peeky" else 5), 24)
    assert params["W_affine"].shape == ((6 if kind == "plain" else 12), V)
    q = jax.random.randint(jax.random.key(1), (N, Tq), 0, V)
    a = jax.random.randint(jax.random.key(2), (N, Ta), 0, V)
    (x, t), _ = seq2seq.training_data(((q, a), (q, a)))
    loss = model.loss_fn(state)
    np.testing.assert_allclose(loss(params, x, t), seq2seq_loss_written_out(params, x, t, Tq, kind), rtol=1e-12)
    hand = jax.grad(loss)(params, x, t)
    expected = jax.grad(seq2seq_loss_written_out)(params, x, t, Tq, kind)
    for k in params:
        np.testing.assert_allclose(hand[k], expected[k], rtol=1e-9, atol=1e-12, err_msg=k)
    if kind == "attention":  # the checker too, on the variant holding every rule of the others
        report = bj.gradcheck(loss, params, x, t, argnums=0, numeric_directions=3)
        assert report.ok and "time_lstm x2" in str(report), report
        assert "attention_weight" in str(report) and "weight_sum" in str(report), report


@pytest.mark.parametrize("kind", ["plain", "peeky", "attention"])
def test_seq2seq_generates_greedily_and_scores_exact_matches(kind):
    from backprop_jax.nets import seq2seq

    params = seq2seq.init(jax.random.key(0), 9, 5, 6, peeky=kind == "peeky", attention=kind == "attention",
                          dtype=jnp.float64)
    q = jax.random.randint(jax.random.key(1), (N, 4), 0, 9)
    out = seq2seq.generate(params, q, 2, 3)
    assert out.shape == (N, 3) and out.dtype == jnp.int32
    # Step by step as the sequel's Decoder.generate: each arg-max fed back as the next input, the
    # whole question's states passed again (the attention reads them, the others their last).
    enc_hs, state, ids, guesses = seq2seq.encode(params, q), None, jnp.full((N,), 2), []
    for _ in range(3):
        scores, state = seq2seq.decode(params, enc_hs, ids[:, None], state)
        ids = jnp.argmax(scores[:, 0], axis=-1)
        guesses.append(ids)
    np.testing.assert_array_equal(out, jnp.stack(guesses, axis=1))
    # Teacher-forced on its own guesses, the decoder scores what it generated.
    forced, _ = seq2seq.decode(params, enc_hs, jnp.concatenate([jnp.full((N, 1), 2), out[:, :-1]], axis=1))
    np.testing.assert_array_equal(jnp.argmax(forced, axis=-1), out)
    if kind == "attention":
        weights = seq2seq.attention_map(params, q, jnp.full((N, 3), 2))
        assert weights.shape == (N, 3, 4)
        np.testing.assert_allclose(jnp.sum(weights, axis=2), 1.0, rtol=1e-12)
    else:
        with pytest.raises(ValueError, match=f"parameters of the {kind} decoder, which has no attention"):
            seq2seq.attention_map(params, q, jnp.full((N, 3), 2))
    answers = jnp.concatenate([jnp.full((N, 1), 2), out], axis=1)
    assert float(seq2seq.exact_match(params, q, answers)) == 1.0
    wrong = answers.at[0, 1].set((answers[0, 1] + 1) % 9)
    assert float(seq2seq.exact_match(params, q, wrong)) == pytest.approx((N - 1) / N)


def test_seq2seq_learns_addition_through_the_trainer():
    import optax

    from backprop_jax import datasets
    from backprop_jax.nets import seq2seq

    seq = datasets.load_sequence(datasets.addition_lines(1000))
    data = seq2seq.training_data((seq.train, seq.test), reverse=True)
    model = seq2seq.model(len(seq.char_to_id), 7, 16, 32)
    optimizer = optax.chain(bj.optimizers.clip_grads(5.0), bj.optimizers.adam(0.01))
    _, history = bj.train(model, data, bj.TrainConfig(iters_num=140, batch_size=64, optimizer=optimizer))
    assert history[0].test_acc is None and history[-1].test_loss < 0.85 * history[0].test_loss


def test_the_trainer_records_the_sequels_exact_match_after_every_epoch():
    import optax

    from backprop_jax import datasets
    from backprop_jax.nets import seq2seq

    seq = datasets.load_sequence(datasets.addition_lines(600, seed=4))
    data = seq2seq.training_data((seq.train, seq.test), reverse=True)
    model = seq2seq.model(len(seq.char_to_id), 7, 8, 16, metric="exact_match")
    optimizer = optax.chain(bj.optimizers.clip_grads(5.0), bj.optimizers.adam(0.05))
    state, history = bj.train(model, data, bj.TrainConfig(iters_num=40, batch_size=64, optimizer=optimizer))
    assert len(history) == 5 and history[-1].test_loss is None
    # eval_seq2seq, question by question: the greedy answer from the answer's first character.
    (x_test, t_test), (x_train, t_train) = data[1], data[0]
    for x, t, recorded in ((x_test, t_test, history[-1].test_acc), (x_train, t_train, history[-1].train_acc)):
        guess = np.asarray(seq2seq.generate(state.params, x[:, :7], x[:, 7], t.shape[1]))
        correct = [np.array_equal(g, a) for g, a in zip(guess, t)]
        assert recorded == pytest.approx(sum(correct) / len(correct), abs=1e-6)
    assert any(e.train_acc > 0 for e in history)  # the easy problems already come out right
    with pytest.raises(ValueError, match="metric must be 'loss' or 'exact_match'"):
        seq2seq.model(13, 7, metric="accuracy")


def test_date_problems_write_each_date_in_a_human_format_and_answer_it_in_iso():
    import datetime

    from backprop_jax import datasets

    lines = datasets.date_lines(600, seed=5)
    assert all(len(line) == 40 and line[29] == "_" for line in lines)
    formats = ["%B %d, %Y", "%b %d, %Y", "%A, %B %d, %Y", "%m/%d/%y", "%d %B %Y", "%d.%m.%Y"]
    seen = set()
    for line in lines:
        question, answer = line[:29].strip(), line[30:]
        parsed = set()
        for i, form in enumerate(formats):
            try:
                parsed.add(datetime.datetime.strptime(question, form).date())
                seen.add(i)
            except ValueError:
                pass
        assert parsed == {datetime.date.fromisoformat(answer)}, line
    assert seen == set(range(len(formats)))  # every format occurs
    loaded = datasets.load_sequence(lines)
    assert loaded.train[0].shape == (540, 29) and loaded.train[1].shape == (540, 11)
