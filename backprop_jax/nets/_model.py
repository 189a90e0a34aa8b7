"""The one contract every network follows, stateless or not, and what is derived from it."""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from backprop_jax.layers import softmax_with_loss


class Metric(NamedTuple):
    """What the trainer measures of a model after each epoch, settled once from ``Model.metric``
    (``Model.measure()``): the one value the trainer reads, whatever kind ``metric`` was given as."""
    name: str  # what the epochs record: "accuracy" (a metric function's scores too), "loss" or "perplexity"
    # (model, params, state, x, t) -> (N,) float32: each example's correctness, score or criterion
    per_example: Callable[..., Any]
    labels: bool  # the targets are class labels (integers or one-hot rows), checked against the scores


def _correct_examples(model: "Model", params: Any, state: Any, x: Any, t: Any) -> Any:
    return correct(model.predict(params, state, x), t).astype(jnp.float32)


def _criterion_examples(model: "Model", params: Any, state: Any, x: Any, t: Any) -> Any:
    scores = model.predict(params, state, x)
    return jax.vmap(lambda s, t: model.criterion(s[None], t[None]))(scores, t).astype(jnp.float32)


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
    init: Callable[..., Any]  # key -> (params, state)
    apply: Callable[..., Any]  # (params, state, x (N, ...), *, key=None, train=False) -> (scores (N, C), new_state)
    penalty: Callable[..., Any] | None = None  # params -> scalar added to the loss (the book's weight decay)
    criterion: Callable[..., Any] = softmax_with_loss  # (scores, t) -> scalar: the loss layer on top
    # params -> a pytree of bools shaped like params, True at the weights (the arrays weight
    # decay penalises); None: no parameter is a weight. optax takes it as a mask, e.g.
    # optax.adamw(1e-3, mask=model.weight_mask).
    weight_mask: Callable[..., Any] | None = None
    # What the trainer measures on the training and test sets after each epoch: "accuracy"
    # (arg-max of the scores against integer labels or one-hot rows) or "loss" (the mean
    # criterion, for regression and anything else) or "perplexity" (the loss, reported also as
    # its exp: a language model); or a function (params, state, x, t) -> (N,) float32, each
    # example's score in [0, 1], recorded as the accuracy (the sequel's exact match of a generated
    # answer). None: "accuracy" when the criterion is the book's Softmax-with-Loss, else "loss".
    metric: str | Callable[..., Any] | None = None
    # (seed, iteration, batch_size, n) -> int32 (batch_size,): the training rows of update
    # iteration + 1. None: the book's, drawn at random (training.batch_indices);
    # shuffled_rows reads a new permutation of the set each epoch (the sequel's Trainer);
    # sequential_rows reads the set in order, for truncated BPTT (a language model whose
    # state carries the last hidden state from one batch to the next).
    batch_rows: Callable[..., Any] | None = None
    # For inputs that are ids (characters, words): how many there are, so that an id out of
    # range (which an embedding lookup would silently clip) is refused where data enters.
    # None: the inputs are not ids.
    input_ids: int | None = None

    def measure(self) -> Metric:
        """The ``Metric`` the trainer records for this model, from ``metric``: a function's
        per-example scores, recorded as the accuracy; the book's accuracy (the arg-max of the
        scores against class labels); or the criterion of each example, recorded as the loss
        (and its exp, for ``"perplexity"``)."""
        metric = self.metric
        if callable(metric):
            return Metric("accuracy", lambda model, params, state, x, t: jnp.asarray(
                metric(params, state, x, t)).astype(jnp.float32), labels=False)
        if metric not in (None, "accuracy", "loss", "perplexity"):
            raise ValueError(f"Model.metric must be None, 'accuracy', 'loss', 'perplexity' or a function "
                             f"(params, state, x, t) -> per-example scores, got {metric!r}")
        if metric == "accuracy" or (metric is None and self.criterion is softmax_with_loss):
            return Metric("accuracy", _correct_examples, labels=True)
        return Metric(metric or "loss", _criterion_examples, labels=False)

    def measures_accuracy(self) -> bool:
        """True if the trainer records accuracy for this model (see ``metric``), False for the loss."""
        return self.measure().name == "accuracy"

    def classifies(self) -> bool:
        """True if the accuracy is the arg-max of the scores against class labels (the book's),
        whose labels the trainer checks against the classes; False for a loss or a metric function."""
        return self.measure().labels

    def loss(self, params: Any, state: Any, x: Any, t: Any, *, key: Any = None, train: bool = True) -> tuple[Any, Any]:
        """``(loss, new_state)``: the criterion (mean Softmax-with-Loss) of the scores plus the penalty.

        ``t`` is (N,) integer labels or (N, C) one-hot rows; ``key`` draws dropout
        masks when ``train`` is True (networks without dropout ignore it).
        """
        scores, new_state = self.apply(params, state, x, key=key, train=train)
        value = self.criterion(scores, t)
        if self.penalty is not None:
            value = value + self.penalty(params)
        return value, new_state

    def loss_fn(self, state: Any = None, *, key: Any = None, train: bool = True) -> Callable[[Any, Any, Any], Any]:
        """``(params, x, t) -> loss`` at a fixed ``state`` (default ``{}``): the scalar function
        to hand to ``jax.grad``, ``gradcheck`` or ``graph.trace``."""
        state = {} if state is None else state

        def loss(params: Any, x: Any, t: Any) -> Any:
            return self.loss(params, state, x, t, key=key, train=train)[0]
        return loss

    def predict(self, params: Any, state: Any, x: Any) -> Any:
        """Scores (N, C) in evaluation mode (running statistics, no dropout)."""
        return self.apply(params, state, x, train=False)[0]

    def accuracy(self, params: Any, state: Any, x: Any, t: Any) -> Any:
        """Fraction of rows of ``x`` whose arg-max score is the label: the book's ``accuracy``.

        ``t``: integer labels (N,) or one-hot rows (N, C). A float32 scalar in [0, 1].
        """
        return (count_correct(self.predict(params, state, x), t) / jnp.shape(x)[0]).astype(jnp.float32)


