"""Training throughput: hand VJPs against autodiff, the textbook's NumPy and PyTorch.

All runs share one process, one dataset (the embedded MNIST sample), the same
networks, batch sizes and step counts. Each figure is the median of
``--repeats`` timed repeats after a warm-up. Run:

    uv run python benchmarks/bench.py --name cpu-2core

and read the table, ``benchmarks/results/<name>.json`` and ``<name>.png``.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backprop_jax as bj  # noqa: E402
from backprop_jax import multi_layer_net  # noqa: E402
from backprop_jax import (  # noqa: E402
    atomic_path, iterations_per_epoch, make_epoch_fn, make_epochs_fn, write_json)
import textbook_numpy  # noqa: E402

WORKLOADS = {  # name -> (layer sizes, batch)
    "book 784-50-10": ([784, 50, 10], 100),
    "784-100-100-10": ([784, 100, 100, 10], 100),
    "784-1024-1024-10": ([784, 1024, 1024, 10], 256),
}
BATCH_SWEEP = ([784, 50, 10], [32, 64, 128, 256, 512, 1024, 2048, 4096])
HIDDEN_SWEEP = ([50, 128, 256, 512, 1024, 2048], 100)  # 784-H-10
TINY = {"workloads": {"tiny 784-16-10": ([784, 16, 10], 8)},
        "batch_sweep": ([784, 16, 10], [8]), "hidden_sweep": ([8], 8)}


def train_flops(sizes, batch):
    """FLOPs of one training step's matmuls, 2*M*N*K each: forward, dW for
    every layer, dx for every layer but the first."""
    mats = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    return 2 * batch * (2 * sum(mats) + sum(mats[1:]))


# --- the networks -------------------------------------------------------------

def hand_model(sizes):
    return multi_layer_net.model(sizes[0], tuple(sizes[1:-1]), sizes[-1], weight_init_std=0.01)


def autodiff_model(sizes):
    """The same net in plain jnp / jax.nn / optax, differentiated automatically."""
    def predict(params, x):
        n = len(params) // 2
        for i in range(1, n):
            x = jax.nn.relu(x @ params[f"W{i}"] + params[f"b{i}"])
        return x @ params[f"W{n}"] + params[f"b{n}"]

    def apply(params, state, x, *, key=None, train=False):
        return predict(params, x), state

    def criterion(scores, t):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scores, t))

    return bj.Model(init=hand_model(sizes).init, apply=apply, criterion=criterion)


def plain_recipe(data, iters, batch=100, lr=0.1, seed=0):
    """The book's recipe (784-50-10 ReLU net, SGD, train and test accuracy after every epoch) as an
    independent plain-JAX program: jnp, ``jax.value_and_grad`` and two nested ``lax.scan``s,
    compiled once. Nothing of the package is used but the data; it is the reference that
    ``bj.train``, ``bj.run`` and the command are measured against.

    Returns ``run(p0, ix) -> (params, (losses, train_acc, test_acc))`` (jitted), the initial
    parameters and the batch indices ``ix`` of shape (epochs, steps per epoch, batch).
    """
    (x, t), (xe, te) = data
    X, T, XE, TE = map(jnp.asarray, (x, t, xe, te))
    steps = max(len(x) // batch, 1)
    epochs = -(-iters // steps)

    def predict(p, x):
        return jnp.maximum(x @ p["W1"] + p["b1"][None, :], 0) @ p["W2"] + p["b2"][None, :]

    def loss(p, x, t):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(predict(p, x)), t[:, None], 1))

    def step(p, i):
        value, g = jax.value_and_grad(loss)(p, X[i], T[i])
        return jax.tree.map(lambda a, b: a - lr * b, p, g), value

    def acc(p, x, t):
        return jnp.mean(jnp.argmax(predict(p, x), 1) == t)

    def epoch(p, ix):
        p, losses = jax.lax.scan(step, p, ix)
        return p, (losses.mean(), acc(p, X, T), acc(p, XE, TE))

    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    p0 = {"W1": 0.01 * jax.random.normal(k1, (784, 50)), "b1": jnp.zeros(50),
          "W2": 0.01 * jax.random.normal(k2, (50, 10)), "b2": jnp.zeros(10)}
    ix = jax.random.randint(k3, (epochs, steps, batch), 0, len(x))
    return jax.jit(lambda p, ix: jax.lax.scan(epoch, p, ix)), p0, ix


def plain_steps(sizes, batch):
    """One training step of an MLP of ``sizes`` in plain jnp (ReLU, softmax cross-entropy, SGD 0.1),
    scanned over ``n`` steps: the step-throughput table's independent column."""
    def predict(p, x):
        for W, b in p[:-1]:
            x = jnp.maximum(x @ W + b[None, :], 0)
        W, b = p[-1]
        return x @ W + b[None, :]

    def loss(p, x, t):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(predict(p, x)), t[:, None], 1))

    def run(p, X, T, ix):
        def step(p, i):
            value, g = jax.value_and_grad(loss)(p, X[i], T[i])
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), value
        return jax.lax.scan(step, p, ix)

    keys = jax.random.split(jax.random.key(0), len(sizes))
    p0 = [(0.01 * jax.random.normal(k, (a, b)), jnp.zeros(b)) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]
    return jax.jit(run), p0


