"""The benchmark harness runs on a tiny workload and writes a valid results file.

Speed itself is measured by the harness, never asserted in tests.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# End-to-end checks (benchmarks, processes, whole experiments): `pytest -m slow`, run by .ci/run.
pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"


def test_tiny_run_writes_results_json_and_plot(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(BENCH), "--tiny", "--repeats", "5", "--name", "t", "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "t.json").read_text())
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["gemm_peak_gflops"] > 0
    assert results["machine"]["cpu_count"] == os.cpu_count()
    (workload,) = results["workloads"].values()
    steps = workload["steps_per_s"]
    assert set(steps) == {"hand", "autodiff", "plain", "numpy", "torch"}
    assert all(steps[k] > 0 for k in ("hand", "autodiff", "plain", "numpy"))
    if importlib.util.find_spec("torch") is None:
        assert steps["torch"] is None and "torch is not installed" in result.stdout
    else:
        assert steps["torch"] > 0
    assert [r["batch"] for r in results["sweeps"]["batch"]] == [8]
    assert all(r["hand"] > 0 and r["autodiff"] > 0 for r in results["sweeps"]["hidden"])
    (lstm,) = results["time_lstm"].values()
    assert lstm["hand"]["steps_per_s"] > 0 and lstm["autodiff"]["steps_per_s"] > 0 and lstm["T"] == 5
    assert lstm["max_rel_grad_difference"] < 1e-4  # the same gradients, BPTT by hand or by autodiff
    conv = results["convolution"]
    assert conv["im2col_ms"] > 0 and conv["xla_ms"] > 0 and conv["lax_conv_ms"] > 0 and conv["W_shape"] == [4, 1, 3, 3]
    e2e = results["end_to_end"]
    assert e2e["iters"] == 100 and e2e["epochs"] == 3  # the sample's 4,000 images: 40 iterations an epoch
    seconds = e2e["seconds"]
    assert all(seconds[k] > 0 for k in ("plain", "device", "train", "run", "run_training", "cli", "cli_training",
                                        "numpy", "numpy_float64"))
    assert set(e2e["vs_plain"]) == {"device", "train", "run", "run_training", "cli", "cli_training",
                                    "cli_training_and_compile"}
    split = e2e["cli_split"]
    assert split["interpreter_and_imports"] > 0 and split["trace_and_compile_or_cache_load"] > 0
    assert split["first_epoch"] > 0
    assert seconds["cli_training_and_compile"] > seconds["cli_training"]
    assert "the book's recipe end to end" in result.stdout
    assert "fraction of the plain program's" in result.stdout and "hand/plain" in result.stdout
    assert "hand/auto" in result.stdout and "peak memory" in result.stdout and "im2col/lax.conv" in result.stdout


def test_fewer_than_five_repeats_is_refused():
    result = subprocess.run([sys.executable, str(BENCH), "--repeats", "3"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "--repeats must be at least 5" in result.stderr


def test_the_plain_baseline_learns_the_recipe_as_bj_train_does():
    # A baseline that were fast because it computed nothing would make every ratio a lie.
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import backprop_jax as bj
    data = bj.datasets.load_mnist_sample()
    fn, p0, ix = bench.plain_recipe(data, 400)
    _, (losses, train_acc, test_acc) = fn(p0, ix)
    assert ix.shape == (10, 40, 100) and float(losses[-1]) < float(losses[0])
    _, history = bj.train(bj.two_layer_net.model(), data, bj.TrainConfig(iters_num=400))
    assert abs(float(test_acc[-1]) - history[-1].test_acc) < 0.05 and float(test_acc[-1]) > 0.6
