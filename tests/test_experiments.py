"""The chapters' experiments, each run small through the command line: files, and the
book's observations where a tiny run already shows them."""

import json

import numpy as np
import pytest

from backprop_jax.cli import main
from backprop_jax.experiments import EXPERIMENTS

# End-to-end checks (benchmarks, processes, whole experiments): `pytest -m slow`, run by .ci/run.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("experiments")
    main(["experiment", "all", "--quick", "--out", str(out)])
    return out, {name: json.loads((out / f"{name}.json").read_text()) for name in EXPERIMENTS}


def test_every_experiment_writes_its_figure_and_numbers(results):
    out, _ = results
    for name in EXPERIMENTS:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_activation_histograms_show_the_books_three_pictures(results):
    inits = results[1]["activation-histograms"]["inits"]
    share = lambda counts, bins: sum(counts[b] for b in bins) / sum(counts)
    for layer in inits["std 1, sigmoid"]:  # saturated: activations pile up at 0 and 1
        assert share(layer["counts"], [0, 29]) > 0.5
    for layer in inits["std 0.01, sigmoid"][1:]:  # every unit alike: all near 0.5
        assert share(layer["counts"], range(12, 18)) > 0.99
    xavier = inits["Xavier, sigmoid"][-1]
    assert 0.05 < xavier["std"] < 0.3  # spread out, neither saturated nor collapsed
    assert set(inits) == {"std 1, sigmoid", "std 0.01, sigmoid", "Xavier, sigmoid", "He, ReLU"}


def test_training_experiments_record_their_curves(results):
    _, r = results
    assert list(r["weight-init"]["curves"]) == ["std=0.01", "Xavier", "He"]
    assert all(c[-1]["iteration"] == 20 for c in r["weight-init"]["curves"].values())
    runs = r["batch-norm"]["runs"]
    assert [run["scale"] for run in runs] == [1.0, 1e-4] and len(runs[1]["batch_norm"]) == 2
    assert "plain_stopped" in runs[0] and "loss became nan" in runs[0]["plain_stopped"]  # std 1, no BN: NaN
    variants = r["overfitting"]["variants"]
    assert list(variants) == ["no regularisation", "weight decay 0.1", "dropout 0.2"]
    assert all(len(v["train_acc"]) == 3 for v in variants.values())
    filters = r["conv-filters"]
    before, after = np.asarray(filters["filters_before"]), np.asarray(filters["filters_after"])
    assert before.shape == after.shape == (30, 1, 5, 5) and not np.array_equal(before, after)


def test_seq2seq_addition_compares_the_sequels_three_variants(results):
    r = results[1]["seq2seq-addition"]
    assert list(r["variants"]) == ["baseline", "reversed", "peeky + reversed"]
    assert r["train"] == 900 and r["test"] == 100  # the sequel's 90/10 split
    for name, v in r["variants"].items():
        assert len(v["exact_match"]) == len(v["test_loss"]) == 2 and all(0 <= a <= 1 for a in v["exact_match"]), name
        assert v["test_loss"][-1] < v["test_loss"][0], name
    assert r["variants"]["peeky + reversed"]["peeky"] and not r["variants"]["reversed"]["peeky"]


def test_attention_dates_records_accuracy_and_an_attention_map(results):
    r = results[1]["attention-dates"]
    assert r["train"] == 540 and r["test"] == 60 and len(r["exact_match"]) == 2
    example = r["example"]
    weights = np.asarray(example["attention"])
    assert example["answer"].startswith("_") and weights.shape == (10, 29)  # 10 answer characters, 29 asked
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)


def test_random_search_runs_every_trial_in_one_call_with_the_same_results(results):
    r = results[1]["random-search"]
    assert r["trials"] == 4 and len(r["results"]) == 4
    finals = [t["val_acc"][-1] for t in r["results"]]
    assert finals == sorted(finals, reverse=True)
    assert all(1e-6 <= t["learning_rate"] <= 1e-2 and 1e-8 <= t["weight_decay"] <= 1e-4 for t in r["results"])
    # vmap over the trials and a loop over them agree (to a flipped prediction or two).
    assert r["max_val_acc_difference_vmap_vs_loop"] <= 0.02
    assert r["vmapped_seconds"] > 0 and r["one_after_another_seconds"] > 0


def test_a_random_search_trial_is_the_trainers_own_program(sample):
    """Each trial runs ``make_epochs_fn``, the program ``bj.train`` runs: one trial at a learning
    rate and weight decay gives, epoch for epoch, ``bj.train``'s accuracies at the same settings."""
    import jax
    import jax.numpy as jnp

    import backprop_jax as bj
    from backprop_jax.experiments import random_search_trial

    (x, t), _ = sample
    x, t = np.asarray(x)[:300], np.asarray(t)[:300]
    x_val, t_val, x_train, t_train = x[:100], t[:100], x[100:], t[100:]
    trial = jax.jit(random_search_trial(x_train, t_train, x_val, t_val, 2, 100, 0))
    train_acc, val_acc = trial(jnp.float32(0.01), jnp.float32(1e-3), jax.random.fold_in(jax.random.key(0), 0))
    model = bj.multi_layer_net.model(784, (100,) * 6, 10, weight_decay_lambda=1e-3)
    _, history = bj.train(model, ((x_train, t_train), (x_val, t_val)),
                          bj.TrainConfig(iters_num=4, optimizer=bj.optimizers.sgd(0.01)))
    np.testing.assert_array_equal(np.asarray(train_acc), np.float32([e.train_acc for e in history]))
    np.testing.assert_array_equal(np.asarray(val_acc), np.float32([e.test_acc for e in history]))


def test_spiral_learns_the_three_arms(results):
    r = results[1]["spiral"]
    assert r["points"] == 300 and r["epochs"] == 30 and len(r["loss"]) == 30
    assert r["loss"][-1] < r["loss"][0]  # learning, in the quick run already
    assert sum(r["region_fractions"]) == pytest.approx(1.0)


def test_rnn_gradients_are_the_sequels_norms_exploding_vanishing_and_clipped(results):
    r = results[1]["rnn-gradients"]
    for scale, name in ((1.0, "1.0"), (0.5, "0.5")):
        # rnn_gradient_graph.py, as the sequel writes it (float64 NumPy).
        N, H, T = 2, 3, 20
        dh = np.ones((N, H))
        np.random.seed(3)
        Wh = np.random.randn(H, H) * scale
        norm_list = []
        for t in range(T):
            dh = np.dot(dh, Wh.T)
            norm = np.sqrt(np.sum(dh ** 2)) / N
            norm_list.append(norm)
        got = r["scales"][name]
        np.testing.assert_allclose(got["norm"], norm_list, rtol=1e-4)
        # clip_grads(5.0) on dh alone: rate = 5 / (norm * N + 1e-6), applied when below 1.
        total = np.asarray(norm_list) * N
        expected = np.where(5.0 / (total + 1e-6) < 1, total * 5.0 / (total + 1e-6), total) / N
        np.testing.assert_allclose(got["clipped"], expected, rtol=1e-4)
        assert len(got["through_tanh"]) == T and got["through_tanh"][-1] < got["through_tanh"][0]
    assert r["scales"]["1.0"]["norm"][-1] > 100 and r["scales"]["0.5"]["norm"][-1] < 1e-3
