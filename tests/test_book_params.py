"""The book's saved parameters (pickled dicts of NumPy arrays), read without running code, and
chapter 8's DeepConvNet, each compared with the book's layer formulas written out in NumPy here."""

import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import cli, datasets, two_layer_net
from backprop_jax.nets import conv_net, deep_conv_net, multi_layer_net


def book_pickle(params, path):
    """What the book's ``save_params`` does: ``pickle.dump`` of a plain dict of NumPy arrays."""
    with open(path, "wb") as f:
        pickle.dump({k: np.asarray(v) for k, v in params.items()}, f)


def random_params(model, seed, dtype=np.float32):
    params, _ = model.init(jax.random.key(seed))
    rng = np.random.default_rng(seed)
    return {k: (0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in params.items()}


# --- the book's forward, written out as its common/functions.py and common/layers.py compute it

def book_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def book_softmax(x):
    x = x - np.max(x, axis=-1, keepdims=True)
    return np.exp(x) / np.sum(np.exp(x), axis=-1, keepdims=True)


def book_conv(x, W, b, stride=1, pad=0):
    """out[n, f, i, j] = sum over c, u, v of xpad[n, c, i*stride + u, j*stride + v] * W[f, c, u, v] + b[f],
    window by window (no im2col)."""
    N, C, H, Wd = x.shape
    FN, _, FH, FW = W.shape
    xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    oh, ow = (H + 2 * pad - FH) // stride + 1, (Wd + 2 * pad - FW) // stride + 1
    out = np.empty((N, FN, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride:i * stride + FH, j * stride:j * stride + FW]
            out[:, :, i, j] = np.einsum("ncuv,fcuv->nf", window, W) + b
    return out


def book_pool(x, size=2):
    N, C, H, W = x.shape
    return x[:, :, :H // size * size, :W // size * size].reshape(N, C, H // size, size, W // size, size).max(axis=(3, 5))


def book_relu(x):
    return np.maximum(x, 0)


def book_affine(x, W, b):
    return x.reshape(x.shape[0], -1) @ W + b


def neuralnet_mnist_predict(p, x):  # ch03/neuralnet_mnist.py
    z1 = book_sigmoid(x @ p["W1"] + p["b1"])
    z2 = book_sigmoid(z1 @ p["W2"] + p["b2"])
    return book_softmax(z2 @ p["W3"] + p["b3"])


def simple_convnet_predict(p, x):  # ch07/simple_convnet.py: conv - relu - pool - affine - relu - affine
    h = book_pool(book_relu(book_conv(x, p["W1"], p["b1"])))
    return book_affine(book_relu(book_affine(h, p["W2"], p["b2"])), p["W3"], p["b3"])


def deep_convnet_predict(p, x):  # ch08/deep_convnet.py, train_flg=False: dropout scales by 1 - 0.5
    h = x
    for i, pad in enumerate((1, 1, 1, 2, 1, 1), start=1):
        h = book_relu(book_conv(h, p[f"W{i}"], p[f"b{i}"], 1, pad))
        if i % 2 == 0:
            h = book_pool(h)
    h = book_relu(book_affine(h, p["W7"], p["b7"])) * (1 - 0.5)
    return book_affine(h, p["W8"], p["b8"]) * (1 - 0.5)


NETS = {  # name: (our model, the book's predict, the dtype of the book's file)
    "ch03 sample_weight.pkl": (lambda: multi_layer_net.model(784, [50, 100], 10, activation="sigmoid"),
                               neuralnet_mnist_predict, np.float32),
    "ch07 params.pkl": (conv_net.model, simple_convnet_predict, np.float64),
    "ch08 deep_convnet_params.pkl": (deep_conv_net.model, deep_convnet_predict, np.float64),
}


@pytest.mark.parametrize("name", list(NETS))
def test_a_file_in_the_books_format_predicts_as_the_books_code(name, tmp_path):
    make, book_predict, dtype = NETS[name]
    model = make()
    saved = random_params(model, 1, dtype)
    book_pickle(saved, tmp_path / "params.pkl")
    loaded = bj.load_book_params(tmp_path / "params.pkl")
    assert sorted(loaded) == sorted(saved) and all(loaded[k].dtype == dtype for k in loaded)
    params = bj.fit_params(model, loaded, jnp.float64)
    (_, _), (x, _) = datasets.load_mnist_sample()
    x = np.asarray(x[:8], np.float64)
    images = x.reshape(8, 784) if "ch03" in name else x.reshape(8, 1, 28, 28)
    _, state = model.init(jax.random.key(0))
    ours = np.asarray(model.predict(params, state, jnp.asarray(images)))
    theirs = book_predict({k: np.asarray(v, np.float64) for k, v in loaded.items()}, images)
    if "ch03" in name:
        ours = np.asarray(jax.nn.softmax(ours, axis=1))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_save_book_params_is_read_by_the_books_pickle_load(tmp_path):
    params = {"W1": np.arange(6.0).reshape(2, 3), "b1": np.zeros(3, np.float32)}
    bj.save_book_params({k: jnp.asarray(v) for k, v in params.items()}, tmp_path / "p.pkl")
    with open(tmp_path / "p.pkl", "rb") as f:
        back = pickle.load(f)  # book 1's ch07/simple_convnet.py load_params at 07b1161: pickle.load, a dict
    assert sorted(back) == ["W1", "b1"] and isinstance(back["W1"], np.ndarray)
    np.testing.assert_array_equal(back["W1"], params["W1"])
    assert [p.name for p in tmp_path.iterdir()] == ["p.pkl"]  # written atomically: no temporary left


def test_save_book_params_writes_the_sequels_list_that_its_load_params_reads(tmp_path):
    model = bj.rnnlm.better_model(11, 2, 4, 4)
    params, _ = model.init(jax.random.key(0))
    order = bj.rnnlm.book_order(2, tie_weights=True)
    bj.save_book_params(params, tmp_path / "BetterRnnlm.pkl", order=order)
    # The sequel's common/base_model.py at 842ae31c, load_params written out: pickle.load, then
    # params = [p.astype('f') for p in params]; param[...] = params[i] for each of self.params.
    with open(tmp_path / "BetterRnnlm.pkl", "rb") as f:
        saved = pickle.load(f)
    assert isinstance(saved, list) and all(p.dtype == np.float16 for p in saved)
    saved = [p.astype("f") for p in saved]
    model_params = [np.zeros_like(np.asarray(params[k[:-2]]).T if k.endswith(".T") else params[k]) for k in order]
    for i, param in enumerate(model_params):
        param[...] = saved[i]
    for k, param in zip(order, model_params):
        want = np.asarray(params[k[:-2]]).T if k.endswith(".T") else np.asarray(params[k])
        np.testing.assert_array_equal(param, want.astype(np.float16).astype(np.float32))
    back = bj.fit_params(model, bj.load_book_params(tmp_path / "BetterRnnlm.pkl"), order=order)
    assert sorted(back) == sorted(params)
    with pytest.raises(bj.BookParamsError, match=r"save_book_params: the order names .* \(missing W_affine\)"):
        bj.save_book_params(params, tmp_path / "x.pkl", order=bj.rnnlm.book_order(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BetterRnnlm.pkl"]


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"W1": RunsACommand(marker)}, f)
    with pytest.raises(bj.BookParamsError, match=r"refused: the file asks for (posix|os|nt)\.system"):
        bj.load_book_params(tmp_path / "evil.pkl")
    assert not marker.exists()
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(bj.BookParamsError, match="not a pickle of parameters"):
        bj.load_book_params(tmp_path / "junk.pkl")
    with open(tmp_path / "int.pkl", "wb") as f:
        pickle.dump(3, f)
    with pytest.raises(bj.BookParamsError, match="holds a int, not a dict"):
        bj.load_book_params(tmp_path / "int.pkl")
    # The sequel's files: a list of arrays.
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([np.ones(2, np.float16), np.zeros((2, 2), np.float16)], f)
    assert [a.shape for a in bj.load_book_params(tmp_path / "list.pkl")] == [(2,), (2, 2)]


def test_params_that_do_not_fit_the_model_are_listed():
    model = multi_layer_net.model(784, [50, 100], 10, activation="sigmoid")
    good = random_params(model, 0)
    wrong = {**{k: v for k, v in good.items() if k != "b3"}, "W2": np.zeros((50, 99)), "extra": np.zeros(1)}
    with pytest.raises(bj.BookParamsError, match=r"missing b3 \(10,\); unexpected extra \(1,\); W2 is \(50, 99\), "
                                                 r"the model's \(50, 100\)"):
        bj.fit_params(model, wrong)


def test_evaluate_command_with_a_book_file_a_run_directory_and_half_precision(tmp_path, capsys):
    model = multi_layer_net.model(784, [50, 100], 10, activation="sigmoid")
    saved = random_params(model, 3)
    saved["W1"] = saved["W1"] * 0.3
    book_pickle(saved, tmp_path / "sample_weight.pkl")
    flags = ["--dataset", "mnist-sample", "--model", "multi-layer", "--hidden-sizes", "50,100",
             "--activation", "sigmoid", "--params", str(tmp_path / "sample_weight.pkl")]
    cli.main(["evaluate", *flags])
    out = capsys.readouterr().out
    (_, _), (x, t) = datasets.load_mnist_sample()
    expected = np.mean(neuralnet_mnist_predict(saved, np.asarray(x, np.float64)).argmax(1) == t)
    assert f"test accuracy {expected:.4f}" in out, out
    cli.main(["evaluate", *flags, "--dtype", "float16"])
    half = float(capsys.readouterr().out.split("test accuracy ")[1].split()[0])
    assert abs(half - expected) < 0.01  # the book's point: float16 inference keeps the accuracy
    with pytest.raises(SystemExit, match="do not fit the model: .*W1 is \\(784, 50\\), the model's \\(784, 100\\)"):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--model", "multi-layer", "--hidden-sizes", "100,100",
                  "--activation", "sigmoid", "--params", str(tmp_path / "sample_weight.pkl")])
    # A run directory: its newest checkpoint, the accuracy the run itself recorded.
    run_dir = tmp_path / "run"
    cli.main(["train", "--dataset", "mnist-sample", "--iters", "80", "--no-progress", "--out", str(run_dir)])
    recorded = capsys.readouterr().out.split("final test accuracy ")[1].split()[0]
    cli.main(["evaluate", "--dataset", "mnist-sample", "--params", str(run_dir)])
    assert f"test accuracy {recorded}" in capsys.readouterr().out


def test_a_model_too_large_to_make_is_compared_with_a_pickle_by_shapes_alone(tmp_path):
    # 784 x 10**12 float32 weights (3 PB) are never made: the parameters come from the file.
    book_pickle(random_params(two_layer_net.model(784, 50, 10), 0), tmp_path / "p.pkl")
    with pytest.raises(SystemExit, match=r"--params .*p.pkl: the parameters do not fit the model: W1 is \(784, 50\), "
                                         r"the model's \(784, 1000000000000\)"):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--hidden", str(10 ** 12), "--params",
                  str(tmp_path / "p.pkl")])


