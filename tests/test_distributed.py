"""Training over several processes (``jax.distributed``), simulated on this machine:
processes on 127.0.0.1 with 2 CPU devices each, joined by gloo collectives.

Every process is started in its own session and killed at the end of the test,
whatever happened, so a failure never leaves processes behind.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import chex
import numpy as np
import pytest

from conftest import final_params

# End-to-end checks (benchmarks, processes, whole experiments): `pytest -m slow`, run by .ci/run.
pytestmark = pytest.mark.slow

WORKER_HEAD = textwrap.dedent('''
    import sys
    import jax
    port, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(f"127.0.0.1:{port}", 2, process_id, heartbeat_timeout_seconds=10,
                               initialization_timeout=60)
    import numpy as np
    import backprop_jax as bj
    from backprop_jax import two_layer_net
    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2

''')

WORKER_TAIL = textwrap.dedent('''

    mesh = bj.data_parallel_mesh()
    state, history = bj.train(model, data, config, mesh=mesh)
    for k, v in state.params.items():
        assert v.sharding.is_fully_replicated and len(v.sharding.device_set) == 4, (k, v.sharding)
        assert len(v.addressable_shards) == 2, k
    batch = seen[-1]
    assert {d.process_index for d in batch.device_set} == {0, 1}, batch
    assert batch.shard_shape((96, 784)) == (24, 784), batch.shard_shape((96, 784))
    if process_id == 0:
        single, _ = bj.train(two_layer_net.model(), data, config)  # one device, no mesh
        np.savez(out, test_acc=history[-1].test_acc,
                 **{"sharded_" + k: np.asarray(v) for k, v in state.params.items()},
                 **{"single_" + k: np.asarray(v) for k, v in single.params.items()})
    print("process", process_id, "done")
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(port, devices=2):
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices),
            "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
            "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}",  # loopback only
            "PYTHONUNBUFFERED": "1"}


@contextlib.contextmanager
def processes(commands, env, logs):
    """Starts one process per command; on exit kills whichever are still running."""
    procs = []
    with contextlib.ExitStack() as files:
        try:
            for command, log in zip(commands, logs):
                procs.append(subprocess.Popen(command, env=env, stdout=files.enter_context(open(log, "w")),
                                              stderr=subprocess.STDOUT, start_new_session=True))
            yield procs
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)


def wait_all(procs, timeout):
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    return [proc.returncode for proc in procs]


def test_two_processes_train_like_one(tmp_path, sharded_setup):
    port, out = free_port(), tmp_path / "result.npz"
    script = tmp_path / "worker.py"
    script.write_text(WORKER_HEAD + sharded_setup + WORKER_TAIL)
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    commands = [[sys.executable, str(script), str(port), str(i), str(out)] for i in range(2)]
    with processes(commands, environment(port), logs) as procs:
        codes = wait_all(procs, timeout=240)
    text = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    assert codes == [0, 0], text
    result = np.load(out)
    for k in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(result["sharded_" + k], result["single_" + k], rtol=2e-4, atol=1e-6)
    assert result["test_acc"] > 0.5


def train_command(port, process_id, out, iters):
    return [sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample",
            "--batch-size", "96", "--iters", str(iters), "--out", str(out), "--resume", "--no-progress",
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(process_id),
            "--heartbeat-timeout", "5", "--connect-timeout", "60"]


def test_processes_with_different_settings_are_refused(tmp_path):
    port = free_port()
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    commands = [train_command(port, i, tmp_path / "run", iters=100) for i in range(2)]
    commands[1] += ["--lr", "0.05"]
    with processes(commands, environment(port), logs) as procs:
        codes = wait_all(procs, timeout=120)
    for i, log in enumerate(logs):
        text = log.read_text()
        assert codes[i] == 1, text
        assert f"process 1 of this run got other settings or data than process 0 (this is process {i})" in text
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_a_dying_process_stops_the_others_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    logs = [tmp_path / f"process{i}.log" for i in range(2)]
    port = free_port()
    commands = [train_command(port, i, out, iters=100_000) for i in range(2)]
    with processes(commands, environment(port), logs) as procs:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            if (out / "checkpoints").is_dir() and any(p.name.isdigit() for p in (out / "checkpoints").iterdir()):
                break
            time.sleep(0.05)
        assert all(p.poll() is None for p in procs), "\n".join(log.read_text() for log in logs)
        os.killpg(procs[1].pid, signal.SIGKILL)
        killed = time.monotonic()
        procs[0].wait(timeout=90)  # bounded: the heartbeat timeout is 5 s
        stopped_after = time.monotonic() - killed
    survivor = logs[0].read_text()
    assert procs[0].returncode != 0, survivor
    assert "another task died" in survivor or "lost contact with the other processes" in survivor, survivor
    assert stopped_after < 60, stopped_after

    killed_at = int(final_params(out).iteration)
    assert killed_at > 0
    iters = killed_at + 2 * (4000 // 96)  # two more epochs
    port = free_port()
    commands = [train_command(port, i, out, iters=iters) for i in range(2)]
    with processes(commands, environment(port), logs) as procs:
        codes = wait_all(procs, timeout=240)
    text = "\n".join(log.read_text() for log in logs)
    assert codes == [0, 0], text
    assert f"resuming from iteration {killed_at}" in logs[0].read_text()
    assert logs[1].read_text().count("epoch") == 0  # only process 0 logs
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["iteration"] for e in metrics["epochs"]][-1] == iters
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, len(metrics["epochs"]) + 1))

    # The interrupted two-process run ends where one uninterrupted process does.
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample",
                    "--batch-size", "96", "--iters", str(iters), "--out", str(single), "--no-progress"],
                   env=environment(free_port(), devices=1), check=True, capture_output=True, timeout=240)
    a, b = final_params(out), final_params(single)
    assert int(a.iteration) == int(b.iteration) == iters
    chex.assert_trees_all_close(a.params, b.params, rtol=2e-4, atol=1e-6)
