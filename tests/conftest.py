"""Strict settings for the whole suite.

x64 is on so float64 tests are really float64; every other test names its
dtype explicitly. Implicit rank promotion raises, and warnings are errors
(pyproject.toml), as in the strictest JAX codebases.
"""

import os
import tempfile

# One persistent XLA compilation cache for the whole suite and the processes it starts
# (the command-line tests run the same training programs again and again). It lives
# outside the checkout, so a later run on the same machine starts warm.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "backprop-jax-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

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
