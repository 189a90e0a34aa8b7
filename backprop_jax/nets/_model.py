"""The one contract every network follows, stateless or not, and what is derived from it."""

from typing import Callable, NamedTuple

import jax.numpy as jnp

from backprop_jax.layers import softmax_with_loss


class Model(NamedTuple):
    """A classifier as pure functions over explicit pytrees; the trainer, ``gradcheck``,
    ``graph`` and the command line take exactly this.

    Parameters are a pytree (a dict keyed like the book: ``W1``, ``b1``, ...);
    ``state`` holds what changes without being learned (batch norm's running
    statistics), ``{}`` when there is none. Nothing is mutated: ``apply``
    returns the new state.

    ``loss``, ``predict`` and ``accuracy`` are derived from ``apply`` here, once,
    for every network.
    """
    init: Callable  # key -> (params, state)
    apply: Callable  # (params, state, x (N, ...), *, key=None, train=False) -> (scores (N, C), new_state)
    penalty: Callable | None = None  # params -> scalar added to the loss (the book's weight decay)
    criterion: Callable = softmax_with_loss  # (scores, t) -> scalar: the loss layer on top
    # params -> a pytree of bools shaped like params, True at the weights (the arrays weight
    # decay penalises); None: no parameter is a weight. optax takes it as a mask, e.g.
    # optax.adamw(1e-3, mask=model.weight_mask).
    weight_mask: Callable | None = None
    # What the trainer measures on the training and test sets after each epoch: "accuracy"
    # (arg-max of the scores against integer labels or one-hot rows) or "loss" (the mean
    # criterion, for regression and anything else). None: "accuracy" when the criterion is the
    # book's Softmax-with-Loss, else "loss".
    metric: str | None = None

    def measures_accuracy(self):
        """True if the trainer records accuracy for this model (see ``metric``), False for the loss."""
        if self.metric not in (None, "accuracy", "loss"):
            raise ValueError(f"Model.metric must be None, 'accuracy' or 'loss', got {self.metric!r}")
        return self.metric == "accuracy" or (self.metric is None and self.criterion is softmax_with_loss)

    def loss(self, params, state, x, t, *, key=None, train=True):
        """``(loss, new_state)``: the criterion (mean Softmax-with-Loss) of the scores plus the penalty.

        ``t`` is (N,) integer labels or (N, C) one-hot rows; ``key`` draws dropout
        masks when ``train`` is True (networks without dropout ignore it).
        """
        scores, new_state = self.apply(params, state, x, key=key, train=train)
        value = self.criterion(scores, t)
        if self.penalty is not None:
            value = value + self.penalty(params)
        return value, new_state

    def loss_fn(self, state=None, *, key=None, train=True):
        """``(params, x, t) -> loss`` at a fixed ``state`` (default ``{}``): the scalar function
        to hand to ``jax.grad``, ``gradcheck`` or ``graph.trace``."""
        state = {} if state is None else state

        def loss(params, x, t):
            return self.loss(params, state, x, t, key=key, train=train)[0]
        return loss

    def predict(self, params, state, x):
        """Scores (N, C) in evaluation mode (running statistics, no dropout)."""
        return self.apply(params, state, x, train=False)[0]

    def accuracy(self, params, state, x, t):
        """Fraction of rows of ``x`` whose arg-max score is the label: the book's ``accuracy``.

        ``t``: integer labels (N,) or one-hot rows (N, C). A float32 scalar in [0, 1].
        """
        return (count_correct(self.predict(params, state, x), t) / jnp.shape(x)[0]).astype(jnp.float32)


def count_correct(scores, t):
    """How many rows of ``scores`` (N, C) have their arg-max at the label; labels of -1 never count.

    ``t``: integer labels (N,) or one-hot rows (N, C). An int32 scalar.
    """
    t = jnp.asarray(t)
    if t.ndim != 1:
        t = jnp.argmax(t, axis=1)
    return jnp.sum(jnp.argmax(scores, axis=1) == t)
