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

import contextlib
import dataclasses
import math
import threading
import time

import jax
import jax.numpy as jnp

from backprop_jax._values import check_count
from backprop_jax.training._config import TrainConfig, init_state
from backprop_jax.training._cost import estimate_cost
from backprop_jax.training._data_checks import _check_data, split_data
from backprop_jax.training._memory import check_memory, out_of_memory_errors
from backprop_jax.training._placement import _place, _resolve_feed, epoch_batches
from backprop_jax.training._programs import _MAX_EPOCHS, PROGRAMS, TICKS, evaluation_mean


# A loss whose mean over DIVERGENCE_EPOCHS epochs in a row stays above DIVERGENCE_FACTOR times its
# starting value stops training (a learning rate far too large explodes it without a NaN).
DIVERGENCE_FACTOR = 10.0
DIVERGENCE_EPOCHS = 3


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""



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

    def result(self):
        """What the epoch measured on the test set, in words: ``"test accuracy 0.9712"``,
        ``"test perplexity 12.34"`` or ``"test loss 0.01234"``."""
        if self.test_acc is not None:
            return f"test accuracy {self.test_acc:.4f}"
        if self.test_perplexity is not None:
            return f"test perplexity {self.test_perplexity:.2f}"
        return f"test loss {self.test_loss:.4g}"

    def line(self):
        """The epoch's line as a run prints it."""
        if self.test_perplexity is not None:
            return f"epoch {self.epoch}: train perplexity {perplexity(self.train_loss):.2f}, " \
                   f"test perplexity {self.test_perplexity:.2f}"
        if self.test_acc is None:
            return f"epoch {self.epoch}: train loss {self.train_loss:.4g}, test loss {self.test_loss:.4g}"
        return f"epoch {self.epoch}: train acc {self.train_acc:.4f}, test acc {self.test_acc:.4f}, " \
               f"loss {self.train_loss:.4f}"


