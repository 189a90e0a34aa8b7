"""The batched Affine layer (sec. 5.6.2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import DTYPES, TRANSFORMS, assert_close, normal


def reference_affine(x, W, b):
    """Written here, independently of the library: flatten, matmul, add bias."""
    return jnp.einsum("nd,dm->nm", x.reshape(x.shape[0], -1), W) + b[None, :]


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(5, 4), (3, 2, 2), (2, 1, 2, 2)])
def test_gradients_match_independent_autodiff(transform, dtype, x_shape):
    D = int(np.prod(x_shape[1:]))
    x, W, b = normal(0, x_shape, dtype), normal(1, (D, 3), dtype), normal(2, (3,), dtype)
    dout = normal(3, (x_shape[0], 3), dtype)
    hand = transform(jax.grad(lambda x, W, b: jnp.sum(dout * bj.affine(x, W, b)), argnums=(0, 1, 2)))(x, W, b)
    up = lambda a: a.astype(jnp.float64)
    ref = jax.grad(lambda x, W, b: jnp.sum(up(dout) * reference_affine(x, W, b)), argnums=(0, 1, 2))(
        up(x), up(W), up(b))
    for h, r, inp in zip(hand, ref, (x, W, b)):
        assert h.shape == inp.shape and h.dtype == dtype
        assert_close(h, r, dtype)
    assert_close(bj.affine(x, W, b), reference_affine(up(x), up(W), up(b)), dtype)


def test_backward_by_hand_is_the_books_formulas():
    x, W, b = normal(0, (4, 3)), normal(1, (3, 2)), normal(2, (2,))
    out, res = bj.affine.fwd(x, W, b)
    dout = normal(3, (4, 2))
    dx, dW, db = bj.affine.bwd(res, dout)
    xn, Wn, doutn = (np.asarray(a) for a in (x, W, dout))
    np.testing.assert_allclose(dx, doutn @ Wn.T, rtol=1e-12)
    np.testing.assert_allclose(dW, xn.T @ doutn, rtol=1e-12)
    np.testing.assert_allclose(db, doutn.sum(axis=0), rtol=1e-12)


def test_unused_input_gradient_is_removed_under_jit():
    # Training never needs dx of the first layer; XLA must drop its matmul.
    x, W, b = normal(0, (8, 6)), normal(1, (6, 4)), normal(2, (4,))
    grad_W = jax.jit(jax.grad(lambda W, b, x: jnp.sum(bj.affine(x, W, b)), argnums=(0, 1)))
    hlo = grad_W.lower(W, b, x).compile().as_text()
    # Forward (x @ W) and dW (x.T @ dout) remain; dx (dout @ W.T) is gone.
    assert hlo.count(" dot(") <= 2, hlo


@pytest.mark.parametrize("args, message", [
    (((5, 4), (3, 2), (2,)), r"x of shape \(5, 4\) flattens to \(N, D\) with D = 4, but W of shape \(3, 2\) expects D = 3"),
    (((5, 4), (4, 2), (3,)), r"b of shape \(3,\) does not match the 2 columns of W of shape \(4, 2\)"),
    (((4,), (4, 2), (2,)), r"x must have shape \(N, d1, ...\) with a leading batch axis, got shape \(4,\)"),
    (((5, 4), (4,), (2,)), r"W must have shape \(D, M\), got shape \(4,\)"),
    (((5, 4), (4, 2), (1, 2)), r"b must have shape \(M,\), got shape \(1, 2\)"),
])
def test_bad_shapes_are_named_at_trace_time(args, message):
    arrays = [jnp.ones(s) for s in args]
    with pytest.raises(ValueError, match=message):
        jax.jit(bj.affine)(*arrays)


def test_integer_weights_are_a_type_error():
    with pytest.raises(TypeError, match=r"affine: W must be a real floating-point array"):
        bj.affine(jnp.ones((2, 3)), jnp.ones((3, 2), jnp.int32), jnp.ones(2))


def test_nested_lists_are_read_as_arrays():
    out = bj.affine([[1.0, 2.0]], [[1.0], [2.0]], [0.5])
    np.testing.assert_allclose(out, [[5.5]])  # 1*1 + 2*2 + 0.5