def correct(scores: Any, t: Any) -> Any:
    """Whether each row of ``scores`` (N, C) has its arg-max at the label, the book's accuracy
    example by example; a label of -1 never matches. ``t``: integer labels (N,) or one-hot rows
    (N, C). Bools (N,)."""
    t = jnp.asarray(t)
    if t.ndim != 1:
        t = jnp.argmax(t, axis=1)
    return jnp.argmax(scores, axis=1) == t


def count_correct(scores: Any, t: Any) -> Any:
    """How many rows of ``scores`` (N, C) have their arg-max at the label (``correct``); labels of
    -1 never count. ``t``: integer labels (N,) or one-hot rows (N, C). An int32 scalar.
    """
    return jnp.sum(correct(scores, t))


def sequential_rows(seed: Any, iteration: Any, batch_size: int, n: int) -> Any:
    """The rows ``j * batch_size ... (j + 1) * batch_size - 1``, ``j = iteration % (n // batch_size)``:
    the training set read in order, one block of ``batch_size`` rows per update, from the start
    again each epoch; a ``Model`` takes it as its ``batch_rows``.

    The sequel's truncated backpropagation through time reads its corpus so
    (``RnnlmTrainer.get_batch``): row ``b`` of every block continues row ``b`` of the block before,
    as ``rnnlm.training_data`` lays the windows out, so the hidden state a model carries from one
    update to the next is the state where the window starts. ``seed`` is unused (the order is
    the same for every seed). int32 ``(batch_size,)``.
    """
    del seed
    if n < batch_size:
        raise ValueError(f"sequential_rows: the training set has {n} rows, fewer than one batch of {batch_size}")
    block = jnp.asarray(iteration) % (n // batch_size)
    return (block * batch_size + jnp.arange(batch_size)).astype(jnp.int32)


def shuffled_rows(seed: Any, iteration: Any, batch_size: int, n: int) -> Any:
    """The rows of update ``iteration + 1`` when every epoch reads the training set in a new
    random order, ``batch_size`` rows after the other: the sequel's ``Trainer.fit``
    (``numpy.random.permutation`` each epoch, ``n // batch_size`` batches, the rest of the rows
    left out that epoch), the permutation of epoch ``e`` drawn from ``fold_in(key(seed), e)``.
    A ``Model`` takes it as its ``batch_rows``. int32 ``(batch_size,)``."""
    if n < batch_size:
        raise ValueError(f"shuffled_rows: the training set has {n} rows, fewer than one batch of {batch_size}")
    per_epoch = n // batch_size
    iteration = jnp.asarray(iteration)
    order = jax.random.permutation(jax.random.fold_in(jax.random.key(seed), iteration // per_epoch), n)
    return jax.lax.dynamic_slice(order, ((iteration % per_epoch) * batch_size,), (batch_size,)).astype(jnp.int32)


def carried_rows(time_size: int) -> Callable[..., Any]:
    """The sequel's ``RnnlmTrainer.get_batch`` as a ``Model.batch_rows``, over the rows
    ``rnnlm.every_window`` lays out (row ``p``: the ``time_size`` words from position ``p``):
    update ``iteration + 1`` reads the rows ``(b * jump + iteration * time_size) % n``,
    ``jump = n // batch_size``, for ``b = 0 .. batch_size - 1``.

    The reading position (the sequel's ``time_idx``, ``time_size`` words on per update) carries
    on across epochs as ``RnnlmTrainer.fit`` carries it, wrapping round the corpus, instead of
    restarting the streams each epoch (``sequential_rows`` over ``rnnlm.training_data``). The
    sequel's epoch is ``n // (batch_size * time_size)`` updates. ``seed`` is unused.
    int32 ``(batch_size,)``.
    """
    if isinstance(time_size, bool) or not isinstance(time_size, int) or time_size < 1:
        raise ValueError(f"carried_rows: time_size must be an integer >= 1, got {time_size!r}")

    def batch_rows(seed: Any, iteration: Any, batch_size: int, n: int) -> Any:
        del seed
        if n < batch_size:
            raise ValueError(f"carried_rows: the training set has {n} rows, fewer than one batch of {batch_size}")
        jump = n // batch_size
        return ((jnp.arange(batch_size) * jump + jnp.asarray(iteration) * time_size) % n).astype(jnp.int32)

    return batch_rows