# --- timing -------------------------------------------------------------------

def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def steps_for(flops, seconds=0.15, assumed_gflops=20.0, low=5, high=2000):
    return int(min(high, max(low, seconds * assumed_gflops * 1e9 / flops)))


def time_jax(models, sizes, batch, data, repeats, steps=None):
    """Times each of ``models`` (name -> Model), compiled the same way.

    The timed repeats alternate between the models, so that a busy moment of
    the machine hurts all of them alike and their ratio stays fair.
    """
    (x, t), _ = data
    steps = steps or steps_for(train_flops(sizes, batch))
    config = bj.TrainConfig(iters_num=2 ** 30, batch_size=batch)
    x, t = jax.device_put(x), jax.device_put(t)
    runs, results = {}, {}
    for name, model in models.items():
        state = bj.init_state(model, config)
        start = time.perf_counter()
        fn = jax.jit(make_epoch_fn(model, config, steps)).lower(state, x, t).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(fn(state, x, t))
        results[name] = {"compile_s": compile_s, "first_step_s": time.perf_counter() - start,
                         "steps_per_call": steps, "times": []}

        def run(fn=fn, box=[state]):
            box[0], losses, _ = fn(box[0], x, t)
            jax.block_until_ready(losses)

        run()  # warm-up
        runs[name] = run
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            results[name]["times"].append(time.perf_counter() - start)
    for r in results.values():
        r["steps_per_s"] = steps / statistics.median(r.pop("times"))
    return results


def time_hand_and_autodiff(sizes, batch, data, repeats, steps=None):
    return time_jax({"hand": hand_model(sizes), "autodiff": autodiff_model(sizes)}, sizes, batch, data, repeats,
                    steps)


def time_plain(sizes, batch, data, repeats, steps=None):
    """Steps per second of ``plain_steps``, the independent program, for the same workload."""
    (x, t), _ = data
    steps = steps or steps_for(train_flops(sizes, batch))
    fn, p0 = plain_steps(sizes, batch)
    X, T = jax.device_put(x), jax.device_put(t)
    ix = jax.random.randint(jax.random.key(1), (steps, batch), 0, len(x))
    jax.block_until_ready(fn(p0, X, T, ix))
    return {"steps_per_s": steps / median_time(lambda: jax.block_until_ready(fn(p0, X, T, ix)), repeats)}


def time_deep_convnet(data, repeats, batch=100, steps=5, conv_methods=("im2col",)):
    """Chapter 8's DeepConvNet: training steps per second through the hand rules and through
    autodiff of the same forward (``without_hand_rules``), interleaved, for each of
    ``conv_methods``: ``hand`` and ``autodiff`` for im2col, ``hand_xla`` and ``autodiff_xla`` (XLA's
    convolution and reduce-window differentiated by JAX: the plain XLA program) for xla."""
    models = {}
    for method in conv_methods:
        model = bj.deep_conv_net.model(conv_method=method)

        def plain_apply(params, state, x, *, key=None, train=False, model=model):
            return bj.without_hand_rules(lambda p, s, x, k: model.apply(p, s, x, key=k, train=train))(
                params, state, x, key)

        suffix = "" if method == "im2col" else f"_{method}"
        models[f"hand{suffix}"] = model
        models[f"autodiff{suffix}"] = model._replace(
            apply=plain_apply, metric="accuracy",
            criterion=lambda scores, t: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scores, t)))
    r = time_jax(models, [784, 10], batch, data, repeats, steps=steps)
    return {k: {"steps_per_s": v["steps_per_s"], "compile_s": v["compile_s"]} for k, v in r.items()}


