"""The book's fully connected multi-layer network (sec. 6.2 - 6.4), as pure functions.

``(Affine -> activation) x len(hidden_size_list) -> Affine -> Softmax-with-Loss``
with optional L2 weight decay; parameters ``W1, b1, ..., W{L}, b{L}``.
"""

import math

import jax.numpy as jnp

from backprop_jax._activations import relu, sigmoid
from backprop_jax._affine import affine
from backprop_jax._model import Model, accuracy as _accuracy, normal_weights
from backprop_jax._softmax import softmax_with_loss
from backprop_jax._weight_decay import weight_decay

ACTIVATIONS = {"relu": relu, "sigmoid": sigmoid}


def init_stds(weight_init_std, sizes):
    """Per-layer std: a number, ``"he"``/``"relu"`` (sqrt(2/n)) or ``"xavier"``/``"sigmoid"`` (sqrt(1/n))."""
    if isinstance(weight_init_std, str):
        scale = {"he": 2.0, "relu": 2.0, "xavier": 1.0, "sigmoid": 1.0}.get(weight_init_std.lower())
        if scale is None:
            raise ValueError(f"weight_init_std must be a number, 'he' or 'xavier', got {weight_init_std!r}")
        return [math.sqrt(scale / n) for n in sizes[:-1]]
    if not weight_init_std > 0:
        raise ValueError(f"weight_init_std must be positive, got {weight_init_std}")
    return [float(weight_init_std)] * (len(sizes) - 1)


def init(key, input_size, hidden_size_list, output_size, *, weight_init_std="relu", dtype=jnp.float32):
    """Parameters ``W{i}`` of shape (sizes[i-1], sizes[i]) and zero ``b{i}``.

    ``sizes = [input_size, *hidden_size_list, output_size]``; the std of
    ``W{i}`` depends on ``sizes[i-1]`` for ``"he"`` and ``"xavier"``.
    """
    sizes = [input_size, *hidden_size_list, output_size]
    if any(int(n) != n or n < 1 for n in sizes):
        raise ValueError(f"layer sizes must be positive integers, got {sizes}")
    shapes = list(zip(sizes[:-1], sizes[1:]))
    return normal_weights(key, shapes, init_stds(weight_init_std, sizes), dtype)


def predict(params, x, *, activation="relu"):
    """Scores of shape (N, output_size) for x of shape (N, input_size)."""
    act = ACTIVATIONS[activation]
    n_layers = len(params) // 2
    for i in range(1, n_layers):
        x = act(affine(x, params[f"W{i}"], params[f"b{i}"]))
    return affine(x, params[f"W{n_layers}"], params[f"b{n_layers}"])


def loss(params, x, t, *, activation="relu", weight_decay_lambda=0.0):
    """Cross-entropy plus ``lambda / 2 * sum(W ** 2)`` over every weight matrix."""
    data_loss = softmax_with_loss(predict(params, x, activation=activation), t)
    if weight_decay_lambda == 0:
        return data_loss
    Ws = [params[f"W{i}"] for i in range(1, len(params) // 2 + 1)]
    return data_loss + weight_decay(Ws, weight_decay_lambda)


def accuracy(params, x, t, *, activation="relu"):
    """Fraction of correctly classified rows."""
    return _accuracy(lambda p, x: predict(p, x, activation=activation), params, x, t)


def model(input_size=784, hidden_size_list=(100, 100, 100), output_size=10, *,
          activation="relu", weight_init_std="relu", weight_decay_lambda=0.0, dtype=jnp.float32):
    """The network as a ``Model`` for ``backprop_jax.train``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not weight_decay_lambda >= 0:
        raise ValueError(f"weight_decay_lambda must be >= 0, got {weight_decay_lambda}")
    init_stds(weight_init_std, [input_size, *hidden_size_list, output_size])  # validate early
    return Model(
        init=lambda key: init(key, input_size, hidden_size_list, output_size,
                              weight_init_std=weight_init_std, dtype=dtype),
        predict=lambda p, x: predict(p, x, activation=activation),
        loss=lambda p, x, t: loss(p, x, t, activation=activation, weight_decay_lambda=weight_decay_lambda))
