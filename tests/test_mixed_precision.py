"""Mixed precision (bfloat16 compute, float32 master weights and loss) as a model wrapper: its
gradients against autodiff of the same net in float64, the computation really in bfloat16, and
the trainer training it unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj


@pytest.fixture(scope="module")
def batch(sample):
    (x, t), _ = sample
    return jnp.asarray(x[:16], jnp.float32), jnp.asarray(t[:16])


def test_mixed_precision_gradients_against_float64(batch):
    x, t = batch
    model = bj.two_layer_net.model(weight_init_std=0.3)
    params, state = model.init(jax.random.key(0))
    mixed = bj.mixed_precision(model)
    # The reference: the same net, no casts, in float64 (gradcheck runs references on an upcast copy).
    # The tolerance is bfloat16's: atol 2e-2 is 1.6% of the largest gradient (1.24, W2).
    report = bj.gradcheck(mixed.loss_fn(state), params, x, t, reference=model.loss_fn(state), numeric=False,
                          argnums=0, rtol=5e-2, atol=2e-2)
    assert report.ok, report
    grads = jax.grad(mixed.loss_fn(state))(params, x, t)
    assert all(g.dtype == jnp.float32 for g in grads.values())  # the master weights' dtype
    exact = jax.grad(model.loss_fn(state))(jax.tree.map(lambda a: a.astype(jnp.float64), params),
                                           x.astype(jnp.float64), t)
    worst = max(float(jnp.max(jnp.abs(grads[k] - exact[k])) / jnp.max(jnp.abs(exact[k]))) for k in grads)
    assert 1e-5 < worst < 5e-2  # bfloat16's rounding: visible, and small
    # A wrong tolerance must not hide a wrong gradient: scaled by 1.1, it fails.
    wrong = bj.gradcheck(lambda p, x, t: 1.1 * mixed.loss_fn(state)(p, x, t), params, x, t,
                         reference=model.loss_fn(state), numeric=False, argnums=0, rtol=5e-2, atol=2e-2)
    assert not wrong.ok


def test_the_forward_runs_in_bfloat16_and_the_loss_in_float32(batch):
    x, t = batch
    model = bj.mixed_precision(bj.conv_net.model(filter_num=4, hidden_size=8))
    params, state = model.init(jax.random.key(0))
    jaxpr = str(jax.make_jaxpr(model.loss_fn(state))(params, x, t))
    assert "bf16[" in jaxpr and "dot_general" in jaxpr
    loss = model.loss_fn(state)(params, x, t)
    assert loss.dtype == jnp.float32 and np.isfinite(float(loss))
    assert model.predict(params, state, x).dtype == jnp.float32


def test_the_trainer_trains_it_unchanged(sample):
    (x, t), (xt, tt) = sample
    data = ((x[:1000], t[:1000]), (xt[:200], tt[:200]))
    state, history = bj.train(bj.mixed_precision(bj.two_layer_net.model()), data, bj.TrainConfig(iters_num=200))
    assert all(p.dtype == jnp.float32 for p in state.params.values())
    assert history[-1].test_acc > 0.6 and history[-1].train_loss < history[0].train_loss


def test_a_compute_dtype_that_is_not_floating_point_is_refused():
    with pytest.raises(ValueError, match="compute_dtype must be a floating-point dtype, got int32"):
        bj.mixed_precision(bj.two_layer_net.model(), jnp.int32)
