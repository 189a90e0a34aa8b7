"""A mutation catalogue for gradient checkers: every hand rule at real-data points, right and mutated.

Each layer of the package is evaluated where real inputs put it: MNIST digits
(exact zeros in the background), the book's initialisation (zero biases, weights
of scale 0.01), ReLU at exactly 0, tied maxima under pooling. For each rule and
dtype (float64, float32, bfloat16, float16) a checker must pass the right rule
and catch each of its mutants:

- ``scale one element``: the largest value of one cotangent times 1.01;
- ``sign``: one cotangent negated;
- ``wrong axis``: one cotangent reversed along its first axis (a wrong reduction
  or transpose);
- ``wrong dtype``: one cotangent returned in another floating dtype;
- ``batch size 1``: 1% off only when the batch has one example (checked at one);
- ``only in float16``: 1% off only in float16 (checked in float16);
- ``|dout|``: the backward applied to ``|dout|``;
- ``stop_gradient in bwd``: the residuals' gradient stopped (checked at order 2);
- ``forgotten term in fwd``: ``fwd`` returns 0.9 times what the primal does.

A mutant that computes exactly what the right rule computes at the point (an
equivalent mutant: ``stop_gradient`` on residuals a linear rule never
differentiates) is left out of the score and counted apart.

Run: ``uv run python benchmarks/gradcheck_catalogue.py [--tiny] [--out DIR]``;
it writes ``gradcheck-catalogue.json`` with the false-alarm rate and the
mutation score of ``bj.gradcheck`` and of ``jax.test_util.check_grads``, side
by side, and the time of the default check against the full per-element one.
"""

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np

jax.config.update("jax_enable_x64", True)

import backprop_jax as bj  # noqa: E402

DTYPES = ("float64", "float32", "bfloat16", "float16")
MUTANTS = ("scale one element", "sign", "wrong axis", "wrong dtype", "batch size 1", "only in float16",
           "|dout|", "stop_gradient in bwd", "forgotten term in fwd")


def _digits():
    (x, t), _ = bj.datasets.load_mnist_sample()
    return np.asarray(x[:4], np.float64).reshape(4, 28, 28), np.asarray(t[:4])


def _points():
    """name -> (layer, call(layer, *args), args in float64). Real digits, the book's initialisation."""
    img, labels = _digits()
    rng = np.random.default_rng(0)
    crop = img[:, 8:18, 8:18]  # a 10 x 10 crop with strokes and background
    flat = crop.reshape(4, 100)
    signs = np.where(rng.random(flat.shape) < 0.5, -1.0, 1.0)
    W_fc = rng.normal(0, 0.01, (100, 7))
    W_conv = rng.normal(0, 0.01, (2, 1, 3, 3))
    conv_out = np.asarray(bj.convolution(jnp.asarray(crop[:1, None]), jnp.asarray(W_conv), jnp.zeros(2), 1, 0))
    pooled_in = np.maximum(conv_out, 0)  # ReLU of a zero-bias convolution: tied zeros to pool over
    return {
        "mul": (bj.mul, lambda L, x, y: L(x, y), (flat[:3, :5], rng.normal(size=(1, 5)))),
        "add": (bj.add, lambda L, x, y: L(x, y), (flat[:3, :5], rng.normal(size=(1, 5)))),
        "relu": (bj.relu, lambda L, x: L(x), (flat[:3, 30:40] * signs[:3, 30:40],)),  # exact zeros: background
        "sigmoid": (bj.sigmoid, lambda L, x: L(x), (flat[:3, 30:40] * 4 - 2,)),
        "affine": (bj.affine, lambda L, x, W, b: L(x, W, b), (flat[:3], W_fc, np.zeros(7))),
        "softmax_with_loss": (bj.softmax_with_loss, lambda L, x: L(x, jnp.asarray(labels[:3])),
                              (flat[:3] @ W_fc * 30,)),
        "convolution": (bj.convolution, lambda L, x, W, b: L(x, W, b, 1, 0), (crop[:2, None], W_conv, np.zeros(2))),
        "max_pooling": (bj.max_pooling, lambda L, x: L(x, 2, 2, 2, 0), (pooled_in,)),
        "batch_norm": (bj.batch_norm, lambda L, x, g, b: L(x, g, b, bj.init_batch_norm_state(6), True)[0],
                       (flat[:3, 40:46] + rng.normal(0, 0.1, (3, 6)), np.ones(6), np.zeros(6))),
        "dropout": (bj.dropout, lambda L, x: L(x, jax.random.key(0), 0.5, True), (flat[:3, 30:40],)),
        "time_rnn": (bj.time_rnn, lambda L, xs, h0, Wx, Wh, b: L(xs, h0, Wx, Wh, b)[0],
                     (rng.normal(size=(3, 4, 5)), np.zeros((3, 6)), rng.normal(0, 0.3, (5, 6)),
                      rng.normal(0, 0.3, (6, 6)), np.zeros(6))),
        "time_lstm": (bj.time_lstm, lambda L, xs, h0, c0, Wx, Wh, b: L(xs, h0, c0, Wx, Wh, b)[0],
                      (rng.normal(size=(3, 4, 5)), np.zeros((3, 2)), np.zeros((3, 2)), rng.normal(0, 0.3, (5, 8)),
                       rng.normal(0, 0.3, (2, 8)), np.zeros(8))),
    }


