"""Strict settings for the whole suite.

x64 is on so float64 tests are really float64; every other test names its
dtype explicitly. Implicit rank promotion raises, and warnings are errors
(pyproject.toml), as in the strictest JAX codebases.
"""

import os
import shutil
import tempfile
import textwrap
from pathlib import Path

# One persistent XLA compilation cache for the whole suite and the processes it starts
# (the command-line tests run the same training programs again and again). It lives
# outside the checkout, so a later run on the same machine starts warm.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "backprop-jax-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Most of the suite's time from a cold cache is XLA compiling small programs. Its backend
# optimisations buy nothing here (the tests assert values, never speed; benchmarks/ measures
# speed, without this): at level 0 the sequel's gradient checks compiled in 22 s instead of 47.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import backprop_jax as bj  # noqa: E402
from backprop_jax import datasets  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

DTYPES = [jnp.float32, jnp.float64, jnp.bfloat16]
# (atol, rtol) for comparing a hand gradient with an independent one.
TOL = {jnp.float64: (1e-12, 1e-10), jnp.float32: (1e-5, 1e-5), jnp.bfloat16: (3e-2, 3e-2)}
TRANSFORMS = [pytest.param(lambda f: f, id="eager"), pytest.param(jax.jit, id="jit")]


def assert_close(actual, expected, dtype):
    """Compares in float64, with the tolerance of ``dtype``."""
    atol, rtol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               atol=atol, rtol=rtol)


def normal(seed, shape, dtype=jnp.float64):
    return jax.random.normal(jax.random.key(seed), shape, dtype=jnp.float64).astype(dtype)


@pytest.fixture(autouse=True, scope="session")
def data_cache(tmp_path_factory):
    """Keeps the suite out of the user's cache: data files go to a fresh directory."""
    path = tmp_path_factory.mktemp("data-cache")
    old = os.environ.get("BACKPROP_JAX_DATA")
    os.environ["BACKPROP_JAX_DATA"] = str(path)
    yield path
    if old is None:
        del os.environ["BACKPROP_JAX_DATA"]
    else:
        os.environ["BACKPROP_JAX_DATA"] = old


# Helpers shared by several test files --------------------------------------------------

@pytest.fixture(scope="session")
def sample():
    """The embedded 5,000 MNIST digits, ``((x_train, t_train), (x_test, t_test))``."""
    return datasets.load_mnist_sample()


def fake_mnist(directory, n_train=30, n_test=10, seed=0):
    """Writes four small, valid MNIST files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_img": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_label": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_img": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_label": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, (name, _) in datasets.MNIST_FILES.items():
        datasets.write_idx(Path(directory) / name, arrays[key])
    return arrays


def final_params(out):
    template = jax.eval_shape(lambda: bj.init_state(bj.two_layer_net.model(), bj.TrainConfig()))
    checkpoints = bj.Checkpoints(Path(out) / "checkpoints")
    state, _ = checkpoints.restore(template)
    checkpoints.close()
    return state


def browser():
    chromium, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        assert not os.environ.get("CI"), ".ci/run installs Chromium and its driver; they must be there in CI"
        pytest.skip("Chromium and chromedriver are not installed on this machine (apt-get install chromium "
                    "chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    # The console's errors (driver.get_log("browser")) and every request the page makes
    # (driver.get_log("performance")).
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def lstm_loop(xs, h0, c0, Wx, Wh, b):
    """The sequel's TimeLSTM.forward: A split as f, g, i, o; c = f*c + g*i; h = o*tanh(c)."""
    h, c, hs = h0, c0, []
    Hn = h0.shape[1]
    for t in range(xs.shape[1]):
        A = xs[:, t, :] @ Wx + h @ Wh + b[None, :]
        f, g = 1 / (1 + jnp.exp(-A[:, :Hn])), jnp.tanh(A[:, Hn:2 * Hn])
        i, o = 1 / (1 + jnp.exp(-A[:, 2 * Hn:3 * Hn])), 1 / (1 + jnp.exp(-A[:, 3 * Hn:]))
        c = f * c + g * i
        h = o * jnp.tanh(c)
        hs.append(h)
    return jnp.stack(hs, axis=1), h, c


def small(data, n_train=500, n_test=200):
    """The first ``n_train`` training and ``n_test`` test examples of ``data``."""
    (x, t), (xt, tt) = data
    return (x[:n_train], t[:n_train]), (xt[:n_test], tt[:n_test])


def diverging_model():
    """Loss ``sqrt(5 - w) - w``: SGD raises w by about lr per step, and at w > 5 the loss is NaN."""
    return bj.Model(
        init=lambda key: ({"w": jnp.zeros(())}, {}),
        apply=lambda p, state, x, *, key=None, train=False: (jnp.zeros((x.shape[0], 2)) + p["w"], state),
        criterion=lambda scores, t: jnp.sqrt(5.0 - scores[0, 0]) - scores[0, 0])


@pytest.fixture
def sharded_setup():
    """The lines a data-parallel check runs in its own process, after importing ``jax``, ``bj`` and
    ``two_layer_net``: ``data`` (800 training and 200 test images of the sample), ``config`` (100
    iterations of batch 96) and ``model``, the two-layer net recording in ``seen`` how each
    training mini-batch is sharded inside the compiled step."""
    return textwrap.dedent('''
        (x, t), (xt, tt) = bj.datasets.load_mnist_sample()
        data = ((x[:800], t[:800]), (xt[:200], tt[:200]))
        config = bj.TrainConfig(iters_num=100, batch_size=96)

        seen = []  # the sharding of the mini-batch inside the compiled step
        base = two_layer_net.model()
        def apply(params, state, x, *, key=None, train=False):
            if train:
                jax.debug.inspect_array_sharding(x, callback=seen.append)
            return base.apply(params, state, x, key=key, train=train)
        model = bj.Model(base.init, apply)
    ''')
