"""The performance page shows every device check in benchmarks/results/ (docs/hooks.py), whole or
cut short, and says so when there is none. The JSONs here are made up in the test; none is a
measurement."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def hooks(results):
    spec = importlib.util.spec_from_file_location("docs_hooks_device", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RESULTS = results
    return module


def fake_check(**stages):
    """A device check's JSON as benchmarks/device_check.py writes it, with made-up figures."""
    result = {"kind": "device-check", "date": "2030-01-02", "tiny": False, "elapsed_s": 431.0,
              "install": {"way": "uv sync --locked --extra gpu", "seconds": 61.0, "ok": True},
              "stages": {name: {"status": status, "seconds": 10.0, "budget_s": 90} for name, status in stages.items()}}
    if stages.get("machine") == "ok":
        result["machine"] = {"backend": "gpu", "machine": {"device_kind": "Fake GPU 9000", "devices": ["cuda:0"],
                                                           "jax": "0.12.0", "python": "3.12.3"},
                             "peak_gflops": {"float32": 51000.0, "float32_default": 371000.0, "bfloat16": 702000.0}}
    if stages.get("tests") == "ok":
        result["tests"] = {"files": ["test_affine.py", "test_conv.py"], "matmul_precision": "highest",
                           "counts": {"passed": 120, "failed": 1}, "failed": ["tests/test_conv.py::test_x"]}
    if "steps" in stages:  # cut short after the first workload
        result["steps"] = {"workloads": {"book 784-50-10": {
            "batch": 100, "steps_per_s": {"hand": 21000.0, "autodiff": 20000.0, "plain": 20500.0},
            "hand_over_autodiff": 1.05, "hand_over_plain": 1.0244, "hand_gflops": 340.0}},
            "mixed_precision": {"workload": "book 784-50-10", "steps_per_s": {"float32": 21000.0, "bfloat16": 23000.0}}}
    if stages.get("train") == "ok":
        result["train"] = {
            "convnet": {"command": "backprop-jax train --model convnet DIR", "returncode": 0, "wall_s": 14.5,
                        "training_s": 6.25, "iterations": 800, "test_acc": 0.9612, "test_perplexity": None},
            "rnnlm": {"command": "backprop-jax train --model rnnlm DIR", "returncode": 1, "wall_s": 3.0}}
    return result


def test_device_checks_are_shown_whole_or_cut_short(tmp_path):
    (tmp_path / "fake-gpu-device-check.json").write_text(json.dumps(fake_check(
        machine="ok", tests="ok", steps="timed out", end_to_end="skipped: no time left", train="ok")))
    (tmp_path / "cpu-2core.json").write_text(json.dumps({"name": "cpu-2core", "workloads": {}}))  # not a check
    text = hooks(tmp_path).device_checks()
    assert text.startswith(
        "**`fake-gpu-device-check.json`**, measured 2030-01-02 on Fake GPU 9000 (gpu; devices cuda:0)")
    assert "Installed by uv sync --locked --extra gpu in 61 s; 431 s in all" in text
    assert "steps timed out (10 s)" in text and "end_to_end skipped: no time left" in text
    assert "float32 at JAX's default precision (TF32 on GPUs) 371,000 GFLOP/s" in text
    assert "120 passed" in text and "1 failed" in text and "`tests/test_conv.py::test_x`" in text
    assert "| book 784-50-10, batch 100 | 21000 | 20000 | 20500 | 1.05 | 1.02 | 340 |" in text
    assert "| `backprop-jax train --model convnet DIR` | 14.5 | 6.2 | test accuracy 0.961, 800 iterations |" in text
    assert "failed (exit 1)" in text
    assert "hand rules computing in float32 and in bfloat16 (`mixed_precision`: float32 master weights and loss): " \
        "float32 21000 steps/s, bfloat16 23000 steps/s" in text
    assert "cpu-2core" not in text


def test_a_check_killed_after_installing_still_shows_and_none_is_said_so(tmp_path):
    assert "No device check is recorded yet" in hooks(tmp_path).device_checks()
    (tmp_path / "cut-device-check.json").write_text(json.dumps(fake_check(machine="timed out")))
    text = hooks(tmp_path).device_checks()
    assert "`cut-device-check.json`" in text and "machine timed out" in text and "Matmul peak" not in text


def test_the_performance_page_asks_for_the_device_checks():
    assert "<!-- device-checks -->" in (ROOT / "docs" / "guides" / "performance.md").read_text()
