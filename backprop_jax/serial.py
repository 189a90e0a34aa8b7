"""Compose the layers into your own network, in the style of ``stax``.

A layer is a pair ``(init_fun, apply_fun)``: ``init_fun(key, in_dim)``
returns ``(out_dim, params)`` and ``apply_fun(params, x)`` the output.
``serial`` chains pairs into one pair; ``classifier`` turns a pair into a
``Model`` trained by ``backprop_jax.train`` with Softmax-with-Loss on top::

    from backprop_jax import serial as nn
    net = nn.serial(nn.Affine(100, weight_init_std="he"), nn.Relu,
                    nn.Affine(10, weight_init_std="he"))
    model = nn.classifier(net, input_size=784)
"""

import jax
import jax.numpy as jnp

from backprop_jax._activations import relu, sigmoid
from backprop_jax._affine import affine
from backprop_jax._model import Model
from backprop_jax._softmax import softmax_with_loss
from backprop_jax.multi_layer_net import init_stds


def Affine(out_dim, *, weight_init_std=0.01, dtype=jnp.float32):
    """Affine layer to ``out_dim`` features; params ``{"W": (in_dim, out_dim), "b": (out_dim,)}``.

    ``weight_init_std`` is a number or ``"he"`` / ``"xavier"`` (scaled by in_dim).
    """
    def init_fun(key, in_dim):
        (std,) = init_stds(weight_init_std, [in_dim, out_dim])
        W = (std * jax.random.normal(key, (in_dim, out_dim))).astype(dtype)
        return out_dim, {"W": W, "b": jnp.zeros(out_dim, dtype)}

    def apply_fun(params, x):
        return affine(x, params["W"], params["b"])

    return init_fun, apply_fun


def _elementwise(fn):
    return (lambda key, in_dim: (in_dim, ())), (lambda params, x: fn(x))


Relu = _elementwise(relu)
Sigmoid = _elementwise(sigmoid)


def serial(*layers):
    """Chains layers; params are a list with one entry per layer."""
    init_funs, apply_funs = zip(*layers)

    def init_fun(key, in_dim):
        params = []
        for init, k in zip(init_funs, jax.random.split(key, len(init_funs))):
            in_dim, p = init(k, in_dim)
            params.append(p)
        return in_dim, params

    def apply_fun(params, x):
        for apply, p in zip(apply_funs, params):
            x = apply(p, x)
        return x

    return init_fun, apply_fun


def classifier(layer, input_size):
    """A ``Model`` whose loss is ``softmax_with_loss`` of the layer's output."""
    init_fun, apply_fun = layer
    return Model(
        init=lambda key: init_fun(key, input_size)[1],
        predict=apply_fun,
        loss=lambda params, x, t: softmax_with_loss(apply_fun(params, x), t))
