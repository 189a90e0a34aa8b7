"""Property tests: random shapes, batch sizes and dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

import backprop_jax as bj
from conftest import assert_close, normal

dtypes = st.sampled_from([jnp.float32, jnp.float64])
SETTINGS = settings(max_examples=6, deadline=None)


@SETTINGS
@given(n=st.integers(1, 7), dims=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       m=st.integers(1, 6), dtype=dtypes, seed=st.integers(0, 2**16))
def test_affine_any_shape(n, dims, m, dtype, seed):
    x_shape = (n, *dims)
    D = int(np.prod(dims))
    x, W, b = normal(seed, x_shape, dtype), normal(seed + 1, (D, m), dtype), normal(seed + 2, (m,), dtype)
    dout = normal(seed + 3, (n, m), dtype)
    hand = jax.grad(lambda *a: jnp.sum(dout * bj.affine(*a)), argnums=(0, 1, 2))(x, W, b)
    ref = jax.grad(lambda x, W, b: jnp.sum(dout * (jnp.tensordot(x, W.reshape(*dims, m), axes=len(dims)) + b[None, :])),
                   argnums=(0, 1, 2))(x, W, b)
    for h, r in zip(hand, ref):
        assert_close(h, r, dtype)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=0, max_size=3), data=st.data(), dtype=dtypes,
       seed=st.integers(0, 2**16))
def test_mul_add_reduce_cotangents_to_input_shapes(shape, data, dtype, seed):
    # y's shape: a random suffix of x's shape with random axes set to 1.
    k = data.draw(st.integers(0, len(shape)))
    y_shape = tuple(1 if data.draw(st.booleans()) else s for s in shape[len(shape) - k:])
    x, y = normal(seed, tuple(shape), dtype), normal(seed + 1, y_shape, dtype)
    dout = normal(seed + 2, tuple(shape), dtype)
    with jax.numpy_rank_promotion("allow"):
        for op, expr in [(bj.mul, jnp.multiply), (bj.add, jnp.add)]:
            hand = jax.grad(lambda a, b: jnp.sum(dout * op(a, b)), argnums=(0, 1))(x, y)
            ref = jax.grad(lambda a, b: jnp.sum(dout * expr(a, b)), argnums=(0, 1))(x, y)
            assert hand[0].shape == x.shape and hand[1].shape == y.shape
            assert_close(hand[0], ref[0], dtype)
            assert_close(hand[1], ref[1], dtype)


@SETTINGS
@given(n=st.integers(1, 9), c=st.integers(2, 12), scale=st.sampled_from([1.0, 30.0, 1e3]), dtype=dtypes,
       seed=st.integers(0, 2**16))
def test_softmax_with_loss_any_batch(n, c, scale, dtype, seed):
    x = normal(seed, (n, c), dtype) * scale
    t = jax.random.randint(jax.random.key(seed), (n,), 0, c)
    hand = jax.grad(bj.softmax_with_loss)(x, t)
    ref = jax.grad(lambda x: -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(x), t[:, None], axis=1)))(x)
    assert bool(jnp.all(jnp.isfinite(hand)))
    # Rows of the gradient sum to zero: softmax minus a one-hot row.
    np.testing.assert_allclose(np.asarray(hand, np.float64).sum(axis=1), 0.0, atol=1e-5 if dtype == jnp.float32 else 1e-12)
    assert_close(hand, ref, dtype)


@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**16))
def test_activations_gradcheck_any_shape(shape, seed):
    x = normal(seed, tuple(shape)) * 2
    x = jnp.where(jnp.abs(x) < 1e-3, 1.0, x)  # keep central differences off relu's kink
    assert bj.gradcheck(bj.relu, x).ok
    assert bj.gradcheck(bj.sigmoid, x).ok
