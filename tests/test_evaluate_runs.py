"""``evaluate --params RUN_DIR`` verifies what it scores as ``train --resume`` does: the digest of
the arrays, the step the record names, the model and its settings (taken from the record)."""

import json
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import cli

FLAGS = ["--model", "multi-layer", "--hidden-sizes", "30", "--activation", "sigmoid", "--weight-init", "0.01"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A sigmoid run with weight init 0.01: checkpoints at iterations 40 and 80, and its metrics."""
    out = tmp_path_factory.mktemp("evaluate") / "run"
    cli.main(["train", "--dataset", "mnist-sample", *FLAGS, "--lr", "2", "--iters", "80", "--no-progress",
              "--out", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    return out, {e["iteration"]: e["test_acc"] for e in metrics["epochs"]}


def evaluate(run_dir, capsys, *flags):
    cli.main(["evaluate", "--dataset", "mnist-sample", "--params", str(run_dir), *flags])
    captured = capsys.readouterr()
    return float(captured.out.split("test accuracy ")[1].split()[0]), captured.err


def test_the_runs_own_model_and_settings_are_used_and_others_refused(trained, capsys):
    out, acc = trained
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["40", "80"]
    score, err = evaluate(out, capsys)
    assert f"{score:.4f}" == f"{acc[80]:.4f}" and err == ""
    # The same arrays scored by the default activation give another accuracy: the settings matter.
    relu = bj.RECIPES["multi-layer"].with_settings(hidden_sizes=[30], weight_init=0.01).model()
    state = bj.restore_run(out, relu)
    (_, _), (x, t) = bj.datasets.load_mnist_sample()
    assert float(jnp.mean(relu.predict(state.params, state.model_state, jnp.asarray(x)).argmax(1) == t)) != score
    for flags, message in [
            (["--activation", "relu"], "--activation relu: the run in .* trained with --activation sigmoid"),
            (["--model", "two-layer"], "--model two-layer: the run in .* trained --model multi-layer"),
            (["--hidden-sizes", "20"], "--hidden-sizes 20: the run in .* trained with --hidden-sizes 30")]:
        with pytest.raises(SystemExit) as e:
            cli.main(["evaluate", "--dataset", "mnist-sample", "--params", str(out), *flags])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert re.search(message, err) and "Traceback" not in err, err
    # The library: a record of other settings is refused, naming both values.
    with pytest.raises(bj.RunError, match=r"other settings \(saved, given\): activation 'sigmoid', 'relu'"):
        bj.restore_run(out, relu, {"model": "multi-layer", "activation": "relu"})


def test_a_flipped_bit_in_the_newest_checkpoint_is_not_scored(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    model = bj.RECIPES["multi-layer"].with_settings(hidden_sizes=[30], activation="sigmoid", weight_init=0.01).model()
    checkpoints = bj.Checkpoints(out / "checkpoints")
    template = jax.eval_shape(lambda: bj.init_state(model, bj.TrainConfig(learning_rate=2.0)))
    state, record = checkpoints.restore(template, step=80)
    W1 = np.asarray(state.params["W1"]).copy()
    W1.view(np.uint64)[3, 7] ^= 1 << 60  # orbax reads it without a word; only the digest tells
    shutil.rmtree(out / "checkpoints" / "80")
    checkpoints.reload()
    checkpoints.save(80, state._replace(params={**state.params, "W1": jnp.asarray(W1)}), record, force=True)
    checkpoints.close()
    score, err = evaluate(out, capsys)
    assert "checkpoint 80 in" in err and "its arrays do not match the digest saved with them); skipped it" in err
    assert f"{score:.4f}" == f"{trained[1][40]:.4f}"
    assert (out / "checkpoints" / "80").is_dir()  # evaluate changes nothing in the run


def test_an_older_step_under_a_larger_number_is_not_scored_as_the_newest(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    shutil.copytree(out / "checkpoints" / "40", out / "checkpoints" / "999")
    score, err = evaluate(out, capsys)
    assert "checkpoint 999 in" in err and "its record says iteration 40, not 999); skipped it" in err
    assert f"{score:.4f}" == f"{trained[1][80]:.4f}"
    shutil.rmtree(out / "checkpoints" / "80")
    shutil.rmtree(out / "checkpoints" / "40")
    with pytest.raises(SystemExit, match=r"--params .*: no checkpoint in .* can be read and verified for this "
                                         r"model: 999: ValueError: its record says iteration 40, not 999"):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--params", str(out)])


def test_a_record_without_digest_is_scored_only_when_accepted(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained[0], out)
    for step in ("40", "80"):
        path = out / "checkpoints" / step / "record" / "metadata"
        record = json.loads(path.read_text())
        del record["digest"], record["record_digest"]
        path.write_text(json.dumps(record))
    with pytest.raises(SystemExit) as e:
        cli.main(["evaluate", "--dataset", "mnist-sample", "--params", str(out)])
    assert str(e.value.code).startswith(f"backprop-jax: error: --params {out}: checkpoint 80 in ")
    assert str(e.value.code).endswith("has no digest (an older format): its arrays cannot be verified; accept them "
                                      "knowingly with --accept-unverified")
    score, _ = evaluate(out, capsys, "--accept-unverified")
    assert f"{score:.4f}" == f"{trained[1][80]:.4f}"


def test_a_model_file_is_the_runs_by_its_content_whatever_path_names_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "net.py").write_text("from backprop_jax import nn\n\ndef tiny():\n    return nn.classifier(nn.serial("
                                     "nn.Affine(8), nn.Relu, nn.Affine(10)), input_shape=(784,))\n")
    monkeypatch.chdir(tmp_path)
    cli.main(["train", "--dataset", "mnist-sample", "--model", "net.py:tiny", "--iters", "4", "--batch-size", "2000",
              "--no-progress", "--out", "run"])
    recorded = capsys.readouterr().out.split("final test accuracy ")[1].split()[0]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--params", "../run"])
    assert ("the run's model file net.py (recorded as it was given where the run trained) is not found from here; "
            "give it with --model PATH:tiny") in capsys.readouterr().err
    accuracy, _ = evaluate("../run", capsys, "--model", "../net.py:tiny")
    assert f"{accuracy:.4f}" == recorded
    (tmp_path / "copy.py").write_text((tmp_path / "net.py").read_text() + "# another file\n")
    with pytest.raises(SystemExit, match="other settings .*model_file_sha256"):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--params", "../run", "--model", "../copy.py:tiny"])
    with pytest.raises(SystemExit):
        cli.main(["evaluate", "--dataset", "mnist-sample", "--params", "../run", "--model", "../net.py:other"])
    assert "--model ../net.py:other: the run in ../run trained --model net.py:tiny" in capsys.readouterr().err
