"""Whether training fits the device: refused before compiling when the memory it must hold at
least (from shapes alone) passes what the device has, and the device's own out-of-memory
failure, should it come anyway, as one error naming what ran out and how much was asked."""

import contextlib
import os
import re

import jax
import numpy as np

from backprop_jax.training._config import init_state
from backprop_jax.training._cost import estimate_cost
from backprop_jax.training._data_checks import nbytes, split_data


class DeviceOutOfMemory(RuntimeError):
    """A compiled program ran out of device memory (XLA's ``RESOURCE_EXHAUSTED``).

    ``what`` names the work that ran (``"training"``, ``"evaluation"``); ``allocation`` is the
    size in bytes of the allocation that failed, when the device said it (else None)."""

    def __init__(self, what: str, allocation: int | None, device: str) -> None:
        asked = f"allocating {formatnbytes(allocation)} failed" if allocation is not None else "an allocation failed"
        super().__init__(f"the {device} device ran out of memory in {what}: {asked}")
        self.what, self.allocation, self.device = what, allocation, device


@contextlib.contextmanager
def out_of_memory_errors(what):
    """Turns a ``RESOURCE_EXHAUSTED`` from JAX inside the block (or the function it decorates)
    into a ``DeviceOutOfMemory`` naming ``what``; any other error passes unchanged."""
    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        text = str(e)
        if "RESOURCE_EXHAUSTED" not in text:
            raise
        size = re.search(r"(\d+)\s*bytes", text)
        raise DeviceOutOfMemory(what, int(size.group(1)) if size else None, jax.devices()[0].platform) from None


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


def formatnbytes(n):
    """``n`` bytes in words: ``"623 GB"``, ``"4.1 MB"``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g} {unit}"
        n /= 1000


def check_memory(model, data, config, devices=1, *, shapes=None, cost=None):
    """``ValueError`` when training cannot fit the device: when what the compiled training call
    must hold at once, at the least, passes the memory the device has. Nothing is compiled.

    Counted, on each device: the parameters and optimiser state twice (the call's input, which it
    keeps, and the state its loop updates), the data (the training set, unless each process feeds
    its batches, and the training and test sets in evaluation chunks), and the largest output of
    a matrix product or convolution in one step or one evaluation chunk (``estimate_cost``), which
    the devices write out whole (each its part). Everything else one step computes is left out: XLA fuses and
    reuses much of it, so a figure with it would refuse models that fit. ``shapes``: those of
    ``init_state(model, config)``; ``cost``: ``estimate_cost``'s, if the caller has them.

    Returns those parts, ``{what: bytes}``."""
    if shapes is None:
        shapes = jax.eval_shape(lambda: init_state(model, config))
    if cost is None:
        cost = estimate_cost(model, data, config, devices, shapes=shapes)
    (x_train, t_train), (x_test, t_test) = split_data(data)

    def held(*arrays):
        return sum(np.asarray(a[:1]).nbytes * len(a) for a in arrays)

    train_set = held(x_train, t_train) if jax.process_count() == 1 else 0  # else each process feeds batches
    step = f"the largest product of one step for a batch of {config.batch_size}" + (
        f" over {devices} devices" if devices > 1 else "")
    chunk = f"the largest product of one evaluation chunk of {cost.largest_chunk} examples"
    # Each device holds at least its part of a value split over them all (a gradient: all of it).
    largest = max((-(-cost.step.largest_product // devices), step),
                  (-(-cost.chunk.largest_product // devices), chunk))
    parts = {"parameters and optimiser state, twice": 2 * nbytes([shapes.params, shapes.opt_state]),
             "data": train_set + -(-held(x_train, t_train, x_test, t_test) // devices),
             largest[1]: largest[0]}
    return check_fits(parts, "training", "use a smaller batch_size or model")


def check_fits(parts, what, advice):
    """``ValueError`` when the memory ``parts`` (``{what it is: bytes}``) of the work ``what``
    together pass the memory the first device has: one line naming each part, the total, the
    device's memory and ``advice``. Returns ``parts``."""
    total, available = sum(parts.values()), _available_memory(jax.devices()[0])
    if available is not None and total > available:
        detail = ", ".join(f"{k} {formatnbytes(v)}" for k, v in parts.items())
        raise ValueError(f"{what} needs at least {formatnbytes(total)} ({detail}), more than the "
                         f"{formatnbytes(available)} the {jax.devices()[0].platform} device has; {advice}")
    return parts
