"""What training costs, from shapes alone: the values and FLOPs a traced function computes
(``computed_values``), the estimate of a step and an evaluation (``estimate_cost``), the memory
check that refuses what cannot fit (``check_memory``), and the device's own out-of-memory
failure as one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from backprop_jax import (
    DeviceOutOfMemory, TrainConfig, check_memory, computed_values, conv_net, count_correct, estimate_cost,
    eval_chunks, evaluation_sets, init_state, make_epochs_fn, train, two_layer_net)
from backprop_jax.cli import main
from conftest import small

F32 = jnp.float32


def shapes(*dims):
    return [jax.ShapeDtypeStruct(d, F32) for d in dims]


def test_a_matrix_product_is_its_output_and_two_flops_per_multiply_add():
    values = computed_values(jax.make_jaxpr(lambda a, b: a @ b)(*shapes((3, 4), (4, 5))))
    assert values.bytes == values.largest == values.largest_product == 3 * 5 * 4
    assert values.flops == 2 * 3 * 5 * 4  # 15 outputs, each 4 multiply-adds


def test_a_value_no_output_needs_is_left_out_as_xla_leaves_it_out():
    def f(a, b):
        unused = a.T @ a  # noqa: F841 - traced, never read
        return a @ b
    values = computed_values(jax.make_jaxpr(f)(*shapes((3, 4), (4, 5))))
    assert values.bytes == 3 * 5 * 4 and values.flops == 2 * 3 * 5 * 4


def test_a_scan_body_counts_once_per_step():
    def f(c, w):
        return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), c, None, length=5)[0]
    values = computed_values(jax.make_jaxpr(f)(*shapes((3, 4), (4, 4))))
    step_bytes, step_flops = 2 * 3 * 4 * 4, 2 * 3 * 4 * 4 + 3 * 4  # the product and its tanh
    assert values.bytes == 5 * step_bytes and values.flops == 5 * step_flops
    assert values.largest == values.largest_product == 3 * 4 * 4  # one step's product at a time


def test_a_custom_vjp_layer_is_walked_into():
    @jax.custom_vjp
    def twice_sin(x):
        return 2 * jnp.sin(x)

    def twice_sin_fwd(x):
        return twice_sin(x), jnp.cos(x)

    def twice_sin_bwd(cos_x, dout):
        return (2 * cos_x * dout,)

    twice_sin.defvjp(twice_sin_fwd, twice_sin_bwd)
    values = computed_values(jax.make_jaxpr(twice_sin)(*shapes((6,))))
    assert values.bytes == 2 * 6 * 4 and values.flops == 2 * 6  # sin, then the product by 2
    assert values.largest_product == 0  # a product by one number is elementwise


def test_a_convolution_contracts_its_window_and_input_features():
    def f(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID")
    values = computed_values(jax.make_jaxpr(f)(*shapes((1, 2, 5, 5), (3, 2, 3, 3))))
    assert values.bytes == values.largest_product == 1 * 3 * 3 * 3 * 4
    assert values.flops == 2 * (3 * 3 * 3) * (2 * 3 * 3)  # 27 outputs, each 2 x 3 x 3 multiply-adds


def test_one_cond_branch_runs_the_dearest_counted():
    def f(p, x):
        return jax.lax.cond(p, lambda x: jnp.sin(jnp.cos(x)), jnp.sin, x)
    values = computed_values(jax.make_jaxpr(f)(jax.ShapeDtypeStruct((), bool), *shapes((6,))))
    assert values.bytes == 2 * 6 * 4 + 4 and values.flops == 2 * 6  # and the predicate as an int32 index


def test_a_two_layer_step_is_the_hand_count_of_its_products(sample):
    cost = estimate_cost(two_layer_net.model(), sample, TrainConfig())
    # Forward x W1, h W2; backward dW2, dh, dW1 (dx is never needed): batch 100, 784-50-10.
    products = 2 * 100 * 50 * (784 + 10 + 10 + 10 + 784)
    assert products <= cost.step.flops <= 1.02 * products  # the rest: a few elementwise ops per value
    assert cost.evaluation_flops >= 2 * 5000 * 50 * (784 + 10)  # both sets' forward products
    assert cost.first_epoch_steps == 40 and not cost.slow_step


def test_evaluation_chunks_follow_the_values_each_example_computes(sample):
    (x, t), (xt, tt) = small(sample, 20, 10)
    images = ((x.reshape(-1, 1, 28, 28), t), (xt.reshape(-1, 1, 28, 28), tt))
    huge = estimate_cost(conv_net.model(pad=300), images, TrainConfig(batch_size=10))
    assert huge.evaluation_chunk == 1 and huge.chunk.bytes > 2 ** 28  # one padded image: ~860 MB of values
    book = estimate_cost(conv_net.model(), sample, TrainConfig(optimizer="adam"))
    assert book.largest_chunk == 200 and book.chunk.bytes <= 2 ** 28  # the 4,000 and 1,000 images in 20 and 5
    assert estimate_cost(two_layer_net.model(), sample, TrainConfig()).evaluation_chunk == 10_000  # as before


def test_a_set_is_split_into_as_few_chunks_as_hold_it_all_of_one_size():
    x, t = np.zeros((10, 3), np.float32), np.arange(10)
    assert eval_chunks(x, t, chunk=6)[0].shape == (2, 5, 3)  # not 6 and 4 padded to 6
    xs, ts = eval_chunks(x, t, chunk=4)
    assert xs.shape == (3, 4, 3) and list(np.asarray(ts).ravel()[-2:]) == [-1, -1]  # padding never matches
    assert eval_chunks(x, t)[0].shape == (1, 10, 3)


def test_chunked_evaluation_counts_exactly_what_one_pass_counts(sample, monkeypatch):
    monkeypatch.setattr("backprop_jax.training._placement._EVAL_CHUNK_BYTES", 2 ** 14)  # a budget of 16 kB
    data, model, config = small(sample, 300, 100), two_layer_net.model(), TrainConfig(iters_num=3)
    assert 10 < estimate_cost(model, data, config).evaluation_chunk < 100  # several chunks, the last padded
    state, history = train(model, data, config)
    (x, t), (xt, tt) = data
    for (inputs, labels), acc in (((x, t), history[-1].train_acc), ((xt, tt), history[-1].test_acc)):
        right = count_correct(model.predict(state.params, state.model_state, jnp.asarray(inputs)), labels)
        assert round(acc * len(inputs)) == int(right)


def test_what_cannot_fit_is_refused_naming_the_parts(sample, monkeypatch):
    monkeypatch.setattr("backprop_jax.training._memory._available_memory", lambda device: 8 * 10 ** 9)
    with pytest.raises(ValueError, match=r"training needs at least 1\d\.\d GB \(parameters and optimiser state, "
                                         r"twice 7.\d\d GB, data .* MB, the largest product of one step for a batch "
                                         r"of 100 4.67 GB\), more than the 8 GB the cpu device has"):
        check_memory(conv_net.model(pad=300), sample, TrainConfig(optimizer="adam"))


@pytest.mark.parametrize("model, config", [(two_layer_net.model(), TrainConfig()),
                                           (conv_net.model(), TrainConfig(optimizer="adam"))])
def test_the_book_nets_fit(sample, model, config):
    parts = check_memory(model, sample, config)
    assert sum(parts.values()) < 10 ** 8


@pytest.mark.parametrize("model, all_values_exceed", [(two_layer_net.model(), False),
                                                     (conv_net.model(filter_num=4, hidden_size=10, pad=2), True)])
def test_the_memory_figure_is_at_most_what_xla_allocates(sample, model, all_values_exceed):
    data, config = small(sample), TrainConfig(iters_num=5, optimizer="adam")
    parts = check_memory(model, data, config)
    cost = estimate_cost(model, data, config)
    (x, t), (xt, tt) = data
    program = jax.jit(make_epochs_fn(model, config, 5, len(x), len(xt)))
    state = init_state(model, config)
    args = (state, jnp.int32(1), (jnp.asarray(x), jnp.asarray(t)),
            evaluation_sets((x, t), (xt, tt), chunk=cost.evaluation_chunk))
    memory = program.lower(*args).compile().memory_analysis()
    allocated = memory.argument_size_in_bytes + memory.output_size_in_bytes + memory.temp_size_in_bytes
    assert 0 < sum(parts.values()) <= allocated
    # Every value of a step added up is no such bound: XLA fuses and reuses most of the conv net's.
    assert (cost.step.bytes > allocated) == all_values_exceed


def test_a_huge_convolution_is_one_line_from_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr("backprop_jax.training._memory._available_memory", lambda device: 8 * 10 ** 9)
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", "convnet", "--pad", "300", "--iters", "2", "--no-progress"])
    message = str(e.value.code)
    assert message.startswith("backprop-jax: error: training needs at least ") and "\n" not in message
    assert message.endswith("use a smaller --batch-size or model")
    assert "estimated cost" not in capsys.readouterr().out  # a refused run is not announced


def _out_of_memory_on_call(monkeypatch, call):
    """The training program's ``call``-th call fails as a device out of memory does."""
    from backprop_jax.training import PROGRAMS

    compiled, calls = PROGRAMS.compiled, []

    def failing(program, args):
        executable, fresh = compiled(program, args)

        def run(*a):
            calls.append(1)
            if len(calls) == call:
                raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 623001607264 bytes.")
            return executable(*a)
        return run, fresh
    monkeypatch.setattr(PROGRAMS, "compiled", failing)


