"""The device check: everything worth measuring on an accelerator, in one short, bounded run.

Run through ``benchmarks/device_check.sh OUT`` (which installs first and times it), or alone:

    python benchmarks/device_check.py OUT [--tiny]

Writes ``OUT/device-check.json`` and ``OUT/device-check.txt``, again after every stage and
atomically, so that a run killed at any point leaves the stages finished before it. Each stage
runs in a process of its own under its own time limit (and never past the run's deadline), so a
slow or hung stage costs its own budget and no more:

- ``machine``: the devices, versions, and the matmul peak of each dtype in use (float32 at full
  precision, float32 at JAX's default precision, which is TF32 on recent NVIDIA GPUs, bfloat16);
- ``tests``: the suite's device-relevant tests on the device (counts of each outcome);
- ``steps``: training steps per second, hand rules / autodiff / an independent plain program, for
  the book's nets and a large MLP (that one also in bfloat16: ``mixed_precision``), one convolution
  layer, DeepConvNet (im2col and XLA convolutions), and the sequel's TimeLSTM at the Rnnlm and
  BetterRnnlm sizes;
- ``end_to_end``: the book's recipe (10,000 iterations) through ``bj.train``, ``bj.run`` and the
  command, against the independent plain program;
- ``train``: ``backprop-jax train --model convnet`` and ``--model rnnlm``: wall time, training
  time, accuracy or perplexity.

``--tiny`` runs every stage at a toy size (tests/test_device_check.py does, on the CPU).
The orchestrating process never imports JAX: only the stages touch the device.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JSON_NAME, TEXT_NAME = "device-check.json", "device-check.txt"

# name -> seconds it may take at most (the whole run: 8 minutes, installing included).
BUDGETS = {"machine": 45, "tests": 130, "steps": 120, "end_to_end": 90, "train": 75}
DEADLINE = 470
# --tiny runs on CPUs, often a few shared cores, where compiling the same programs takes longer
# than measuring them does on a GPU: its budgets and deadline are this many times the above.
TINY_SCALE = 4
# The suite's files that exercise the device: the layers, the checker, the nets' gradients,
# training, and sharding on the devices there are (test_real_devices.py; test_sharding.py
# simulates 8 CPU devices and stays on the CPU).
TEST_FILES = ["test_basic.py", "test_activations.py", "test_affine.py", "test_softmax.py", "test_conv.py",
              "test_conv_xla.py", "test_conv_net.py", "test_gradcheck.py", "test_nets.py", "test_train.py",
              "test_rnnlm.py", "test_real_devices.py"]
TINY_TEST_FILES = ["test_real_devices.py"]


def write_atomic(path, text):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_part(path, part):
    write_atomic(path, json.dumps(part, indent=1, default=float))


# --- the stages (each runs in its own process) -----------------------------------------

def _bench():
    sys.path.insert(0, str(HERE))
    import bench
    return bench


def stage_machine(part, path, tiny):
    import jax
    import jax.numpy as jnp

    bench = _bench()
    part["machine"] = bench.machine()
    part["backend"] = jax.default_backend()
    write_part(path, part)
    sizes, repeats = ((128, 256), 3) if tiny else ((2048, 4096, 8192), 5)
    part["peak_gflops"] = {}
    for label, dtype, precision in (("float32", jnp.float32, jax.lax.Precision.HIGHEST),
                                    ("float32_default", jnp.float32, None),
                                    ("bfloat16", jnp.bfloat16, None)):
        part["peak_gflops"][label] = bench.gemm_peak(repeats, sizes, dtype, precision)
        write_part(path, part)


def stage_tests(part, path, tiny):
    names = TINY_TEST_FILES if tiny else TEST_FILES
    files = [str(ROOT / "tests" / f) for f in names if (ROOT / "tests" / f).exists()]
    part["missing_files"] = [f for f in names if not (ROOT / "tests" / f).exists()]
    outcomes = Path(path).with_suffix(".outcomes")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "BJ_TEST_OUTCOMES": str(outcomes),
           # Gradient tests compare float32 to 1e-5; TF32 matmuls (JAX's GPU default) are not that
           # precise. The tests ask about the rules, not the hardware's rounding.
           "JAX_DEFAULT_MATMUL_PRECISION": "highest"}
    part.update(files=[Path(f).name for f in files], matmul_precision="highest", workers=0 if tiny else 4)
    write_part(path, part)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "_pytest_outcomes",
                             "-q", "-n", str(part["workers"]), *files],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    part["returncode"] = result.returncode
    part["output_tail"] = (result.stdout + result.stderr)[-3000:]
    if result.returncode not in (0, 1):  # 1: tests ran and some failed (counted); else pytest itself failed
        write_part(path, part)
        sys.exit(f"pytest exited with {result.returncode}: {part['output_tail'][-500:]}")


def stage_steps(part, path, tiny):
    import backprop_jax as bj
    bench = _bench()
    data = bj.datasets.load_mnist_sample()
    repeats = 1 if tiny else 5
    peak = bench.gemm_peak(1, (256,) if tiny else (4096,))  # float32, default precision: sizes the calls
    workloads = {"tiny 784-16-10": ([784, 16, 10], 8)} if tiny else {
        "book 784-50-10": ([784, 50, 10], 100), "784-100-100-10": ([784, 100, 100, 10], 100),
        "784-4096-4096-10": ([784, 4096, 4096, 10], 1024)}
    part.update(repeats=repeats, workloads={})
    for name, (sizes, batch) in workloads.items():
        flops = bench.train_flops(sizes, batch)
        # About 0.2 s a call at a third of the peak; at least 50 steps (launch-bound nets).
        steps = 2 if tiny else bench.steps_for(flops, 0.2, peak / 3, low=50, high=2000)
        r = bench.time_hand_and_autodiff(sizes, batch, data, repeats, steps)
        plain = bench.time_plain(sizes, batch, data, repeats, steps)
        s = {"hand": r["hand"]["steps_per_s"], "autodiff": r["autodiff"]["steps_per_s"],
             "plain": plain["steps_per_s"]}
        part["workloads"][name] = {
            "sizes": sizes, "batch": batch, "flops_per_step": flops, "steps_per_call": steps, "steps_per_s": s,
            "hand_over_autodiff": s["hand"] / s["autodiff"], "hand_over_plain": s["hand"] / s["plain"],
            "hand_gflops": s["hand"] * flops / 1e9, "compile_s": {k: r[k]["compile_s"] for k in r}}
        write_part(path, part)
    # The largest MLP again, its hand rules computing in bfloat16 (float32 master weights and loss).
    name, (sizes, batch) = list(workloads.items())[-1]
    steps = part["workloads"][name]["steps_per_call"]
    r = bench.time_jax({"float32": bench.hand_model(sizes), "bfloat16": bj.mixed_precision(bench.hand_model(sizes))},
                       sizes, batch, data, repeats, steps)
    part["mixed_precision"] = {"workload": name, "steps_per_s": {k: v["steps_per_s"] for k, v in r.items()}}
    write_part(path, part)
    conv_shape, conv_filters = ((4, 1, 12, 12), (4, 1, 3, 3)) if tiny else ((100, 1, 28, 28), (30, 1, 5, 5))
    part["convolution"] = bench.time_convolution(conv_shape, conv_filters, repeats)
    write_part(path, part)
    part["time_lstm"] = bench.time_time_lstm(repeats, {"tiny N4 T5 H8": (4, 5, 8, 8)} if tiny else bench.LSTM_SIZES)
    write_part(path, part)
    # Last: four programs of the largest net to compile, the likeliest to run out of the stage's time.
    part["deep_convnet"] = bench.time_deep_convnet(data, repeats, batch=2 if tiny else 100, steps=1 if tiny else 50,
                                                   conv_methods=("im2col", "xla"))


def stage_end_to_end(part, path, tiny):
    import backprop_jax as bj
    bench = _bench()
    data = bj.datasets.load_mnist_sample()
    with tempfile.TemporaryDirectory() as work_dir:
        part.update(bench.time_end_to_end(data, 100 if tiny else 10_000, 1 if tiny else 3, 1 if tiny else 2,
                                          work_dir, log=lambda *a, **k: None, baselines=False))


TRAIN_RUNS = {  # name -> the command's arguments after `train`
    "convnet": ["--model", "convnet", "--dataset", "mnist-sample"],
    "rnnlm": ["--model", "rnnlm"],
}


def stage_train(part, path, tiny):
    with tempfile.TemporaryDirectory() as work_dir:
        for name, args in TRAIN_RUNS.items():
            out = Path(work_dir) / name
            argv = [sys.executable, "-m", "backprop_jax", "train", *args, *(["--iters", "2"] if tiny else []),
                    "--no-progress", "--out", str(out)]
            start = time.perf_counter()
            result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
            row = {"command": " ".join(["backprop-jax", *argv[3:-1], "DIR"]), "wall_s": time.perf_counter() - start,
                   "returncode": result.returncode}
            if result.returncode == 0:
                metrics = json.loads((out / "metrics.json").read_text())
                last = metrics["epochs"][-1]
                row.update(iterations=last["iteration"], epochs=last["epoch"], training_s=last["seconds"],
                           compile_s=metrics["epochs"][0].get("compile_seconds"), test_acc=last.get("test_acc"),
                           test_perplexity=last.get("test_perplexity"))
            else:
                row["output_tail"] = (result.stdout + result.stderr)[-2000:]
            part[name] = row
            write_part(path, part)


STAGES = {"machine": stage_machine, "tests": stage_tests, "steps": stage_steps, "end_to_end": stage_end_to_end,
          "train": stage_train}


def run_stage(name, path, tiny):
    part = {}
    try:
        STAGES[name](part, path, tiny)
    finally:
        write_part(path, part)


# --- the orchestrator ----------------------------------------------------------------------

def summary(results):
    """A few lines a reader takes in at a glance; the JSON holds everything."""
    lines = [f"device check ({'tiny' if results['tiny'] else 'full'}), {results['date']}"]
    install = results.get("install") or {}
    if install:
        lines.append(f"install: {install.get('way')}, {install.get('seconds', 0):.0f} s, ok={install.get('ok')}")
    for name, stage in results["stages"].items():
        lines.append(f"stage {name}: {stage['status']} in {stage['seconds']:.0f} s (budget {stage['budget_s']:.0f} s)")
    m = results.get("machine") or {}
    if m.get("machine"):
        lines.append(f"device: {m['machine']['device_kind']} ({m.get('backend')}), JAX {m['machine']['jax']}")
    if m.get("peak_gflops"):
        lines.append("matmul peak, GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in m["peak_gflops"].items()))
    t = results.get("tests") or {}
    if t.get("counts") is not None:
        lines.append("tests: " + (", ".join(f"{k} {v}" for k, v in sorted(t["counts"].items())) or "none ran"))
        lines += [f"  FAILED {nodeid}" for nodeid in t.get("failed", [])[:10]]
    s = results.get("steps") or {}
    for name, w in s.get("workloads", {}).items():
        lines.append(f"steps {name}, batch {w['batch']}: " + ", ".join(
            f"{k} {v:.0f}/s" for k, v in w["steps_per_s"].items()) + f"; hand/autodiff {w['hand_over_autodiff']:.2f}, "
            f"hand/plain {w['hand_over_plain']:.2f}")
    if s.get("mixed_precision"):
        mp = s["mixed_precision"]
        lines.append(f"steps {mp['workload']}, hand rules in float32 / in bfloat16 (mixed precision): "
                     + " / ".join(f"{v:.0f}/s" for v in mp["steps_per_s"].values()))
    if s.get("convolution"):
        c = s["convolution"]
        lines.append("one convolution layer, ms: " + ", ".join(
            f"{k[:-3]} {v:.3f}" for k, v in c.items() if k.endswith("_ms")))
    if s.get("deep_convnet"):
        lines.append("DeepConvNet steps/s: " + ", ".join(
            f"{k} {v['steps_per_s']:.1f}" for k, v in s["deep_convnet"].items()))
    for name, r in (s.get("time_lstm") or {}).items():
        memory = r["hand"]["temp_mb"] is not None and f", temporary memory {r['hand']['temp_mb']:.2f} / " \
            f"{r['autodiff']['temp_mb']:.2f} MB"
        lines.append(f"time_lstm {name}: hand/autodiff {r['hand_over_autodiff']:.2f}{memory or ''}")
    e = results.get("end_to_end") or {}
    if e.get("seconds"):
        lines.append(f"book's recipe, {e['iters']} iterations, s: " + ", ".join(
            f"{k} {v:.2f}" for k, v in e["seconds"].items() if v is not None))
    for name, r in (results.get("train") or {}).items():
        if "training_s" in r:
            score = (f"test accuracy {r['test_acc']:.3f}" if r.get("test_perplexity") is None
                     else f"test perplexity {r['test_perplexity']:.1f}")
            lines.append(f"train {name}: {r['wall_s']:.1f} s wall, {r['training_s']:.1f} s training, {score}")
        else:
            lines.append(f"train {name}: failed (exit {r.get('returncode')})")
    return "\n".join(lines) + "\n"


def _outcomes(path):
    """Counts of each outcome and the failed tests, from the lines the pytest plugin appended."""
    counts, failed = {}, []
    if path.exists():
        for line in path.read_text().splitlines():
            nodeid, outcome = json.loads(line)
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in ("failed", "error"):
                failed.append(nodeid)
    return counts, failed


def orchestrate(out, tiny, deadline_s, install, started):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"kind": "device-check", "date": datetime.date.today().isoformat(), "tiny": tiny,
               "deadline_s": deadline_s, "install": install, "stages": {}}

    def save():
        results["elapsed_s"] = time.time() - started
        write_atomic(out / JSON_NAME, json.dumps(results, indent=1, default=float))
        write_atomic(out / TEXT_NAME, summary(results))

    save()
    # Only the two result files go under out: the stages' parts, data and caches in a work folder.
    work = Path(tempfile.mkdtemp(prefix="device-check-"))
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONUNBUFFERED": "1"}
    env.setdefault("BACKPROP_JAX_DATA", str(work / "data"))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", str(work / "xla-cache"))
    for name, budget in BUDGETS.items():
        budget *= TINY_SCALE if tiny else 1
        left = deadline_s - (time.time() - started) - 5
        if left < 5:
            results["stages"][name] = {"status": "skipped: no time left", "seconds": 0.0, "budget_s": budget}
            save()
            continue
        limit = min(budget, left)
        part_path = work / f"{name}.json"
        start = time.time()
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--stage", name, "--part",
                                 str(part_path), *(["--tiny"] if tiny else [])],
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=limit)
            status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the stage and every process it started
            log, _ = proc.communicate()
            status = "timed out"
        stage = {"status": status, "seconds": time.time() - start, "budget_s": limit}
        if status != "ok":
            stage["log_tail"] = (log or "")[-3000:]
        results["stages"][name] = stage
        if part_path.exists():
            results[name] = json.loads(part_path.read_text())
        if name == "tests":
            counts, failed = _outcomes(part_path.with_suffix(".outcomes"))
            results["tests"] = {**results.get("tests", {}), "counts": counts, "failed": failed}
        save()
    shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="folder for device-check.json and device-check.txt")
    parser.add_argument("--tiny", action="store_true", help="every stage at a toy size, to check the harness")
    parser.add_argument("--deadline", type=float,
                        help=f"seconds for the whole check, counted from --started (default {DEADLINE}, "
                             f"{TINY_SCALE} times that with --tiny)")
    parser.add_argument("--started", type=float, help="when the check began (Unix time; default now)")
    parser.add_argument("--install-json", help="a JSON file describing the install (written by device_check.sh)")
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        run_stage(args.stage, args.part, args.tiny)
        return
    if not args.out:
        parser.error("the output folder is required")
    install = json.loads(Path(args.install_json).read_text()) if args.install_json else None
    deadline = args.deadline or DEADLINE * (TINY_SCALE if args.tiny else 1)
    results = orchestrate(args.out, args.tiny, deadline, install, args.started or time.time())
    print(summary(results), end="")


if __name__ == "__main__":
    main()
