"""The chapter's two-layer network (sec. 5.7.2), written out as in the book.

Affine -> ReLU -> Affine -> Softmax-with-Loss, parameters
``{"W1", "b1", "W2", "b2"}``. Every gradient comes from the layers' hand rules.
``init``, ``predict`` and ``loss`` are the book's ``TwoLayerNet`` methods;
``model()`` is the same network as a ``Model``, the contract that training,
checking and drawing take (its ``accuracy`` is the book's).
"""

import numbers

import jax
import jax.numpy as jnp

from backprop_jax.layers import affine, relu, softmax_with_loss
from backprop_jax.nets._model import Model
from backprop_jax.nets.nn import weight_std


def init(key, input_size, hidden_size, output_size, *, weight_init_std=0.01, dtype=jnp.float32):
    """Weights ``weight_init_std * N(0, 1)`` and zero biases, as the book's ``TwoLayerNet``;
    ``weight_init_std`` may also be ``"he"`` or ``"xavier"`` (``nn.weight_std``), for each
    layer from its fan-in.

    Returns:
      ``{"W1": (input_size, hidden_size), "b1": (hidden_size,),
      "W2": (hidden_size, output_size), "b2": (output_size,)}``.
    """
    k1, k2 = jax.random.split(key)
    std1, std2 = weight_std(weight_init_std, input_size), weight_std(weight_init_std, hidden_size)
    return {"W1": (std1 * jax.random.normal(k1, (input_size, hidden_size))).astype(dtype),
            "b1": jnp.zeros(hidden_size, dtype),
            "W2": (std2 * jax.random.normal(k2, (hidden_size, output_size))).astype(dtype),
            "b2": jnp.zeros(output_size, dtype)}


def predict(params, x):
    """Scores of shape (N, output_size) for x of shape (N, input_size)."""
    h = relu(affine(x, params["W1"], params["b1"]))
    return affine(h, params["W2"], params["b2"])


def loss(params, x, t):
    """Mean cross-entropy; t is (N,) integer labels or (N, C) one-hot rows."""
    return softmax_with_loss(predict(params, x), t)


def model(input_size=784, hidden_size=50, output_size=10, *, weight_init_std=0.01, dtype=jnp.float32):
    """The network as a ``Model``: no state, so ``init`` returns ``(params, {})``."""
    for name, size in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"{name} must be a positive integer, got {size!r}")
    weight_std(weight_init_std, input_size)  # a bad std is refused here, not at init
    return Model(
        init=lambda key: (init(key, input_size, hidden_size, output_size,
                               weight_init_std=weight_init_std, dtype=dtype), {}),
        apply=lambda params, state, x, *, key=None, train=False: (predict(params, x), state),
        weight_mask=lambda params: {k: k.startswith("W") for k in params})  # W1, W2; not b1, b2
