"""Where the data lives during training: the mesh that splits every mini-batch over the
devices, the training set on the devices (or each epoch's batches sent from the host), and the
evaluation sets in chunks.

Data parallelism (one process or several, ``jax.distributed``): a 1-D mesh
with axis ``"data"`` splits every mini-batch over its devices; parameters and
optimiser state are replicated and XLA adds the all-reduce of the gradients.
With several processes each one gathers, on the host, only the rows of each
batch that its own devices hold (``feed="host"``).
"""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from backprop_jax.training._data_checks import split_data


def check_batch_split(batch_size, n_devices):
    """Raises ValueError unless every mini-batch of ``batch_size`` splits evenly over ``n_devices``."""
    if batch_size % n_devices:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {n_devices} devices; "
                         f"choose a multiple of {n_devices}")


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


def chunking(n, chunk, n_shards=1):
    """``(n_chunks, size)``: ``n`` examples in as few chunks of at most ``chunk`` as can hold them,
    all of one size (the padding less than a chunk), a multiple of ``n_shards``."""
    n_chunks = max(-(-n // chunk), 1)
    size = -(-n // n_chunks)
    return n_chunks, -(-size // n_shards) * n_shards


def eval_chunks(x, t, sharding=None, chunk=10_000):
    """``x, t`` padded (labels with -1, which never match) and reshaped to
    ``(n_chunks, size, ...)`` on the host, then placed by ``sharding``.

    The ``n_chunks`` are as few as hold ``x`` in chunks of at most ``chunk`` examples, of one
    ``size`` as near ``len(x) / n_chunks`` as the devices ``sharding`` splits it over allow
    (a multiple of their number, ``PartitionSpec(None, "data")``); each process sends only its part.
    """
    x, t = np.asarray(x), np.asarray(t)
    n = len(x)
    n_chunks, chunk = chunking(n, chunk, 1 if sharding is None else sharding.mesh.size)
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


_EVAL_CHUNK_BYTES = 2 ** 28  # all the values one evaluation chunk's forward computes stay under 256 MiB


def eval_chunk_size(bytes_per_example):
    """Examples per evaluation chunk: 10,000, or fewer where the values the forward computes for so
    many would pass 256 MiB (a convolution's columns and outputs, a language model's scores of a
    vocabulary at every step of every window). ``bytes_per_example``: the bytes of all the values
    the forward computes for each example (``estimate_cost`` finds them from shapes)."""
    return int(max(1, min(10_000, _EVAL_CHUNK_BYTES // max(int(bytes_per_example), 1))))


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
                   config.epoch_length(len(x_train)), batch_sharding, replicated, fed_sharding)

