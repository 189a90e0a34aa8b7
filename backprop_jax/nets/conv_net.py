"""The book's simple convolutional network (sec. 7.5), composed from ``nn`` layers.

conv (30 filters 5x5) -> ReLU -> max pool 2x2 -> Affine 100 -> ReLU ->
Affine 10 -> Softmax-with-Loss; parameters ``W1, b1`` (filters), ``W2, b2``,
``W3, b3``, as the book's ``SimpleConvNet``.
"""

import jax.numpy as jnp

from backprop_jax.nets import nn

INPUT_DIM = (1, 28, 28)


def model(input_dim=INPUT_DIM, *, filter_num=30, filter_size=5, pad=0, stride=1, hidden_size=100,
          output_size=10, weight_init_std=0.01, dtype=jnp.float32, conv_method=None):
    """The network as a ``Model`` for images of shape ``input_dim`` (C, H, W) or flattened ones.

    Every setting of the book's ``SimpleConvNet`` is honoured: ``pad`` and
    ``stride`` of the convolution, the input shape, the sizes and the init std.
    ``conv_method``: how the convolution and pooling are computed, ``"im2col"`` (the book's
    way), ``"xla"`` or None (``default_conv_method()``); the same function either way.
    """
    return nn.classifier(nn.serial(
        nn.Convolution(filter_num, filter_size, stride=stride, pad=pad, weight_init_std=weight_init_std,
                       dtype=dtype, method=conv_method),
        nn.Relu,
        nn.MaxPooling(2, 2, stride=2, method=conv_method),
        nn.Affine(hidden_size, weight_init_std=weight_init_std, dtype=dtype),
        nn.Relu,
        nn.Affine(output_size, weight_init_std=weight_init_std, dtype=dtype),
    ), input_dim)
