"""Learning: the compiled loop, runs with files, checkpoints, joining processes."""

from backprop_jax.training._checkpoint import Checkpoints
from backprop_jax.training._distributed import DistributedError, check_processes_agree, join, parse_host_port
from backprop_jax.training._loop import (
    OPTIMIZERS, Epoch, Evaluation, Optimizer, TrainConfig, TrainingDiverged, TrainState, batch_indices,
    data_parallel_mesh, eval_chunks, evaluation_sets, init_state, iterations_per_epoch, make_epoch_fn,
    make_epochs_fn, perplexity, train)
# The checks and constants the command line words as flags (not part of the package's API).
from backprop_jax.training._loop import (  # noqa: F401
    DIVERGENCE_EPOCHS, DIVERGENCE_FACTOR, check_batch_split, check_seed)
from backprop_jax.training._run import RunError, RunInterrupted, data_fingerprint, run
from backprop_jax.training import optimizers

__all__ = ["train", "TrainConfig", "TrainState", "Epoch", "TrainingDiverged", "init_state", "OPTIMIZERS",
           "Optimizer", "data_parallel_mesh", "batch_indices", "perplexity", "make_epoch_fn", "make_epochs_fn",
           "eval_chunks", "Evaluation", "evaluation_sets", "iterations_per_epoch", "run", "RunError", "RunInterrupted", "data_fingerprint", "Checkpoints",
           "join", "check_processes_agree", "parse_host_port", "DistributedError", "optimizers"]