# The sequel's TimeLSTM: (N, T, D, H) of its Rnnlm and of its BetterRnnlm (batch 20, 35 steps, 650).
LSTM_SIZES = {"Rnnlm N20 T35 H100": (20, 35, 100, 100), "BetterRnnlm N20 T35 H650": (20, 35, 650, 650)}


def time_time_lstm(repeats, sizes=LSTM_SIZES):
    """``time_lstm`` forward and backward (the hand-written reverse loop over time) against
    autodiff of the same ``lax.scan`` forward (``without_hand_rules``), interleaved: calls per
    second of ``value_and_grad`` of a loss on its outputs, and the compiled programs' temporary
    memory (XLA's ``memory_analysis``)."""
    results = {}
    for name, (n, t, d, h) in sizes.items():
        keys = jax.random.split(jax.random.key(0), 5)
        xs = jax.random.normal(keys[0], (n, t, d), jnp.float32)
        probe = jax.random.normal(keys[1], (n, t, h), jnp.float32)
        weights = (jax.random.normal(keys[2], (d, 4 * h), jnp.float32) / np.sqrt(d),
                   jax.random.normal(keys[3], (h, 4 * h), jnp.float32) / np.sqrt(h), jnp.zeros(4 * h, jnp.float32))
        zeros = jnp.zeros((n, h), jnp.float32)

        def loss(Wx, Wh, b, xs):
            hs, h_last, c_last = bj.time_lstm(xs, zeros, zeros, Wx, Wh, b)
            return jnp.sum(hs * probe) + jnp.sum(h_last) + jnp.sum(c_last)

        fns, row = {}, {}
        for way, f in (("hand", loss), ("autodiff", bj.without_hand_rules(loss))):
            start = time.perf_counter()
            fns[way] = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3))).lower(*weights, xs).compile()
            memory = fns[way].memory_analysis()
            row[way] = {"compile_s": time.perf_counter() - start,
                        "temp_mb": getattr(memory, "temp_size_in_bytes", 0) / 2 ** 20 if memory else None}
            jax.block_until_ready(fns[way](*weights, xs))
        one = min(median_time(lambda: jax.block_until_ready(fns["hand"](*weights, xs)), 3), 1.0)
        steps = max(1, int(0.3 / max(one, 1e-6)))
        times = {"hand": [], "autodiff": []}
        for _ in range(repeats):
            for way in times:
                start = time.perf_counter()
                for _ in range(steps):
                    out = fns[way](*weights, xs)
                jax.block_until_ready(out)
                times[way].append((time.perf_counter() - start) / steps)
        for way in times:
            row[way]["steps_per_s"] = 1 / statistics.median(times[way])
        hand_grads, auto_grads = fns["hand"](*weights, xs)[1], fns["autodiff"](*weights, xs)[1]
        row["max_rel_grad_difference"] = max(
            float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-30)) for a, b in zip(hand_grads, auto_grads))
        row["hand_over_autodiff"] = row["hand"]["steps_per_s"] / row["autodiff"]["steps_per_s"]
        results[name] = {"N": n, "T": t, "D": d, "H": h, **row}
    return results


def time_numpy(sizes, batch, data, repeats):
    (x, t), _ = data
    net = textbook_numpy.MultiLayerNet(sizes)
    steps = steps_for(train_flops(sizes, batch), assumed_gflops=10.0, high=500)
    textbook_numpy.train_steps(net, x, t, batch, 2)  # warm-up
    return {"steps_per_s": steps / median_time(lambda: textbook_numpy.train_steps(net, x, t, batch, steps), repeats)}


def time_torch(sizes, batch, data, repeats):
    try:
        import torch
        import torch_baseline
    except ImportError:
        return None
    (x, t), _ = data
    x, t = torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(t)).long()
    net = torch_baseline.make(sizes)
    steps = steps_for(train_flops(sizes, batch), assumed_gflops=10.0, high=500)
    torch_baseline.train_steps(net, x, t, batch, 2)
    return {"steps_per_s": steps / median_time(lambda: torch_baseline.train_steps(net, x, t, batch, steps), repeats),
            "threads": torch.get_num_threads()}


