"""Learning, the chapter's four steps (sec. 5.7.4), jit-compiled.

1. mini-batch: draw ``batch_size`` random training examples;
2. gradient: ``jax.grad`` of the loss, which runs the layers' hand rules;
3. update: one optax step;
4. repeat.

One compiled call runs a whole epoch of steps with ``lax.fori_loop``; the
training set lives on the device and batches are gathered there, so the host
only hears from the device once per epoch, to evaluate and checkpoint.
"""

import dataclasses
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec

# The book's optimiser set (sec. 6.1), with the book's constants.
OPTIMIZERS = {
    "sgd": lambda lr: optax.sgd(lr),
    "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: optax.adagrad(lr, initial_accumulator_value=0.0, eps=1e-7),
    "rmsprop": lambda lr: optax.rmsprop(lr, decay=0.99, eps=1e-7),
    "adam": lambda lr: optax.adam(lr, b1=0.9, b2=0.999),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the book's recipe (sec. 5.7.4)."""
    iters_num: int = 10_000  # mini-batch updates in all
    batch_size: int = 100  # examples per update, drawn at random with replacement
    learning_rate: float = 0.1
    optimizer: str = "sgd"  # one of OPTIMIZERS
    seed: int = 0  # initial weights and the batch sequence

    def __post_init__(self):
        for name in ("iters_num", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")


class TrainState(NamedTuple):
    """Everything that changes during training; a pytree, saved in checkpoints."""
    params: Any  # the model's parameter pytree
    opt_state: Any  # optax state of the same structure
    iteration: jax.Array  # int32 scalar: updates done so far
    model_state: Any = ()  # a stateful model's state (batch-norm running statistics)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def init_state(model, config):
    """Initial parameters (from ``config.seed``) and optimiser state."""
    params = model.init(jax.random.fold_in(jax.random.key(config.seed), 0))
    model_state = ()
    if model.stateful:
        params, model_state = params
    optimizer = OPTIMIZERS[config.optimizer](config.learning_rate)
    return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32), model_state)


