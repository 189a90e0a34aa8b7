"""The sequel's language models (ch. 5-6): text as its ptb.load_data reads it, the truncated-BPTT
windows as its RnnlmTrainer reads them, Rnnlm and BetterRnnlm against the computation written out
here, and the state carried from one update to the next through the trainer."""

import pickle
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import backprop_jax as bj
from backprop_jax import datasets
from backprop_jax.nets import rnnlm
from conftest import lstm_loop

V, B, T, H = 11, 3, 5, 4


def sequel_batches(corpus, batch_size, time_size, iterations):
    """The sequel's RnnlmTrainer.get_batch, iteration after iteration (time_idx carried on)."""
    xs, ts = corpus[:-1], corpus[1:]
    data_size = len(xs)
    jump = data_size // batch_size
    offsets = [i * jump for i in range(batch_size)]
    time_idx = 0
    for _ in range(iterations):
        batch_x = np.empty((batch_size, time_size), dtype="i")
        batch_t = np.empty((batch_size, time_size), dtype="i")
        for t in range(time_size):
            for i, offset in enumerate(offsets):
                batch_x[i, t] = xs[(offset + time_idx) % data_size]
                batch_t[i, t] = ts[(offset + time_idx) % data_size]
            time_idx += 1
        yield batch_x, batch_t


def test_the_windows_are_the_sequels_batches_read_in_order():
    corpus = np.random.default_rng(0).integers(0, V, 200)
    x, t = rnnlm.training_data(corpus, B, T)
    max_iters = (len(corpus) - 1) // (B * T)  # the sequel's max_iters
    assert x.shape == t.shape == (max_iters * B, T) and x.dtype == np.int32
    for i, (bx, bt) in enumerate(sequel_batches(corpus, B, T, max_iters)):
        rows = np.asarray(bj.sequential_rows(0, i, B, len(x)))
        np.testing.assert_array_equal(x[rows], bx)
        np.testing.assert_array_equal(t[rows], bt)
    # The next epoch reads the set from its start again.
    np.testing.assert_array_equal(bj.sequential_rows(7, max_iters, B, len(x)), np.arange(B))
    with pytest.raises(ValueError, match="too short for one window of 5 words in each of 3 streams"):
        rnnlm.training_data(corpus[:15], B, T)
    with pytest.raises(ValueError, match="fewer than one batch of 4"):
        bj.sequential_rows(0, 0, 4, 3)


def test_text_is_read_as_the_sequels_ptb_load_data():
    text = " the cat sat \n a dog sat on the mat \n the end \n"  # PTB's layout: a space at each line's ends
    data = datasets.load_text(text, test_fraction=0.25)
    words = text.replace("\n", "<eos>").strip().split()  # ptb.load_data, as the sequel writes it
    word_to_id = {}
    for w in words:
        if w not in word_to_id:
            word_to_id[w] = len(word_to_id)
    corpus = np.array([word_to_id[w] for w in words])
    assert data.word_to_id == word_to_id
    np.testing.assert_array_equal(np.concatenate([data.train, data.test]), corpus)
    assert len(data.test) == int(len(words) * 0.25)
    assert data.decode(data.test) == " ".join(words[-len(data.test):])
    with pytest.raises(datasets.DatasetError, match="3 words, too few"):
        datasets.load_text("a\nb", test_fraction=0.5)
    with pytest.raises(datasets.DatasetError, match="cannot read"):
        datasets.load_text("/nonexistent/file.txt")


def test_the_generated_date_text_is_dates_in_words():
    text = datasets.date_text(200, seed=3)
    lines = text.splitlines()
    assert len(lines) == 200 and text == datasets.date_text(200, seed=3)
    questions = [line.partition("_")[0].strip() for line in datasets.date_lines(200, seed=3)]
    assert [line.replace(" ", "") for line in lines] == [q.replace(" ", "") for q in questions]
    # Words and punctuation apart: each token a run of word characters or one punctuation mark.
    assert all(re.fullmatch(r"\w+|[^\w\s]", w) for line in lines for w in line.split())
    assert any("," in line.split() for line in lines) and any("/" in line.split() for line in lines)
    assert len(datasets.load_text(datasets.date_text(5000)).word_to_id) < 400


def sequel_rnnlm(params, xs, hs, drop=None):
    """The sequel's Rnnlm / BetterRnnlm forward written out: embedding rows, the LSTMs (lstm_loop),
    the affine map at every step; ``hs`` the (h, c) each layer starts from."""
    out = params["W_embed"][xs]
    last = []
    for layer, (h, c) in enumerate(hs):
        out, h, c = lstm_loop(out, h, c, params[f"lstm{layer}_Wx"], params[f"lstm{layer}_Wh"], params[f"lstm{layer}_b"])
        last.append((h, c))
    W = params["W_affine"] if "W_affine" in params else params["W_embed"].T
    return jnp.einsum("nth,hv->ntv", out, W) + params["b_affine"][None, None, :], last


