"""The loop (``train``): the book's recipe, determinism, one compilation, calls of many epochs,
divergence, the data and settings it refuses, what each epoch records."""

import json
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import (
    Model, TrainConfig, TrainingDiverged, multi_layer_net, run, train,
    two_layer_net)
from conftest import diverging_model, small


def test_book_recipe_on_the_embedded_sample_reaches_092(sample):
    state, history = train(two_layer_net.model(), sample, TrainConfig())
    assert len(history) == 250 and history[-1].iteration == 10_000
    assert history[-1].test_acc >= 0.92
    assert history[-1].train_acc > history[0].train_acc


def test_same_seed_gives_bitwise_the_same_parameters(sample):
    data = small(sample)
    config = TrainConfig(iters_num=120, seed=3)
    a, _ = train(two_layer_net.model(), data, config)
    b, _ = train(two_layer_net.model(), data, config)
    c, _ = train(two_layer_net.model(), data, TrainConfig(iters_num=120, seed=4))
    chex.assert_trees_all_equal(a.params, b.params)
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_batches_fed_from_the_host_train_exactly_like_batches_gathered_on_the_device(sample):
    data = small(sample)
    config = TrainConfig(iters_num=30, batch_size=40)  # 12 iterations an epoch: the last one short
    a, history_a = train(two_layer_net.model(), data, config, feed="device")
    b, history_b = train(two_layer_net.model(), data, config, feed="host")
    chex.assert_trees_all_equal(a.params, b.params)
    assert [e.train_loss for e in history_a] == [e.train_loss for e in history_b]
    with pytest.raises(ValueError, match="feed must be 'auto', 'device' or 'host', got 'disk'"):
        train(two_layer_net.model(), data, config, feed="disk")


@pytest.mark.parametrize("optimizer, lr", [("sgd", 0.1), ("momentum", 0.05), ("nesterov", 0.05),
                                           ("adagrad", 0.05), ("rmsprop", 0.001), ("adam", 0.001)])
def test_every_optimizer_learns(sample, optimizer, lr):
    data = small(sample, 1000, 300)
    _, history = train(multi_layer_net.model(784, (50,), 10), data,
                       TrainConfig(iters_num=300, learning_rate=lr, optimizer=optimizer))
    assert history[-1].train_loss < 0.7 * history[0].train_loss
    assert history[-1].test_acc > 0.6


def test_the_training_step_is_traced_once_per_run(sample):
    # Python code in apply runs only while JAX traces it: count the traces.
    traces = {True: 0, False: 0, "init": 0}
    base = two_layer_net.model()

    def apply(params, state, x, *, key=None, train=False):
        traces[train] += 1
        return base.apply(params, state, x, key=key, train=train)

    def init(key):
        traces["init"] += 1
        return base.init(key)

    config = TrainConfig(iters_num=50, batch_size=100)  # 5 iterations an epoch, 10 epochs
    _, history = train(Model(init, apply), small(sample), config)
    assert [e.iteration for e in history] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    # One epoch loop; one evaluator each for train and test; one look at the scores' shapes, which
    # counts the classes. The cost estimate traces one step and the evaluation on one and on two
    # examples (which size the evaluation's chunks). The state's shapes are traced once for every
    # check (data, cost, memory), and the initialisation once more, as the program it compiles.
    assert traces == {True: 2, False: 5, "init": 2}


