"""The book's experiments of chapters 6 and 7: the optimiser comparison, initialisation, batch
normalisation, overfitting, random search, the first layer's filters."""

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
from backprop_jax.experiments._figures import figure, write


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
    fig = figure(figsize=(12, 9))
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
    return write(out, "activation-histograms", result, fig)


# --- sec. 6.2.3: weight initialisation on MNIST ------------------------------------------------

def weight_init(data, out, *, quick=False, seed=0, log=print):
    """Loss curves of a 5-layer ReLU net (100 units x 4) trained with SGD (lr 0.01, batch 128)
    from std 0.01, Xavier and He weights, as the book's ``weight_init_compare.py``."""
    iters = 20 if quick else 2000
    result = {"net": [784, 100, 100, 100, 100, 10], "iters": iters, "batch_size": 128, "learning_rate": 0.01,
              "curves": {}}
    fig = figure(figsize=(7, 4.5))
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
    return write(out, "weight-init", result, fig)


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
    experiment shows how far a run gets; the explosion check is off). That NaN is the result
    shown, not a fault to debug: JAX's NaN debugging (``jax_debug_nans``) is off for it."""
    seen = []  # the history as the last call left it

    def keep(state, history):
        seen[:] = history

    try:
        with jax.debug_nans(False), jax.debug_infs(False):
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
    fig = figure(figsize=(12, 2.6 * rows))
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
    return write(out, "batch-norm", result, fig)


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
    fig = figure(figsize=(13, 4))
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
    return write(out, "overfitting", result, fig)


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
    fig = figure(figsize=(13, 2.4 * rows))
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
    return write(out, "random-search", result, fig)


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
    fig = figure(figsize=(10, 4.6))
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
    return write(out, "conv-filters", result, fig)
