"""Learning: the settings, the compiled loop, runs with files, checkpoints, joining processes.

In the order of a run: ``_config`` (``TrainConfig``, the optimiser it builds), ``_data_checks``
(what the data must be), ``_cost`` (what a step and an evaluation compute, from shapes),
``_memory`` (whether that fits the device, and the device's own out-of-memory error),
``_placement`` (where the data lives on the devices), ``_programs`` (what is compiled, and kept),
``_loop`` (``train``: the host between compiled calls), ``_checkpoint`` (writing and verifying
checkpoints), ``_run`` (a run directory: checkpoints, metrics, resume), ``_distributed`` (several
processes); ``plots`` (the figures, matplotlib imported when drawing).
"""

from backprop_jax.training._checkpoint import Checkpoints, CheckpointWriteError, drop_event_loop_leftovers
from backprop_jax.training._config import TrainConfig, TrainState, check_seed, init_state
from backprop_jax.training._cost import ComputedValues, Cost, computed_values, estimate_cost
from backprop_jax.training._distributed import DistributedError, check_processes_agree, join, parse_host_port
from backprop_jax.training._loop import (
    DIVERGENCE_EPOCHS, DIVERGENCE_FACTOR, Epoch, TrainingDiverged, perplexity, train)
from backprop_jax.training._memory import DeviceOutOfMemory, check_fits, check_memory, out_of_memory_errors
from backprop_jax.training._placement import (
    Evaluation, batch_indices, check_batch_split, data_parallel_mesh, eval_chunks, evaluation_sets,
    iterations_per_epoch)
from backprop_jax.training._programs import PROGRAMS, make_epoch_fn, make_epochs_fn
from backprop_jax.training._run import (
    RunError, RunInterrupted, data_fingerprint, restore_run, run, run_record, run_settings)
from backprop_jax.training import optimizers
from backprop_jax.training.optimizers import OPTIMIZERS, Optimizer

__all__ = ["train", "TrainConfig", "TrainState", "Epoch", "TrainingDiverged", "init_state", "OPTIMIZERS",
           "Optimizer", "data_parallel_mesh", "batch_indices", "perplexity", "make_epoch_fn", "make_epochs_fn",
           "eval_chunks", "Evaluation", "evaluation_sets", "iterations_per_epoch", "run", "RunError",
           "RunInterrupted", "data_fingerprint", "restore_run", "run_record", "run_settings", "Checkpoints",
           "CheckpointWriteError", "join",
           "check_processes_agree", "parse_host_port", "DistributedError", "optimizers", "check_seed",
           "check_batch_split", "DIVERGENCE_FACTOR", "DIVERGENCE_EPOCHS", "PROGRAMS", "drop_event_loop_leftovers",
           "estimate_cost", "Cost", "ComputedValues", "computed_values", "check_memory", "check_fits",
           "DeviceOutOfMemory",
           "out_of_memory_errors"]