@pytest.mark.parametrize("value, message", [
    (np.full((784, 50), np.nan), r"hold NaN or infinite values: W1 has 39200 of 39200"),
    (np.full((784, 50), np.inf), r"hold NaN or infinite values: W1 has 39200 of 39200"),
    (np.zeros((784, 50), "datetime64[s]"), r"must be floating-point numbers: W1 holds datetime64\[s\]"),
    (np.full((784, 50), "x", object), r"must be floating-point numbers: W1 holds object"),
    (np.full((784, 50), "x"), r"must be floating-point numbers: W1 holds <U1"),
    (np.zeros((784, 50), [("a", "f4")]), r"must be floating-point numbers: W1 holds \[\('a', '<f4'\)\]"),
    (np.zeros((784, 50), np.int32), r"must be floating-point numbers: W1 holds int32"),
])
def test_non_finite_and_non_float_parameters_are_refused_by_name(value, message):
    model = multi_layer_net.model(784, [50], 10)
    params = {**random_params(model, 0), "W1": value}
    with pytest.raises(bj.BookParamsError, match=message):
        bj.fit_params(model, params)


def test_a_value_that_overflows_the_evaluation_dtype_is_refused(tmp_path):
    model = multi_layer_net.model(784, [50], 10)
    params = {**random_params(model, 0), "b1": np.full(50, 1e6)}
    with pytest.raises(bj.BookParamsError, match=r"NaN or infinite values in float16: b1 has 50 of 50"):
        bj.fit_params(model, params, np.float16)
    # Through the command: a pickle of such arrays is one line, status 1.
    book_pickle({**params, "W1": np.full((784, 50), np.nan)}, tmp_path / "nan.pkl")
    with pytest.raises(SystemExit, match=r"--params .*nan.pkl: the parameters hold NaN or infinite values in "
                                         r"float32: W1 has 39200 of 39200"):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--model", "multi-layer", "--hidden-sizes", "50",
                  "--params", str(tmp_path / "nan.pkl")])