def sequel_loss(scores, ts):
    """TimeSoftmaxWithLoss: the mean over every position of -log softmax at the label."""
    logp = scores - jax.scipy.special.logsumexp(scores, axis=-1, keepdims=True)
    return -jnp.mean(jnp.take_along_axis(logp, ts[..., None], axis=-1))


@pytest.mark.parametrize("make", [lambda: rnnlm.model(V, B, 6, H),
                                  lambda: rnnlm.model(V, B, H, H, lstm_layers=2, tie_weights=True)],
                         ids=["rnnlm", "tied-two-layers"])
def test_the_language_models_and_their_gradients_are_the_sequels(make):
    model = make()
    params, state = model.init(jax.random.key(0))
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    state = {k: jnp.asarray(np.random.default_rng(1).normal(size=v.shape)) for k, v in state.items()}
    x = jnp.asarray(np.random.default_rng(2).integers(0, V, (B, T)), jnp.int32)
    t = jnp.asarray(np.random.default_rng(3).integers(0, V, (B, T)), jnp.int32)
    layers = len(state) // 2
    carried = [(state[f"h{i}"], state[f"c{i}"]) for i in range(layers)]

    scores, new_state = model.apply(params, state, x, train=True)
    ref_scores, ref_last = sequel_rnnlm(params, x, carried)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-12, atol=1e-12)
    for i, (h, c) in enumerate(ref_last):  # the state handed on is where the LSTMs ended
        np.testing.assert_allclose(new_state[f"h{i}"], h, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(new_state[f"c{i}"], c, rtol=1e-12, atol=1e-12)
    # Evaluation starts every window from zeros and leaves the state as it was.
    eval_scores, kept = model.apply(params, state, x, train=False)
    zeros = [(jnp.zeros((B, H)), jnp.zeros((B, H)))] * layers
    np.testing.assert_allclose(eval_scores, sequel_rnnlm(params, x, zeros)[0], rtol=1e-12, atol=1e-12)
    assert kept is state

    hand = jax.grad(lambda p: model.loss(p, state, x, t)[0])(params)
    ref = jax.grad(lambda p: sequel_loss(sequel_rnnlm(p, x, carried)[0], t))(params)
    for k in ref:
        np.testing.assert_allclose(hand[k], ref[k], rtol=1e-9, atol=1e-12, err_msg=k)
    report = bj.gradcheck(model.loss_fn(state), params, x, t)
    assert report.ok, report


def test_better_rnnlm_drops_units_in_training_only_and_ties_its_output_to_the_embedding():
    model = rnnlm.better_model(V, B, H, H, dropout=0.5)
    params, state = model.init(jax.random.key(0))
    assert "W_affine" not in params and params["W_embed"].shape == (V, H)
    assert set(state) == {"h0", "c0", "h1", "c1"}
    x = jnp.asarray(np.random.default_rng(2).integers(0, V, (B, T)), jnp.int32)
    no_drop = rnnlm.model(V, B, H, H, 0.0, lstm_layers=2, tie_weights=True)
    np.testing.assert_array_equal(model.predict(params, state, x), no_drop.predict(params, state, x))
    a, _ = model.apply(params, state, x, key=jax.random.key(1), train=True)
    b, _ = model.apply(params, state, x, key=jax.random.key(1), train=True)
    c, _ = model.apply(params, state, x, key=jax.random.key(2), train=True)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        model.apply(params, state, x, train=True)
    with pytest.raises(ValueError, match=r"tied weights .* need wordvec_size == hidden_size, got 6 and 4"):
        rnnlm.better_model(V, B, 6, 4)
    with pytest.raises(ValueError, match=r"x must be windows of time_size = 6 words, got shape \(3, 5\)"):
        rnnlm.better_model(V, B, H, H, time_size=6).predict(params, state, x)
    with pytest.raises(ValueError, match="time_size must be an integer >= 1, got 0"):
        rnnlm.model(V, B, time_size=0)
    with pytest.raises(ValueError, match=r"the state carries batches of 3 rows \(h0 \(3, 4\)\), but x has 2"):
        model.apply(params, state, x[:2], key=jax.random.key(1), train=True)


def test_the_trainer_carries_the_hidden_state_from_update_to_update_as_the_sequel():
    corpus = np.random.default_rng(4).integers(0, V, 3 * B * T + 1)  # three blocks of windows a epoch
    x, t = rnnlm.training_data(corpus, B, T)
    model = rnnlm.model(V, B, 6, H, dtype=jnp.float64)
    lr, iters = 0.5, 5  # past an epoch: the fourth update reads the first block again
    config = bj.TrainConfig(iters_num=iters, batch_size=B, learning_rate=lr, seed=0)
    state, _ = bj.train(model, ((x, t), (x[:B], t[:B])), config)
    params = bj.init_state(model, config).params  # the trainer's initial parameters
    carried = [(jnp.zeros((B, H), jnp.float64), jnp.zeros((B, H), jnp.float64))]
    windows = list(sequel_batches(corpus, B, T, 3))
    for i in range(iters):  # the sequel's loop: get_batch, forward from the carried state, SGD
        bx, bt = windows[i % 3]
        loss = lambda p: sequel_loss(sequel_rnnlm(p, jnp.asarray(bx), carried)[0], jnp.asarray(bt))  # noqa: E731
        grads = jax.grad(loss)(params)
        carried = [tuple(jax.lax.stop_gradient(a) for a in hc) for hc in sequel_rnnlm(params, jnp.asarray(bx), carried)[1]]
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    for k in params:
        np.testing.assert_allclose(state.params[k], params[k], rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(state.model_state["h0"], carried[0][0], rtol=1e-10, atol=1e-12)


def test_eval_perplexity_is_the_sequels_with_the_state_carried():
    corpus = np.random.default_rng(5).integers(0, V, 2 * B * T + 4)
    params, _ = rnnlm.model(V, B, 6, H, dtype=jnp.float64).init(jax.random.key(1))
    hc = [(jnp.zeros((B, H)), jnp.zeros((B, H)))]
    losses = []
    for bx, bt in sequel_batches(corpus, B, T, 2):  # eval_perplexity: max_iters blocks, in order
        scores, hc = sequel_rnnlm(params, jnp.asarray(bx), hc)
        losses.append(sequel_loss(scores, jnp.asarray(bt)))
    np.testing.assert_allclose(rnnlm.eval_perplexity(params, corpus, B, T), np.exp(np.mean(losses)), rtol=1e-10)
    assert bj.perplexity(np.log(12.5)) == pytest.approx(12.5) and bj.perplexity(800.0) == float("inf")


def test_a_language_model_is_measured_by_perplexity_through_the_trainer():
    data = datasets.load_text(datasets.date_text(600, seed=1))
    model = rnnlm.model(len(data.word_to_id), 10, 16, 16)
    train_set = rnnlm.training_data(data.train, 10, 8)
    _, history = bj.train(model, (train_set, rnnlm.training_data(data.test, 1, 8)),
                          bj.TrainConfig(iters_num=3 * (len(train_set[0]) // 10), batch_size=10, learning_rate=1.0))
    assert [e.test_acc for e in history] == [None] * 3
    for e in history:
        assert e.test_perplexity == pytest.approx(np.exp(e.test_loss))
        assert e.line().startswith(f"epoch {e.epoch}: train perplexity {np.exp(e.train_loss):.2f}, test perplexity")
    assert history[-1].test_perplexity < history[0].test_perplexity < len(data.word_to_id)


def test_the_sequels_saved_parameter_lists_load_into_the_models(tmp_path):
    for model, order in ((rnnlm.model(V, B, 6, H), rnnlm.book_order()),
                         (rnnlm.better_model(V, B, H, H), rnnlm.book_order(2, tie_weights=True)),
                         (bj.seq2seq.model(V, 4, 6, H, attention=True), bj.seq2seq.BOOK_ORDER)):
        params, _ = model.init(jax.random.key(3))
        # The sequel's BaseModel.save_params: its params list, in layer order, as float16.
        arrays = [np.asarray(params[k[:-2]]).T if k.endswith(".T") else np.asarray(params[k]) for k in order]
        with open(tmp_path / "model.pkl", "wb") as f:
            pickle.dump([a.astype(np.float16) for a in arrays], f)
        loaded = bj.fit_params(model, bj.load_book_params(tmp_path / "model.pkl"), order=order)
        for k in params:
            assert loaded[k].dtype == params[k].dtype
            np.testing.assert_array_equal(loaded[k], np.asarray(params[k]).astype(np.float16).astype(np.float32))
    listed = bj.load_book_params(tmp_path / "model.pkl")
    with pytest.raises(bj.BookParamsError, match="say which parameter each is with order="):
        bj.fit_params(model, listed)
    with pytest.raises(bj.BookParamsError, match="the list holds 10 arrays, but the order names 6"):
        bj.fit_params(model, listed, order=rnnlm.book_order())
    untied = [np.ones((V, H), np.float16)] + [np.zeros(1, np.float16)] * 6 + [np.ones((H, V), np.float16) * 2,
                                                                              np.zeros(V, np.float16)]
    with pytest.raises(bj.BookParamsError, match=r"entry 7 \(W_embed.T, shape \(4, 11\)\) should be the transpose"):
        bj.fit_params(rnnlm.better_model(V, B, H, H), untied, order=rnnlm.book_order(2, tie_weights=True))


def test_carried_rows_read_the_corpus_as_the_sequels_rnnlm_trainer_across_epochs():
    # The sequel's common/trainer.py at 842ae31c: RnnlmTrainer.fit sets time_idx = 0 once, then
    # for every epoch and every one of max_iters = data_size // (batch_size * time_size) updates,
    # get_batch reads x[(offset + time_idx) % data_size], offsets i * jump, time_idx += 1 each step.
    corpus = np.random.default_rng(0).integers(0, 50, 103)
    xs, ts = corpus[:-1], corpus[1:]
    batch_size, time_size, max_epoch = 4, 7, 3
    data_size = len(xs)
    max_iters = data_size // (batch_size * time_size)
    time_idx = 0
    book = []
    for epoch in range(max_epoch):
        for iters in range(max_iters):
            batch_x = np.empty((batch_size, time_size), dtype='i')
            batch_t = np.empty((batch_size, time_size), dtype='i')
            jump = data_size // batch_size
            offsets = [i * jump for i in range(batch_size)]
            for time in range(time_size):
                for i, offset in enumerate(offsets):
                    batch_x[i, time] = xs[(offset + time_idx) % data_size]
                    batch_t[i, time] = ts[(offset + time_idx) % data_size]
                time_idx += 1
            book.append((batch_x, batch_t))
    x, t = rnnlm.every_window(corpus, time_size)
    assert x.shape == t.shape == (data_size, time_size)
    batch_rows = bj.carried_rows(time_size)
    for iteration, (batch_x, batch_t) in enumerate(book):
        rows = np.asarray(batch_rows(0, iteration, batch_size, len(x)))
        np.testing.assert_array_equal(x[rows], batch_x)
        np.testing.assert_array_equal(t[rows], batch_t)
    # From the second epoch on, the book's windows are not where restarting streams would read.
    restarted_x, _ = rnnlm.training_data(corpus, batch_size, time_size)
    assert not np.array_equal(book[max_iters][0], restarted_x[:batch_size])
    np.testing.assert_array_equal(book[0][0], restarted_x[:batch_size])


def sequel_clip_grads(grads, max_norm):
    """The sequel's common/util.py clip_grads at 842ae31c: total_norm = sqrt(sum of every grad**2),
    rate = max_norm / (total_norm + 1e-6), each grad *= rate when rate < 1."""
    total_norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads)))
    rate = max_norm / (total_norm + 1e-6)
    return jax.tree.map(lambda g: jnp.where(rate < 1, g * rate, g), grads)


def test_the_rnnlm_recipe_is_train_rnnlm_py_with_the_reading_position_carried_across_epochs(tmp_path):
    # The sequel's ch06/train_rnnlm.py at 842ae31c calls RnnlmTrainer.fit(xs, ts, max_epoch, batch_size,
    # time_size, max_grad) once; fit sets time_idx = 0 before the first epoch only, and each of the
    # max_iters = data_size // (batch_size * time_size) updates of an epoch reads get_batch (time_idx
    # carried on: sequel_batches), forward from the state the last update left, clip_grads, SGD.
    words = np.random.default_rng(6).integers(0, 9, 140)
    path = tmp_path / "text.txt"
    path.write_text(" ".join(f"w{i}" for i in words) + "\n")
    recipe = bj.RECIPES["rnnlm"].with_settings(hidden=H, wordvec_size=6, time_size=T)
    data = recipe.load_data(str(path), batch_size=B)
    corpus = data.source.train
    lr, max_grad, max_epoch = 0.5, recipe.max_grad, 2
    max_iters = (len(corpus) - 1) // (B * T)
    config = recipe.config(data, epochs=max_epoch, learning_rate=lr)
    model = recipe.model(data)
    assert config.iters_num == max_epoch * max_iters and config.iters_per_epoch == max_iters
    state, history = bj.train(model, data.arrays, config)
    assert len(history) == max_epoch
    start = bj.init_state(model, config).params

    def book_fit(batches):
        params, hs, losses = start, [(jnp.zeros((B, H)), jnp.zeros((B, H)))], []
        for bx, bt in batches:
            bx, bt = jnp.asarray(bx), jnp.asarray(bt)
            loss, grads = jax.value_and_grad(lambda p: sequel_loss(sequel_rnnlm(p, bx, hs)[0], bt))(params)
            losses.append(float(loss))
            hs = sequel_rnnlm(params, bx, hs)[1]
            grads = sequel_clip_grads(grads, max_grad)
            params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return params, losses

    params, losses = book_fit(sequel_batches(corpus, B, T, max_epoch * max_iters))
    for k in params:
        np.testing.assert_allclose(state.params[k], params[k], rtol=2e-5, atol=2e-6, err_msg=k)
    # Each epoch's training loss is the mean of its updates' losses, total_loss / loss_count (the
    # perplexity fit prints is its exp).
    for epoch in range(max_epoch):
        np.testing.assert_allclose(history[epoch].train_loss, np.mean(losses[epoch * max_iters:][:max_iters]),
                                   rtol=1e-5)
    # Restarting the streams each epoch (as the recipe read before) ends elsewhere.
    restarted, _ = book_fit([b for _ in range(max_epoch) for b in sequel_batches(corpus, B, T, max_iters)])
    assert not np.allclose(restarted["W_affine"], params["W_affine"], rtol=1e-3, atol=1e-4)
    assert recipe.record(data)["reading"] == "carried"


def test_the_better_rnnlm_recipe_resets_the_state_and_quarters_the_rate_between_epochs_as_its_script(tmp_path):
    # The sequel's ch06/train_better_rnnlm.py at 842ae31c: for each epoch, trainer.fit(max_epoch=1)
    # (time_idx = 0 again: the streams restart), model.reset_state(), ppl = the validation perplexity,
    # `if best_ppl > ppl: best_ppl = ppl` `else: lr /= 4.0; optimizer.lr = lr`, model.reset_state().
    # The held-out text is the validation set here, scored window by window from zeros (the
    # trainer's test perplexity). Dropout 0, as the book's masks come from NumPy's generator.
    words = np.random.default_rng(7).integers(0, 9, 160)
    path = tmp_path / "text.txt"
    path.write_text(" ".join(f"w{i}" for i in words) + "\n")
    recipe = bj.RECIPES["better-rnnlm"].with_settings(hidden=H, wordvec_size=H, time_size=T, dropout=0.0)
    data = recipe.load_data(str(path), batch_size=B)
    corpus, held_out = data.source.train, data.source.test
    lr, max_grad, max_epoch = 40.0, recipe.max_grad, 4
    max_iters = (len(corpus) - 1) // (B * T)
    config = recipe.config(data, epochs=max_epoch, learning_rate=lr)
    model = recipe.model(data)
    state, history = bj.run(model, data.arrays, config, dataset=data.name, settings=recipe.record(data),
                            progress=False, log=lambda *a: None, between_epochs=recipe.between_epochs())
    params = bj.init_state(model, config).params
    vx, vt = rnnlm.training_data(held_out, 1, T)
    zeros = lambda n: [(jnp.zeros((n, H)), jnp.zeros((n, H)))] * 2  # noqa: E731
    best_ppl, rates = float("inf"), []
    for epoch in range(max_epoch):
        hs = zeros(B)  # reset_state() after the epoch before
        for bx, bt in sequel_batches(corpus, B, T, max_iters):
            bx, bt = jnp.asarray(bx), jnp.asarray(bt)
            grads = jax.grad(lambda p: sequel_loss(sequel_rnnlm(p, bx, hs)[0], bt))(params)
            hs = sequel_rnnlm(params, bx, hs)[1]
            params = jax.tree.map(lambda p, g: p - lr * g, params, sequel_clip_grads(grads, max_grad))
        ppl = float(np.exp(sequel_loss(sequel_rnnlm(params, jnp.asarray(vx), zeros(len(vx)))[0], jnp.asarray(vt))))
        np.testing.assert_allclose(history[epoch].test_perplexity, ppl, rtol=1e-4)
        if best_ppl > ppl:
            best_ppl = ppl
        else:
            lr /= 4.0
        rates.append(lr)
    assert rates[-1] < rates[0]  # the rate was lowered at least once
    for k in params:
        np.testing.assert_allclose(state.params[k], params[k], rtol=2e-4, atol=2e-5, err_msg=k)
    assert float(optax.tree_utils.tree_get(state.opt_state, "lr")) == rates[-1]
    assert all(not np.any(v) for v in jax.tree.leaves(state.model_state))
