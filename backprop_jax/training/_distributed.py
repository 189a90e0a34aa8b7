"""Joining a multi-process run (``jax.distributed``) and checking that its processes agree."""

import hashlib
import json
import os
import socket
import sys
import threading
import time

import jax
import numpy as np


class DistributedError(RuntimeError):
    """This process could not join the run, or the processes were started differently."""


def parse_host_port(address):
    """``(host, port)`` from ``HOST:PORT`` (``[::1]:PORT`` for IPv6), or None if it is not one."""
    host, sep, port = address.rpartition(":")
    if not (host and sep and port.isdigit() and 0 < int(port) < 65536):
        return None
    return host.strip("[]"), int(port)


def wait_for_coordinator(address, timeout):
    """Returns once process 0 accepts connections at ``address``; ``DistributedError`` after ``timeout`` s.

    (Without this check JAX aborts with a bare DEADLINE_EXCEEDED when process 0 never comes.)
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(parse_host_port(address), timeout=1).close()
            return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise DistributedError(f"process 0 is not reachable at {address} after {timeout} s ({e}); "
                                       f"start it first, or check the coordinator address") from None
            time.sleep(0.2)


def join(coordinator=None, num_processes=None, process_id=None, *, heartbeat_timeout=100,
         connect_timeout=300, reword=None):
    """Joins a multi-process run through ``jax.distributed.initialize``; returns the number of processes.

    Settings left None are read by JAX from the cluster (SLURM, Open MPI,
    Kubernetes, Cloud TPU). A process other than 0 first waits for process 0's
    port, so that an absent coordinator is a clear error. If not every process
    has joined after ``connect_timeout`` seconds, this process prints a one-line
    error and exits with status 1 (JAX itself would abort it from C++, which
    no ``except`` can catch); ``reword``, if given, rewrites that line first (the
    command line names its flags).
    """
    if coordinator is not None and process_id:
        wait_for_coordinator(coordinator, connect_timeout)
    print(f"backprop-jax: process {'?' if process_id is None else process_id} of "
          f"{'?' if num_processes is None else num_processes} joining the run at "
          f"{coordinator or '(address from the cluster)'}; waiting up to {connect_timeout} s "
          f"for every process", file=sys.stderr, flush=True)
    # When the others never come, JAX aborts the process from C++ (a stack trace, status 134)
    # at its own timeout, which nothing in Python can catch: a watchdog ends it first, cleanly.
    joined = threading.Event()

    def watchdog():
        if not joined.wait(connect_timeout):
            message = (f"not every process joined the run within {connect_timeout} s (connect_timeout); "
                       f"start all {num_processes or 'the'} processes with the same coordinator, each with "
                       f"its own process_id, or allow more time")
            print(f"backprop-jax: error: {(reword or str)(message)}", file=sys.stderr, flush=True)
            os._exit(1)

    threading.Thread(target=watchdog, name="backprop-jax-join-watchdog", daemon=True).start()
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=connect_timeout + 30,
                                   heartbeat_timeout_seconds=heartbeat_timeout)
    except (ValueError, RuntimeError) as e:  # missing settings
        raise DistributedError(f"could not join the multi-process run: {e}") from None
    finally:
        joined.set()
    return jax.process_count()


def check_processes_agree(settings, data):
    """Raises ``DistributedError`` on every process unless all processes of the run passed the
    same JSON-able ``settings`` and the same ``data`` (shapes and about 1,000 rows of each array)."""
    from jax.experimental import multihost_utils

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for x, t in data:
        for a in (np.asarray(x), np.asarray(t)):
            digest.update(repr(a.shape).encode() + np.ascontiguousarray(a[::max(1, len(a) // 1000)]).tobytes())
    mine = np.frombuffer(digest.digest(), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine))  # (processes, 32)
    differ = [i for i in range(len(every)) if not np.array_equal(every[i], every[0])]
    if differ:
        raise DistributedError(
            f"process{'es' if len(differ) > 1 else ''} {', '.join(map(str, differ))} of this run got "
            f"other settings or data than process 0 (this is process {jax.process_index()}); start "
            f"every process with the same flags and the same dataset")
