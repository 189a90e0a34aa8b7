"""The recipes: each settles a run as the book's (and the sequel's) script does; the command's
run is the recipe's three lines of Python, bit for bit; ``max_grad`` is the clipped chain that
runs recorded before it existed, and those runs still resume."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import chex
import numpy as np
import optax
import pytest

import backprop_jax as bj
from backprop_jax import datasets
from backprop_jax.recipes import RecipeData

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "training.md"

# The scripts' settings, read from them: deep-learning-from-scratch 07b1161 (ch05/train_neuralnet.py,
# ch07/train_convnet.py, ch08/train_deepnet.py) and deep-learning-from-scratch-2 842ae31c
# (ch06/train_rnnlm.py, ch06/train_better_rnnlm.py, ch07/train_seq2seq.py, ch08/train.py):
# optimiser, learning rate, gradient clipping, batch size, epochs (None: 10,000 iterations).
SCRIPTS = {
    "two-layer": ("sgd", 0.1, None, 100, None),
    "convnet": ("adam", 0.001, None, 100, 20),
    "deep-convnet": ("adam", 0.001, None, 100, 20),
    "seq2seq": ("adam", 0.001, 5.0, 128, 25),
    "peeky-seq2seq": ("adam", 0.001, 5.0, 128, 25),
    "attention-seq2seq": ("adam", 0.001, 5.0, 128, 10),
    "rnnlm": ("sgd", 20.0, 0.25, 20, 4),
    "better-rnnlm": ("sgd", 20.0, 0.25, 20, 40),
}


def fake_data(recipe, n=1000, batch_size=None):
    """Data of ``n`` examples, for what ``config`` reads of it (its size and batch size)."""
    x = np.zeros((n, 3), np.float32)
    return RecipeData("fake", ((x, x), (x, x)), recipe.run_batch_size(batch_size), {}, None, None, "rows")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_recipe_trains_as_its_script(name):
    optimizer, lr, max_grad, batch_size, epochs = SCRIPTS[name]
    config = bj.RECIPES[name].config(fake_data(bj.RECIPES[name]))
    got = (config.optimizer, config.lr, config.max_grad, config.batch_size)
    if bj.RECIPES[name].lr_divisor is not None:  # its rate lowered between epochs: an injected hyperparameter
        injected = optax.inject_hyperparams(bj.OPTIMIZERS[optimizer].make)(lr=lr)
        w, g = {"w": np.ones(2)}, {"w": np.array([0.3, -1.2])}  # the same updates, step after step
        ours, theirs = config.optimizer.init(w), injected.init(w)
        for _ in range(2):
            a, ours = config.optimizer.update(g, ours, w)
            b, theirs = injected.update(g, theirs, w)
            np.testing.assert_array_equal(a["w"], b["w"])
        got = (optimizer, float(optax.tree_utils.tree_get(config.optimizer.init({"w": np.zeros(2)}), "lr")),
               *got[2:])
    assert got == (optimizer, lr, max_grad, batch_size)
    assert config.iters_num == (10_000 if epochs is None else epochs * (1000 // batch_size))
    if name == "deep-convnet":
        assert config.evaluate_sample_num_per_epoch == 1000


def test_flags_override_the_recipe_and_the_scripts_rate_goes_with_its_optimiser():
    rnnlm = bj.RECIPES["rnnlm"]
    data = fake_data(rnnlm, batch_size=10)
    assert rnnlm.config(data).batch_size == 10
    assert rnnlm.config(data, optimizer="adam").lr == bj.OPTIMIZERS["adam"].learning_rate == 0.001
    assert rnnlm.config(data, learning_rate=3.0, max_grad=1.0, iters=7).record()["learning_rate"] == 3.0
    assert rnnlm.config(data, iters=7).iters_num == 7 and rnnlm.config(data, epochs=3).iters_num == 3 * 100
    assert rnnlm.config(data).optimizer_name() == "sgd lr 20.0, gradients clipped at 0.25"
    with pytest.raises(ValueError, match="filter_num: not a setting of rnnlm"):
        rnnlm.with_settings(filter_num=3)
    with pytest.raises(ValueError, match="the rnnlm network is sized by its data"):
        rnnlm.model()
    assert rnnlm.with_settings(time_size=7).record()["time_size"] == 7


def test_max_grad_is_the_clipped_chain_bit_for_bit_and_old_clipped_runs_resume(tmp_path, sample):
    (x, t), (xt, tt) = sample
    data = (x[:300], t[:300]), (xt[:100], tt[:100])
    model = bj.two_layer_net.model()
    chain = optax.chain(bj.optimizers.clip_grads(0.5), bj.optimizers.adam(0.001))
    before = bj.TrainConfig(iters_num=6, optimizer=chain)  # how a clipped run was given before max_grad
    now = bj.TrainConfig(iters_num=12, optimizer="adam", max_grad=0.5)
    whole, _ = bj.train(model, data, dataclasses.replace(before, iters_num=12))
    assert now.record()["max_grad"] == 0.5 and "max_grad" not in bj.TrainConfig().record()
    quiet = dict(progress=False, log=lambda *a: None)
    bj.run(model, data, before, dataset="d", settings={}, out=tmp_path, **quiet)
    saved = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert saved["learning_rate"] is None and "clip_grads" in saved["optimizer"]
    state, history = bj.run(model, data, now, dataset="d", settings={}, out=tmp_path, resume=True, **quiet)
    chex.assert_trees_all_equal(state.params, whole.params)
    with pytest.raises(bj.RunError, match="other settings"):  # another clipping is another run
        bj.run(model, data, dataclasses.replace(now, max_grad=0.25, iters_num=18), dataset="d", settings={},
               out=tmp_path, resume=True, **quiet)


def _guide_block(language, containing):
    blocks = re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), re.S)
    return next(b for b in blocks if containing in b)


def test_the_guides_three_lines_are_the_commands_run_bit_for_bit(tmp_path, monkeypatch):
    (tmp_path / "words.txt").write_text(datasets.date_text(300, seed=5))
    monkeypatch.chdir(tmp_path)
    command = _guide_block("sh", "backprop-jax train --model rnnlm").split()
    assert command[:2] == ["backprop-jax", "train"]
    subprocess.run([sys.executable, "-m", "backprop_jax", *command[1:], "--no-progress", "--out", "run"],
                   check=True, capture_output=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    lines = _guide_block("python", "bj.RECIPES")
    assert len(lines.strip().splitlines()) == 3
    # The guide's own text, in a process like the command's (the suite's x64 left out).
    program = ("import dataclasses, json\nimport backprop_jax as bj\n" + lines
               + "print(json.dumps([dataclasses.asdict(e) for e in history]))\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "JAX_ENABLE_X64": "0"})
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout.splitlines()[-1])
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert len(ours) == 2
    for key in ("iteration", "train_loss", "test_loss", "test_perplexity"):
        assert [e[key] for e in recorded] == [e[key] for e in ours], key


def test_a_language_model_run_is_resumed_only_with_the_reading_it_started_with(tmp_path):
    # The rnnlm recipe reads as the sequel's RnnlmTrainer.fit over several epochs (the reading
    # position carried on); a run that read restarting streams each epoch is refused by name.
    text = tmp_path / "words.txt"
    text.write_text(datasets.date_text(60, seed=2))
    streams = dataclasses.replace(bj.RECIPES["rnnlm"], reading=None).with_settings(hidden=4, wordvec_size=4,
                                                                                  time_size=5)
    carried = bj.RECIPES["rnnlm"].with_settings(hidden=4, wordvec_size=4, time_size=5)
    out = tmp_path / "run"
    for recipe, resume in ((streams, False), (carried, True)):
        data = recipe.load_data(str(text), batch_size=2)
        assert (data.iters_per_epoch is None) == (recipe.reading is None)
        if resume:
            with pytest.raises(bj.RunError, match=r"'reading': \(None, 'carried'\)"):
                bj.run(recipe.model(data), data.arrays, recipe.config(data, iters=2), dataset=data.name,
                       settings=recipe.record(data), out=str(out), resume=True, progress=False)
        else:
            bj.run(recipe.model(data), data.arrays, recipe.config(data, iters=2), dataset=data.name,
                   settings=recipe.record(data), out=str(out), progress=False)


@pytest.mark.parametrize("name", ["seq2seq", "peeky-seq2seq", "attention-seq2seq"])
def test_the_seq2seq_recipes_read_a_new_order_each_epoch_as_the_sequels_trainer(name):
    # The sequel's common/trainer.py at 842ae31c, Trainer.fit: each epoch idx =
    # numpy.random.permutation(data_size), then max_iters = data_size // batch_size batches
    # x[idx][iters * batch_size:(iters + 1) * batch_size]: no row twice in an epoch, the rest left out.
    recipe = bj.RECIPES[name].with_settings(hidden=4, wordvec_size=4)
    data = recipe.load_data(datasets.addition_lines(70) if recipe.data == "addition" else datasets.date_lines(70),
                            batch_size=8)
    n = len(data.arrays[0][0])
    max_iters = n // 8
    rows = recipe.model(data).batch_rows
    assert recipe.record(data)["reading"] == "shuffled"
    epochs = [np.concatenate([np.asarray(rows(0, e * max_iters + i, 8, n)) for i in range(max_iters)])
              for e in range(2)]
    for read in epochs:
        assert len(read) == max_iters * 8 == len(set(read.tolist())) and read.min() >= 0 and read.max() < n
    assert not np.array_equal(epochs[0], epochs[1])
    assert recipe.config(data, epochs=3).iters_num == 3 * max_iters


def test_a_better_rnnlm_run_resumed_between_epochs_is_the_uninterrupted_run(tmp_path):
    # The lowered learning rate lives in the optimiser's state (checkpointed) and the best
    # perplexity is the history's: a resumed run schedules as an uninterrupted one.
    text = tmp_path / "words.txt"
    text.write_text(datasets.date_text(120, seed=3))
    recipe = bj.RECIPES["better-rnnlm"].with_settings(hidden=6, wordvec_size=6, time_size=5, dropout=0.0)
    data = recipe.load_data(str(text), batch_size=3)
    model = recipe.model(data)

    def run(epochs, out, resume=False):
        return bj.run(model, data.arrays, recipe.config(data, epochs=epochs, learning_rate=60.0), dataset=data.name,
                      settings=recipe.record(data), out=out, resume=resume, progress=False, log=lambda *a: None,
                      between_epochs=recipe.between_epochs())

    whole, history = run(4, None)
    run(2, str(tmp_path / "run"))
    resumed, _ = run(4, str(tmp_path / "run"), resume=True)
    rates = [float(optax.tree_utils.tree_get(s.opt_state, "lr")) for s in (whole, resumed)]
    assert rates[0] == rates[1] < 60.0, ([e.test_perplexity for e in history], rates)
    chex.assert_trees_all_close(resumed.params, whole.params, rtol=1e-6, atol=1e-7)
