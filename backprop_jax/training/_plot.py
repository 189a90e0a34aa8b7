"""The learning-curve figure, like the book's accuracy plot (sec. 5.7.4)."""

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402

from backprop_jax._io import atomic_path  # noqa: E402


def plot_curves(history, path, title=""):
    """Writes train/test accuracy and training loss per epoch to ``path`` (PNG), atomically."""
    epochs = [e["epoch"] for e in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    ax_acc.plot(epochs, [e["train_acc"] for e in history], label="train acc")
    ax_acc.plot(epochs, [e["test_acc"] for e in history], label="test acc", linestyle="--")
    ax_acc.set(xlabel="epochs", ylabel="accuracy", ylim=(0, 1.0))
    ax_acc.legend(loc="lower right")
    ax_loss.plot(epochs, [e["train_loss"] for e in history], label="train loss (mini-batch mean)")
    ax_loss.set(xlabel="epochs", ylabel="loss")
    ax_loss.legend(loc="upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