def test_how_epochs_are_split_into_calls_changes_nothing(sample):
    data = small(sample)
    config = TrainConfig(iters_num=230, batch_size=60, seed=1)  # 8 iterations an epoch, 29 epochs, the last short
    model = two_layer_net.model()
    runs = {}
    for name, kwargs in {"one epoch a call": {"seconds_per_call": 1e-9},
                         "growing calls": {"seconds_per_call": 3600},
                         "synced every 5": {"seconds_per_call": 3600, "sync_every": 5}}.items():
        calls = []
        state, history = train(model, data, config, on_epochs=lambda s, h: calls.append(len(h)), **kwargs)
        assert int(state.iteration) == history[-1].iteration == 230 and len(history) == 29
        runs[name] = state, history, calls
    assert runs["one epoch a call"][2] == list(range(1, 30))
    assert runs["growing calls"][2] == [1, 3, 7, 15, 29]  # calls of 1, 2, 4, 8, then the 14 left
    assert runs["synced every 5"][2] == [1, 3, 5, 10, 15, 20, 25, 29]  # never across a multiple of 5
    state, history, _ = runs["one epoch a call"]
    for other_state, other_history, _ in list(runs.values())[1:]:
        chex.assert_trees_all_equal(other_state.params, state.params)
        strip = lambda h: [(e.epoch, e.iteration, e.train_loss, e.train_acc, e.test_acc) for e in h]
        assert strip(other_history) == strip(history)
    with pytest.raises(ValueError, match="seconds_per_call must be a positive number, got 0"):
        train(model, data, config, seconds_per_call=0)
    with pytest.raises(ValueError, match="sync_every must be None or a positive integer, got 0"):
        train(model, data, config, sync_every=0)


class RecordingBar:
    """A tqdm-like bar that records each update and each postfix, in order."""

    def __init__(self):
        self.events = []

    def update(self, n):
        self.events.append(n)

    def set_postfix_str(self, text):
        self.events.append(text)


