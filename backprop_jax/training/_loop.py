"""Learning, the chapter's four steps (sec. 5.7.4), jit-compiled.

1. mini-batch: draw ``batch_size`` random training examples;
2. gradient: ``jax.grad`` of the loss, which runs the layers' hand rules;
3. update: one optax step;
4. repeat.

One compiled call runs many epochs, each a ``lax.fori_loop`` of steps
followed by the evaluation on the whole training and test sets; the data lives
on the device and batches are gathered there. The host hears from the device
once per call (about twice a second), to log, write files and checkpoint.

Data parallelism (one process or several, ``jax.distributed``): a 1-D mesh
with axis ``"data"`` splits every mini-batch over its devices; parameters and
optimiser state are replicated and XLA adds the all-reduce of the gradients.
With several processes each one gathers, on the host, only the rows of each
batch that its own devices hold (``feed="host"``).
"""

import dataclasses
import functools
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from backprop_jax.training import optimizers as _optimizers


class Optimizer(NamedTuple):
    """An entry of ``OPTIMIZERS``."""
    make: Any  # learning rate -> optax GradientTransformation
    learning_rate: float  # the default learning rate


OPTIMIZERS = {
    "sgd": Optimizer(_optimizers.sgd, 0.1),
    "momentum": Optimizer(_optimizers.momentum, 0.01),
    "nesterov": Optimizer(_optimizers.nesterov, 0.01),
    "adagrad": Optimizer(_optimizers.adagrad, 0.01),
    "rmsprop": Optimizer(_optimizers.rmsprop, 0.01),
    "adam": Optimizer(_optimizers.adam, 0.001),
}
"""The book's optimiser set (sec. 6.1) by name, each an ``Optimizer``: its update exactly as
``common/optimizer.py`` (``backprop_jax.optimizers``) and its default learning rate (SGD 0.1,
the rate of the book's ``train_neuralnet.py``; Adam 0.001; the others 0.01)."""


def check_seed(seed):
    """Raises ValueError unless ``seed`` is an integer from 0 to 2**32 - 1: exactly the seeds
    ``jax.random.key`` tells apart (it keeps 32 bits, so 2**32 would silently be seed 0 again)."""
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2 ** 32):
        raise ValueError(f"seed must be an integer from 0 to 2**32 - 1 = {2 ** 32 - 1}, got {seed!r}")


def check_batch_split(batch_size, n_devices):
    """Raises ValueError unless every mini-batch of ``batch_size`` splits evenly over ``n_devices``."""
    if batch_size % n_devices:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {n_devices} devices; "
                         f"choose a multiple of {n_devices}")


