"""The compiled programs of training: one epoch of steps (``make_epoch_fn``), many epochs and
their evaluation in one call (``make_epochs_fn``), and ``PROGRAMS``, which keeps them, and
their compiled executables, for the next call and the next ``train`` of the same model."""

import contextlib
import functools
import threading
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from backprop_jax.training._config import TrainState, init_state
from backprop_jax.training._placement import _check_feed, batch_indices


def make_epoch_fn(model, config, iter_per_epoch, batch_sharding=None, *, feed="device", on_step=None):
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
    ``on_step``, if given, is called on the host with the iteration reached
    after every step (``jax.debug.callback``): progress inside a call whose
    steps are slow.
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
            if on_step is not None:
                jax.debug.callback(on_step, new.iteration)
            return new, losses.at[k].set(loss.astype(losses.dtype))

        # Epochs end at multiples of iter_per_epoch: a run resumed after a short last epoch
        # (one that ended at an iters_num between two) completes that epoch first.
        n_steps = jnp.clip(jnp.minimum(config.iters_num - state.iteration,
                                       iter_per_epoch - state.iteration % iter_per_epoch), 0, iter_per_epoch)
        losses = jnp.zeros((iter_per_epoch,), jnp.float32)  # beyond n_steps 0, never NaN (see Records)
        state, losses = jax.lax.fori_loop(0, n_steps, step, (state, losses))
        return state, losses, jnp.arange(iter_per_epoch) < n_steps

    return epoch


class Records(NamedTuple):
    """What one call of ``make_epochs_fn``'s function reports; arrays of ``max_epochs`` entries,
    of which the first ``done`` are real.

    What is not measured (the entries past ``done``, the accuracies of a model measured by its
    loss, the test loss of one measured by its accuracy) is 0, never a NaN placeholder: under
    ``jax_debug_nans`` a NaN in the program's output is an error, and the only NaN it may hold
    is the user's own (a loss that became NaN)."""
    train_loss: jax.Array  # float32: mean mini-batch loss of each epoch
    train_acc: jax.Array  # float32: accuracy on the whole training set after each epoch (0: loss models)
    test_acc: jax.Array  # float32: accuracy on the whole test set after each epoch (0: loss models)
    iteration: jax.Array  # int32: updates done after each epoch
    done: jax.Array  # int32 scalar: epochs completed with a finite loss
    bad_iteration: jax.Array  # int32 scalar: the first update whose loss was not finite, or 0
    bad_loss: jax.Array  # float32 scalar: that loss (NaN or infinite), or 0
    first_loss: jax.Array  # float32 scalar: the loss of the call's first step, before its update
    test_loss: jax.Array  # float32: mean criterion on the whole test set after each epoch (0: accuracy models)


def make_epochs_fn(model, config, iter_per_epoch, n_train, n_test, max_epochs=256, batch_sharding=None,
                   *, feed="device", on_step=None, on_evaluation=None):
    """``(state, n_epochs, batches, evaluation) -> (state, Records)``: up to ``n_epochs`` epochs
    (at most ``max_epochs``), each followed by its evaluation, in one compiled call; jit it.

    ``batches`` is the ``(xs, ts)`` of ``make_epoch_fn`` for the same ``feed``
    (with ``"host"``, one epoch's mini-batches, and ``n_epochs`` must be 1);
    ``evaluation`` is the ``Evaluation`` of ``evaluation_sets`` for the
    ``n_train`` training and ``n_test`` test examples. ``n_epochs`` is a
    traced value, so calls of any length share one compiled program. The
    loop stops early when the iterations reach ``config.iters_num`` or an
    epoch's loss is not finite; then the state stays that of the last finite
    epoch and ``Records`` names the first bad update. ``on_step`` is
    ``make_epoch_fn``'s; ``on_evaluation``, if given, is called on the host as
    ``on_evaluation(True, iteration)`` when an epoch's evaluation starts and
    ``(False, iteration)`` when it ends (the runtime may call them out of order
    with the next epoch's steps; the iteration tells which evaluation it is).
    """
    epoch = make_epoch_fn(model, config, iter_per_epoch, batch_sharding, feed=feed, on_step=on_step)

    by_accuracy = model.measures_accuracy()

    def accuracy(params, state, xs, ts, n):
        return evaluation_mean(model, params, state, xs, ts, n)

    sample = config.evaluate_sample_num_per_epoch

    def evaluate(state, evaluation):
        def on(train_data, test_data, n_tr, n_te):
            test_value = accuracy(state.params, state.model_state, *test_data, n_te)
            if not by_accuracy:  # a loss model records the test loss alone: the training set is not evaluated
                return jnp.float32(0), test_value
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
            if on_evaluation is not None:  # each call after what it depends on: the epoch, the values
                jax.debug.callback(functools.partial(on_evaluation, True), state.iteration)
            train_value, test_value = evaluate(state, evaluation)
            if on_evaluation is not None:
                jax.debug.callback(lambda i, *_: on_evaluation(False, i), state.iteration, train_value, test_value)
            unmeasured = jnp.float32(0)
            train_acc, test_acc = (train_value, test_value) if by_accuracy else (unmeasured, unmeasured)
            mean_loss = (jnp.sum(jnp.where(active, losses, 0.0)) / jnp.sum(active)).astype(jnp.float32)
            r = r._replace(
                train_loss=r.train_loss.at[e].set(mean_loss), train_acc=r.train_acc.at[e].set(train_acc),
                test_acc=r.test_acc.at[e].set(test_acc),
                test_loss=r.test_loss.at[e].set(unmeasured if by_accuracy else test_value),
                iteration=r.iteration.at[e].set(state.iteration),
                bad_iteration=jnp.where(ok, 0, state.iteration + first_bad + 1).astype(jnp.int32),
                bad_loss=jnp.where(ok, 0.0, losses[first_bad]),
                first_loss=jnp.where(e == 0, losses[0], r.first_loss))
            return e + ok.astype(jnp.int32), state, r

        zeros = jnp.zeros((max_epochs,), jnp.float32)
        records = Records(zeros, zeros, zeros, jnp.zeros((max_epochs,), jnp.int32), jnp.zeros((), jnp.int32),
                          jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros)
        e, state, records = jax.lax.while_loop(
            running, one_epoch, (jnp.zeros((), jnp.int32), state, records))
        return state, records._replace(done=e)

    return epochs