def test_step_progress_reports_every_step_from_inside_the_call_and_changes_nothing(sample):
    data = small(sample)
    config = TrainConfig(iters_num=20, batch_size=60, seed=3)  # 8 iterations an epoch: 8, 8, then 4
    model = two_layer_net.model(hidden_size=6)
    runs = {}
    for steps in (False, True):
        bar = RecordingBar()
        runs[steps] = train(model, data, config, progress=bar, seconds_per_call=3600, step_progress=steps), bar
    (state, history), quiet = runs[False]
    (state_ticked, history_ticked), ticked = runs[True]
    chex.assert_trees_all_equal(state_ticked.params, state.params)
    assert [(e.iteration, e.train_loss, e.test_acc) for e in history_ticked] == \
           [(e.iteration, e.train_loss, e.test_acc) for e in history]
    assert quiet.events == [8, 12]  # a call of 1 epoch, then one of the 2 left (8 and 4 iterations)
    # Every step by one, each epoch's evaluation announced and ended (the runtime may interleave an
    # evaluation's callbacks with the next epoch's steps), the total the same.
    assert ticked.events.count(1) == 20 and sum(e for e in ticked.events if isinstance(e, int)) == 20
    postfixes = [e for e in ticked.events if isinstance(e, str)]
    assert postfixes == ["evaluating", ""] * (len(postfixes) // 2) and 1 <= len(postfixes) // 2 <= 3
    assert ticked.events.index("evaluating") >= 7  # the first epoch's steps come before its evaluation
    assert quiet.events == [8, 12]  # a bar without ticks hears nothing of evaluations


def test_a_loss_that_diverges_inside_a_long_call_keeps_the_last_finite_epoch():
    x = np.zeros((200, 3), np.float32)
    t = np.zeros(200, np.int32)
    config = TrainConfig(iters_num=5000, batch_size=10, learning_rate=0.01)  # 20 iterations an epoch
    seen = []
    with pytest.raises(TrainingDiverged) as e:
        train(diverging_model(), ((x, t), (x, t)), config, seconds_per_call=3600,
              on_epochs=lambda s, h: seen.append((int(s.iteration), h[-1].iteration, float(s.params["w"]))))
    bad_epoch = int(re.search(r"\(epoch (\d+)\)", str(e.value)).group(1))
    last_good = int(re.search(r"parameters of iteration (\d+)", str(e.value)).group(1))
    assert last_good == 20 * (bad_epoch - 1)
    assert len(seen) < bad_epoch - 1  # calls of several epochs, the bad one inside the last
    assert seen[-1][:2] == (last_good, last_good) and 0 < seen[-1][2] < 5
    # What the last call handed over is exactly the state of a run stopped there.
    stopped, _ = train(diverging_model(), ((x, t), (x, t)), TrainConfig(
        iters_num=last_good, batch_size=10, learning_rate=0.01))
    assert float(stopped.params["w"]) == seen[-1][2]


def test_a_given_state_that_does_not_fit_the_model_is_named(sample):
    data, model, config = small(sample), two_layer_net.model(), TrainConfig(iters_num=5)
    state = bj.init_state(model, config)
    wide = state._replace(params={**state.params, "W1": state.params["W1"].astype(jnp.float64)})
    with pytest.raises(ValueError, match=r"state\.params\['W1'\] has shape \(784, 50\) and dtype float64, but "
                                         r"this model and optimizer make \(784, 50\) and float32"):
        train(model, data, config, state=wide)
    with pytest.raises(ValueError, match="state does not have the structure this model and optimizer make"):
        train(model, data, TrainConfig(iters_num=5, optimizer="adam"), state=state)
    trained, _ = train(model, data, config, state=state)  # the right one is taken as it is
    assert int(trained.iteration) == 5


def test_bad_data_is_named(sample):
    (x, t), test = small(sample)
    with pytest.raises(ValueError, match=r"train set: 500 inputs of shape \(500, 784\) but 499 labels"):
        train(two_layer_net.model(), ((x, t[:-1]), test), TrainConfig(iters_num=1))
    with pytest.raises(ValueError, match="train labels must be integers of shape"):
        train(two_layer_net.model(), ((x, t.astype(np.float32)), test), TrainConfig(iters_num=1))
    # Out of range: -1 would silently train class 9, and 10 would give a NaN loss.
    for bad, where in ((-1, 7), (10, 3)):
        wrong = t.copy()
        wrong[where] = bad
        with pytest.raises(ValueError, match=rf"train labels must be classes 0 to 9 \(the model scores 10\), "
                                             rf"got {bad} at index {where} \(1 such labels\)"):
            train(two_layer_net.model(), ((x, wrong), test), TrainConfig(iters_num=1))
    (xt, tt) = test
    with pytest.raises(ValueError, match=r"test labels must be classes 0 to 9 .*got 12 at index 0"):
        train(two_layer_net.model(), ((x, t), (xt, np.full_like(tt, 12))), TrainConfig(iters_num=1))


def test_evaluating_a_sample_each_epoch_as_the_books_trainer(sample):
    data = small(sample)
    model = two_layer_net.model()
    config = TrainConfig(iters_num=23, seed=2)  # 5 iterations an epoch: the last epoch is short
    sampled = TrainConfig(iters_num=23, seed=2, evaluate_sample_num_per_epoch=30)
    state, history = train(model, data, config)
    state_s, history_s = train(model, data, sampled)
    chex.assert_trees_all_equal(state_s.params, state.params)
    assert [e.train_loss for e in history_s] == [e.train_loss for e in history]
    # The book's Trainer: x[:30] each epoch; everything after the last.
    (x, t), (xt, tt) = data
    for e_s in history_s[:-1]:
        assert e_s.train_acc * 30 == pytest.approx(round(e_s.train_acc * 30))
    assert history_s[-1].train_acc == history[-1].train_acc == pytest.approx(
        float(model.accuracy(state.params, state.model_state, x, t)), abs=1e-6)
    assert history_s[-1].test_acc == history[-1].test_acc
    first_params, _ = train(model, data, TrainConfig(iters_num=5, seed=2))
    assert history_s[0].test_acc == pytest.approx(
        float(model.accuracy(first_params.params, first_params.model_state, xt[:30], tt[:30])), abs=1e-6)
    with pytest.raises(ValueError, match="evaluate_sample_num_per_epoch must be None or a positive integer"):
        TrainConfig(evaluate_sample_num_per_epoch=0)


def test_a_loss_that_explodes_without_becoming_nan_stops_training(sample):
    data = small(sample)
    config = TrainConfig(iters_num=500, learning_rate=1e4)  # the loss reaches about 5e10, never NaN
    with pytest.raises(TrainingDiverged, match=r"the loss has stayed above 10 times its starting value 2\.3\d* "
                                               r"for 3 epochs .* learning rate \(now sgd lr 10000\.0\)") as e:
        train(two_layer_net.model(), data, config)
    stopped_at = int(re.search(r"parameters of iteration (\d+)", str(e.value)).group(1))
    assert stopped_at < 500
    _, history = train(two_layer_net.model(), data, config, divergence_factor=None)  # turned off: it goes on
    assert history[-1].iteration == 500 and history[-1].train_loss > 23
    with pytest.raises(ValueError, match="divergence_factor must be None or a number above 1, got 0.5"):
        train(two_layer_net.model(), data, config, divergence_factor=0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"iters_num": 0}, "iters_num must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive number"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive number"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of sgd, momentum, nesterov, adagrad, rmsprop, adam"),
    ({"seed": 2 ** 32}, r"seed must be an integer from 0 to 2\*\*32 - 1 = 4294967295, got 4294967296"),
    ({"seed": 2 ** 64}, r"seed must be an integer from 0 to 2\*\*32 - 1"),
    ({"seed": -1}, r"seed must be an integer from 0 to 2\*\*32 - 1"),
])
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_the_default_learning_rate_follows_the_optimizer_through_replace():
    import dataclasses

    adam = TrainConfig(optimizer="adam")
    assert adam.learning_rate is None and adam.lr == bj.OPTIMIZERS["adam"].learning_rate == 0.001
    sgd = dataclasses.replace(adam, optimizer="sgd")
    assert sgd.lr == bj.OPTIMIZERS["sgd"].learning_rate == 0.1 and sgd.record()["learning_rate"] == 0.1
    assert dataclasses.replace(sgd, learning_rate=0.5).lr == 0.5
    assert dataclasses.replace(TrainConfig(learning_rate=0.5), optimizer="adam").lr == 0.5  # given: kept
    assert sgd.optimizer_name() == "sgd lr 0.1"


