"""The book's fully connected multi-layer network (sec. 6.2 - 6.4), composed from ``nn`` layers.

``(Affine -> activation) x len(hidden_size_list) -> Affine -> Softmax-with-Loss``
with optional L2 weight decay: the book's ``MultiLayerNet``. With
``use_batchnorm`` or ``drop_rate`` it is the book's ``MultiLayerNetExtend``:
``Affine -> BatchNorm -> activation -> Dropout`` per hidden layer.
Parameters ``W1, b1, ..., W{L}, b{L}`` (and ``gamma{i}``, ``beta{i}``); state
``bn{i}`` (running statistics) with batch norm, else ``{}``.
"""

import jax.numpy as jnp

from backprop_jax.nets import nn

ACTIVATIONS = {"relu": nn.Relu, "sigmoid": nn.Sigmoid}


def model(input_size=784, hidden_size_list=(100, 100, 100), output_size=10, *, activation="relu",
          weight_init_std="he", weight_decay_lambda=0.0, use_batchnorm=False, drop_rate=0.0,
          dtype=jnp.float32):
    """The network as a ``Model``.

    ``weight_init_std``: a number, ``"he"``/``"relu"`` (sqrt(2 / fan-in), the
    book's default, which it calls ``'relu'``) or ``"xavier"``/``"sigmoid"`` (sqrt(1 / fan-in)).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    sizes = [input_size, *hidden_size_list, output_size]
    if any(isinstance(n, bool) or int(n) != n or n < 1 for n in sizes):
        raise ValueError(f"layer sizes must be positive integers, got {sizes}")
    layers = []
    for size in hidden_size_list:
        layers.append(nn.Affine(size, weight_init_std=weight_init_std, dtype=dtype))
        layers += [nn.BatchNorm(dtype=dtype)] if use_batchnorm else []
        layers.append(ACTIVATIONS[activation])
        layers += [nn.Dropout(drop_rate)] if drop_rate else []
    layers.append(nn.Affine(output_size, weight_init_std=weight_init_std, dtype=dtype))
    return nn.classifier(nn.serial(*layers), (input_size,), weight_decay_lambda=weight_decay_lambda)