def _is_float(a):
    return hasattr(a, "dtype") and jnp.issubdtype(a.dtype, jnp.floating)


def mutate(layer, kind):
    """``layer`` (a ``custom_vjp``) with one fault of ``kind`` in its rule."""
    fun, fwd, bwd, nondiff = layer.fun, layer.fwd, layer.bwd, layer.nondiff_argnums
    new = jax.custom_vjp(fun, nondiff_argnums=nondiff)

    def new_fwd(*args):
        out, res = fwd(*args)
        if kind == "forgotten term in fwd":
            out = jax.tree_util.tree_map(lambda o: o * 0.9 if _is_float(o) else o, out)
        return out, res

    def new_bwd(*a):
        static, res, g = a[:len(nondiff)], a[len(nondiff)], a[len(nondiff) + 1]
        if kind == "|dout|":
            g = jax.tree_util.tree_map(jnp.abs, g)
        if kind == "stop_gradient in bwd":
            res = jax.tree_util.tree_map(lambda r: jax.lax.stop_gradient(r) if _is_float(r) else r, res)
        cts = list(bwd(*static, res, g))
        k = next(i for i, c in enumerate(cts) if c is not None and _is_float(c))
        c = cts[k]
        if kind == "scale one element":
            flat = c.reshape(-1)
            c = flat.at[jnp.argmax(jnp.abs(flat))].multiply(1.01).reshape(c.shape)
        elif kind == "sign":
            c = -c
        elif kind == "wrong axis":
            c = jnp.flip(c, axis=0 if c.shape and c.shape[0] > 1 else -1)
        elif kind == "wrong dtype":
            c = c.astype(jnp.float32 if c.dtype == jnp.float64 else jnp.float64)
        elif kind == "batch size 1":
            c = c * 1.01 if c.ndim and c.shape[0] == 1 else c
        elif kind == "only in float16":
            c = c * 1.01 if c.dtype == jnp.float16 else c
        cts[k] = c
        return tuple(cts)

    new.defvjp(new_fwd, new_bwd)
    return new


def _batch1(args):
    n = args[0].shape[0]
    return tuple(a[:1] if a.ndim and a.shape[0] == n else a for a in args)


def _scalar(call, layer, dtype, args):
    """A scalar function of the float arguments: the output against a fixed cotangent."""
    out = jax.eval_shape(lambda *a: call(layer, *a), *args)
    douts = [jnp.asarray(np.random.default_rng(7).normal(size=o.shape), o.dtype)
             for o in jax.tree_util.tree_leaves(out)]
    return lambda *a: sum(jnp.sum(d * o) for d, o in zip(douts, jax.tree_util.tree_leaves(call(layer, *a))))


def _equivalent(call, layer, mutant, args, order):
    """True if the mutant computes what the right rule computes at ``args`` (to the last bit)."""
    f, g = _scalar(call, layer, None, args), _scalar(call, mutant, None, args)
    if order == 2:
        u = [jnp.ones_like(a) for a in args]
        f = (lambda h: lambda *a: sum(jnp.vdot(v, d) for v, d in zip(u, jax.grad(h, tuple(range(len(a))))(*a))))(f)
        g = (lambda h: lambda *a: sum(jnp.vdot(v, d) for v, d in zip(u, jax.grad(h, tuple(range(len(a))))(*a))))(g)
    right = jax.grad(f, tuple(range(len(args))))(*args)
    wrong = jax.grad(g, tuple(range(len(args))))(*args)
    same_values = all(bool(jnp.array_equal(r, w)) and r.dtype == w.dtype for r, w in zip(right, wrong))
    return same_values and bool(jnp.array_equal(jnp.asarray(f(*args)), jnp.asarray(g(*args))))