@out_of_memory_errors("training")
def train(model, data, config=TrainConfig(), *, state=None, history=(), on_epochs=None,
          progress=None, mesh=None, feed="auto", seconds_per_call=0.5, sync_every=None,
          divergence_factor=DIVERGENCE_FACTOR, divergence_epochs=DIVERGENCE_EPOCHS, between_epochs=None,
          step_progress=None):
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
      between_epochs: if given, ``between_epochs(state, history) -> state`` after every whole
        epoch (each call then runs one epoch), before ``on_epochs`` sees the state: a script's
        work between its ``fit`` calls (the sequel's ``train_better_rnnlm.py`` resets the
        model's state and lowers the learning rate there). It must keep the state's structure.
      step_progress: advance ``progress`` after every step from inside the compiled call (a host
        callback), and say when the epoch's evaluation runs (tqdm's postfix "evaluating"), so
        that a call of minutes shows how it goes. None (default): when a step is estimated to
        take 50 ms or more (the callback then costs nothing next to it). The parameters and
        the history are the same either way.
    Returns:
      The final ``TrainState`` and the list of ``Epoch`` records.
    Raises:
      TrainingDiverged: the loss became NaN or infinite (the state after the
        last good epoch was already handed to ``on_epochs``), or it stayed far
        above its starting value (the state at the end of the call was).
      ValueError: the data do not fit the model, or training cannot fit the device (``check_memory``).
      DeviceOutOfMemory: the device ran out of memory all the same (the state after the last
        call was already handed to ``on_epochs``).
    """
    _check_train_arguments(seconds_per_call, sync_every, divergence_factor, divergence_epochs)
    split_data(data)  # its structure named before the model is traced
    shapes = jax.eval_shape(lambda: init_state(model, config))  # the run's one trace of the shapes
    _check_data(model, data, shapes)
    devices = 1 if mesh is None else mesh.size
    cost = estimate_cost(model, data, config, devices, shapes=shapes)  # from shapes: nothing compiled
    check_memory(model, data, config, devices, shapes=shapes, cost=cost)
    placed = _place(data, config, mesh, _resolve_feed(feed, mesh), cost.evaluation_chunk)
    state = _starting_state(model, config, state, placed.replicated, shapes)
    if step_progress is None:
        step_progress = cost.slow_step
    ticks = progress is not None and bool(step_progress)
    program = PROGRAMS.epochs(model, config, placed.iter_per_epoch, placed.n_train, placed.n_test,
                              placed.batch_sharding, placed.feed, placed.replicated, ticks)
    history, partial = _continued_history(model, config, state, list(history), placed)
    calls = _Calls(model, config, placed, int(state.iteration), history, partial, divergence_factor,
                   divergence_epochs)
    if between_epochs is not None:
        sync_every = 1
    bar = _Progress(progress, calls.iteration) if progress is not None else None
    with TICKS.showing(bar) if ticks else contextlib.nullcontext():
        while calls.iteration < config.iters_num:
            state, records = calls.run(program, state, sync_every)
            advanced = calls.add_epochs(records)
            if advanced and between_epochs is not None and calls.iteration % placed.iter_per_epoch == 0:
                state = between_epochs(state, history)
                state = state if placed.replicated is None else jax.device_put(state, placed.replicated)
            if bar is not None:  # the call is over, its evaluations with it
                bar.evaluating(False, calls.iteration)
            if advanced:
                if bar is not None:
                    bar.to(calls.iteration)
                if on_epochs is not None:
                    on_epochs(state, history)
            calls.check_divergence(records)
            calls.resize(seconds_per_call, records)
    return state, history


class _Progress:
    """The caller's bar, advanced to an iteration: by the host after each call, and from inside a
    call by a program compiled with ticks (``TICKS``), which also says when it evaluates."""

    def __init__(self, bar, iteration):
        self.bar, self.told = bar, iteration
        self.evaluated = iteration  # evaluations after this iteration or before it are over
        self.shown = False  # the postfix says "evaluating"
        self._lock = threading.Lock()

    def to(self, iteration):
        with self._lock:
            if iteration > self.told:
                self.bar.update(iteration - self.told)
                self.told = iteration

    def evaluating(self, started, iteration):
        """The evaluation after ``iteration`` starts or ends: tqdm's postfix says "evaluating" from
        its start to its end. The runtime may call these late or out of order (an end before its
        start), so a start is heard only for an evaluation later than every one known to be over."""
        if not hasattr(self.bar, "set_postfix_str"):  # tqdm's; another bar is only advanced
            return
        with self._lock:
            if started and iteration > self.evaluated and not self.shown:
                self.bar.set_postfix_str("evaluating")
                self.shown = True
            elif not started:
                self.evaluated = max(self.evaluated, iteration)
                if self.shown:
                    self.bar.set_postfix_str("")
                    self.shown = False


def _check_train_arguments(seconds_per_call, sync_every, divergence_factor, divergence_epochs):
    if not (isinstance(seconds_per_call, (int, float)) and seconds_per_call > 0):
        raise ValueError(f"seconds_per_call must be a positive number, got {seconds_per_call!r}")
    check_count("sync_every", sync_every, optional=True)
    if divergence_factor is not None and not (isinstance(divergence_factor, (int, float))
                                              and divergence_factor > 1):
        raise ValueError(f"divergence_factor must be None or a number above 1, got {divergence_factor!r}")
    check_count("divergence_epochs", divergence_epochs)


def _starting_state(model, config, state, replicated, shapes):
    if state is None:  # one compiled call, not an op at a time; every process computes the same values
        return PROGRAMS.init(model, config, replicated)()
    _check_state(state, shapes)
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
        compiled, fresh = PROGRAMS.compiled(program, args)
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
        if records.bad_iteration == 1:  # the loss of the initial parameters: no update has run yet
            raise TrainingDiverged(
                f"the loss of the initial parameters is {records.bad_loss}, before any update: the model "
                f"or its initialisation (a weight scale or weight decay far too large) or the data make it, "
                f"not the learning rate; nothing was trained.")
        if records.bad_iteration:
            raise TrainingDiverged(
                f"the loss became {records.bad_loss} at iteration {int(records.bad_iteration)} "
                f"(epoch {len(self.history) + 1}); stopped with the parameters of iteration "
                f"{self.iteration}. Try a smaller learning rate (now {self.config.optimizer_name()}).")

    def resize(self, seconds_per_call, records):
        """Grows (at most doubling) or shrinks the next call towards ``seconds_per_call``."""
        done = int(records.done)
        self.size = max(1, min(2 * self.size, int(seconds_per_call * done / max(self.call_end - self.call_start, 1e-9))))


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



def perplexity(loss):
    """``exp(loss)``, the sequel's perplexity of a mean cross-entropy (sec. 5.5.3); ``inf`` past
    float64's range."""
    return math.exp(loss) if loss < 709.0 else math.inf


def _test_perplexity(model, test_loss):
    """An epoch's ``test_perplexity``: ``perplexity(test_loss)`` for a model measured so, else None."""
    return perplexity(test_loss) if model.measure().name == "perplexity" else None


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

