"""The book's fully connected multi-layer network (sec. 6.2 - 6.4), as pure functions.

``(Affine -> activation) x len(hidden_size_list) -> Affine -> Softmax-with-Loss``
with optional L2 weight decay; parameters ``W1, b1, ..., W{L}, b{L}``.

``model(use_batchnorm=True)`` and ``model(drop_rate=...)`` give the book's
``MultiLayerNetExtend``: ``Affine -> BatchNorm -> activation -> Dropout`` per
hidden layer, with ``gamma{i}``, ``beta{i}`` among the parameters and the
running statistics as explicit state.
"""

import math

import jax
import jax.numpy as jnp

from backprop_jax._activations import relu, sigmoid
from backprop_jax._affine import affine
from backprop_jax._batch_norm import batch_norm, init_batch_norm_state
from backprop_jax._dropout import dropout
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
    n_layers = _n_layers(params)
    for i in range(1, n_layers):
        x = act(affine(x, params[f"W{i}"], params[f"b{i}"]))
    return affine(x, params[f"W{n_layers}"], params[f"b{n_layers}"])


def loss(params, x, t, *, activation="relu", weight_decay_lambda=0.0):
    """Cross-entropy plus ``lambda / 2 * sum(W ** 2)`` over every weight matrix."""
    data_loss = softmax_with_loss(predict(params, x, activation=activation), t)
    if weight_decay_lambda == 0:
        return data_loss
    Ws = [params[f"W{i}"] for i in range(1, _n_layers(params) + 1)]
    return data_loss + weight_decay(Ws, weight_decay_lambda)


def accuracy(params, x, t, *, activation="relu"):
    """Fraction of correctly classified rows."""
    return _accuracy(lambda p, x: predict(p, x, activation=activation), params, x, t)


def init_extended(key, input_size, hidden_size_list, output_size, *, weight_init_std="relu",
                  use_batchnorm=False, dtype=jnp.float32):
    """``(params, state)`` of the extended net: ``init``'s params plus ``gamma{i}`` (ones),
    ``beta{i}`` (zeros) and, in the state, running statistics ``bn{i}`` per hidden layer."""
    params = init(key, input_size, hidden_size_list, output_size, weight_init_std=weight_init_std, dtype=dtype)
    state = {}
    if use_batchnorm:
        for i, h in enumerate(hidden_size_list, start=1):
            params[f"gamma{i}"] = jnp.ones(h, dtype)
            params[f"beta{i}"] = jnp.zeros(h, dtype)
            state[f"bn{i}"] = init_batch_norm_state(h, dtype)
    return params, state


def _n_layers(params):
    return sum(1 for k in params if k.startswith("W"))


def forward_extended(params, state, x, key, train, *, activation="relu", drop_rate=0.0):
    """Scores and the new state; ``train`` picks batch or running statistics and
    whether dropout drops (``key`` draws the masks)."""
    act = ACTIVATIONS[activation]
    n_layers = _n_layers(params)
    keys = jax.random.split(key, max(n_layers - 1, 1))
    new_state = {}
    for i in range(1, n_layers):
        x = affine(x, params[f"W{i}"], params[f"b{i}"])
        if f"gamma{i}" in params:
            x, new_state[f"bn{i}"] = batch_norm(x, params[f"gamma{i}"], params[f"beta{i}"], state[f"bn{i}"], train)
        x = act(x)
        if drop_rate:
            x = dropout(x, keys[i - 1], drop_rate, train)
    return affine(x, params[f"W{n_layers}"], params[f"b{n_layers}"]), new_state


def model(input_size=784, hidden_size_list=(100, 100, 100), output_size=10, *,
          activation="relu", weight_init_std="relu", weight_decay_lambda=0.0, use_batchnorm=False,
          drop_rate=0.0, dtype=jnp.float32):
    """The network as a ``Model`` for ``backprop_jax.train`` (stateful with batch norm or dropout)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not weight_decay_lambda >= 0:
        raise ValueError(f"weight_decay_lambda must be >= 0, got {weight_decay_lambda}")
    if not 0 <= drop_rate < 1:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    init_stds(weight_init_std, [input_size, *hidden_size_list, output_size])  # validate early
    if not use_batchnorm and not drop_rate:
        return Model(
            init=lambda key: init(key, input_size, hidden_size_list, output_size,
                                  weight_init_std=weight_init_std, dtype=dtype),
            predict=lambda p, x: predict(p, x, activation=activation),
            loss=lambda p, x, t: loss(p, x, t, activation=activation, weight_decay_lambda=weight_decay_lambda))

    def extended_loss(params, state, x, t, key):
        scores, new_state = forward_extended(params, state, x, key, True, activation=activation,
                                             drop_rate=drop_rate)
        value = softmax_with_loss(scores, t)
        if weight_decay_lambda:
            value = value + weight_decay([params[f"W{i}"] for i in range(1, _n_layers(params) + 1)],
                                         weight_decay_lambda)
        return value, new_state

    def extended_predict(params, state, x):
        return forward_extended(params, state, x, jax.random.key(0), False, activation=activation,
                                drop_rate=drop_rate)[0]

    return Model(
        init=lambda key: init_extended(key, input_size, hidden_size_list, output_size,
                                       weight_init_std=weight_init_std, use_batchnorm=use_batchnorm,
                                       dtype=dtype),
        predict=extended_predict, loss=extended_loss, stateful=True)