@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_array_pickles_of_protocols_0_to_2_are_read(tmp_path, protocol):
    saved = {"W1": np.arange(6, dtype=np.float32).reshape(2, 3), "b1": np.linspace(-1, 1, 3)}
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(saved, protocol=protocol))
    loaded = bj.load_book_params(tmp_path / "p.pkl")
    assert loaded.keys() == saved.keys()
    for k in saved:
        np.testing.assert_array_equal(loaded[k], saved[k])
        assert loaded[k].dtype == saved[k].dtype


def test_codecs_encode_is_admitted_only_as_array_pickling_uses_it(tmp_path):
    # _codecs.encode("...", "base64") would build other bytes than the file shows: refused.
    (tmp_path / "p.pkl").write_bytes(b"c_codecs\nencode\n(Vabc\nVbase64\ntR.")
    with pytest.raises(bj.BookParamsError, match=r"refused: the file asks for _codecs.encode with 'base64'"):
        bj.load_book_params(tmp_path / "p.pkl")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_values_side_by_side_are_not_nesting_and_nesting_is_measured_in_values(tmp_path, protocol):
    many = {f"W{i}": np.full(2, i, np.float32) for i in range(300)}  # SETITEMS with 600 values at once
    (tmp_path / "many.pkl").write_bytes(pickle.dumps(many, protocol=protocol))
    assert sorted(bj.load_book_params(tmp_path / "many.pkl")) == sorted(many)
    listed = [np.full(2, i, np.float16) for i in range(150)]
    (tmp_path / "list.pkl").write_bytes(pickle.dumps(listed, protocol=protocol))
    assert len(bj.load_book_params(tmp_path / "list.pkl")) == 150
    for depth, refused in ((90, False), (101, True)):  # an array is a few levels itself
        nested = np.zeros(1)
        for _ in range(depth - 1):
            nested = {"a": nested} if depth % 2 else [nested]
        (tmp_path / "nested.pkl").write_bytes(pickle.dumps({"W1": nested}, protocol=protocol))
        with pytest.raises(bj.BookParamsError, match="refused: values nested more than 100 deep" if refused
                           else "holds a dict, but 'W1' is not a name with an array"):
            bj.load_book_params(tmp_path / "nested.pkl")


