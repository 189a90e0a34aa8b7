"""The experiments of chapters 6 and 7 and of the sequel's chapters 1, 6, 7 and 8, from live code:
each writes a figure like the book's (``NAME.png``) and the numbers behind it (``NAME.json``)
into a directory; and the book's optimiser comparison (``compare_optimizers``), the command's
``compare-optimizers``.

Every experiment is ``fn(data, out, *, quick=False, seed=0, log=print) -> dict`` with
``data`` as ``datasets.load_mnist_sample()`` returns it; ``quick`` runs a tiny version
(for tests). ``EXPERIMENTS`` maps the command-line names to them.
"""

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax._io import writable_directory, write_json
from backprop_jax.layers import relu, sigmoid
from backprop_jax.nets import conv_net, multi_layer_net
from backprop_jax.training import (
    TrainConfig, TrainingDiverged, TrainState, evaluation_sets, init_state, iterations_per_epoch, make_epochs_fn,
    train)
from backprop_jax.training import optimizers as book_optimizers


def _figure(*args, **kwargs):
    from matplotlib.figure import Figure  # matplotlib only when drawing
    return Figure(*args, **kwargs)


def _write(out, name, result, fig):
    from backprop_jax.training.plots import save_figure  # matplotlib only when drawing

    write_json(out / f"{name}.json", result)
    save_figure(fig, out / f"{name}.png")
    return result


# --- sec. 6.1.8: the optimiser comparison, the same net and data, four update rules ------------

# The book's comparison: name, optax optimiser, learning rate.
BOOK_OPTIMIZERS = (("SGD", "sgd", 0.01), ("Momentum", "momentum", 0.01),
                   ("AdaGrad", "adagrad", 0.01), ("Adam", "adam", 0.001))


def compare_optimizers(data, out, *, iters_num=2000, batch_size=128, hidden_size_list=(100, 100, 100, 100),
                       seed=0, log=print):
    """Trains the book's 5-layer ReLU net (He init) with each optimiser; writes
    ``out/optimizers.png`` (loss curves) and ``out/optimizers.json``.

    Returns:
      ``{name: [Epoch, ...]}``.
    Raises:
      OSError: ``out`` is not a directory that can be written, before any training.
    """
    out = writable_directory(out)  # before training, not after
    model = multi_layer_net.model(784, hidden_size_list, 10, weight_init_std="he")
    histories = {}
    for name, optimizer, lr in BOOK_OPTIMIZERS:
        config = TrainConfig(iters_num=iters_num, batch_size=batch_size, learning_rate=lr,
                             optimizer=optimizer, seed=seed)
        _, histories[name] = train(model, data, config)
        last = histories[name][-1]
        log(f"{name:<9} lr {lr:<6} final loss {last.train_loss:.4f}, test acc {last.test_acc:.4f}")
    write_json(out / "optimizers.json", {
        "net": [784, *hidden_size_list, 10], "iters_num": iters_num, "batch_size": batch_size, "seed": seed,
        "optimizers": {name: {"optimizer": opt, "learning_rate": lr,
                              "epochs": [dataclasses.asdict(e) for e in histories[name]]}
                       for name, opt, lr in BOOK_OPTIMIZERS}})
    from backprop_jax.training.plots import plot_losses  # matplotlib only when drawing
    plot_losses(histories, out / "optimizers.png")
    return histories


# --- sec. 6.2.2: activation histograms ----------------------------------------------------------

