"""Every layer under jit, vmap and reverse-over-reverse, and proof the hand rule runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from conftest import DTYPES, assert_close, normal

LABELS = jnp.array([1, 0, 2, 2])
KEY = jax.random.key(3)
BN_STATE = {"running_mean": jnp.zeros(6), "running_var": jnp.ones(6)}


def plain_batch_norm(x, gamma, beta, eps=1e-6):
    mu = x.mean(axis=0)
    xc = x - mu[None, :]
    return gamma[None, :] * xc / jnp.sqrt((xc ** 2).mean(axis=0)[None, :] + eps) + beta[None, :]


def plain_convolution(x, W, b):  # stride 1, pad 1
    out = jax.lax.conv_general_dilated(x, W, (1, 1), [(1, 1), (1, 1)], precision="highest")
    return out + b[None, :, None, None]


def plain_max_pooling(x):  # 2x2 windows, stride 2
    N, C, H, W = x.shape
    return x.reshape(N, C, H // 2, 2, W // 2, 2).max(axis=(3, 5))


def dropout_mask(shape):
    """Which units the layer keeps, read off its forward on ones (not its backward)."""
    return bj.dropout(jnp.ones(shape), KEY, 0.4, True) != 0


# name -> (layer, how the tests call it, independent plain-jnp expression, argument builder)
CASES = {
    "mul": (bj.mul, bj.mul, lambda x, y: x * y, lambda d: (normal(0, (4, 3), d), normal(1, (4, 3), d))),
    "add": (bj.add, bj.add, lambda x, y: x + y, lambda d: (normal(0, (4, 3), d), normal(1, (4, 3), d))),
    "relu": (bj.relu, bj.relu, lambda x: jnp.maximum(x, 0.0), lambda d: (normal(0, (4, 3), d),)),
    "sigmoid": (bj.sigmoid, bj.sigmoid, lambda x: 1 / (1 + jnp.exp(-x)), lambda d: (normal(0, (4, 3), d),)),
    "affine": (bj.affine, bj.affine, lambda x, W, b: x.reshape(x.shape[0], -1) @ W + b[None, :],
               lambda d: (normal(0, (4, 2, 3), d), normal(1, (6, 3), d), normal(2, (3,), d))),
    "softmax_with_loss": (
        bj.softmax_with_loss, bj.softmax_with_loss,
        lambda x, t: -jnp.mean(jnp.sum(jax.nn.one_hot(t, 3, dtype=x.dtype) * (x - jnp.log(jnp.sum(jnp.exp(x), axis=1, keepdims=True))), axis=1)),
        lambda d: (normal(0, (4, 3), d), LABELS)),
    "weight_decay": (bj.weight_decay, lambda W1, W2: bj.weight_decay([W1, W2], 0.1),
                     lambda W1, W2: 0.05 * (jnp.sum(W1 ** 2) + jnp.sum(W2 ** 2)),
                     lambda d: (normal(0, (4, 3), d), normal(1, (3,), d))),
    "dropout": (bj.dropout, lambda x: bj.dropout(x, KEY, 0.4, True),
                lambda x: jnp.where(dropout_mask(x.shape), x, 0.0), lambda d: (normal(0, (4, 3), d),)),
    "batch_norm": (bj.batch_norm,
                   lambda x, g, b: bj.batch_norm(x, g, b, jax.tree.map(lambda s: s.astype(x.dtype), BN_STATE), True)[0],
                   plain_batch_norm, lambda d: (normal(0, (5, 6), d) * 2 + 1, normal(1, (6,), d) + 1, normal(2, (6,), d))),
    "convolution": (bj.convolution, lambda x, W, b: bj.convolution(x, W, b, 1, 1), plain_convolution,
                    lambda d: (normal(0, (2, 3, 4, 4), d), normal(1, (2, 3, 3, 3), d), normal(2, (2,), d))),
    "max_pooling": (bj.max_pooling, lambda x: bj.max_pooling(x, 2, 2, 2, 0), plain_max_pooling,
                    lambda d: (normal(0, (2, 2, 4, 4), d),)),
}


def float_argnums(args):
    return tuple(i for i, a in enumerate(args) if jnp.issubdtype(a.dtype, jnp.floating))


def scalar_loss(f, dout):
    return lambda *a: jnp.sum(dout * f(*a))


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vmap_of_grad_matches_per_example_loop(name, dtype):
    _, layer, expr, make = CASES[name]
    args = make(dtype)
    stacked = tuple(jnp.stack([a, a * 0.5 if jnp.issubdtype(a.dtype, jnp.floating) else a]) for a in args)
    argnums = float_argnums(args)
    g = jax.grad(lambda *a: jnp.sum(layer(*a)), argnums=argnums)
    vmapped = jax.jit(jax.vmap(g))(*stacked)
    for k in range(2):
        one = tuple(s[k] for s in stacked)
        ref = jax.grad(lambda *a: jnp.sum(expr(*a)), argnums=argnums)(
            *(a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in one))
        for v, r in zip(vmapped, ref):
            assert_close(v[k], r, dtype)


@pytest.mark.parametrize("name", CASES)
def test_grad_of_grad_matches_independent_expression(name):
    _, layer, expr, make = CASES[name]
    args = make(jnp.float64)
    argnums = float_argnums(args)
    dout = normal(7, jax.eval_shape(layer, *args).shape)

    def second(f):
        # Reverse over reverse: the gradient of a scalar function of the gradient.
        def inner(*a):
            grads = jax.grad(scalar_loss(f, dout), argnums=argnums)(*a)
            return sum(jnp.sum(jnp.sin(g)) for g in grads)
        return jax.jit(jax.grad(inner, argnums=argnums))(*args)

    for h, r in zip(second(layer), second(expr)):
        np.testing.assert_allclose(h, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_forward_mode_is_refused_with_a_clear_error(name):
    _, layer, _, make = CASES[name]
    args = make(jnp.float64)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jacfwd(layer, argnums=float_argnums(args))(*args)


@pytest.mark.parametrize("name", CASES)
def test_the_hand_rule_is_the_one_jax_grad_runs(name, monkeypatch):
    # Swap the layer's registered backward for one that records its calls and
    # doubles its result: jax.grad must see both effects.
    layer, fn, _, make = CASES[name]
    args = make(jnp.float64)
    argnums = float_argnums(args)
    loss = lambda *a: jnp.sum(jnp.cos(fn(*a)))
    before = jax.grad(loss, argnums=argnums)(*args)
    calls, original = [], layer.bwd

    def doubled(*args):  # (*static arguments, residuals, dout)
        calls.append(1)
        return jax.tree.map(lambda d: 2 * d, original(*args))

    monkeypatch.setattr(layer, "bwd", doubled)
    after = jax.grad(loss, argnums=argnums)(*args)
    assert calls, "the registered backward rule was not called"
    for b, a in zip(before, after):
        np.testing.assert_allclose(a, 2 * b, rtol=1e-14)


def test_forward_over_reverse_works_through_the_hand_rules_and_forward_alone_does_not():
    x, v = jnp.array([0.3, -0.2, 1.0]), jnp.array([1.0, -2.0, 0.5])
    f = lambda x: jnp.sum(bj.sigmoid(x) * bj.relu(x + 1.0))
    plain = lambda x: jnp.sum(jax.nn.sigmoid(x) * jax.nn.relu(x + 1.0))  # the same, autodiff only
    np.testing.assert_allclose(jax.hessian(f)(x), jax.hessian(plain)(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jax.jvp(jax.grad(f), (x,), (v,))[1], jax.hessian(plain)(x) @ v, rtol=1e-12)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(bj.sigmoid, (x,), (v,))