def test_a_pickle_claiming_more_bytes_than_it_holds_is_one_line(tmp_path):
    (tmp_path / "claim.pkl").write_bytes(b"\x80\x05\x8e" + (2 ** 60).to_bytes(8, "little") + b"xx")
    with pytest.raises(bj.BookParamsError, match=r"claim.pkl: not a pickle of parameters \(expected "
                                                 r"1152921504606846976 bytes in a bytes8, but only 2 remain\)"):
        bj.load_book_params(tmp_path / "claim.pkl")


@pytest.mark.slow
def test_a_deeply_nested_pickle_fifos_and_devices_are_one_line_errors(tmp_path):
    (tmp_path / "nested.pkl").write_bytes(b"(" * 1_000_000 + b"t" * 1_000_000 + b".")
    (tmp_path / "nested-lists.pkl").write_bytes(b"\x80\x02" + b"]" * 1_000_000 + b"a" * 999_999 + b".")
    os.mkfifo(tmp_path / "fifo")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for params, message in [(tmp_path / "nested.pkl", "refused: values nested more than 100 deep"),
                            (tmp_path / "nested-lists.pkl", "refused: more than 100000 values at once"),
                            (tmp_path / "fifo", "is a FIFO, not a regular file"),
                            ("/dev/zero", "/dev/zero is a device, not a regular file")]:
        result = subprocess.run([sys.executable, "-m", "backprop_jax", "evaluate", "--dataset", "mnist-sample",
                                 "--params", str(params)], capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 1, (params, result.returncode, result.stderr)
        assert result.stderr.startswith(f"backprop-jax: error: --params {params}")
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "train", "--model", "rnnlm", "--data",
                             str(tmp_path / "fifo")], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "is a FIFO, not a regular file" in result.stderr