def test_weight_decay_applies_to_the_weights_each_layer_declares():
    from jax.example_libraries import stax
    from backprop_jax import nn
    model = nn.classifier(nn.serial(nn.from_stax(stax.Dense(32)), nn.Relu, nn.from_stax(stax.Dense(10))),
                          (784,), weight_decay_lambda=0.1)
    params, _ = model.init(jax.random.key(0))
    (W1, b1), (W2, b2) = params["stax1"], params["stax3"]
    assert W1.shape == (784, 32) and W2.shape == (32, 10)
    expected = 0.1 / 2 * (np.sum(np.asarray(W1, np.float64) ** 2) + np.sum(np.asarray(W2, np.float64) ** 2))
    assert float(model.penalty(params)) > 0
    np.testing.assert_allclose(float(model.penalty(params)), expected, rtol=1e-6)
    # The book's nets: W's only, not biases, not batch norm's gamma and beta.
    net = multi_layer_net.model(20, [8, 8], 3, use_batchnorm=True, weight_decay_lambda=0.1)
    p, _ = net.init(jax.random.key(0))
    assert [k for k, w in net.weight_mask(p).items() if w] == ["W1", "W2", "W3"]
    assert sorted(k for k, w in two_layer_net.model().weight_mask({"W1": 0, "b1": 0, "W2": 0, "b2": 0}).items()
                  if w) == ["W1", "W2"]