def activation_histograms(data, out, *, quick=False, seed=0, log=print):
    """The activations of a 5-layer net of 100 units (1,000 random inputs, no training) under four
    initialisations: std 1 and std 0.01 (sigmoid: saturated, then all alike), Xavier (sigmoid)
    and He (ReLU), as the book's ``weight_init_activation_histogram.py``."""
    del data  # random inputs, as in the book
    node_num, layers = 100, 5
    inits = {"std 1, sigmoid": (1.0, sigmoid), "std 0.01, sigmoid": (0.01, sigmoid),
             "Xavier, sigmoid": (math.sqrt(1 / node_num), sigmoid), "He, ReLU": (math.sqrt(2 / node_num), relu)}
    key = jax.random.key(seed)
    x = jax.random.normal(jax.random.fold_in(key, 0), (100 if quick else 1000, node_num))
    result = {"inputs": int(x.shape[0]), "nodes": node_num, "bins": 30, "range": [0, 1], "inits": {}}
    fig = _figure(figsize=(12, 9))
    axes = fig.subplots(len(inits), layers, sharey="row")
    for row, (name, (std, activation)) in enumerate(inits.items()):
        a, rows = x, []
        for i in range(layers):
            w = std * jax.random.normal(jax.random.fold_in(key, i + 1), (node_num, node_num))
            a = activation(a @ w)
            values = np.asarray(a).ravel()
            counts, edges = np.histogram(values, bins=30, range=(0, 1))
            rows.append({"layer": i + 1, "counts": counts.tolist(), "mean": float(values.mean()),
                         "std": float(values.std())})
            ax = axes[row, i]
            ax.hist(values, bins=30, range=(0, 1))
            if activation is relu:  # the zeros dwarf the rest: the book's ylim(0, 7000) of 100,000
                ax.set_ylim(0, 0.07 * values.size)
            ax.set_title(f"{i + 1}-layer" if row == 0 else "", fontsize=9)
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_ylabel(name, fontsize=9)
        result["inits"][name] = rows
    fig.suptitle("activations of a 5-layer net by initial weights (sec. 6.2)")
    return _write(out, "activation-histograms", result, fig)


# --- sec. 6.2.3: weight initialisation on MNIST ------------------------------------------------