def test_a_device_out_of_memory_is_one_error_naming_the_allocation(sample, monkeypatch):
    _out_of_memory_on_call(monkeypatch, 1)
    with pytest.raises(DeviceOutOfMemory, match=r"^the cpu device ran out of memory in training: allocating "
                                                r"623 GB failed$") as e:
        train(two_layer_net.model(), small(sample), TrainConfig(iters_num=5))
    assert e.value.allocation == 623001607264 and e.value.what == "training"


def test_out_of_memory_in_an_experiment_is_one_line(tmp_path, monkeypatch):
    _out_of_memory_on_call(monkeypatch, 1)
    with pytest.raises(SystemExit) as e:
        main(["compare-optimizers", "--out", str(tmp_path), "--iters", "2"])
    assert str(e.value.code) == "backprop-jax: error: the cpu device ran out of memory in training: allocating " \
                                "623 GB failed"


def test_out_of_memory_from_the_command_line_is_one_line_and_keeps_the_checkpoints(tmp_path, monkeypatch, capsys):
    _out_of_memory_on_call(monkeypatch, 2)  # after the first epoch's checkpoint
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["train", "--iters", "80", "--checkpoint-every", "1", "--checkpoint-interval", "0", "--no-progress",
              "--out", str(out)])
    assert str(e.value.code) == (f"backprop-jax: error: the cpu device ran out of memory in training: allocating "
                                 f"623 GB failed; the checkpoints written before it are kept in {out}")
    assert "40" in {p.name for p in (out / "checkpoints").iterdir()}
    capsys.readouterr()
    monkeypatch.setattr("backprop_jax.nets.count_correct", lambda *a: (_ for _ in ()).throw(
        jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 4096 bytes")))
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--params", str(out)])
    assert str(e.value.code) == "backprop-jax: error: the cpu device ran out of memory in evaluation: allocating " \
                                "4.1 kB failed"


def test_a_long_first_epoch_is_announced_before_compiling(monkeypatch, capsys):
    monkeypatch.setattr("backprop_jax.training._cost.device_flops_per_second", lambda dtype: 1e5)
    monkeypatch.setattr("backprop_jax.training._cost._SLOWEST_RATE", {None: 1e5})
    main(["train", "--iters", "2", "--no-progress"])
    lines = capsys.readouterr().out.splitlines()
    estimate = next(i for i, line in enumerate(lines) if line.startswith("estimated cost: "))
    assert lines[estimate - 1].startswith("training ") and lines[estimate + 1].startswith("epoch 1")
    assert "16.1 MFLOP a step" in lines[estimate] and "the first epoch (2 steps and an evaluation)" in lines[estimate]