def time_convolution(shape, filters, repeats):
    """Forward + backward of one convolution layer: im2col (ours), XLA's convolution with our
    hand backward (``convolution_xla``), and autodiff of ``lax.conv``.

    Each timed as a compiled gradient of ``sum(dout * conv(x, W, b))`` with
    respect to x, W and b, repeats interleaved.
    """
    x = jax.random.normal(jax.random.key(0), shape)
    W = 0.1 * jax.random.normal(jax.random.key(1), filters)
    b = jnp.zeros(filters[0])
    out_shape = jax.eval_shape(lambda: bj.convolution(x, W, b, 1, 0)).shape
    dout = jax.random.normal(jax.random.key(2), out_shape)

    def lax_conv(x, W, b):
        return jax.lax.conv_general_dilated(x, W, (1, 1), "VALID") + b[None, :, None, None]

    fns = {name: jax.jit(jax.grad(lambda x, W, b, f=f: jnp.sum(dout * f(x, W, b)), argnums=(0, 1, 2)))
           for name, f in (("im2col", lambda x, W, b: bj.convolution(x, W, b, 1, 0)),
                           ("xla", lambda x, W, b: bj.convolution_xla(x, W, b, 1, 0)), ("lax_conv", lax_conv))}
    times = {name: [] for name in fns}
    for fn in fns.values():
        jax.block_until_ready(fn(x, W, b))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(x, W, b))
            times[name].append(time.perf_counter() - start)
    N, C, H, Wd = shape
    FN, _, FH, FW = filters
    oh, ow = out_shape[2], out_shape[3]
    flops = 3 * 2 * N * oh * ow * FN * C * FH * FW  # forward, dW and dx matmuls
    result = {"x_shape": list(shape), "W_shape": list(filters), "flops": flops}
    for name, ts in times.items():
        result[f"{name}_ms"] = 1000 * statistics.median(ts)
    return result