def test_any_model_trains_regression_and_one_hot_labels(tmp_path, sample):
    # A regression: y = x @ w_true, through the hand-ruled affine layer and a mean-squared criterion.
    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(5, 2)).astype(np.float32)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = x @ w_true
    model = Model(init=lambda key: ({"W": 0.01 * jax.random.normal(key, (5, 2)), "b": jnp.zeros(2)}, {}),
                  apply=lambda p, s, x, *, key=None, train=False: (bj.affine(x, p["W"], p["b"]), s),
                  criterion=lambda pred, t: jnp.mean(jnp.sum((pred - t) ** 2, axis=1)))
    assert not model.measures_accuracy()
    data = ((x[:300], y[:300]), (x[300:], y[300:]))
    state, history = run(model, data, TrainConfig(iters_num=600, batch_size=50), dataset="line",
                         settings={"model": "regression"}, out=tmp_path, progress=False, log=lambda *a: None)
    last = history[-1]
    assert last.test_acc is None and last.test_loss < 1e-4 and last.train_loss < 1e-4, last
    np.testing.assert_allclose(state.params["W"], w_true, atol=1e-2)
    assert last.line().startswith(f"epoch {last.epoch}: train loss")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["final_test_acc"] is None and metrics["final_test_loss"] == last.test_loss
    assert (tmp_path / "curves.png").exists()
    # The test loss is the mean over the whole test set, written out here.
    pred = np.asarray(data[1][0]) @ np.asarray(state.params["W"]) + np.asarray(state.params["b"])
    np.testing.assert_allclose(last.test_loss, np.mean(np.sum((pred - data[1][1]) ** 2, axis=1)), rtol=1e-4)
    # One-hot labels for the classifier train exactly as the integer labels do.
    small_data = small(sample)
    (xs, ts), (xt, tt) = small_data
    one_hot = ((xs, np.eye(10, dtype=np.float32)[ts]), (xt, np.eye(10, dtype=np.float32)[tt]))
    config = TrainConfig(iters_num=30)
    by_int, h_int = train(two_layer_net.model(), small_data, config)
    by_hot, h_hot = train(two_layer_net.model(), one_hot, config)
    np.testing.assert_allclose(by_hot.params["W1"], by_int.params["W1"], rtol=1e-5, atol=1e-7)
    assert h_hot[-1].test_acc == pytest.approx(h_int[-1].test_acc)
    bad = ((xs, np.full((len(xs), 10), 0.5, np.float32)), (xt, np.eye(10, dtype=np.float32)[tt]))
    with pytest.raises(ValueError, match="train one-hot labels: each row must be non-negative and sum to 1"):
        train(two_layer_net.model(), bad, config)
    with pytest.raises(ValueError, match=r"data must be \(\(x_train, t_train\), \(x_test, t_test\)\), got a tuple of 3"):
        train(two_layer_net.model(), (small_data[0], small_data[1], small_data[1]), config)
    with pytest.raises(ValueError, match="train labels must be integers of shape"):
        train(two_layer_net.model(), ((xs, ts.astype(np.float32)), (xt, tt)), config)


def test_non_finite_inputs_are_named_where_data_enters(sample):
    (x, t), (xt, tt) = small(sample)
    bad = xt.copy()
    bad[[4, 9, 11]] = np.nan
    with pytest.raises(ValueError, match="test inputs hold NaN or infinite values: 3 of 200 examples, the first "
                                         "at index 4"):
        train(two_layer_net.model(), ((x, t), (bad, tt)), TrainConfig(iters_num=5))
    inf = x.copy()
    inf[7, 3] = np.inf
    with pytest.raises(ValueError, match="train inputs hold NaN or infinite values: 1 of 500 examples, the first "
                                         "at index 7"):
        train(two_layer_net.model(), ((inf, t), (xt, tt)), TrainConfig(iters_num=5))


def test_training_that_cannot_fit_the_device_is_refused_from_shapes(sample):
    with pytest.raises(ValueError, match=r"training needs at least .* the largest product of one step for a batch of 1000000000 .*"
                                         r"more than the .* cpu device has"):
        train(two_layer_net.model(), small(sample), TrainConfig(iters_num=1, batch_size=10 ** 9))


def test_a_grown_run_has_the_history_of_an_uninterrupted_one(sample):
    data, model = small(sample), two_layer_net.model()  # 5 iterations an epoch
    whole, whole_history = train(model, data, TrainConfig(iters_num=40))
    # Stopped at 23, inside the fifth epoch, then grown to 40: the fifth epoch is completed, not doubled.
    part, part_history = train(model, data, TrainConfig(iters_num=23))
    assert [e.iteration for e in part_history] == [5, 10, 15, 20, 23]
    grown, grown_history = train(model, data, TrainConfig(iters_num=40), state=part, history=part_history)
    assert [e.iteration for e in grown_history] == [e.iteration for e in whole_history] == list(range(5, 41, 5))
    assert [e.epoch for e in grown_history] == list(range(1, 9))
    np.testing.assert_array_equal(grown.params["W1"], whole.params["W1"])
    for g, w in zip(grown_history, whole_history):
        assert g.test_acc == w.test_acc and g.train_acc == w.train_acc
        assert g.train_loss == pytest.approx(w.train_loss, rel=1e-6)
    # With a sample evaluated each epoch, the epoch that was last before growing is a middle epoch now.
    sampled = dict(evaluate_sample_num_per_epoch=30)
    _, uninterrupted = train(model, data, TrainConfig(iters_num=40, **sampled))
    first, first_history = train(model, data, TrainConfig(iters_num=20, **sampled))
    assert first_history[-1].train_acc != uninterrupted[3].train_acc  # evaluated on all 500, as the last
    _, continued = train(model, data, TrainConfig(iters_num=40, **sampled), state=first, history=first_history)
    assert [(e.train_acc, e.test_acc) for e in continued] == [(e.train_acc, e.test_acc) for e in uninterrupted]