def weight_init(data, out, *, quick=False, seed=0, log=print):
    """Loss curves of a 5-layer ReLU net (100 units x 4) trained with SGD (lr 0.01, batch 128)
    from std 0.01, Xavier and He weights, as the book's ``weight_init_compare.py``."""
    iters = 20 if quick else 2000
    result = {"net": [784, 100, 100, 100, 100, 10], "iters": iters, "batch_size": 128, "learning_rate": 0.01,
              "curves": {}}
    fig = _figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for (name, std), marker in zip((("std=0.01", 0.01), ("Xavier", "xavier"), ("He", "he")), "osD"):
        model = multi_layer_net.model(784, (100,) * 4, 10, weight_init_std=std)
        _, history = train(model, data, TrainConfig(iters_num=iters, batch_size=128, learning_rate=0.01,
                                                    seed=seed))
        result["curves"][name] = [{"iteration": e.iteration, "train_loss": e.train_loss} for e in history]
        ax.plot([e.iteration for e in history], [e.train_loss for e in history], marker=marker,
                markevery=max(len(history) // 10, 1), label=name)
        log(f"{name:<9} final loss {history[-1].train_loss:.4f}")
    ax.set(xlabel="iterations", ylabel="loss (mini-batch mean per epoch)", ylim=(0, 2.5))
    ax.legend()
    ax.set_title("weight initialisation (sec. 6.2.4)")
    return _write(out, "weight-init", result, fig)


# --- sec. 6.3.2: batch normalisation ------------------------------------------------------------

def _scaled_start(model, config, scale):
    """The model's initial state with every weight multiplied by ``scale``: the book's
    ``weight_init_std=scale`` when the model draws ``W = 1 * N(0, 1)``."""
    state = init_state(model, config)
    params = jax.tree.map(lambda v, weight: v * float(scale) if weight else v,  # keeps the dtype
                          state.params, model.weight_mask(state.params))
    return state._replace(params=params, opt_state=config.make_optimizer().init(params))


def _train_until_nan(model, data, config, state):
    """``(history, stopped)``: the epochs trained, and the message if the loss became NaN (the
    experiment shows how far a run gets; the explosion check is off)."""
    seen = []  # the history as the last call left it

    def keep(state, history):
        seen[:] = history

    try:
        _, history = train(model, data, config, state=state, divergence_factor=None, on_epochs=keep)
        return history, None
    except TrainingDiverged as e:
        return list(seen), str(e)


def batch_norm(data, out, *, quick=False, seed=0, log=print):
    """Training accuracy of a 5-layer ReLU net (100 units x 5) with and without batch
    normalisation, from initial weight scales 1 to 1e-4, on 1,000 training images (SGD lr 0.01,
    batch 100, 20 epochs), as the book's ``batch_norm_test.py``."""
    (x, t), test = data
    data = ((x[:1000], t[:1000]), test)
    scales = np.logspace(0, -4, 2 if quick else 16)
    epochs = 2 if quick else 20
    config = TrainConfig(iters_num=epochs * iterations_per_epoch(1000, 100), batch_size=100, learning_rate=0.01,
                         seed=seed)
    models = {with_bn: multi_layer_net.model(784, (100,) * 5, 10, weight_init_std=1.0, use_batchnorm=with_bn)
              for with_bn in (True, False)}
    result = {"train_images": 1000, "epochs": epochs, "scales": scales.tolist(), "runs": []}
    columns = 4
    rows = -(-len(scales) // columns)
    fig = _figure(figsize=(12, 2.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    for ax, scale in zip(axes, scales):
        run = {"scale": float(scale)}
        for with_bn, style in ((True, "-"), (False, "--")):
            model = models[with_bn]
            history, stopped = _train_until_nan(model, data, config, _scaled_start(model, config, scale))
            name = "batch_norm" if with_bn else "plain"
            run[name] = [e.train_acc for e in history]
            if stopped:
                run[f"{name}_stopped"] = stopped
            ax.plot(range(1, len(history) + 1), [e.train_acc for e in history], style,
                    label="Batch Normalization" if with_bn else "Normal (without BatchNorm)")
            if stopped:
                ax.annotate("loss NaN", (len(history) + 0.5, 0.05), fontsize=7)
        result["runs"].append(run)
        ax.set_title(f"W: {scale:.2g}", fontsize=9)
        ax.set_ylim(0, 1)
        last = lambda curve: f"{curve[-1]:.3f}" if curve else "-"
        log(f"scale {scale:.2g}: train acc {last(run['batch_norm'])} with batch norm, {last(run['plain'])} "
            f"without" + (" (its loss became NaN)" if "plain_stopped" in run else ""))
    for ax in axes[len(scales):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("training accuracy by epoch, with and without batch normalisation (sec. 6.3)")
    return _write(out, "batch-norm", result, fig)


# --- sec. 6.4: overfitting, weight decay, dropout ------------------------------------------------

def overfitting(data, out, *, quick=False, seed=0, log=print):
    """A 7-layer ReLU net (100 units x 6) on 300 training images (SGD lr 0.01, batch 100, 201
    epochs): plain, with weight decay (lambda 0.1), and with dropout (0.2); the book's
    ``overfit_weight_decay.py`` and ``overfit_dropout.py``."""
    (x, t), test = data
    data = ((x[:300], t[:300]), test)
    epochs = 3 if quick else 201
    config = TrainConfig(iters_num=epochs * iterations_per_epoch(300, 100), batch_size=100, learning_rate=0.01,
                         seed=seed)
    variants = {"no regularisation": {}, "weight decay 0.1": {"weight_decay_lambda": 0.1},
                "dropout 0.2": {"drop_rate": 0.2}}
    result = {"train_images": 300, "epochs": epochs, "variants": {}}
    fig = _figure(figsize=(13, 4))
    axes = fig.subplots(1, len(variants), sharey=True)
    for ax, (name, kwargs) in zip(axes, variants.items()):
        model = multi_layer_net.model(784, (100,) * 6, 10, **kwargs)
        _, history = train(model, data, config)
        result["variants"][name] = {"train_acc": [e.train_acc for e in history],
                                    "test_acc": [e.test_acc for e in history]}
        ax.plot(range(1, len(history) + 1), [e.train_acc for e in history], label="train", marker="o",
                markevery=max(len(history) // 10, 1))
        ax.plot(range(1, len(history) + 1), [e.test_acc for e in history], label="test", marker="s",
                markevery=max(len(history) // 10, 1))
        ax.set(title=name, xlabel="epochs", ylim=(0, 1.0))
        log(f"{name:<18} train acc {history[-1].train_acc:.3f}, test acc {history[-1].test_acc:.3f}")
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="lower right")
    fig.suptitle("overfitting on 300 images, and two remedies (sec. 6.4)")
    return _write(out, "overfitting", result, fig)


# --- sec. 6.5: random search, every trial at once ------------------------------------------------

def random_search_trial(x_train, t_train, x_val, t_val, epochs, batch_size, seed):
    """``(learning_rate, weight_decay_lambda, key) -> (train_acc, val_acc)`` per epoch: one whole
    training through the trainer's own epochs program (``make_epochs_fn``), with the book's
    plain SGD; the rates are ordinary traced values, so ``vmap`` over them trains many networks
    in one call. ``key`` draws the initial weights; every trial sees the same batches (``seed``)."""
    n_train, n_val = x_train.shape[0], x_val.shape[0]
    iter_per_epoch = iterations_per_epoch(n_train, batch_size)
    evaluation = evaluation_sets((x_train, t_train), (x_val, t_val))
    batches = jnp.asarray(x_train), jnp.asarray(t_train)

    def trial(lr, lam, key):
        model = multi_layer_net.model(784, (100,) * 6, 10, weight_decay_lambda=lam)
        optimizer = book_optimizers.sgd(lr)
        config = TrainConfig(iters_num=epochs * iter_per_epoch, batch_size=batch_size, optimizer=optimizer,
                             seed=seed)
        params, model_state = model.init(key)
        state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), model_state)
        run_epochs = make_epochs_fn(model, config, iter_per_epoch, n_train, n_val, max_epochs=epochs)
        _, records = run_epochs(state, epochs, batches, evaluation)
        return records.train_acc, records.test_acc

    return trial


def random_search(data, out, *, quick=False, seed=0, log=print):
    """The book's ``hyperparameter_optimization.py``: 100 trials of a 7-layer ReLU net (100 units
    x 6) on 500 training images, 20% of them held out for validation, 50 epochs each, learning
    rate 10**U(-6, -2) and weight decay 10**U(-8, -4); the 20 best by validation accuracy drawn.
    All trials run as one ``vmap``-ed, compiled program, timed against the same trials one
    after another (the first ten of them, timed, and scaled to all)."""
    (x, t), _ = data
    rng = np.random.default_rng(seed)
    order = rng.permutation(500)  # the book shuffles, then holds out the first 20%
    x, t = np.asarray(x)[:500][order], np.asarray(t)[:500][order]
    x_val, t_val, x_train, t_train = x[:100], t[:100], x[100:], t[100:]
    trials, epochs = (4, 2) if quick else (100, 50)
    lrs = 10 ** rng.uniform(-6, -2, trials)
    lams = 10 ** rng.uniform(-8, -4, trials)
    keys = jax.random.split(jax.random.key(seed), trials)
    trial = random_search_trial(x_train, t_train, x_val, t_val, epochs, 100, seed)
    lr_j, lam_j = jnp.asarray(lrs, jnp.float32), jnp.asarray(lams, jnp.float32)

    every = jax.jit(jax.vmap(trial))
    one = jax.jit(trial)
    jax.block_until_ready(every(lr_j, lam_j, keys))  # compile both first: the timings are runs
    jax.block_until_ready(one(lr_j[0], lam_j[0], keys[0]))
    start = time.perf_counter()
    train_acc, val_acc = jax.block_until_ready(every(lr_j, lam_j, keys))
    vmapped_s = time.perf_counter() - start
    # One after another: the first ten trials are enough to time (and to compare) the loop.
    looped = min(trials, 10)
    start = time.perf_counter()
    singles = [jax.block_until_ready(one(lr_j[i], lam_j[i], keys[i])) for i in range(looped)]
    loop_s = (time.perf_counter() - start) * trials / looped
    # The same numbers either way (up to the order of float operations).
    agree = max(float(np.max(np.abs(np.asarray(val_acc[i]) - np.asarray(v)))) for i, (_, v) in enumerate(singles))
    log(f"{trials} trials of {epochs} epochs: {vmapped_s:.2f} s as one vmap-ed call; one after another "
        f"{loop_s / trials:.3f} s a trial ({looped} timed), {loop_s:.2f} s for all ({loop_s / vmapped_s:.1f}x)")

    train_acc, val_acc = np.asarray(train_acc), np.asarray(val_acc)
    ranking = np.argsort(-val_acc[:, -1], kind="stable")
    result = {"trials": trials, "epochs": epochs, "train_images": 400, "validation_images": 100,
              "vmapped_seconds": vmapped_s, "one_after_another_seconds": loop_s, "trials_timed_one_by_one": looped,
              "speedup": loop_s / vmapped_s, "max_val_acc_difference_vmap_vs_loop": agree,
              "results": [{"rank": r + 1, "learning_rate": float(lrs[i]), "weight_decay": float(lams[i]),
                           "val_acc": val_acc[i].tolist(), "train_acc": train_acc[i].tolist()}
                          for r, i in enumerate(ranking)]}
    shown = ranking[:20]
    columns = 5
    rows = -(-len(shown) // columns)
    fig = _figure(figsize=(13, 2.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, sharex=True, sharey=True)).ravel()
    for r, (ax, i) in enumerate(zip(axes, shown)):
        ax.plot(val_acc[i], label="validation")
        ax.plot(train_acc[i], "--", label="train")
        ax.set_title(f"Best-{r + 1}: lr {lrs[i]:.1e}, wd {lams[i]:.1e}", fontsize=7)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=6)
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"random search: the best {len(shown)} of {trials} trials by validation accuracy (sec. 6.5)")
    for r in result["results"][:5]:
        log(f"best-{r['rank']}: val acc {r['val_acc'][-1]:.2f}, lr {r['learning_rate']:.2e}, "
            f"weight decay {r['weight_decay']:.2e}")
    return _write(out, "random-search", result, fig)


# --- sec. 7.6.1: the first layer's filters -------------------------------------------------------

def conv_filters(data, out, *, quick=False, seed=0, log=print):
    """The 30 5x5 filters of the simple convnet's first layer before and after training
    (Adam lr 0.001, batch 100, 20 epochs of the data), as the book's ``visualize_filter.py``."""
    model = conv_net.model()
    per_epoch = max(len(data[0][0]) // 100, 1)
    config = TrainConfig(iters_num=5 if quick else 20 * per_epoch, batch_size=100, optimizer="adam", seed=seed)
    before = np.asarray(init_state(model, config).params["W1"])
    state, history = train(model, data, config)
    after = np.asarray(state.params["W1"])
    log(f"after {history[-1].iteration} iterations: test accuracy {history[-1].test_acc:.3f}")
    fig = _figure(figsize=(10, 4.6))
    grids = fig.subfigures(2, 1)
    for grid, (title, filters) in zip(grids, (("before training", before), ("after training", after))):
        axes = grid.subplots(3, 10)
        grid.subplots_adjust(top=0.85)
        for ax, f in zip(axes.ravel(), filters[:, 0]):
            ax.imshow(f, cmap="gray_r", interpolation="nearest")
            ax.set_axis_off()
        grid.suptitle(title)
    result = {"iters": config.iters_num, "test_acc": history[-1].test_acc, "filters_before": before.tolist(),
              "filters_after": after.tolist()}
    return _write(out, "conv-filters", result, fig)


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
    fig = _figure(figsize=(6, 4))
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
    return _write(out, "seq2seq-addition", result, fig)


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
    fig = _figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    left.plot(range(1, len(accuracy) + 1), accuracy, marker="o")
    left.set(xlabel="epochs", ylabel="accuracy (exact match)", ylim=(0, 1), title="attention seq2seq on dates")
    right.imshow(weights, cmap="gray", vmin=0, vmax=max(float(weights.max()), 1e-9))
    right.set_xticks(range(len(question)), list(question), fontsize=6)
    right.set_yticks(range(len(answer) - 1), list(answer[1:]), fontsize=7)
    right.set_title("attention of each answer character (rows) on the question", fontsize=9)
    return _write(out, "attention-dates", result, fig)


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
    fig = _figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    left.plot(range(1, len(history) + 1), result["loss"])
    left.set(xlabel="epochs", ylabel="loss", title="the two-layer net on the spiral (the sequel, sec. 1.4)")
    right.contourf(gx, gy, regions, levels=[-0.5, 0.5, 1.5, 2.5], alpha=0.3, colors=["C0", "C1", "C2"])
    labels = np.argmax(t, axis=1)
    for k, marker in enumerate("ox^"):
        right.scatter(x[labels == k, 0], x[labels == k, 1], s=12, marker=marker)
    right.set(title="decision boundary", xticks=[], yticks=[])
    return _write(out, "spiral", result, fig)


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
    fig = _figure(figsize=(10, 4))
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
    return _write(out, "rnn-gradients", result, fig)


EXPERIMENTS = {
    "activation-histograms": activation_histograms,
    "weight-init": weight_init,
    "batch-norm": batch_norm,
    "overfitting": overfitting,
    "random-search": random_search,
    "conv-filters": conv_filters,
    "seq2seq-addition": seq2seq_addition,
    "attention-dates": attention_dates,
    "spiral": spiral,
    "rnn-gradients": rnn_gradients,
}
