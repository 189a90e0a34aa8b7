"""The experiments of chapters 6 and 7 and of the sequel's chapters 1, 6, 7 and 8, from live code:
each writes a figure like the book's (``NAME.png``) and the numbers behind it (``NAME.json``)
into a directory; and the book's optimiser comparison (``compare_optimizers``), the command's
``compare-optimizers``.

Every experiment is ``fn(data, out, *, quick=False, seed=0, log=print) -> dict`` with
``data`` as ``datasets.load_mnist_sample()`` returns it; ``quick`` runs a tiny version
(for tests). ``EXPERIMENTS`` maps the command-line names to them.
"""

from backprop_jax.experiments._book import (
    BOOK_OPTIMIZERS, activation_histograms, batch_norm, compare_optimizers, conv_filters, overfitting, random_search,
    random_search_trial, weight_init)
from backprop_jax.experiments._sequel import attention_dates, rnn_gradients, seq2seq_addition, spiral

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
"""The experiments by the names ``backprop-jax experiment NAME`` takes."""

__all__ = ["EXPERIMENTS", "compare_optimizers", "BOOK_OPTIMIZERS", "activation_histograms", "weight_init",
           "batch_norm", "overfitting", "random_search", "random_search_trial", "conv_filters", "seq2seq_addition",
           "attention_dates", "spiral", "rnn_gradients"]
