"""The book's simple convolutional network (sec. 7.5), as pure functions.

conv (30 filters 5x5) -> ReLU -> max pool 2x2 -> Affine 100 -> ReLU ->
Affine 10 -> Softmax-with-Loss; parameters ``W1, b1`` (filters), ``W2, b2``,
``W3, b3``. Every gradient comes from the layers' hand rules.
"""

import jax
import jax.numpy as jnp

from backprop_jax._activations import relu
from backprop_jax._affine import affine
from backprop_jax._conv import convolution, max_pooling
from backprop_jax._model import Model, accuracy as _accuracy
from backprop_jax._softmax import softmax_with_loss

INPUT_DIM = (1, 28, 28)


def init(key, input_dim=INPUT_DIM, filter_num=30, filter_size=5, pad=0, stride=1, hidden_size=100,
         output_size=10, *, weight_init_std=0.01, dtype=jnp.float32):
    """Weights ``weight_init_std * N(0, 1)`` and zero biases, as the book's ``SimpleConvNet``.

    Returns:
      ``W1`` (filter_num, C, filter_size, filter_size), ``b1`` (filter_num,),
      ``W2`` (filter_num * pool_h * pool_w, hidden_size), ``b2``, ``W3``
      (hidden_size, output_size), ``b3``.
    """
    C, H, _ = input_dim
    conv_out = (H - filter_size + 2 * pad) // stride + 1
    pool_out = filter_num * (conv_out // 2) * (conv_out // 2)
    k1, k2, k3 = jax.random.split(key, 3)
    normal = lambda k, shape: (weight_init_std * jax.random.normal(k, shape)).astype(dtype)
    return {"W1": normal(k1, (filter_num, C, filter_size, filter_size)), "b1": jnp.zeros(filter_num, dtype),
            "W2": normal(k2, (pool_out, hidden_size)), "b2": jnp.zeros(hidden_size, dtype),
            "W3": normal(k3, (hidden_size, output_size)), "b3": jnp.zeros(output_size, dtype)}


def predict(params, x, *, stride=1, pad=0):
    """Scores (N, 10) for images (N, 1, 28, 28), or flattened ones (N, 784)."""
    if x.ndim == 2:
        x = x.reshape(x.shape[0], *INPUT_DIM)
    h = relu(convolution(x, params["W1"], params["b1"], stride, pad))
    h = max_pooling(h, 2, 2, 2, 0)
    h = relu(affine(h, params["W2"], params["b2"]))
    return affine(h, params["W3"], params["b3"])


def loss(params, x, t):
    """Mean cross-entropy; t is (N,) integer labels or (N, C) one-hot rows."""
    return softmax_with_loss(predict(params, x), t)


def accuracy(params, x, t):
    """Fraction of correctly classified images."""
    return _accuracy(predict, params, x, t)


def model(*, hidden_size=100, filter_num=30, weight_init_std=0.01, dtype=jnp.float32):
    """The network as a ``Model`` for ``backprop_jax.train``."""
    return Model(init=lambda key: init(key, filter_num=filter_num, hidden_size=hidden_size,
                                       weight_init_std=weight_init_std, dtype=dtype),
                 predict=predict, loss=loss)
