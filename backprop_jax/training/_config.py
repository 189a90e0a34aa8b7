"""A run's training settings, settled once: ``TrainConfig`` (the optimiser it builds, the
learning rate it uses, how it is recorded) and the ``TrainState`` it starts from."""

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from backprop_jax._values import check_count, is_count
from backprop_jax.training.optimizers import OPTIMIZERS, clip_grads


def check_seed(seed: Any) -> None:
    """Raises ValueError unless ``seed`` is an integer from 0 to 2**32 - 1: exactly the seeds
    ``jax.random.key`` tells apart (it keeps 32 bits, so 2**32 would silently be seed 0 again)."""
    if not (is_count(seed, 0) and seed < 2 ** 32):
        raise ValueError(f"seed must be an integer from 0 to 2**32 - 1 = {2 ** 32 - 1}, got {seed!r}")


INT32_MAX = 2 ** 31 - 1


def _check_positive_number(name: str, value: Any) -> None:
    if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; the defaults are the book's recipe (sec. 5.7.4).

    The learning rate goes from here to the update in one step: ``lr`` is
    ``learning_rate`` or the named optimiser's default (``OPTIMIZERS``), and
    ``make_optimizer`` builds that optimiser at ``lr``, after the sequel's
    ``clip_grads(max_grad)`` when ``max_grad`` is set.
    """
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
    # The sequel's Trainer(max_grad=...): the gradients clipped to this global norm before each
    # update (optimizers.clip_grads); None: not clipped.
    max_grad: float | None = None
    # Updates in an epoch, where the data's layout decides it (the sequel's RnnlmTrainer reading
    # windows from every position: corpus // (batch_size * time_size)); None: the book's,
    # train size // batch size (iterations_per_epoch).
    iters_per_epoch: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.optimizer, optax.GradientTransformation):
            if self.learning_rate is not None:
                raise ValueError(f"learning_rate must be None with an optax transformation as the optimizer "
                                 f"(it carries its own), got {self.learning_rate!r}")
        elif not (isinstance(self.optimizer, str) and self.optimizer in OPTIMIZERS):
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} or an optax "
                             f"GradientTransformation, got {self.optimizer!r}")
        check_count("evaluate_sample_num_per_epoch", self.evaluate_sample_num_per_epoch, optional=True)
        check_count("iters_num", self.iters_num)
        check_count("iters_per_epoch", self.iters_per_epoch, optional=True)
        check_count("batch_size", self.batch_size)
        for name in ("iters_num", "batch_size"):  # counted by int32 scalars inside the compiled loop
            if getattr(self, name) > INT32_MAX:
                raise ValueError(f"{name} must be at most 2**31 - 1 = {INT32_MAX} (the compiled loop counts "
                                 f"it in 32-bit integers), got {getattr(self, name)}")
        check_seed(self.seed)
        _check_positive_number("learning_rate", self.learning_rate)
        _check_positive_number("max_grad", self.max_grad)

    @property
    def lr(self) -> float | None:
        """The learning rate of a named optimiser: ``learning_rate``, or the optimiser's default
        when that is None; None for an optax transformation (it carries its own)."""
        if not isinstance(self.optimizer, str):
            return None
        return OPTIMIZERS[self.optimizer].learning_rate if self.learning_rate is None else self.learning_rate

    def make_optimizer(self) -> optax.GradientTransformation:
        """The optax ``GradientTransformation`` these settings name: the optimiser at ``lr``,
        chained after ``clip_grads(max_grad)`` when ``max_grad`` is set."""
        if isinstance(self.optimizer, optax.GradientTransformation):
            optimizer = self.optimizer
        else:
            optimizer = OPTIMIZERS[self.optimizer].make(self.lr)
        if self.max_grad is None:
            return optimizer
        return optax.chain(clip_grads(self.max_grad), optimizer)

    def record(self) -> dict[str, Any]:
        """These settings as JSON-able values, for checkpoints and ``metrics.json``: a named
        optimiser by its name and the learning rate it uses, a transformation by
        ``describe_optimizer``; ``max_grad`` only when it is set (a record without it is a run
        that did not clip)."""
        record = dataclasses.asdict(self)
        if isinstance(self.optimizer, str):
            record["learning_rate"] = self.lr
        else:
            record["optimizer"] = describe_optimizer(self.optimizer)
        for optional in ("max_grad", "iters_per_epoch"):  # unset: recorded as before they were settings
            if record[optional] is None:
                del record[optional]
        return record

    def earlier_records(self) -> list[dict[str, Any]]:
        """The other forms in which runs with these settings were recorded, which a resumed run
        accepts as its own: before ``max_grad`` was a setting, a clipped run passed the chain
        ``clip_grads(max_grad), optimizer(lr)`` as its optimizer, recorded by its description."""
        if self.max_grad is None or not isinstance(self.optimizer, str):
            return []
        record = self.record()
        del record["max_grad"]
        record.update(optimizer=describe_optimizer(self.make_optimizer()), learning_rate=None)
        return [record]

    def epoch_length(self, n_train: int) -> int:
        """Updates in an epoch over ``n_train`` training rows: ``iters_per_epoch``, else the
        book's ``iterations_per_epoch``."""
        if self.iters_per_epoch is not None:
            return self.iters_per_epoch
        return max(n_train // self.batch_size, 1)

    def optimizer_name(self) -> str:
        """For messages: ``"adam lr 0.001"``, ``"an optax transformation"``, each followed by
        ``", gradients clipped at 5"`` when ``max_grad`` is set."""
        name = f"{self.optimizer} lr {self.lr}" if isinstance(self.optimizer, str) else "an optax transformation"
        return name if self.max_grad is None else f"{name}, gradients clipped at {self.max_grad:g}"


def describe_optimizer(transformation: Any) -> str:
    """A description of an optax transformation that is the same for the same construction, in
    any process, and differs when a hyperparameter does: the functions it is made of and the
    values they close over (learning rates, betas, schedules), read recursively."""
    seen: set[int] = set()

    def describe(obj: Any, depth: int) -> str:
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


def _has_contents(cell: Any) -> bool:
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


def init_state(model: Any, config: TrainConfig) -> TrainState:
    """Initial parameters (from ``config.seed``) and optimiser state."""
    params, model_state = model.init(jax.random.fold_in(jax.random.key(config.seed), 0))
    return TrainState(params, config.make_optimizer().init(params), jnp.zeros((), jnp.int32), model_state)