# A loss whose mean over DIVERGENCE_EPOCHS epochs in a row stays above DIVERGENCE_FACTOR times its
# starting value stops training (a learning rate far too large explodes it without a NaN).
DIVERGENCE_FACTOR = 10.0
DIVERGENCE_EPOCHS = 3


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the book's recipe (sec. 5.7.4)."""
    iters_num: int = 10_000  # mini-batch updates in all
    batch_size: int = 100  # examples per update, drawn at random with replacement
    # None: the named optimizer's default (OPTIMIZERS: 0.1 for sgd), resolved by ``lr`` whenever it
    # is read, so ``dataclasses.replace(config, optimizer="adam")`` takes Adam's default.
    learning_rate: float | None = None
    # One of OPTIMIZERS, or any optax GradientTransformation (optax.adamw(1e-3), a chain, ...),
    # which carries its own learning rate.
    optimizer: Any = "sgd"
    seed: int = 0  # initial weights and the batch sequence: 0 to 2**32 - 1
    # The book's Trainer option: evaluate each epoch on the first this-many training and test
    # examples only (None: all); the last epoch is always evaluated on all of them.
    evaluate_sample_num_per_epoch: int | None = None

    def __post_init__(self):
        if isinstance(self.optimizer, optax.GradientTransformation):
            if self.learning_rate is not None:
                raise ValueError(f"learning_rate must be None with an optax transformation as the optimizer "
                                 f"(it carries its own), got {self.learning_rate!r}")
        elif not (isinstance(self.optimizer, str) and self.optimizer in OPTIMIZERS):
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or an optax "
                             f"GradientTransformation, got {self.optimizer!r}")
        sample = self.evaluate_sample_num_per_epoch
        if sample is not None and (not isinstance(sample, int) or isinstance(sample, bool) or sample < 1):
            raise ValueError(f"evaluate_sample_num_per_epoch must be None or a positive integer, got {sample!r}")
        for name in ("iters_num", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_seed(self.seed)
        if self.learning_rate is not None and not (
                isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")

    @property
    def lr(self):
        """The learning rate of a named optimiser: ``learning_rate``, or the optimiser's default
        when that is None; None for an optax transformation (it carries its own)."""
        if not isinstance(self.optimizer, str):
            return None
        return OPTIMIZERS[self.optimizer].learning_rate if self.learning_rate is None else self.learning_rate

    def make_optimizer(self):
        """The optax ``GradientTransformation`` these settings name."""
        if isinstance(self.optimizer, optax.GradientTransformation):
            return self.optimizer
        return OPTIMIZERS[self.optimizer].make(self.lr)

    def record(self):
        """These settings as JSON-able values, for checkpoints and ``metrics.json``: a named
        optimiser by its name and the learning rate it uses, a transformation by
        ``describe_optimizer``."""
        record = dataclasses.asdict(self)
        if isinstance(self.optimizer, str):
            record["learning_rate"] = self.lr
        else:
            record["optimizer"] = describe_optimizer(self.optimizer)
        return record

    def optimizer_name(self):
        """For messages: ``"adam lr 0.001"``, or ``"an optax transformation"``."""
        if isinstance(self.optimizer, str):
            return f"{self.optimizer} lr {self.lr}"
        return "an optax transformation"


def describe_optimizer(transformation):
    """A description of an optax transformation that is the same for the same construction, in
    any process, and differs when a hyperparameter does: the functions it is made of and the
    values they close over (learning rates, betas, schedules), read recursively."""
    seen = set()

    def describe(obj, depth):
        if depth > 24 or id(obj) in seen:
            return "..."
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return repr(obj)
        if isinstance(obj, (np.ndarray, jax.Array, np.generic)):
            a = np.asarray(obj)
            return repr(a.tolist()) if a.size <= 16 else f"array{a.shape}:{a.dtype}:{hash(a.tobytes())}"
        seen.add(id(obj))
        if isinstance(obj, functools.partial):
            parts = [describe(obj.func, depth + 1)] + [describe(a, depth + 1) for a in obj.args]
            parts += [f"{k}={describe(v, depth + 1)}" for k, v in sorted(obj.keywords.items())]
            return f"partial({', '.join(parts)})"
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return f"{type(obj).__name__}({', '.join(describe(v, depth + 1) for v in obj)})"
        if isinstance(obj, (tuple, list)):
            return f"[{', '.join(describe(v, depth + 1) for v in obj)}]"
        if isinstance(obj, dict):
            return "{" + ", ".join(f"{k!r}: {describe(v, depth + 1)}" for k, v in sorted(obj.items(), key=str)) + "}"
        code = getattr(obj, "__code__", None)
        if code is not None:
            cells = [describe(c.cell_contents, depth + 1) for c in (obj.__closure__ or ())
                     if _has_contents(c)]
            return f"{obj.__module__}.{obj.__qualname__}({', '.join(cells)})"
        return type(obj).__qualname__

    return describe(transformation, 0)


def _has_contents(cell):
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, saved in checkpoints."""
    params: Any  # the model's parameter pytree
    opt_state: Any  # optax state of the same structure
    iteration: jax.Array  # int32 scalar: updates done so far
    model_state: Any  # the model's state (batch-norm running statistics), {} for most


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def init_state(model, config):
    """Initial parameters (from ``config.seed``) and optimiser state."""
    params, model_state = model.init(jax.random.fold_in(jax.random.key(config.seed), 0))
    return TrainState(params, config.make_optimizer().init(params), jnp.zeros((), jnp.int32), model_state)


def data_parallel_mesh(n_devices=None):
    """A 1-D mesh with axis ``"data"`` over the first ``n_devices`` devices (default: all).

    In a multi-process run (``jax.distributed``) the mesh spans every device of
    every process, and ``n_devices`` must be None or that total.

    The axis type is ``Auto``: XLA decides how the outputs of the hand rules
    are sharded. Under ``Explicit`` axes (the default of ``jax.make_mesh`` in
    recent JAX) a rule such as ``dW = x.T @ dout``, which contracts over the
    sharded batch axis, is refused as ambiguous; with ``Auto`` XLA makes dW
    replicated and inserts the all-reduce, as it does for autodiff.
    """
    devices = jax.devices()
    n = len(devices) if n_devices is None else n_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"cannot use {n} devices: {len(devices)} available ({devices[0].platform})")
    if jax.process_count() > 1 and n != len(devices):
        raise ValueError(f"cannot use {n} devices: a run of {jax.process_count()} processes uses all "
                         f"{len(devices)} of their devices (choose each process's devices with "
                         f"CUDA_VISIBLE_DEVICES or JAX_LOCAL_DEVICE_IDS instead)")
    return jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,), devices=devices[:n])


def _check_feed(feed, choices=("device", "host")):
    if feed not in choices:
        raise ValueError(f"feed must be {', '.join(map(repr, choices[:-1]))} or {choices[-1]!r}, got {feed!r}")


def iterations_per_epoch(n_train, batch_size):
    """Updates in an epoch, as the book counts them: ``max(n_train // batch_size, 1)``."""
    return max(n_train // batch_size, 1)


def batch_indices(seed, iteration, batch_size, n):
    """The training-set rows of the mini-batch of update ``iteration + 1``, shape ``(batch_size,)``.

    Drawn at random with replacement from ``fold_in(key(seed), iteration + 1)``,
    so they depend only on the seed and the iteration (a resumed run sees the
    batches of an uninterrupted one; every process of a run agrees on them).
    """
    return jax.random.randint(jax.random.fold_in(jax.random.key(seed), iteration + 1), (batch_size,), 0, n)


def make_epoch_fn(model, config, iter_per_epoch, batch_sharding=None, *, feed="device"):
    """``(state, xs, ts) -> (state, losses, active)`` running one epoch; jit it.

    With ``feed="device"``, ``xs, ts`` are the training set, from which step
    ``i`` gathers the rows ``model.batch_rows(seed, i, ...)`` (``batch_indices``, the book's draw
    at random, when the model leaves it None); with ``"host"``, the
    epoch's mini-batches already gathered, of shape
    ``(iter_per_epoch, batch_size, ...)`` (``epoch_batches``). The number of steps is
    ``min(iter_per_epoch, iters_num - iteration)``, a traced value, so the
    last, shorter epoch reuses the same compiled loop; ``losses`` has
    ``iter_per_epoch`` entries of which the first ``sum(active)`` are real.
    With ``batch_sharding``, each mini-batch is split over the devices that
    way (data parallelism); XLA adds the all-reduce of the gradients.
    """
    _check_feed(feed)
    optimizer = config.make_optimizer()
    rows = model.batch_rows or batch_indices
    grad_fn = jax.value_and_grad(lambda params, *args, key: model.loss(params, *args, key=key, train=True),
                                 has_aux=True)

    def epoch(state, xs, ts):
        # Traced with the program (no eager op before it); apart from the batch keys.
        dropout_key = jax.random.fold_in(jax.random.key(config.seed), 2 ** 31 - 1)

        def step(k, carry):
            state, losses = carry
            i = state.iteration
            if feed == "host":
                x_batch, t_batch = xs[k], ts[k]
            else:
                batch_mask = rows(config.seed, i, config.batch_size, xs.shape[0])
                x_batch, t_batch = xs[batch_mask], ts[batch_mask]
            if batch_sharding is not None:
                x_batch = jax.lax.with_sharding_constraint(x_batch, batch_sharding)
                t_batch = jax.lax.with_sharding_constraint(t_batch, batch_sharding)
            (loss, model_state), grads = grad_fn(state.params, state.model_state, x_batch, t_batch,
                                                 key=jax.random.fold_in(dropout_key, i))
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            new = TrainState(params, opt_state, i + 1, model_state)
            return new, losses.at[k].set(loss.astype(losses.dtype))

        # Epochs end at multiples of iter_per_epoch: a run resumed after a short last epoch
        # (one that ended at an iters_num between two) completes that epoch first.
        n_steps = jnp.clip(jnp.minimum(config.iters_num - state.iteration,
                                       iter_per_epoch - state.iteration % iter_per_epoch), 0, iter_per_epoch)
        losses = jnp.full((iter_per_epoch,), jnp.nan, jnp.float32)
        state, losses = jax.lax.fori_loop(0, n_steps, step, (state, losses))
        return state, losses, jnp.arange(iter_per_epoch) < n_steps

    return epoch


@functools.partial(jax.jit, static_argnums=(0, 2, 3, 4, 5))
def _epoch_rows(seed, first_iteration, batch_size, n, iter_per_epoch, rows):
    iterations = first_iteration + jnp.arange(iter_per_epoch)
    return jax.vmap(lambda i: rows(seed, i, batch_size, n))(iterations)


def epoch_batches(x_train, t_train, config, first_iteration, iter_per_epoch, sharding, rows=None):
    """The mini-batches of the epoch that starts after update ``first_iteration``, as global
    arrays ``(iter_per_epoch, batch_size, ...)`` laid out by ``sharding``.

    Every process computes the same batch indices (``rows``, a model's ``batch_rows``; None:
    ``batch_indices``) but
    gathers, on the host, only the rows that its own devices hold, and sends
    only those: each process feeds its own shard of every batch.
    """
    rows = np.asarray(_epoch_rows(config.seed, first_iteration, config.batch_size, len(x_train),
                                  iter_per_epoch, rows or batch_indices))

    def put(data):
        shape = (iter_per_epoch, config.batch_size, *data.shape[1:])
        return jax.make_array_from_callback(
            shape, sharding, lambda index: data[rows[index[:2]]][(slice(None), slice(None), *index[2:])])
    return put(x_train), put(t_train)


def eval_chunks(x, t, sharding=None, chunk=10_000):
    """``x, t`` padded (labels with -1, which never match) and reshaped to
    ``(n_chunks, chunk, ...)`` on the host, then placed by ``sharding``.

    ``chunk`` is rounded up to a multiple of the devices ``sharding`` splits
    it over, ``PartitionSpec(None, "data")``; each process sends only its part.
    """
    x, t = np.asarray(x), np.asarray(t)
    n = len(x)
    n_shards = 1 if sharding is None else sharding.mesh.size
    chunk = -(-min(chunk, n) // n_shards) * n_shards
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    xs = np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(n_chunks, chunk, *x.shape[1:])
    ts = np.pad(t, [(0, pad)] + [(0, 0)] * (t.ndim - 1),
                constant_values=-1 if np.issubdtype(t.dtype, np.integer) else 0)
    ts = ts.reshape(n_chunks, chunk, *t.shape[1:])
    if sharding is None:
        return jnp.asarray(xs), jnp.asarray(ts)
    return jax.device_put(xs, sharding), jax.device_put(ts, sharding)


class Evaluation(NamedTuple):
    """The sets an epochs program evaluates on, each an ``(xs, ts)`` of ``eval_chunks``: every
    epoch on ``train_sample`` and ``test_sample``, except the run's last epoch, on ``train`` and
    ``test``. Without ``evaluate_sample_num_per_epoch`` the samples are the whole sets."""
    train: tuple
    test: tuple
    train_sample: tuple
    test_sample: tuple


def evaluation_sets(train, test, sample_num=None, sharding=None, chunk=10_000):
    """The ``Evaluation`` of ``train`` and ``test`` (each ``(x, t)``, in ``eval_chunks`` of ``chunk``
    examples): the first ``sample_num`` of each as the samples (the book's
    ``evaluate_sample_num_per_epoch``), or, with None, all."""
    (x_train, t_train), (x_test, t_test) = train, test
    whole_train, whole_test = (eval_chunks(x_train, t_train, sharding, chunk),
                               eval_chunks(x_test, t_test, sharding, chunk))
    if sample_num is None:
        return Evaluation(whole_train, whole_test, whole_train, whole_test)
    return Evaluation(whole_train, whole_test,
                      eval_chunks(x_train[:sample_num], t_train[:sample_num], sharding, chunk),
                      eval_chunks(x_test[:sample_num], t_test[:sample_num], sharding, chunk))


_EVAL_CHUNK_BYTES = 2 ** 28  # the scores of one evaluation chunk stay under 256 MiB


def eval_chunk_size(scores):
    """Examples per evaluation chunk: 10,000, or fewer where the scores of so many would pass
    256 MiB (a language model scores a vocabulary at every step of every window). ``scores``: the
    shape and dtype of one example's scores (what ``_check_data`` returns)."""
    return int(max(1, min(10_000, _EVAL_CHUNK_BYTES // max(_bytes(scores), 1))))


def _structure(data):
    """A few words on what ``data`` is: ``a tuple of 3``, ``a dict with keys [...]``, ``an ndarray``."""
    if isinstance(data, (tuple, list)):
        return f"a {type(data).__name__} of {len(data)}: ({', '.join(_structure(d) if isinstance(d, (tuple, list)) else type(d).__name__ for d in data)})"
    if isinstance(data, dict):
        return f"a dict with keys {sorted(map(str, data))}"
    return f"a {type(data).__name__}"


def split_data(data):
    """``((x_train, t_train), (x_test, t_test))`` from ``data``, or a ``ValueError`` that names the
    structure expected and the one given."""
    try:
        (x_train, t_train), (x_test, t_test) = data
    except (TypeError, ValueError):
        raise ValueError(f"data must be ((x_train, t_train), (x_test, t_test)), got {_structure(data)}") from None
    return (x_train, t_train), (x_test, t_test)


def _check_data(model, data):
    """Raises ValueError naming what in ``data`` does not fit ``model``; returns the shape and dtype
    of the scores ``model.predict`` makes for one training example (found from shapes alone)."""
    (x_train, t_train), (x_test, t_test) = split_data(data)
    for name, x, t in (("train", x_train, t_train), ("test", x_test, t_test)):
        if len(x) != len(t):
            raise ValueError(f"{name} set: {len(x)} inputs of shape {np.shape(x)} but {len(t)} "
                             f"{'labels' if model.classifies() else 'targets'} of shape {np.shape(t)}")
        if len(x) == 0:
            raise ValueError(f"{name} set is empty")
        for what, a in (("inputs", x), ("labels" if model.classifies() else "targets", t)):
            a = np.asarray(a)
            if np.issubdtype(a.dtype, np.inexact):
                bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
                if bad.any():
                    raise ValueError(f"{name} {what} hold NaN or infinite values: {int(bad.sum())} of {len(a)} "
                                     f"examples, the first at index {int(np.argmax(bad))}")
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    example = jax.ShapeDtypeStruct((1, *np.shape(x_train)[1:]), np.asarray(x_train[:1]).dtype)
    if not model.classifies():
        # Any targets the criterion takes: ask it, on the shapes alone.
        target = jax.ShapeDtypeStruct((1, *np.shape(t_train)[1:]), np.asarray(t_train[:1]).dtype)
        try:
            jax.eval_shape(lambda p, s, x, t: model.loss(p, s, x, t, train=False)[0], params, state, example, target)
        except Exception as e:  # noqa: BLE001 - any failure: the targets do not fit the model
            raise ValueError(f"the model's criterion does not take targets of shape {np.shape(t_train)[1:]} "
                             f"and dtype {np.asarray(t_train[:1]).dtype} for inputs of shape "
                             f"{np.shape(x_train)[1:]}: {str(e).splitlines()[0]}") from None
        return jax.eval_shape(model.predict, params, state, example)
    # The number of classes, from the shapes alone: nothing is computed.
    scores = jax.eval_shape(model.predict, params, state, example)
    n_classes = scores.shape[-1]
    for name, t in (("train", t_train), ("test", t_test)):
        t = np.asarray(t)
        if np.issubdtype(t.dtype, np.integer) and t.ndim == 1:
            bad = np.flatnonzero((t < 0) | (t >= n_classes))
            if bad.size:
                raise ValueError(f"{name} labels must be classes 0 to {n_classes - 1} (the model scores "
                                 f"{n_classes}), got {t[bad[0]]} at index {bad[0]} ({bad.size} such labels)")
        elif np.issubdtype(t.dtype, np.floating) and t.shape[1:] == (n_classes,):
            sums = t.sum(axis=1, dtype=np.float64)
            bad = np.flatnonzero((np.abs(sums - 1) > 1e-3) | np.any(t < 0, axis=1))
            if bad.size:
                raise ValueError(f"{name} one-hot labels: each row must be non-negative and sum to 1, but row "
                                 f"{bad[0]} sums to {sums[bad[0]]:.6g} ({bad.size} such rows)")
        else:
            raise ValueError(f"{name} labels must be integers of shape (N,) or one-hot rows of shape "
                             f"(N, {n_classes}) (the model scores {n_classes} classes), got shape {t.shape} "
                             f"and dtype {t.dtype}; a model that is not a classifier says so with "
                             f"Model(metric='loss') or a criterion other than softmax_with_loss")
    return scores


def _bytes(tree):
    return sum(math.prod(leaf.shape) * getattr(leaf.dtype, "itemsize", 4) for leaf in jax.tree_util.tree_leaves(tree))


def _available_memory(device):
    """Bytes the device can hold: an accelerator's limit, or the machine's memory for the CPU."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - not every backend reports
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _format_bytes(n):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000


def check_memory(model, config, data, devices=1):
    """``ValueError`` when training clearly cannot fit the device, estimated from shapes alone
    (nothing is compiled): parameters, gradients and optimiser state, the training and test
    data as the device holds them, and the values one step's forward computes for a batch
    (each device's part of it under data parallelism)."""
    available = _available_memory(jax.devices()[0])
    if available is None:
        return
    (x_train, t_train), (x_test, t_test) = data
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    opt_state = jax.eval_shape(config.make_optimizer().init, params)
    parts = {"parameters, gradients and optimiser state": 2 * _bytes(params) + _bytes(opt_state),
             "data": 2 * sum(np.asarray(a[:1]).nbytes * len(a) for a in (x_train, t_train, x_test, t_test))}
    per_device = max(config.batch_size // devices, 1)
    batch = jax.ShapeDtypeStruct((per_device, *np.shape(x_train)[1:]), np.asarray(x_train[:1]).dtype)
    targets = jax.ShapeDtypeStruct((per_device, *np.shape(t_train)[1:]), np.asarray(t_train[:1]).dtype)
    step = f"one step's values for a batch of {config.batch_size}"
    parts[step] = 2 * _bytes([batch, targets])
    if sum(parts.values()) > available / 4:  # close enough to look at every value the step computes
        jaxpr = jax.make_jaxpr(lambda p, s, x, t: model.loss(p, s, x, t, key=jax.random.key(0)))(
            params, state, batch, targets)
        parts[step] = sum(_bytes([v.aval]) for eqn in jaxpr.jaxpr.eqns for v in eqn.outvars
                          if hasattr(v.aval, "shape"))
    total = sum(parts.values())
    if total > available:
        detail = ", ".join(f"{k} {_format_bytes(v)}" for k, v in parts.items())
        raise ValueError(f"training needs about {_format_bytes(total)} ({detail}), more than the "
                         f"{_format_bytes(available)} the {jax.devices()[0].platform} device has; use a smaller "
                         f"batch_size or model")


def _check_state(state, expected):
    """``ValueError`` naming the first leaf of a given ``state`` whose structure, shape or dtype
    differs from what the model and config make (a float64 copy, another optimiser's state)."""
    got, got_tree = jax.tree_util.tree_flatten_with_path(state)
    want, want_tree = jax.tree_util.tree_flatten_with_path(expected)
    if got_tree != want_tree:
        raise ValueError(f"state does not have the structure this model and optimizer make: got {got_tree}, "
                         f"expected {want_tree}")
    for (path, a), (_, b) in zip(got, want):
        if jnp.shape(a) != b.shape or jnp.result_type(a) != b.dtype:
            raise ValueError(f"state{jax.tree_util.keystr(path)} has shape {jnp.shape(a)} and dtype "
                             f"{jnp.result_type(a)}, but this model and optimizer make {b.shape} and {b.dtype}")


class Records(NamedTuple):
    """What one call of ``make_epochs_fn``'s function reports; arrays of ``max_epochs`` entries,
    of which the first ``done`` are real."""
    train_loss: jax.Array  # float32: mean mini-batch loss of each epoch
    train_acc: jax.Array  # float32: accuracy on the whole training set after each epoch (NaN: loss models)
    test_acc: jax.Array  # float32: accuracy on the whole test set after each epoch (NaN: loss models)
    iteration: jax.Array  # int32: updates done after each epoch
    done: jax.Array  # int32 scalar: epochs completed with a finite loss
    bad_iteration: jax.Array  # int32 scalar: the first update whose loss was not finite, or 0
    bad_loss: jax.Array  # float32 scalar: that loss (NaN or infinite), or 0
    first_loss: jax.Array  # float32 scalar: the loss of the call's first step, before its update
    test_loss: jax.Array  # float32: mean criterion on the whole test set after each epoch (NaN: accuracy models)


def make_epochs_fn(model, config, iter_per_epoch, n_train, n_test, max_epochs=256, batch_sharding=None,
                   *, feed="device"):
    """``(state, n_epochs, batches, evaluation) -> (state, Records)``: up to ``n_epochs`` epochs
    (at most ``max_epochs``), each followed by its evaluation, in one compiled call; jit it.

    ``batches`` is the ``(xs, ts)`` of ``make_epoch_fn`` for the same ``feed``
    (with ``"host"``, one epoch's mini-batches, and ``n_epochs`` must be 1);
    ``evaluation`` is the ``Evaluation`` of ``evaluation_sets`` for the
    ``n_train`` training and ``n_test`` test examples. ``n_epochs`` is a
    traced value, so calls of any length share one compiled program. The
    loop stops early when the iterations reach ``config.iters_num`` or an
    epoch's loss is not finite; then the state stays that of the last finite
    epoch and ``Records`` names the first bad update.
    """
    epoch = make_epoch_fn(model, config, iter_per_epoch, batch_sharding, feed=feed)

    by_accuracy = model.measures_accuracy()

    def accuracy(params, state, xs, ts, n):
        return evaluation_mean(model, params, state, xs, ts, n)

    sample = config.evaluate_sample_num_per_epoch

    def evaluate(state, evaluation):
        def on(train_data, test_data, n_tr, n_te):
            test_value = accuracy(state.params, state.model_state, *test_data, n_te)
            if not by_accuracy:  # a loss model records the test loss alone: the training set is not evaluated
                return jnp.float32(jnp.nan), test_value
            return accuracy(state.params, state.model_state, *train_data, n_tr), test_value
        if sample is None:
            return on(evaluation.train, evaluation.test, n_train, n_test)
        # The book's Trainer: a sample each epoch, everything after the last.
        return jax.lax.cond(state.iteration >= config.iters_num,
                            lambda: on(evaluation.train, evaluation.test, n_train, n_test),
                            lambda: on(evaluation.train_sample, evaluation.test_sample,
                                       min(sample, n_train), min(sample, n_test)))

    def epochs(state, n_epochs, batches, evaluation):
        xs, ts = batches

        def running(carry):
            e, state, records = carry
            return (e < n_epochs) & (state.iteration < config.iters_num) & (records.bad_iteration == 0)

        def one_epoch(carry):
            e, state, r = carry
            new, losses, active = epoch(state, xs, ts)
            finite = jnp.isfinite(losses) | ~active
            ok = jnp.all(finite)
            first_bad = jnp.argmin(finite)  # the first False, when there is one
            state = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, state)
            train_value, test_value = evaluate(state, evaluation)
            nan = jnp.float32(jnp.nan)
            train_acc, test_acc = (train_value, test_value) if by_accuracy else (nan, nan)
            mean_loss = (jnp.sum(jnp.where(active, losses, 0.0)) / jnp.sum(active)).astype(jnp.float32)
            r = r._replace(
                train_loss=r.train_loss.at[e].set(mean_loss), train_acc=r.train_acc.at[e].set(train_acc),
                test_acc=r.test_acc.at[e].set(test_acc),
                test_loss=r.test_loss.at[e].set(nan if by_accuracy else test_value), iteration=r.iteration.at[e].set(state.iteration),
                bad_iteration=jnp.where(ok, 0, state.iteration + first_bad + 1).astype(jnp.int32),
                bad_loss=jnp.where(ok, 0.0, losses[first_bad]),
                first_loss=jnp.where(e == 0, losses[0], r.first_loss))
            return e + ok.astype(jnp.int32), state, r

        nan = jnp.full((max_epochs,), jnp.nan, jnp.float32)
        records = Records(nan, nan, nan, jnp.zeros((max_epochs,), jnp.int32), jnp.zeros((), jnp.int32),
                          jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), nan)
        e, state, records = jax.lax.while_loop(
            running, one_epoch, (jnp.zeros((), jnp.int32), state, records))
        return state, records._replace(done=e)

    return epochs


_MAX_EPOCHS = 256  # the most epochs one call runs; its records are this long


@functools.lru_cache(maxsize=8)
def _epochs_program(model, config, iter_per_epoch, n_train, n_test, batch_sharding, feed, replicated):
    # Kept for the next ``train`` of the same model and settings (a notebook, a sweep, a
    # benchmark), which then neither traces nor compiles again.
    return jax.jit(make_epochs_fn(model, config, iter_per_epoch, n_train, n_test, _MAX_EPOCHS, batch_sharding,
                                  feed=feed), out_shardings=replicated)


def evaluation_mean(model, params, model_state, xs, ts, n):
    """The mean over the ``n`` real examples of ``eval_chunks``' ``(xs, ts)`` (the padding left out)
    of each example's correctness (a model measured by accuracy), score (by its metric function)
    or criterion (by its loss)."""
    by_accuracy = model.measures_accuracy()

    def per_example(batch):
        x_chunk, t_chunk = batch
        if callable(model.metric):  # the model's own score of each example
            return jnp.asarray(model.metric(params, model_state, x_chunk, t_chunk)).astype(jnp.float32)
        scores = model.predict(params, model_state, x_chunk)
        if by_accuracy:
            labels = t_chunk if t_chunk.ndim == 1 else jnp.argmax(t_chunk, axis=1)
            return (jnp.argmax(scores, axis=1) == labels).astype(jnp.float32)
        return jax.vmap(lambda s, t: model.criterion(s[None], t[None]))(scores, t_chunk).astype(jnp.float32)

    values = jax.lax.map(per_example, (xs, ts))
    real = jnp.arange(values.size).reshape(values.shape) < n
    return (jnp.sum(jnp.where(real, values, 0.0)) / n).astype(jnp.float32)


def perplexity(loss):
    """``exp(loss)``, the sequel's perplexity of a mean cross-entropy (sec. 5.5.3); ``inf`` past
    float64's range."""
    return math.exp(loss) if loss < 709.0 else math.inf


def _test_perplexity(model, test_loss):
    """An epoch's ``test_perplexity``: ``perplexity(test_loss)`` for a model measured so, else None."""
    return perplexity(test_loss) if model.metric == "perplexity" else None


def _evaluated_on(model, state, epoch, samples, n, n_train, n_test):
    """``epoch`` with its accuracies (or test loss) measured again at ``state`` on the first ``n``
    training and test examples (``samples``, as ``eval_chunks`` made them)."""
    mean = jax.jit(lambda xs, ts, count: evaluation_mean(model, state.params, state.model_state, xs, ts, count))
    (train_x, train_t), (test_x, test_t) = samples
    n_tr, n_te = min(n, n_train), min(n, n_test)
    if model.measures_accuracy():
        return dataclasses.replace(epoch, train_acc=float(mean(train_x, train_t, n_tr)),
                                   test_acc=float(mean(test_x, test_t, n_te)))
    test_loss = float(mean(test_x, test_t, n_te))
    return dataclasses.replace(epoch, test_loss=test_loss, test_perplexity=_test_perplexity(model, test_loss))


_COMPILED = {}  # (program, the arguments' types and shardings) -> its compiled executable
_COMPILED_KEEP = 16


def _compiled(program, args):
    """``(executable, fresh)``: ``program`` (a jitted epochs program) compiled for ``args`` ahead of
    its call, so that the trainer can time compiling apart from training, and whether it was
    compiled (or loaded from the persistent cache) now; kept for the next call and the next
    ``train`` of the same program with arguments of the same types and shardings."""
    leaves, treedef = jax.tree.flatten(args)
    key = (program, treedef, tuple((jax.typeof(leaf), getattr(leaf, "sharding", None)) for leaf in leaves))
    compiled = _COMPILED.get(key)
    if compiled is not None:
        return compiled, False
    compiled = program.lower(*args).compile()
    if len(_COMPILED) >= _COMPILED_KEEP:
        _COMPILED.pop(next(iter(_COMPILED)))  # the oldest
    _COMPILED[key] = compiled
    return compiled, True


@functools.lru_cache(maxsize=8)
def _init_program(model, config, replicated):
    # Kept like the epochs program: compiling the initialisation (its random draws) takes
    # about a second on a CPU, as long as a short training itself.
    return jax.jit(lambda: init_state(model, config), out_shardings=replicated)


@dataclasses.dataclass
class Epoch:
    """One line of the learning curve."""
    epoch: int
    iteration: int
    train_loss: float  # mean mini-batch loss over the epoch
    train_acc: float | None  # accuracy on the training set (its first evaluate_sample_num_per_epoch,
    # if set); None for a model measured by its loss (Model.measures_accuracy)
    test_acc: float | None  # accuracy on the test set (likewise; always all of it after the last epoch)
    seconds: float  # wall time training since it started (spread evenly over the epochs of one call), compiling left out
    test_loss: float | None = None  # mean criterion on the test set, for a model measured by its loss
    # exp(test_loss), for a model measured by its perplexity (Model.metric "perplexity": a language model)
    test_perplexity: float | None = None
    # Seconds spent tracing and compiling the program (or loading it from JAX's persistent cache)
    # before this epoch's call, which ``seconds`` leaves out: on the first epoch of a train call, 0 after.
    compile_seconds: float = 0.0

    def line(self):
        """The epoch's line as a run prints it."""
        if self.test_perplexity is not None:
            return f"epoch {self.epoch}: train perplexity {perplexity(self.train_loss):.2f}, " \
                   f"test perplexity {self.test_perplexity:.2f}"
        if self.test_acc is None:
            return f"epoch {self.epoch}: train loss {self.train_loss:.4g}, test loss {self.test_loss:.4g}"
        return f"epoch {self.epoch}: train acc {self.train_acc:.4f}, test acc {self.test_acc:.4f}, " \
               f"loss {self.train_loss:.4f}"


def train(model, data, config=TrainConfig(), *, state=None, history=(), on_epochs=None,
          progress=None, mesh=None, feed="auto", seconds_per_call=0.5, sync_every=None,
          divergence_factor=DIVERGENCE_FACTOR, divergence_epochs=DIVERGENCE_EPOCHS):
    """Trains ``model`` on ``data`` and returns ``(state, history)``.

    Training runs as a few compiled calls, each of as many epochs (steps and
    evaluation) as fit in about ``seconds_per_call``: the host hears from the
    device once per call, so the device does not wait for it. The parameters
    do not depend on how the epochs are split into calls.

    Args:
      model: a ``Model`` (``two_layer_net.model()``, ``conv_net.model()``,
        ``nn.classifier(...)``, your own).
      data: ``((x_train, t_train), (x_test, t_test))``, as ``datasets.load_mnist()``
        returns. The model's criterion decides what the targets are: integer
        labels (N,) or one-hot rows (N, C) for ``softmax_with_loss`` (checked
        against the class count), any array the criterion takes otherwise
        (float targets for a regression criterion). In a multi-process run
        every process passes the same data.
      config: a ``TrainConfig``.
      state: a ``TrainState`` to continue from (default: a fresh one).
      history: the ``Epoch`` records that led to ``state``.
      on_epochs: called as ``on_epochs(state, history)`` after every call, with
        the state after ``history[-1]`` and the whole history, which holds one
        or more new epochs (for checkpoints and metrics files). Epochs whose
        loss was not finite never reach it.
      progress: a tqdm-like bar to advance by iterations, or None.
      mesh: a 1-D mesh with axis ``"data"`` (``data_parallel_mesh``) to split
        every mini-batch over its devices; parameters and optimiser state are
        replicated. ``batch_size`` must divide by the device count.
      feed: how batches reach the devices. ``"device"``: the training set is
        copied to every device and each step gathers its batch there (one
        process only). ``"host"``: once per epoch each process gathers on the
        host the rows of every batch that its devices hold, and sends only
        those (one epoch per call). ``"auto"`` (default): ``"host"`` when the
        mesh spans several processes, else ``"device"``. Both give the same
        batches.
      seconds_per_call: the wall time a call aims at; the first call runs one
        epoch (it includes compilation), later ones grow to fit. Smaller
        values update ``progress`` and ``on_epochs`` more often.
      sync_every: if given, a call also ends after every epoch that is a
        multiple of this, so that ``on_epochs`` sees the state there.
      divergence_factor: stop when the mean loss of
        ``divergence_epochs`` epochs in a row is above ``divergence_factor``
        times the loss of the first step (a learning rate far too large makes
        the loss explode to 1e26 without ever becoming NaN). The check runs
        after each call, so on the epochs it brought; ``None`` turns it off;
        it is off for a loss that starts at or below 0.
      divergence_epochs: how many epochs in a row, for ``divergence_factor``.
    Returns:
      The final ``TrainState`` and the list of ``Epoch`` records.
    Raises:
      TrainingDiverged: the loss became NaN or infinite (the state after the
        last good epoch was already handed to ``on_epochs``), or it stayed far
        above its starting value (the state at the end of the call was).
    """
    _check_train_arguments(seconds_per_call, sync_every, divergence_factor, divergence_epochs)
    scores = _check_data(model, data)
    check_memory(model, config, data, 1 if mesh is None else mesh.size)
    placed = _place(data, config, mesh, _resolve_feed(feed, mesh), eval_chunk_size(scores))
    state = _starting_state(model, config, state, placed.replicated)
    program = _epochs_program(model, config, placed.iter_per_epoch, placed.n_train, placed.n_test,
                              placed.batch_sharding, placed.feed, placed.replicated)
    history, partial = _continued_history(model, config, state, list(history), placed)
    calls = _Calls(model, config, placed, int(state.iteration), history, partial, divergence_factor,
                   divergence_epochs)
    while calls.iteration < config.iters_num:
        state, records = calls.run(program, state, sync_every)
        advanced = calls.add_epochs(records)
        if advanced:
            if progress is not None:
                progress.update(advanced)
            if on_epochs is not None:
                on_epochs(state, history)
        calls.check_divergence(records)
        calls.resize(seconds_per_call, records)
    return state, history


def _check_train_arguments(seconds_per_call, sync_every, divergence_factor, divergence_epochs):
    if not (isinstance(seconds_per_call, (int, float)) and seconds_per_call > 0):
        raise ValueError(f"seconds_per_call must be a positive number, got {seconds_per_call!r}")
    if sync_every is not None and not (isinstance(sync_every, int) and sync_every >= 1):
        raise ValueError(f"sync_every must be None or a positive integer, got {sync_every!r}")
    if divergence_factor is not None and not (isinstance(divergence_factor, (int, float))
                                              and divergence_factor > 1):
        raise ValueError(f"divergence_factor must be None or a number above 1, got {divergence_factor!r}")
    if not (isinstance(divergence_epochs, int) and divergence_epochs >= 1):
        raise ValueError(f"divergence_epochs must be a positive integer, got {divergence_epochs!r}")


def _resolve_feed(feed, mesh):
    multi_process = mesh is not None and len({d.process_index for d in mesh.devices.flat}) > 1
    if feed == "auto":
        return "host" if multi_process else "device"
    _check_feed(feed, ("auto", "device", "host"))
    if feed == "device" and multi_process:
        raise ValueError("feed='device' needs every device in one process; this mesh spans "
                         f"{jax.process_count()} processes: use feed='host'")
    return feed


class _Placed(NamedTuple):
    """The data where the program reads it, and how it is laid out over the devices."""
    feed: str  # "device": the training set on every device; "host": each epoch's batches sent
    x_train: Any  # on the host, for feed="host"
    t_train: Any
    batches: Any  # (xs, ts) on the devices for feed="device"; None for "host"
    evaluation: Evaluation
    n_train: int
    n_test: int
    iter_per_epoch: int
    batch_sharding: Any  # how a mini-batch splits over the mesh (None: one device)
    replicated: Any  # the parameters' and optimiser state's layout (None: one device)
    fed_sharding: Any  # the layout of a host-fed epoch of batches


def _place(data, config, mesh, feed, eval_chunk):
    (x_train, t_train), (x_test, t_test) = split_data(data)
    # Arrays stacked as (steps or chunks, examples, ...) split their examples over the devices.
    batch_sharding = replicated = stacked_sharding = None
    if mesh is not None:
        check_batch_split(config.batch_size, mesh.size)
        batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
        replicated = NamedSharding(mesh, PartitionSpec())
        stacked_sharding = NamedSharding(mesh, PartitionSpec(None, "data"))
    batches = fed_sharding = None
    if feed == "host":
        x_train, t_train = np.asarray(x_train), np.asarray(t_train)
        fed_sharding = stacked_sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    else:
        batches = jax.device_put(x_train, replicated), jax.device_put(t_train, replicated)
    evaluation = evaluation_sets((x_train, t_train), (x_test, t_test), config.evaluate_sample_num_per_epoch,
                                 stacked_sharding, eval_chunk)
    return _Placed(feed, x_train, t_train, batches, evaluation, len(x_train), len(x_test),
                   iterations_per_epoch(len(x_train), config.batch_size), batch_sharding, replicated, fed_sharding)


def _starting_state(model, config, state, replicated):
    if state is None:  # one compiled call, not an op at a time; every process computes the same values
        return _init_program(model, config, replicated)()
    _check_state(state, jax.eval_shape(lambda: init_state(model, config)))
    return state if replicated is None else jax.device_put(state, replicated)


def _continued_history(model, config, state, history, placed):
    """The history to go on from, and whether its last epoch is a short one to complete.

    Continuing a finished run (``iters_num`` grown), its last epoch is now an epoch in the
    middle. With ``evaluate_sample_num_per_epoch`` it was evaluated on every example, as the
    last; an uninterrupted run evaluates it on the sample: that is done again here. A short last
    epoch is completed by the next call's first epoch and merged into it."""
    iteration = int(state.iteration)
    ends_here = bool(history) and history[-1].iteration == iteration
    partial = ends_here and iteration % placed.iter_per_epoch != 0
    sample = config.evaluate_sample_num_per_epoch
    if ends_here and iteration < config.iters_num and sample is not None and not partial:
        e = placed.evaluation
        history[-1] = _evaluated_on(model, state, history[-1], (e.train_sample, e.test_sample), sample,
                                    placed.n_train, placed.n_test)
    return history, partial


class _Calls:
    """The loop's bookkeeping between compiled calls: how many epochs the next one runs, the
    epochs each one brought, and the divergence check over them."""

    def __init__(self, model, config, placed, iteration, history, partial, divergence_factor, divergence_epochs):
        self.model, self.config, self.placed, self.history = model, config, placed, history
        self.partial = partial
        self.divergence_factor, self.divergence_epochs = divergence_factor, divergence_epochs
        self.iteration = iteration  # updates done, as the host knows it
        self.first_epoch, self.reference = len(history), None  # this train's first epoch, its first loss
        self.start = time.perf_counter() - (history[-1].seconds if history else 0.0)
        self.size = 1  # epochs in the next call: one first, as it includes the first run's warm-up
        self.compile_seconds = 0.0  # tracing and compiling (or loading from the cache) not yet recorded

    def run(self, program, state, sync_every):
        config, placed = self.config, self.placed
        n = min(self.size, _MAX_EPOCHS, -(-(config.iters_num - self.iteration) // placed.iter_per_epoch))
        if sync_every is not None:
            n = min(n, sync_every - len(self.history) % sync_every)
        if placed.feed == "host":
            n = 1
            batches = epoch_batches(placed.x_train, placed.t_train, config, self.iteration,
                                    placed.iter_per_epoch, placed.fed_sharding, self.model.batch_rows)
        else:
            batches = placed.batches
        args = (state, jnp.int32(n), batches, placed.evaluation)
        began = time.perf_counter()
        compiled, fresh = _compiled(program, args)
        if fresh:  # the epochs' clock leaves compiling out (the next epoch's compile_seconds has it)
            took = time.perf_counter() - began
            self.compile_seconds += took
            self.start += took
        self.call_start = time.perf_counter()
        state, records = compiled(*args)
        records = jax.device_get(records)  # the call's one blocking read
        self.call_end = time.perf_counter()
        return state, records

    def add_epochs(self, records):
        """Appends the call's finite epochs to the history; the updates they brought."""
        done, history = int(records.done), self.history
        accuracy = self.model.measures_accuracy()
        for j in range(done):
            epoch = Epoch(
                epoch=len(history) + 1, iteration=int(records.iteration[j]),
                train_loss=float(records.train_loss[j]),
                train_acc=float(records.train_acc[j]) if accuracy else None,
                test_acc=float(records.test_acc[j]) if accuracy else None,
                seconds=self.call_start - self.start + (self.call_end - self.call_start) * (j + 1) / done,
                test_loss=None if accuracy else float(records.test_loss[j]),
                test_perplexity=_test_perplexity(self.model, float(records.test_loss[j])),
                compile_seconds=self.compile_seconds)
            self.compile_seconds = 0.0
            if self.partial:  # the rest of the short epoch the history ends with: one epoch, as uninterrupted
                before = history.pop()
                old = before.iteration % self.placed.iter_per_epoch
                new = epoch.iteration - before.iteration
                epoch = dataclasses.replace(epoch, epoch=before.epoch,
                                            train_loss=(old * before.train_loss + new * epoch.train_loss) / (old + new))
                self.partial = False
            history.append(epoch)
        if not done:
            return 0
        advanced, self.iteration = history[-1].iteration - self.iteration, history[-1].iteration
        return advanced

    def check_divergence(self, records):
        if self.reference is None:
            self.reference = float(records.first_loss)
        factor, epochs, reference = self.divergence_factor, self.divergence_epochs, self.reference
        recent = self.history[max(self.first_epoch, len(self.history) - epochs):]
        if (factor is not None and reference > 0 and len(recent) == epochs
                and all(e.train_loss > factor * reference for e in recent)):
            raise TrainingDiverged(
                f"the loss has stayed above {factor:g} times its starting value "
                f"{reference:.4g} for {epochs} epochs ({recent[-1].train_loss:.4g} in epoch "
                f"{recent[-1].epoch}); stopped with the parameters of iteration {self.iteration}. Try a smaller "
                f"learning rate (now {self.config.optimizer_name()}), or turn this check off "
                f"(divergence_factor=None) to go on.")
        if records.bad_iteration:
            raise TrainingDiverged(
                f"the loss became {records.bad_loss} at iteration {int(records.bad_iteration)} "
                f"(epoch {len(self.history) + 1}); stopped with the parameters of iteration "
                f"{self.iteration}. Try a smaller learning rate (now {self.config.optimizer_name()}).")

    def resize(self, seconds_per_call, records):
        """Grows (at most doubling) or shrinks the next call towards ``seconds_per_call``."""
        done = int(records.done)
        self.size = max(1, min(2 * self.size, int(seconds_per_call * done / max(self.call_end - self.call_start, 1e-9))))