def time_end_to_end(data, iters, repeats, cli_repeats, work_dir, log=print, baselines=True):
    """The book's recipe (784-50-10, batch 100, SGD 0.1, train and test accuracy after every
    epoch) from start to end, seven ways, repeats interleaved, each reported as a ratio of speed
    to the first:

    - ``plain``: the independent plain-JAX program of the same recipe (``plain_recipe``),
      compiled beforehand: the reference;
    - ``device``: the project's own device work alone, every step and evaluation in one compiled call,
      compiled beforehand;
    - ``train``: ``bj.train`` (no files), compiled programs already in memory;
    - ``run``: ``bj.run`` with an output directory, as ``backprop-jax train --out`` does
      (checkpoints at most every 10 s, metrics.json, curves.png): the call's wall time and
      the training time it records in metrics.json;
    - ``cli``: ``backprop-jax train --no-progress --out DIR`` in a new process (imports,
      data, compilation from JAX's persistent cache, plotting): wall time and recorded
      training time;
    - ``numpy``: the book's NumPy ``TwoLayerNet`` loop with its per-epoch evaluation, in
      float32 like the others, and ``numpy_float64`` as the book runs it (NumPy's default);
    - ``torch``: the same loop in PyTorch on the CPU (None when torch is missing).

    ``baselines=False`` leaves out the NumPy and PyTorch loops (which run on the host whatever
    the device): their seconds and speed-ups are then None.
    """
    config = bj.TrainConfig(iters_num=iters)
    model = bj.two_layer_net.model()
    (x, t), (x_test, t_test) = data
    per_epoch = iterations_per_epoch(len(x), config.batch_size)
    n_epochs = -(-iters // per_epoch)
    device_fn = jax.jit(make_epochs_fn(model, config, per_epoch, len(x), len(x_test), max_epochs=n_epochs))
    args = ((jax.device_put(x), jax.device_put(t)), bj.evaluation_sets((x, t), (x_test, t_test)))
    state0 = bj.init_state(model, config)
    compiled = device_fn.lower(state0, jnp.int32(n_epochs), *args).compile()
    work_dir = Path(work_dir)
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(work_dir / "xla-cache")}
    recorded = {"run": [], "cli": [], "cli_first_epoch": [], "cli_compile": []}  # seconds from metrics.json
    names = iter(range(10 ** 6))
    plain_fn, p0, ix = plain_recipe(data, iters)
    plain_compiled = plain_fn.lower(p0, ix).compile()

    def plain():
        jax.block_until_ready(plain_compiled(p0, ix))

    def device():
        state, records = compiled(state0, jnp.int32(n_epochs), *args)
        assert int(records.done) == n_epochs
        jax.block_until_ready(state)

    def train():
        bj.train(model, data, config)

    def run():
        _, history = bj.run(model, data, config, dataset="mnist-sample", settings={"bench": 1},
                            out=work_dir / f"run{next(names)}", progress=False, checkpoint_interval=10,
                            log=lambda *a, **k: None)
        recorded["run"].append(history[-1].seconds)

    def cli():
        out = work_dir / f"cli{next(names)}"
        subprocess.run([sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample",
                        "--iters", str(iters), "--no-progress", "--out", str(out)],
                       check=True, capture_output=True, env=env)
        epochs = json.loads((out / "metrics.json").read_text())["epochs"]
        recorded["cli"].append(epochs[-1]["seconds"])
        recorded["cli_first_epoch"].append(epochs[0]["seconds"])
        recorded["cli_compile"].append(epochs[0]["compile_seconds"])

    numpy_data = tuple((np.asarray(a), np.asarray(b)) for a, b in data)
    float64_data = tuple((a.astype(np.float64), b) for a, b in numpy_data)

    def numpy():
        textbook_numpy.train_recipe(textbook_numpy.MultiLayerNet([784, 50, 10]), numpy_data, iters)

    def numpy_float64():
        textbook_numpy.train_recipe(textbook_numpy.MultiLayerNet([784, 50, 10], dtype=np.float64),
                                    float64_data, iters)

    ways = {"plain": plain, "device": device, "train": train, "run": run}
    if baselines:
        ways.update(numpy=numpy, numpy_float64=numpy_float64)
        try:
            import torch
            import torch_baseline
            torch_data = tuple((torch.from_numpy(a), torch.from_numpy(b).long()) for a, b in numpy_data)
            ways["torch"] = lambda: torch_baseline.train_recipe(torch_baseline.make([784, 50, 10]), torch_data,
                                                                iters)
        except ImportError:
            log("torch is not installed: the end-to-end PyTorch loop is skipped")
    for fn in ways.values():
        fn()  # warm-up: compiles, imports
    if cli_repeats > 1:
        cli()  # fills JAX's persistent cache, as a user's first run does
    for warm_up in recorded.values():
        warm_up.clear()
    times = {name: [] for name in [*ways, "cli"]}
    for i in range(repeats):
        for name, fn in [*ways.items(), *([("cli", cli)] if i < cli_repeats else [])]:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    s = {name: statistics.median(ts) for name, ts in times.items()}
    s["run_training"] = statistics.median(recorded["run"])
    s["cli_training"] = statistics.median(recorded["cli"])
    # The command's training with its tracing and compiling (or cache load) counted in, as a plain
    # program's time would be had it not been compiled beforehand.
    s["cli_training_and_compile"] = statistics.median([a + b for a, b in zip(recorded["cli"], recorded["cli_compile"])])
    for name in ("numpy", "numpy_float64", "torch"):
        s.setdefault(name, None)
    # The command's wall time in parts: the interpreter and imports (a process that imports what
    # the command does, and stops), tracing and compiling or loading from the cache (metrics.json's
    # compile_seconds), the first epoch, the rest of the training, and what is left (data, checks,
    # files).
    imports = median_time(lambda: subprocess.run(
        [sys.executable, "-c", "import backprop_jax.cli, backprop_jax.training, jax; jax.devices()"],
        check=True, capture_output=True, env=env), min(cli_repeats, 3))
    first = statistics.median(recorded["cli_first_epoch"])
    compile_s = statistics.median(recorded["cli_compile"])
    split = {"interpreter_and_imports": imports, "trace_and_compile_or_cache_load": compile_s, "first_epoch": first,
             "rest_of_training": s["cli_training"] - first,
             "data_checks_files_and_exit": s["cli"] - imports - s["cli_training"] - compile_s}
    return {
        "iters": iters, "epochs": n_epochs, "repeats": repeats, "cli_repeats": cli_repeats, "seconds": s,
        "vs_plain": {k: s["plain"] / s[k] for k in ("device", "train", "run", "run_training", "cli", "cli_training",
                                                     "cli_training_and_compile")},
        "cli_split": split,
        "efficiency": {"train": s["device"] / s["train"], "run_training": s["device"] / s["run_training"],
                       "run": s["device"] / s["run"], "cli_training": s["device"] / s["cli_training"]},
        "speedup_over_numpy": s["numpy"] and {k: s["numpy"] / s[k] for k in ("device", "train", "run", "cli")},
        "speedup_over_numpy_float64": s["numpy_float64"] and {
            k: s["numpy_float64"] / s[k] for k in ("device", "train", "run", "cli")},
        "speedup_over_torch": s["torch"] and {k: s["torch"] / s[k] for k in ("device", "train", "run", "cli")},
    }


