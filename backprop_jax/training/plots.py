"""The figures of a run: learning curves (sec. 5.7.4) and the optimiser comparison (sec. 6.1.7).

Drawn on a bare ``matplotlib.figure.Figure``, not through ``pyplot``: no global
backend is chosen and no window is opened, so this works the same in a script,
on a server without a display and inside a notebook.
"""

from matplotlib.figure import Figure

from backprop_jax._io import atomic_path


def save_figure(fig, path):
    """Writes ``fig`` to ``path`` as a PNG, atomically."""
    if not fig.subfigs:  # subfigures are laid out by their own subplots_adjust
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_curves(history, path, title=""):
    """Writes train/test accuracy and training loss per epoch to ``path`` (PNG), atomically; for a
    model measured by its loss (no accuracy recorded), the training and test loss."""
    epochs = [e["epoch"] for e in history]
    fig = Figure(figsize=(10, 4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    if history and history[0].get("test_acc") is None:
        ax_acc.plot(epochs, [e["test_loss"] for e in history], label="test loss (whole set)", linestyle="--")
        ax_acc.set(xlabel="epochs", ylabel="loss")
        ax_acc.legend(loc="upper right")
    else:
        ax_acc.plot(epochs, [e["train_acc"] for e in history], label="train acc")
        ax_acc.plot(epochs, [e["test_acc"] for e in history], label="test acc", linestyle="--")
        ax_acc.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
        ax_acc.legend(loc="lower right")
    ax_loss.plot(epochs, [e["train_loss"] for e in history], label="train loss (mini-batch mean)")
    ax_loss.set(xlabel="epochs", ylabel="loss")
    ax_loss.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


def plot_losses(histories, path):
    """Writes the loss curves of ``{name: [Epoch, ...]}`` against iterations to ``path`` (PNG)."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for (name, history), marker in zip(histories.items(), "osD^"):
        ax.plot([e.iteration for e in history], [e.train_loss for e in history], marker=marker,
                markevery=max(len(history) // 10, 1), label=name)
    ax.set(xlabel="iterations", ylabel="loss (mini-batch mean per epoch)", ylim=(0, None))
    ax.legend()
    save_figure(fig, path)