def _check(checker, call, layer, args, order):
    """True if ``checker`` passes the function (False: it reported a failure)."""
    f = lambda *a: call(layer, *a)  # noqa: E731
    if checker == "bj.gradcheck":
        return bj.gradcheck(f, *args, order=order).ok
    try:
        jax.test_util.check_grads(f, args, order=order, modes=["rev"])
        return True
    except AssertionError:
        return False
    except Exception:  # noqa: BLE001 - an error is a failure reported, as a user would see it
        return False


def run(names=None, dtypes=DTYPES, mutants=MUTANTS, checkers=("bj.gradcheck", "check_grads"), log=print):
    points = _points()
    rows = []
    for name in names or points:
        layer, call, args64 = points[name]
        for dtype in dtypes:
            args = tuple(jnp.asarray(a, dtype) for a in args64)
            for kind in ("right",) + tuple(mutants):
                if kind == "only in float16" and dtype != "float16":
                    continue
                at, order = (_batch1(args) if kind == "batch size 1" else args), (
                    2 if kind == "stop_gradient in bwd" else 1)
                rule = layer if kind == "right" else mutate(layer, kind)
                if kind != "right" and kind != "wrong dtype" and _equivalent(call, layer, rule, at, order):
                    rows.append(dict(layer=name, dtype=dtype, kind=kind, equivalent=True))
                    continue
                row = dict(layer=name, dtype=dtype, kind=kind, equivalent=False)
                for checker in checkers:
                    start = time.perf_counter()
                    row[checker] = _check(checker, call, rule, at, order)
                    row[checker + " s"] = round(time.perf_counter() - start, 3)
                rows.append(row)
                log(f"{name:<18}{dtype:<10}{kind:<24}" + "  ".join(
                    f"{c}: {'pass' if row[c] else 'FAIL'}" for c in checkers))
    return rows


def summary(rows, checkers=("bj.gradcheck", "check_grads")):
    out = {}
    for checker in checkers:
        right = [r for r in rows if r["kind"] == "right" and checker in r]
        wrong = [r for r in rows if r["kind"] != "right" and not r["equivalent"] and checker in r]
        out[checker] = dict(
            false_alarms=sum(not r[checker] for r in right), right_rules=len(right),
            caught=sum(not r[checker] for r in wrong), mutants=len(wrong),
            missed=[f"{r['layer']} {r['dtype']} {r['kind']}" for r in wrong if r[checker]],
            false_alarm_cases=[f"{r['layer']} {r['dtype']}" for r in right if not r[checker]])
    out["equivalent_mutants"] = sum(r["equivalent"] for r in rows)
    return out


def timing():
    """The default check against the full per-element check: the book's nets and a 784-100-10 MLP."""
    (xtr, ttr), _ = bj.datasets.load_mnist_sample()
    x, t = jnp.asarray(xtr[:32], jnp.float64), jnp.asarray(ttr[:32])
    p = bj.two_layer_net.init(jax.random.key(0), 784, 100, 10, dtype=jnp.float64)
    result = {}
    for label, kwargs in (("default", {}), ("full per element", {"numeric_elements": 10 ** 9})):
        start = time.perf_counter()
        ok = bj.gradcheck(bj.two_layer_net.loss, p, x, t, argnums=0, **kwargs).ok
        result[f"784-100-10, batch 32: {label}"] = dict(seconds=round(time.perf_counter() - start, 2), ok=ok)
    img = jnp.asarray(xtr[:2], jnp.float64).reshape(2, 1, 28, 28)
    m = bj.conv_net.model(dtype=jnp.float64)
    params, state = m.init(jax.random.key(0))
    start = time.perf_counter()
    ok = bj.gradcheck(m.loss_fn(state), params, img, jnp.asarray(ttr[:2]), argnums=0).ok
    result["conv_net on 2 digits: default"] = dict(seconds=round(time.perf_counter() - start, 2), ok=ok)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="two layers, float64 and float16 only")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args(argv)
    names = ["affine", "max_pooling"] if args.tiny else None
    dtypes = ("float64", "float16") if args.tiny else DTYPES
    start = time.perf_counter()
    rows = run(names, dtypes)
    result = dict(summary=summary(rows), rows=rows, seconds=round(time.perf_counter() - start, 1),
                  command="uv run python benchmarks/gradcheck_catalogue.py" + (" --tiny" if args.tiny else ""),
                  machine=dict(cpu_count=os.cpu_count(), jax=jax.__version__, backend=jax.default_backend()))
    if not args.no_timing:
        result["timing"] = timing()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gradcheck-catalogue.json")
    bj.write_json(path, result)
    print(json.dumps(result["summary"], indent=1))
    if "timing" in result:
        print(json.dumps(result["timing"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
