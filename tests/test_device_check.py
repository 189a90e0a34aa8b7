"""The device check (benchmarks/device_check.sh) runs end to end at its tiny size on the CPU, the
same script a machine with a GPU runs, and writes every field its readers use; a deadline too
short for every stage still leaves a valid JSON of the stages that ran."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def _run(out, *args, timeout=540):
    # The check's own environment, not the suite's (no backend-optimisation flag, its own caches).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_", "BACKPROP_JAX"))}
    env.update(JAX_PLATFORMS="cpu", BJ_PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), str(out), "--tiny", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_tiny_device_check_writes_every_stage(tmp_path):
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device-check.json", "device-check.txt"]
    r = json.loads((tmp_path / "device-check.json").read_text())
    assert r["kind"] == "device-check" and r["tiny"] is True
    assert {name: s["status"] for name, s in r["stages"].items()} == dict.fromkeys(
        ["machine", "tests", "steps", "end_to_end", "train"], "ok")
    assert r["install"]["ok"] is True and r["install"]["seconds"] >= 0 and "BJ_PYTHON" in r["install"]["way"]
    assert r["elapsed_s"] < r["deadline_s"]
    m = r["machine"]
    assert m["backend"] == "cpu" and m["machine"]["device_kind"] == "cpu"
    assert set(m["peak_gflops"]) == {"float32", "float32_default", "bfloat16"}
    assert all(v > 0 for v in m["peak_gflops"].values())
    tests = r["tests"]
    assert tests["counts"] == {"passed": 2} and tests["failed"] == [] and tests["returncode"] == 0
    assert "test_real_devices.py" in tests["files"]
    s = r["steps"]
    (w,) = s["workloads"].values()
    assert all(w["steps_per_s"][k] > 0 for k in ("hand", "autodiff", "plain")) and w["hand_over_autodiff"] > 0
    assert set(s["deep_convnet"]) == {"hand", "autodiff", "hand_xla", "autodiff_xla"}
    assert s["mixed_precision"]["workload"] == "tiny 784-16-10"
    assert all(s["mixed_precision"]["steps_per_s"][k] > 0 for k in ("float32", "bfloat16"))
    assert all(s["convolution"][k] > 0 for k in ("im2col_ms", "xla_ms", "lax_conv_ms"))
    (lstm,) = s["time_lstm"].values()
    assert lstm["max_rel_grad_difference"] < 1e-4 and lstm["hand_over_autodiff"] > 0
    e = r["end_to_end"]
    assert e["iters"] == 100 and all(e["seconds"][k] > 0 for k in ("plain", "device", "train", "run", "cli"))
    assert e["seconds"]["numpy"] is None and e["speedup_over_numpy"] is None
    train = r["train"]
    assert train["convnet"]["iterations"] == 2 and 0 <= train["convnet"]["test_acc"] <= 1
    assert train["rnnlm"]["iterations"] == 2 and train["rnnlm"]["test_perplexity"] > 1
    text = (tmp_path / "device-check.txt").read_text()
    assert text == result.stdout
    for line in ("stage train: ok", "tests: passed", "hand/autodiff", "train rnnlm:", "matmul peak"):
        assert line in text


def test_a_short_deadline_skips_the_stages_it_cannot_fit_and_still_writes_the_json(tmp_path):
    start = time.time()
    result = _run(tmp_path, "--deadline", "16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.time() - start < 16 + 10  # the deadline, and the interpreters' exits
    r = json.loads((tmp_path / "device-check.json").read_text())
    stages = {name: s["status"] for name, s in r["stages"].items()}
    # The machine stage gets what is left of 16 s (less a margin), the tests at most a few seconds
    # (too few: they are killed) and the rest nothing.
    assert stages["machine"] in ("ok", "timed out") and r["stages"]["machine"]["budget_s"] < 16
    assert r["deadline_s"] == 16
    assert stages["tests"] in ("timed out", "skipped: no time left")
    assert all(stages[name] == "skipped: no time left" for name in ("steps", "end_to_end", "train"))
    assert "stage train: skipped" in (tmp_path / "device-check.txt").read_text()


def test_an_unusable_python_is_recorded_and_every_stage_fails_in_the_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_", "BACKPROP_JAX"))}
    env.update(JAX_PLATFORMS="cpu", BJ_PYTHON=str(tmp_path / "no-such-python"))
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), "--tiny", "--deadline", "120"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0 and "the environment is not usable" in result.stderr
    r = json.loads((tmp_path / "out" / "device-check.json").read_text())
    assert r["install"]["ok"] is False and "no-such-python" in r["install"]["log_tail"]
    # python3 ran the orchestrator (it needs no package), and every stage is recorded.
    assert list(r["stages"]) == ["machine", "tests", "steps", "end_to_end", "train"]
    assert (tmp_path / "out" / "device-check.txt").read_text() == result.stdout