def gemm_peak(repeats, sizes=(1024, 2048, 4096), dtype=jnp.float32, precision=None):
    """Best matmul rate over a few large square sizes, in GFLOP/s: float32 at JAX's default
    precision unless ``dtype`` and ``precision`` (``jax.lax.Precision``) say otherwise."""
    best = 0.0
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), dtype)
        b = jax.random.normal(jax.random.key(1), (n, n), dtype)
        f = jax.jit(lambda a, b: jnp.matmul(a, b, precision=precision)).lower(a, b).compile()
        jax.block_until_ready(f(a, b))
        best = max(best, 2 * n ** 3 / median_time(lambda: jax.block_until_ready(f(a, b)), repeats) / 1e9)
    return best


def machine():
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "jax": jax.__version__,
            "numpy": np.__version__, "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind}
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


# --- the run ------------------------------------------------------------------

def run(name, repeats, tiny, out_dir, log=print, end_to_end_only=False, lstm_only=False):
    data = bj.datasets.load_mnist_sample()
    spec = TINY if tiny else {"workloads": WORKLOADS, "batch_sweep": BATCH_SWEEP, "hidden_sweep": HIDDEN_SWEEP}
    results = {"name": name, "date": datetime.date.today().isoformat(), "machine": machine(),
               "repeats": repeats, "workloads": {}, "sweeps": {}}
    if lstm_only:
        results["time_lstm"] = time_time_lstm(repeats, {"tiny": (4, 5, 8, 8)} if tiny else LSTM_SIZES)
        write_json(Path(out_dir) / f"{name}.json", results)
        log(json.dumps(results["time_lstm"], indent=1))
        return results
    if end_to_end_only:
        with tempfile.TemporaryDirectory() as work_dir:
            results["end_to_end"] = time_end_to_end(data, 100 if tiny else 10_000, repeats, 1 if tiny else repeats,
                                                    work_dir, log)
        write_json(Path(out_dir) / f"{name}.json", results)
        log(json.dumps(results["end_to_end"], indent=1))
        return results
    peak = gemm_peak(repeats, (256, 512) if tiny else (1024, 2048, 4096))
    results["gemm_peak_gflops"] = peak
    log(f"float32 matmul peak: {peak:.1f} GFLOP/s on {results['machine']['device_kind']}")

    for wname, (sizes, batch) in spec["workloads"].items():
        flops = train_flops(sizes, batch)
        jax_r = time_hand_and_autodiff(sizes, batch, data, repeats)
        hand, auto = jax_r["hand"], jax_r["autodiff"]
        plain_r = time_plain(sizes, batch, data, repeats)
        numpy_r = time_numpy(sizes, batch, data, repeats)
        torch_r = time_torch(sizes, batch, data, repeats)
        steps = {"hand": hand["steps_per_s"], "autodiff": auto["steps_per_s"], "plain": plain_r["steps_per_s"],
                 "numpy": numpy_r["steps_per_s"], "torch": torch_r and torch_r["steps_per_s"]}
        results["workloads"][wname] = {
            "sizes": sizes, "batch": batch, "flops_per_step": flops, "steps_per_s": steps,
            "peak_fraction": {k: v * flops / 1e9 / peak for k, v in steps.items() if v},
            "compile_s": {"hand": hand["compile_s"], "autodiff": auto["compile_s"]},
            "first_step_s": {"hand": hand["first_step_s"], "autodiff": auto["first_step_s"]},
            "steps_per_call": hand["steps_per_call"]}
        if torch_r is None:
            log("torch is not installed: PyTorch column skipped (see README, Performance)")
        log(f"{wname}: done")

    sizes, batches = spec["batch_sweep"]
    results["sweeps"]["batch"] = []
    for batch in batches:
        row = {"sizes": sizes, "batch": batch, "flops_per_step": train_flops(sizes, batch)}
        row.update({k: v["steps_per_s"] for k, v in time_hand_and_autodiff(sizes, batch, data, repeats).items()})
        results["sweeps"]["batch"].append(row)
    hiddens, batch = spec["hidden_sweep"]
    results["sweeps"]["hidden"] = []
    for h in hiddens:
        sizes = [784, h, 10]
        row = {"sizes": sizes, "batch": batch, "flops_per_step": train_flops(sizes, batch)}
        row.update({k: v["steps_per_s"] for k, v in time_hand_and_autodiff(sizes, batch, data, repeats).items()})
        results["sweeps"]["hidden"].append(row)
    if not tiny:  # chapter 8's net: the first workload where an accelerator matters
        results["deep_convnet"] = time_deep_convnet(data, repeats)
        log("deep convnet: done")
    results["time_lstm"] = time_time_lstm(repeats, {"tiny": (4, 5, 8, 8)} if tiny else LSTM_SIZES)
    log("time_lstm: done")
    conv_shape, conv_filters = ((8, 1, 12, 12), (4, 1, 3, 3)) if tiny else ((100, 1, 28, 28), (30, 1, 5, 5))
    results["convolution"] = time_convolution(conv_shape, conv_filters, repeats)
    with tempfile.TemporaryDirectory() as work_dir:
        results["end_to_end"] = time_end_to_end(data, 100 if tiny else 10_000, repeats, 1 if tiny else repeats,
                                                work_dir, log)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    out_dir = Path(out_dir)
    write_json(out_dir / f"{name}.json", results)
    plot(results, out_dir / f"{name}.png")
    log(table(results))
    return results


