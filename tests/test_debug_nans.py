"""JAX's NaN debugging (``jax_debug_nans``) through the trainer: a healthy run is not disturbed,
since the compiled loop holds no NaN of its own, and a NaN the model makes is still caught."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import TrainConfig, datasets, rnnlm, two_layer_net
from conftest import diverging_model, small


def timeless(history):
    """The epochs without their clock readings, which differ from run to run."""
    return [dataclasses.replace(e, seconds=0.0, compile_seconds=0.0) for e in history]


@pytest.fixture(params=["context manager", "config.update"])
def debug_nans(request):
    """Turns ``jax_debug_nans`` on both ways a user does, for the ``with`` block."""
    if request.param == "context manager":
        return lambda: jax.debug_nans(True)

    class Updated:
        def __enter__(self):
            jax.config.update("jax_debug_nans", True)

        def __exit__(self, *exc):
            jax.config.update("jax_debug_nans", False)
    return Updated


@pytest.fixture(scope="module")
def text_run():
    """A tiny rnnlm (measured by its loss, as perplexity) and its data: windows of 5 words."""
    data = datasets.load_text(datasets.date_text(120, seed=1))
    model = rnnlm.model(len(data.word_to_id), 4, 6, 6)
    return model, (rnnlm.training_data(data.train, 4, 5), rnnlm.training_data(data.test, 1, 5))


def test_a_healthy_run_trains_alike_with_nan_debugging_on(sample, text_run, debug_nans):
    data = small(sample, 200, 50)
    config = TrainConfig(iters_num=8, batch_size=50)  # 4 iterations an epoch, two epochs
    _, plain = bj.train(two_layer_net.model(), data, config)
    with debug_nans():
        _, debugged = bj.train(two_layer_net.model(), data, config)
    assert timeless(debugged) == timeless(plain) and plain[-1].test_loss is None
    model, text = text_run
    config = TrainConfig(iters_num=6, batch_size=4, learning_rate=1.0)
    _, plain = bj.train(model, text, config)
    with debug_nans():
        _, debugged = bj.train(model, text, config)
    assert timeless(debugged) == timeless(plain)
    assert plain[-1].train_acc is None and plain[-1].test_acc is None and np.isfinite(plain[-1].test_loss)


def test_a_run_with_files_goes_alike_with_nan_debugging_on(tmp_path, text_run):
    model, text = text_run
    config = TrainConfig(iters_num=6, batch_size=4, learning_rate=1.0)
    go = lambda out: bj.run(model, text, config, dataset="dates", settings={}, out=out,  # noqa: E731
                            progress=False, log=lambda *a: None)
    _, plain = go(tmp_path / "plain")
    with jax.debug_nans(True):
        _, debugged = go(tmp_path / "debugged")
    assert timeless(debugged) == timeless(plain)


def test_a_nan_the_model_makes_is_still_caught_by_nan_debugging(debug_nans):
    x, t = np.zeros((200, 3), np.float32), np.zeros(200, np.int32)
    config = TrainConfig(iters_num=500, batch_size=10, learning_rate=0.1)  # NaN near iteration 38
    with pytest.raises(bj.TrainingDiverged, match="the loss became nan"):
        bj.train(diverging_model(), ((x, t), (x, t)), config)
    with debug_nans(), pytest.raises(FloatingPointError, match=r"invalid value \(nan\)"):
        bj.train(diverging_model(), ((x, t), (x, t)), config)
    # Without jit (as the training guide says), the error names the operation inside the loop.
    with debug_nans(), jax.disable_jit(), pytest.raises(FloatingPointError,
                                                        match=r"invalid value \(nan\) encountered in sqrt"):
        bj.train(diverging_model(), ((x, t), (x, t)), dataclasses.replace(config, iters_num=45))


def test_a_label_out_of_range_under_jit_is_nan_and_named_under_nan_debugging():
    x, t = jnp.ones((3, 4)), jnp.array([0, 1, 7])
    assert np.isnan(jax.jit(bj.softmax_with_loss)(x, t))
    with jax.debug_nans(True), pytest.raises(ValueError, match="labels t must be classes 0 to 3 .* got 7 at index 2"):
        jax.jit(bj.softmax_with_loss)(x, t)


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_the_command_trains_with_nan_debugging_on(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DEBUG_NANS": "1"}
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "train", "--iters", "20", "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test acc" in result.stdout and "Traceback" not in result.stderr
    # The experiment whose point is a loss that becomes NaN (no batch norm, weights of scale 1) shows it.
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "experiment", "batch-norm", "--quick", "--out",
                             str(tmp_path / "experiment")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = json.loads((tmp_path / "experiment" / "batch-norm.json").read_text())["runs"]
    assert "loss became nan" in runs[0]["plain_stopped"]