def test_a_model_chooses_its_batch_order_and_the_trainer_follows_it(sample):
    # shuffled_rows: each epoch a permutation (the sequel's Trainer), its rows batch after batch.
    n, b = 25, 10  # two batches an epoch; five rows left out of each
    epoch0 = np.concatenate([np.asarray(bj.shuffled_rows(3, i, b, n)) for i in range(2)])
    epoch1 = np.concatenate([np.asarray(bj.shuffled_rows(3, i, b, n)) for i in range(2, 4)])
    for rows in (epoch0, epoch1):
        assert len(set(rows.tolist())) == 2 * b and rows.min() >= 0 and rows.max() < n  # no repeats in an epoch
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(bj.shuffled_rows(3, 2, b, n), bj.shuffled_rows(3, 2, b, n))
    # Through the trainer: the batches are the ones the model's batch_rows names, on either feed.
    (x, t), test = small(sample, 40, 20)
    seen = []
    base = two_layer_net.model()

    def rows(seed, iteration, batch_size, n):
        return (jnp.arange(batch_size) * 3 + iteration) % n  # an order no other code draws

    ordered = base._replace(batch_rows=rows)
    config = TrainConfig(iters_num=6, batch_size=8, seed=2)
    for feed in ("device", "host"):
        state, _ = train(ordered, ((x, t), test), config, feed=feed)
        seen.append(state.params)
    params = bj.init_state(base, config).params
    for i in range(6):  # plain SGD over the batches rows() names
        r = np.asarray(rows(2, i, 8, 40))
        grads = jax.grad(lambda p: base.loss(p, {}, x[r], t[r])[0])(params)
        params = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    for got in seen:
        for k in params:
            np.testing.assert_allclose(got[k], params[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_compiling_is_timed_apart_from_training(sample):
    model = two_layer_net.model(hidden_size=23)  # a program no other test compiles
    config = TrainConfig(iters_num=30, batch_size=100)
    _, first = train(model, small(sample), config)
    _, again = train(model, small(sample), config)  # the same program: kept, not compiled again
    assert first[0].compile_seconds > 0 and all(e.compile_seconds == 0 for e in first[1:])
    assert again[0].compile_seconds == 0
    # The epochs' clock leaves it out: the first epoch took less than its compiling did.
    assert first[0].seconds < first[0].compile_seconds


@pytest.mark.parametrize("kwargs, message", [
    (dict(learning_rate=True), "learning_rate must be a positive number, got True"),
    (dict(iters_num=2 ** 31), r"iters_num must be at most 2\*\*31 - 1 = 2147483647 \(the compiled loop counts it"),
    (dict(batch_size=10 ** 12), r"batch_size must be at most 2\*\*31 - 1 = 2147483647"),
])
def test_settings_the_compiled_loop_cannot_hold_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)
    TrainConfig(iters_num=2 ** 31 - 1)  # the largest is taken


def test_seq2seq_ids_outside_the_vocabulary_are_refused():
    from backprop_jax.nets import seq2seq

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (8, 6)).astype(np.int32)
    x[3, 1], x[5, 0] = 7, 5  # a question id past vocab_size 5: an embedding lookup would clip it silently
    model = seq2seq.model(5, 3, wordvec_size=4, hidden_size=4)
    with pytest.raises(ValueError, match=r"train inputs hold ids outside 0 to 4 \(the model's vocabulary\): 2 of 8 "
                                         r"examples, the first at index 3 \(ids 7\)"):
        train(model, ((x, x[:, 3:]), (x[:2] % 5, x[:2, 3:] % 5)), TrainConfig(iters_num=1, batch_size=2))