def data_parallel_mesh(n_devices=None):
    """A 1-D mesh with axis ``"data"`` over the first ``n_devices`` devices (default: all).

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
    return jax.make_mesh((n,), ("data",), axis_types=(AxisType.Auto,), devices=devices[:n])


def make_epoch_fn(model, config, iter_per_epoch, batch_sharding=None):
    """``(state, x_train, t_train) -> (state, losses, active)`` running one epoch; jit it.

    Step ``i`` draws its batch from ``fold_in(key(seed), i + 1)``, so the batch
    sequence depends only on the seed and the iteration: a run resumed from a
    checkpoint sees exactly the batches of an uninterrupted one. The number of
    steps is ``min(iter_per_epoch, iters_num - iteration)``, a traced value, so
    the last, shorter epoch reuses the same compiled loop; ``losses`` has
    ``iter_per_epoch`` entries of which the first ``sum(active)`` are real.
    With ``batch_sharding``, each mini-batch is split over the devices that
    way (data parallelism); XLA adds the all-reduce of the gradients.
    """
    optimizer = OPTIMIZERS[config.optimizer](config.learning_rate)
    key = jax.random.key(config.seed)
    dropout_key = jax.random.fold_in(key, 2 ** 31 - 1)  # apart from the batch keys
    grad_fn = jax.value_and_grad(model.loss, has_aux=model.stateful)

    def epoch(state, x_train, t_train):
        def step(k, carry):
            state, losses = carry
            i = state.iteration
            batch_mask = jax.random.randint(jax.random.fold_in(key, i + 1), (config.batch_size,),
                                            0, x_train.shape[0])
            x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
            if batch_sharding is not None:
                x_batch = jax.lax.with_sharding_constraint(x_batch, batch_sharding)
                t_batch = jax.lax.with_sharding_constraint(t_batch, batch_sharding)
            model_state = state.model_state
            if model.stateful:
                (loss, model_state), grads = grad_fn(state.params, model_state, x_batch, t_batch,
                                                     jax.random.fold_in(dropout_key, i))
            else:
                loss, grads = grad_fn(state.params, x_batch, t_batch)
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            new = TrainState(params, opt_state, i + 1, model_state)
            return new, losses.at[k].set(loss.astype(losses.dtype))

        n_steps = jnp.clip(config.iters_num - state.iteration, 0, iter_per_epoch)
        losses = jnp.full((iter_per_epoch,), jnp.nan, jnp.float32)
        state, losses = jax.lax.fori_loop(0, n_steps, step, (state, losses))
        return state, losses, jnp.arange(iter_per_epoch) < n_steps

    return epoch


def make_evaluator(predict, n, chunk=10_000):
    """A function ``(params, x, t) -> accuracy`` for a dataset of ``n`` examples.

    Examples are scored ``chunk`` at a time under ``lax.map`` (the set is
    padded to a multiple of ``chunk``), so memory stays bounded for any ``n``.
    """
    chunk = max(1, min(chunk, n))
    n_chunks = -(-n // chunk)

    @jax.jit
    def accuracy(params, x, t):
        pad = n_chunks * chunk - n
        xs = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1)).reshape(n_chunks, chunk, *x.shape[1:])
        ts = jnp.pad(t, (0, pad), constant_values=-1).reshape(n_chunks, chunk)

        def correct(batch):
            x_chunk, t_chunk = batch
            return jnp.sum(jnp.argmax(predict(params, x_chunk), axis=1) == t_chunk)

        return jnp.sum(jax.lax.map(correct, (xs, ts))) / n

    return accuracy


def _check_data(data):
    (x_train, t_train), (x_test, t_test) = data
    for name, x, t in (("train", x_train, t_train), ("test", x_test, t_test)):
        if len(x) != len(t):
            raise ValueError(f"{name} set: {len(x)} inputs of shape {np.shape(x)} but {len(t)} "
                             f"labels of shape {np.shape(t)}")
        if len(x) == 0:
            raise ValueError(f"{name} set is empty")
        if np.ndim(t) != 1 or not np.issubdtype(np.asarray(t).dtype, np.integer):
            raise ValueError(f"{name} labels must be integers of shape (N,), got shape "
                             f"{np.shape(t)} and dtype {np.asarray(t).dtype}")


@dataclasses.dataclass
class Epoch:
    """One line of the learning curve."""
    epoch: int
    iteration: int
    train_loss: float  # mean mini-batch loss over the epoch
    train_acc: float  # accuracy on the whole training set
    test_acc: float  # accuracy on the whole test set
    seconds: float  # wall time since training started


def train(model, data, config=TrainConfig(), *, state=None, history=(), on_epoch=None,
          progress=None, mesh=None):
    """Trains ``model`` on ``data`` and returns ``(state, history)``.

    Args:
      model: a ``Model`` (``two_layer_net.model()``, ``multi_layer_net.model()``,
        ``serial.classifier(...)``).
      data: ``((x_train, t_train), (x_test, t_test))`` with integer labels, as
        ``datasets.load_mnist()`` returns.
      config: a ``TrainConfig``.
      state: a ``TrainState`` to continue from (default: a fresh one).
      history: the ``Epoch`` records that led to ``state``.
      on_epoch: called as ``on_epoch(state, history)`` after every epoch (for
        checkpoints and metrics files). It is not called for an epoch whose
        loss was not finite.
      progress: a tqdm-like bar to advance by iterations, or None.
      mesh: a 1-D mesh with axis ``"data"`` (``data_parallel_mesh``) to split
        every mini-batch over its devices; parameters, optimiser state and the
        dataset are replicated. ``batch_size`` must divide by the device count.
    Returns:
      The final ``TrainState`` and the list of ``Epoch`` records.
    Raises:
      TrainingDiverged: the loss became NaN or infinite; the state after the
        last good epoch was already handed to ``on_epoch``.
    """
    _check_data(data)
    (x_train, t_train), (x_test, t_test) = data
    train_size = len(x_train)
    iter_per_epoch = max(train_size // config.batch_size, 1)
    state = init_state(model, config) if state is None else state
    history = list(history)

    batch_sharding, replicated = None, None
    if mesh is not None:
        if config.batch_size % mesh.size:
            raise ValueError(f"batch_size {config.batch_size} does not split evenly over {mesh.size} "
                             f"devices; choose a multiple of {mesh.size}")
        batch_sharding = NamedSharding(mesh, PartitionSpec("data"))
        replicated = NamedSharding(mesh, PartitionSpec())
        state = jax.device_put(state, replicated)
    x_train, t_train = jax.device_put(x_train, replicated), jax.device_put(t_train, replicated)
    x_test, t_test = jax.device_put(x_test, replicated), jax.device_put(t_test, replicated)
    epoch_fn = jax.jit(make_epoch_fn(model, config, iter_per_epoch, batch_sharding))
    if model.stateful:  # evaluation mode, with the running statistics
        predict, variables = (lambda v, x: model.predict(v[0], v[1], x)), (lambda s: (s.params, s.model_state))
    else:
        predict, variables = model.predict, (lambda s: s.params)
    train_acc_fn = make_evaluator(predict, len(x_train))
    test_acc_fn = make_evaluator(predict, len(x_test))

    start = time.perf_counter() - (history[-1].seconds if history else 0.0)
    while int(state.iteration) < config.iters_num:
        done_before = int(state.iteration)
        new_state, losses, active = epoch_fn(state, x_train, t_train)
        losses, active = np.asarray(losses), np.asarray(active)
        losses = losses[active]
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise TrainingDiverged(
                f"the loss became {losses[bad[0]]} at iteration {done_before + bad[0] + 1} "
                f"(epoch {len(history) + 1}); stopped with the parameters of iteration "
                f"{done_before}. Try a smaller learning rate (now {config.learning_rate}).")
        state = new_state
        history.append(Epoch(
            epoch=len(history) + 1, iteration=int(state.iteration),
            train_loss=float(losses.mean()),
            train_acc=float(train_acc_fn(variables(state), x_train, t_train)),
            test_acc=float(test_acc_fn(variables(state), x_test, t_test)),
            seconds=time.perf_counter() - start))
        if progress is not None:
            progress.update(int(state.iteration) - done_before)
        if on_epoch is not None:
            on_epoch(state, history)
    return state, history
