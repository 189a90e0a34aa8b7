"""The sequel's experiments: the spiral (ch. 1), gradients through time (ch. 6), seq2seq on
addition (ch. 7) and attention on dates (ch. 8)."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.training import TrainConfig, iterations_per_epoch, train
from backprop_jax.training import optimizers as book_optimizers
from backprop_jax.experiments._figures import figure, write


# --- the sequel's sec. 7.3-7.4: seq2seq on addition, reversed input and peeky ----------------

def seq2seq_addition(data, out, *, quick=False, seed=0, log=print):
    """The sequel's ``train_seq2seq.py``: seq2seq on 50,000 addition problems (made here, in its
    format) as the baseline, with the question reversed, and peeky with it reversed; wordvec
    16, hidden 128, batch 128, 25 epochs of Adam with gradients clipped at 5, and the exact-match
    accuracy on the held-out tenth after each epoch (``data``, MNIST, is not used)."""
    from backprop_jax.datasets import addition_lines
    from backprop_jax.nets import seq2seq
    from backprop_jax.recipes import RECIPES

    del data
    n, epochs, hidden = (1000, 2, 16) if quick else (50_000, 25, 128)
    lines = addition_lines(n, seed=1984 + seed)
    result = {"problems": n, "epochs": epochs, "wordvec_size": 16, "hidden_size": hidden, "batch_size": 128,
              "variants": {}}
    fig = figure(figsize=(6, 4))
    ax = fig.subplots()
    # The sequel's three runs: its seq2seq recipe, the same with the question reversed, its peeky one.
    for name, recipe in (("baseline", RECIPES["seq2seq"]),
                         ("reversed", dataclasses.replace(RECIPES["seq2seq"], reverse=True)),
                         ("peeky + reversed", RECIPES["peeky-seq2seq"])):
        recipe = recipe.with_settings(hidden=hidden)
        problems = recipe.load_data(lines, seed)
        result.update(train=len(problems.source.train[0]), test=len(problems.source.test[0]))
        q_test, a_test = problems.source.test
        shown = np.asarray(q_test)[:, ::-1] if recipe.reverse else np.asarray(q_test)
        accuracy = []

        def on_epochs(state, history):
            accuracy.append(float(seq2seq.exact_match(state.params, shown, a_test)))

        start = time.perf_counter()
        _, history = train(recipe.model(problems), problems.arrays, recipe.config(problems, epochs=epochs, seed=seed),
                           on_epochs=on_epochs, sync_every=1)
        seconds = time.perf_counter() - start
        result["variants"][name] = {"reverse": recipe.reverse, "peeky": dict(recipe.fixed).get("peeky", False),
                                    "exact_match": accuracy, "test_loss": [e.test_loss for e in history],
                                    "seconds": seconds}
        ax.plot(range(1, len(accuracy) + 1), accuracy, marker="o", markersize=3, label=name)
        log(f"{name:<17} exact match {accuracy[-1]:.3f} after {epochs} epochs ({seconds:.0f} s)")
    ax.set(xlabel="epochs", ylabel="accuracy (exact match)", ylim=(0, 1),
           title="seq2seq on addition (the sequel, sec. 7.3-7.4)")
    ax.legend(loc="upper left")
    return write(out, "seq2seq-addition", result, fig)


# --- the sequel's sec. 8.3: attention on dates ----------------------------------------------

def attention_dates(data, out, *, quick=False, seed=0, log=print):
    """The sequel's ``ch08/train.py``: attention seq2seq on 50,000 dates written in many ways (made
    here, in its ``date.txt`` format), answered as ``YYYY-MM-DD``, the question reversed;
    wordvec 16, hidden 256, batch 128, 10 epochs of Adam with gradients clipped at 5; the
    exact-match accuracy after each epoch, and one answer's attention map
    (``visualize_attention.py``). ``data``, MNIST, is not used."""
    from backprop_jax.datasets import date_lines
    from backprop_jax.nets import seq2seq
    from backprop_jax.recipes import RECIPES

    del data
    n, epochs, hidden = (600, 2, 16) if quick else (50_000, 10, 256)
    recipe = RECIPES["attention-seq2seq"].with_settings(hidden=hidden)
    problems = recipe.load_data(date_lines(n, seed=1984 + seed), seed)
    seq = problems.source
    (questions, _), (q_test, a_test) = seq.train, seq.test
    q_shown = np.asarray(q_test)[:, ::-1]
    model, config = recipe.model(problems), recipe.config(problems, epochs=epochs, seed=seed)
    accuracy, last = [], {}

    def on_epochs(state, history):
        accuracy.append(float(seq2seq.exact_match(state.params, q_shown, a_test)))
        last["params"] = state.params

    start = time.perf_counter()
    _, history = train(model, problems.arrays, config, on_epochs=on_epochs, sync_every=1)
    seconds = time.perf_counter() - start
    log(f"attention seq2seq on dates: exact match {accuracy[-1]:.3f} after {epochs} epochs ({seconds:.0f} s)")
    # One test question, as visualize_attention.py draws it: the answer's characters (rows)
    # against the question's, in reading order (the question was fed reversed).
    weights = np.asarray(seq2seq.attention_map(last["params"], q_shown[:1], a_test[:1, :-1]))[0][:, ::-1]
    question, answer = seq.decode(q_test[0]), seq.decode(a_test[0])
    result = {"problems": n, "train": len(questions), "test": len(q_test), "epochs": epochs, "hidden_size": hidden,
              "exact_match": accuracy, "test_loss": [e.test_loss for e in history], "seconds": seconds,
              "example": {"question": question, "answer": answer, "attention": weights.tolist()}}
    fig = figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    left.plot(range(1, len(accuracy) + 1), accuracy, marker="o")
    left.set(xlabel="epochs", ylabel="accuracy (exact match)", ylim=(0, 1), title="attention seq2seq on dates")
    right.imshow(weights, cmap="gray", vmin=0, vmax=max(float(weights.max()), 1e-9))
    right.set_xticks(range(len(question)), list(question), fontsize=6)
    right.set_yticks(range(len(answer) - 1), list(answer[1:]), fontsize=7)
    right.set_title("attention of each answer character (rows) on the question", fontsize=9)
    return write(out, "attention-dates", result, fig)


# --- the sequel's sec. 1.4: a two-layer net learns the spiral ------------------------------

def spiral(data, out, *, quick=False, seed=0, log=print):
    """The sequel's ``ch01/train.py``: a 2-10-3 net (Affine, Sigmoid, Affine; weights
    ``0.01 * N(0, 1)``) on the spiral's 300 points (``datasets.spiral``), 300 epochs of SGD 1.0
    in batches of 30, each epoch in a new order (``shuffled_rows``, as its ``Trainer``); the
    loss per epoch and the decision boundary over the plane, with the points (the sequel
    trains and draws on the same 300 points). ``data``, MNIST, is not used."""
    from backprop_jax import datasets
    from backprop_jax.nets import nn, shuffled_rows

    del data
    epochs = 30 if quick else 300
    x, t = datasets.spiral()
    model = nn.classifier(nn.serial(nn.Affine(10), nn.Sigmoid, nn.Affine(3)), input_shape=(2,))
    model = model._replace(batch_rows=shuffled_rows)
    config = TrainConfig(iters_num=epochs * iterations_per_epoch(len(x), 30), batch_size=30, learning_rate=1.0,
                         seed=seed)
    start = time.perf_counter()
    state, history = train(model, ((x, t), (x, t)), config)
    seconds = time.perf_counter() - start
    step = 0.01
    lo, hi = x.min(axis=0) - 0.1, x.max(axis=0) + 0.1
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    regions = np.asarray(jnp.argmax(model.predict(state.params, state.model_state, grid), axis=1)).reshape(gx.shape)
    log(f"spiral: training accuracy {history[-1].train_acc:.3f}, loss {history[-1].train_loss:.3f} after "
        f"{epochs} epochs ({seconds:.1f} s)")
    result = {"points": len(x), "epochs": epochs, "batch_size": 30, "learning_rate": 1.0, "hidden_size": 10,
              "loss": [e.train_loss for e in history], "train_acc": [e.train_acc for e in history],
              "seconds": seconds, "grid_step": step,
              "region_fractions": [float(np.mean(regions == k)) for k in range(3)]}
    fig = figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(range(1, len(history) + 1), result["loss"])
    left.set(xlabel="epochs", ylabel="loss", title="the two-layer net on the spiral (the sequel, sec. 1.4)")
    right.contourf(gx, gy, regions, levels=[-0.5, 0.5, 1.5, 2.5], alpha=0.3, colors=["C0", "C1", "C2"])
    labels = np.argmax(t, axis=1)
    for k, marker in enumerate("ox^"):
        right.scatter(x[labels == k, 0], x[labels == k, 1], s=12, marker=marker)
    right.set(title="decision boundary", xticks=[], yticks=[])
    return write(out, "spiral", result, fig)


# --- the sequel's sec. 6.1.3-6.1.4: gradients through time explode and vanish; clipping ------

def rnn_gradients(data, out, *, quick=False, seed=0, log=print):
    """The sequel's ``rnn_gradient_graph.py``: ``dh`` (N 2, H 3, ones) sent back 20 steps through
    the ``MatMul`` of ``Wh`` (``numpy.random.seed(3); randn(3, 3)``, and the same times 0.5), by
    ``matmul``'s hand backward, its norm ``sqrt(sum(dh ** 2)) / N`` after each step: it
    explodes, or vanishes; beside it the same gradients after the sequel's ``clip_grads(5.0)``.
    Then the gradient of the last hidden state with respect to the first through ``time_rnn``'s
    hand BPTT (tanh in between) over 1 to 20 steps, for both. ``data`` is not used; ``quick``
    and ``seed`` change nothing (it is tiny and deterministic)."""
    from backprop_jax.layers import matmul, time_rnn

    del data, quick, seed
    n, hidden, steps = 2, 3, 20
    base = np.random.RandomState(3).randn(hidden, hidden).astype(np.float32)
    clip = book_optimizers.clip_grads(5.0)
    result = {"N": n, "H": hidden, "T": steps, "scales": {}}
    fig = figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    for scale in (1.0, 0.5):
        Wh = jnp.asarray(base * scale)
        dh, norms, clipped = jnp.ones((n, hidden), jnp.float32), [], []
        _, back = jax.vjp(lambda h: matmul(h, Wh), jnp.zeros((n, hidden), jnp.float32))
        for _ in range(steps):
            dh = back(dh)[0]  # MatMul.backward: dout @ Wh.T
            norms.append(float(jnp.sqrt(jnp.sum(dh ** 2)) / n))
            cut, _ = clip.update(dh, clip.init(dh))
            clipped.append(float(jnp.sqrt(jnp.sum(cut ** 2)) / n))
        xs = 0.5 * jax.random.normal(jax.random.key(1), (n, steps, hidden), jnp.float32)
        h0 = jnp.zeros((n, hidden), jnp.float32)
        Wx, b = jnp.eye(hidden, dtype=jnp.float32), jnp.zeros(hidden, jnp.float32)
        # d sum(h_t) / d h_0 for every t at once: one backward pass per step's cotangent.
        _, back = jax.vjp(lambda h: time_rnn(xs, h, Wx, Wh, b)[0], h0)
        at_step = jnp.eye(steps, dtype=jnp.float32)[:, None, :, None] * jnp.ones((1, n, 1, hidden), jnp.float32)
        dh0 = jax.vmap(lambda cotangent: back(cotangent)[0])(at_step)
        through_tanh = (jnp.sqrt(jnp.sum(dh0 ** 2, axis=(1, 2))) / n).tolist()
        result["scales"][str(scale)] = {"norm": norms, "clipped": clipped, "through_tanh": through_tanh}
        line, = left.plot(range(1, steps + 1), norms, label=f"Wh x {scale:g}")
        left.plot(range(1, steps + 1), clipped, linestyle=":", color=line.get_color(),
                  label=f"Wh x {scale:g}, clip_grads(5)")
        right.plot(range(1, steps + 1), through_tanh, color=line.get_color(), label=f"Wh x {scale:g}")
        log(f"Wh x {scale:g}: the norm after {steps} steps {norms[-1]:.3g} ({clipped[-1]:.3g} clipped), "
            f"through tanh {through_tanh[-1]:.3g}")
    left.set(xlabel="time step", ylabel="norm of dh", yscale="log",
             title="dh through MatMul of Wh (the sequel, fig. 6-5/6-6)")
    right.set(xlabel="time steps", ylabel="norm of d h_T / d h_0", yscale="log", title="through time_rnn's BPTT")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    return write(out, "rnn-gradients", result, fig)
