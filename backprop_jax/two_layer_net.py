"""The chapter's two-layer network (sec. 5.7.2), as pure functions.

Affine -> ReLU -> Affine -> Softmax-with-Loss, parameters
``{"W1", "b1", "W2", "b2"}``. Every gradient comes from the layers' hand rules.
"""

import jax.numpy as jnp

from backprop_jax._activations import relu
from backprop_jax._affine import affine
from backprop_jax._model import Model, accuracy as _accuracy, normal_weights
from backprop_jax._softmax import softmax_with_loss


def init(key, input_size, hidden_size, output_size, *, weight_init_std=0.01, dtype=jnp.float32):
    """Weights ``weight_init_std * N(0, 1)`` and zero biases, as the book's ``TwoLayerNet``.

    Returns:
      ``{"W1": (input_size, hidden_size), "b1": (hidden_size,),
      "W2": (hidden_size, output_size), "b2": (output_size,)}``.
    """
    return normal_weights(key, [(input_size, hidden_size), (hidden_size, output_size)],
                          [weight_init_std] * 2, dtype)


def predict(params, x):
    """Scores of shape (N, output_size) for x of shape (N, input_size)."""
    h = relu(affine(x, params["W1"], params["b1"]))
    return affine(h, params["W2"], params["b2"])


def loss(params, x, t):
    """Mean cross-entropy; t is (N,) integer labels or (N, C) one-hot rows."""
    return softmax_with_loss(predict(params, x), t)


def accuracy(params, x, t):
    """Fraction of correctly classified rows."""
    return _accuracy(predict, params, x, t)


def model(input_size=784, hidden_size=50, output_size=10, *, weight_init_std=0.01, dtype=jnp.float32):
    """The network as a ``Model`` for ``backprop_jax.train``."""
    return Model(
        init=lambda key: init(key, input_size, hidden_size, output_size,
                              weight_init_std=weight_init_std, dtype=dtype),
        predict=predict, loss=loss)
