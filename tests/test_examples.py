"""Every script in examples/ runs and prints the book's numbers."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def parse_table(stdout):
    rows = {}
    for line in stdout.splitlines()[1:]:
        name, manual, auto = line.split()
        rows[name] = (float(manual), float(auto))
    return rows


@pytest.mark.parametrize("script, expected", [
    ("buy_apple.py", {"price": 220, "dapple": 2.2, "dapple_num": 110, "dtax": 200}),
    ("buy_apple_orange.py", {"price": 715, "dapple_num": 110, "dapple": 2.2, "dorange": 3.3,
                             "dorange_num": 165, "dtax": 650}),
])
def test_shopping_examples_reproduce_the_book(script, expected):
    rows = parse_table(run_example(script))
    assert list(rows) == list(expected)
    for name, value in expected.items():
        manual, auto = rows[name]
        np.testing.assert_allclose(manual, value, rtol=1e-14)
        assert manual == auto, name  # float64 throughout: the two chains agree to the last bit


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_gradient_check_example_passes():
    out = run_example("gradient_check.py")
    lines = out.splitlines()
    book = dict(line.split(": ") for line in lines[:4])
    assert list(book) == ["W1", "W2", "b1", "b2"]
    assert all(float(v.split()[0]) < 1e-8 for v in book.values())
    # The large arrays are compared along random directions, and the line says so.
    assert book["W1"].endswith(" (along 8 random directions)") and " " not in book["b2"]
    assert out.rstrip().endswith("gradient check passed")


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_draw_graphs_example_writes_the_three_graphs(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, str(EXAMPLES / "draw_graphs.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    for name in ("apple", "apple_orange", "two_layer_net"):
        assert (tmp_path / f"{name}.dot").is_file() and (tmp_path / f"{name}.mmd").is_file()
    assert "apple -> mul     value  100   gradient 2.2" in result.stdout
    assert "mul -> output  value  220   gradient 1" in result.stdout


def test_own_network_example_defines_a_checked_layer_and_the_books_conv_net():
    import importlib.util

    import jax
    import jax.numpy as jnp

    import backprop_jax as bj

    spec = importlib.util.spec_from_file_location("own_network", EXAMPLES / "own_network.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    x = jax.random.normal(jax.random.key(0), (4, 5), jnp.float64)
    bj.assert_gradcheck(example.leaky_relu, x)
    np.testing.assert_allclose(jax.grad(lambda x: jnp.sum(example.leaky_relu(x)))(x),
                               np.where(np.asarray(x) <= 0, 0.01, 1.0), rtol=1e-15)
    shapes = lambda model: jax.tree.map(jnp.shape, jax.eval_shape(model.init, jax.random.key(0)))
    assert shapes(example.conv_net()) == shapes(bj.conv_net.model())