def table(results):
    peak = results["gemm_peak_gflops"]
    lines = [f"steps/s, median of {results['repeats']}; matmul peak {peak:.1f} GFLOP/s "
             f"({results['machine']['device_kind']}, {results['machine']['cpu_count']} CPUs)", "",
             f"{'workload':<20}{'hand':>10}{'autodiff':>10}{'plain':>10}{'numpy':>10}{'torch':>10}"
             f"{'hand/auto':>11}{'hand/plain':>11}{'hand/np':>9}{'hand/torch':>12}{'% peak':>8}{'compile s':>11}"]
    for name, w in results["workloads"].items():
        s = w["steps_per_s"]
        torch_s = f"{s['torch']:>10.0f}" if s["torch"] else f"{'-':>10}"
        vs_torch = f"{s['hand'] / s['torch']:>12.2f}" if s["torch"] else f"{'-':>12}"
        lines.append(f"{name:<20}{s['hand']:>10.0f}{s['autodiff']:>10.0f}{s['plain']:>10.0f}{s['numpy']:>10.0f}"
                     f"{torch_s}{s['hand'] / s['autodiff']:>11.2f}{s['hand'] / s['plain']:>11.2f}"
                     f"{s['hand'] / s['numpy']:>9.2f}{vs_torch}"
                     f"{100 * w['peak_fraction']['hand']:>7.1f}%{w['compile_s']['hand']:>11.2f}")
    for sweep, key in (("batch", "batch"), ("hidden", "sizes")):
        lines += ["", f"{sweep} sweep{'':<11}{'hand':>10}{'autodiff':>10}{'hand/auto':>11}{'hand GFLOP/s':>14}"]
        for row in results["sweeps"][sweep]:
            label = f"batch {row['batch']}" if sweep == "batch" else "-".join(map(str, row["sizes"]))
            lines.append(f"{label:<20}{row['hand']:>10.0f}{row['autodiff']:>10.0f}"
                         f"{row['hand'] / row['autodiff']:>11.2f}{row['hand'] * row['flops_per_step'] / 1e9:>14.1f}")
    if "deep_convnet" in results:
        d = results["deep_convnet"]
        lines += ["", f"deep convnet (chapter 8), batch 100: hand {d['hand']['steps_per_s']:.2f} steps/s, autodiff "
                  f"{d['autodiff']['steps_per_s']:.2f} (hand/auto {d['hand']['steps_per_s'] / d['autodiff']['steps_per_s']:.2f})"]
    c = results["convolution"]
    lines += ["", f"convolution forward+backward, x {c['x_shape']}, W {c['W_shape']}: "
              f"im2col {c['im2col_ms']:.2f} ms, convolution_xla {c['xla_ms']:.2f} ms, "
              f"lax.conv {c['lax_conv_ms']:.2f} ms "
              f"(im2col/lax.conv time {c['im2col_ms'] / c['lax_conv_ms']:.2f})"]
    e = results["end_to_end"]
    s = e["seconds"]
    lines += ["", f"the book's recipe end to end ({e['iters']} iterations, {e['epochs']} epochs with "
              f"evaluation), seconds, median of {e['repeats']} ({e['cli_repeats']} for cli):"]
    for name, label in (("plain", "independent plain-JAX program"),
                        ("device", "device work alone (one compiled call)"), ("train", "bj.train"),
                        ("run", "bj.run with --out (call)"), ("run_training", "bj.run, training in metrics.json"),
                        ("cli", "backprop-jax train --out (wall)"), ("cli_training", "cli, training in metrics.json"),
                        ("cli_training_and_compile", "cli, training and compiling"),
                        ("numpy", "book's NumPy loop, float32"), ("numpy_float64", "book's NumPy loop, float64"),
                        ("torch", "PyTorch loop, float32")):
        lines.append(f"  {label:<38}{s[name]:>8.2f}" if s[name] is not None else f"  {label:<38}{'-':>8}")
    lines.append("  speed as a fraction of the plain program's: "
                 + ", ".join(f"{k} {v:.2f}" for k, v in e["vs_plain"].items()))
    lines.append("  efficiency (device / x): " + ", ".join(f"{k} {v:.2f}" for k, v in e["efficiency"].items()))
    lines.append("  the command's wall time: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f} s"
                                                        for k, v in e["cli_split"].items()))
    for key, label in (("speedup_over_numpy", "NumPy float32"), ("speedup_over_numpy_float64", "NumPy float64")):
        if e[key]:
            lines.append(f"  speed-up over {label}: " + ", ".join(f"{k} {v:.1f}x" for k, v in e[key].items()))
    if e["speedup_over_torch"]:
        lines.append("  speed-up over PyTorch: " + ", ".join(f"{k} {v:.1f}x" for k, v in e["speedup_over_torch"].items()))
    lines.append(f"\npeak memory of the process: {results['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, sweep, xkey, xlabel in ((axes[0], "batch", "batch", "batch size (784-50-10)"),
                                    (axes[1], "hidden", "sizes", "hidden size (784-H-10, batch 100)")):
        rows = results["sweeps"][sweep]
        xs = [r["batch"] if xkey == "batch" else r["sizes"][1] for r in rows]
        for kind, style in (("hand", "-o"), ("autodiff", "--s")):
            ax.plot(xs, [r[kind] * r["flops_per_step"] / 1e9 for r in rows], style, label=kind)
        ax.axhline(results["gemm_peak_gflops"], color="gray", linestyle=":", label="matmul peak")
        ax.set(xscale="log", xlabel=xlabel, ylabel="GFLOP/s (training matmuls)")
        ax.legend()
    fig.suptitle(f"training throughput: {results['name']} ({results['machine']['device_kind']})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="local", help="results file name (default: local)")
    parser.add_argument("--repeats", type=int, default=9, help="timed repeats per figure (default 9, at least 5)")
    parser.add_argument("--tiny", action="store_true", help="a tiny workload, to check the harness")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--end-to-end-only", action="store_true",
                        help="only the whole training run against the independent program (a few minutes)")
    parser.add_argument("--lstm-only", action="store_true",
                        help="only the sequel's TimeLSTM, hand BPTT against autodiff (a minute or two)")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    run(args.name, args.repeats, args.tiny, args.out, end_to_end_only=args.end_to_end_only, lstm_only=args.lstm_only)


if __name__ == "__main__":
    main()