def evaluation_mean(model, params, model_state, xs, ts, n):
    """The mean over the ``n`` real examples of ``eval_chunks``' ``(xs, ts)`` (the padding left out)
    of the model's ``Metric`` of each example: its correctness, score or criterion."""
    per_example = model.measure().per_example
    real = jnp.arange(xs.shape[0] * xs.shape[1]).reshape(xs.shape[:2]) < n
    if jnp.issubdtype(ts.dtype, jnp.integer):  # the padding's labels -1 made class 0: no criterion a NaN
        ts = jnp.where(real.reshape(real.shape + (1,) * (ts.ndim - 2)), ts, 0)
    values = jax.lax.map(lambda batch: per_example(model, params, model_state, *batch), (xs, ts))
    return (jnp.sum(jnp.where(real, values, 0.0)) / n).astype(jnp.float32)


_MAX_EPOCHS = 256  # the most epochs one call runs; its records are this long


class Programs:
    """The programs ``train`` compiles, kept for the next call and the next ``train`` of the same
    model and settings (a notebook, a sweep, a benchmark), which then neither traces nor
    compiles again: the jitted epochs and initialisation programs (the last ``keep_programs`` of
    each), and their compiled executables by the types and shardings of their arguments (the
    last ``keep_executables``). ``PROGRAMS`` is the one the trainer uses."""

    def __init__(self, keep_programs=8, keep_executables=16):
        self.epochs = functools.lru_cache(keep_programs)(self._epochs)
        self.init = functools.lru_cache(keep_programs)(self._init)
        self._executables = {}  # (program, the arguments' types and shardings) -> its executable
        self._keep_executables = keep_executables

    @staticmethod
    def _epochs(model, config, iter_per_epoch, n_train, n_test, batch_sharding, feed, replicated, ticks=False):
        """``make_epochs_fn``'s function for these arguments, jitted, its outputs replicated; with
        ``ticks``, reporting every step and evaluation to ``TICKS``."""
        hooks = dict(on_step=TICKS.step, on_evaluation=TICKS.evaluation) if ticks else {}
        return jax.jit(make_epochs_fn(model, config, iter_per_epoch, n_train, n_test, _MAX_EPOCHS, batch_sharding,
                                      feed=feed, **hooks), out_shardings=replicated)

    @staticmethod
    def _init(model, config, replicated):
        """``init_state(model, config)`` as one jitted program: compiling the initialisation (its
        random draws) takes about a second on a CPU, as long as a short training itself."""
        return jax.jit(lambda: init_state(model, config), out_shardings=replicated)

    def compiled(self, program, args):
        """``(executable, fresh)``: ``program`` (a jitted epochs program) compiled for ``args`` ahead
        of its call, so that the trainer can time compiling apart from training, and whether it was
        compiled (or loaded from the persistent cache) now.

        Under ``jax_debug_nans`` or ``jax_debug_infs`` it is the jitted ``program`` itself, compiled
        by its first call: an ahead-of-time executable reports a NaN only as JAX's internal error,
        where the jitted program runs again op by op and raises ``FloatingPointError`` at the
        operation that made the NaN, which is what those settings are for. The settings are
        entered again around each call: JAX checks a jitted call's outputs through a per-thread
        hook that tracing a ``vmap`` of a jitted function clears, so a setting made globally
        (``jax.config.update``, ``JAX_DEBUG_NANS=1``) would stop being checked after the first
        trace."""
        nans, infs = jax.config.jax_debug_nans, jax.config.jax_debug_infs
        if nans or infs:
            def checked(*args):
                with jax.debug_nans(nans), jax.debug_infs(infs):
                    return program(*args)
            return checked, False
        leaves, treedef = jax.tree.flatten(args)
        key = (program, treedef, tuple((jax.typeof(leaf), getattr(leaf, "sharding", None)) for leaf in leaves))
        executable = self._executables.get(key)
        if executable is not None:
            return executable, False
        executable = program.lower(*args).compile()
        if len(self._executables) >= self._keep_executables:
            self._executables.pop(next(iter(self._executables)))  # the oldest
        self._executables[key] = executable
        return executable, True


PROGRAMS = Programs()


class Ticks:
    """Where a program compiled with ticks reports from inside its call: the progress bar of the
    ``train`` running it (``showing``), advanced to each step's iteration, and told when an
    evaluation runs. Calls come from the runtime's callback thread while the host waits."""

    def __init__(self):
        self._lock = threading.Lock()
        self._bar = None

    @contextlib.contextmanager
    def showing(self, bar):
        with self._lock:
            self._bar = bar
        try:
            yield
        finally:
            with self._lock:
                self._bar = None

    def step(self, iteration):
        with self._lock:
            if self._bar is not None:
                self._bar.to(int(iteration))

    def evaluation(self, started, iteration):
        with self._lock:
            if self._bar is not None:
                self._bar.evaluating(started, int(iteration))


TICKS = Ticks()
