"""Chapter 8's deep convolutional network (sec. 8.1.1), composed from ``nn`` layers.

Three blocks of conv-ReLU-conv-ReLU-pool (3x3 filters: 16, 16, 32, 32, 64, 64;
pad 1 except the fourth convolution's 2; 2x2 pooling with stride 2), then
Affine 50, ReLU, Dropout 0.5, Affine 10, Dropout 0.5 and Softmax-with-Loss:
the book's ``ch08/deep_convnet.py``. Parameters ``W1, b1`` ... ``W8, b8``,
keyed as its ``params``; He initialisation, ``sqrt(2 / fan_in)``, which is
its ``sqrt(2.0 / pre_node_nums)`` (1*3*3, 16*3*3, 16*3*3, 32*3*3, 32*3*3,
64*3*3, 64*4*4, 50). The dropout is the book's: units kept as they are in
training and scaled by 0.5 in evaluation.
"""

import jax.numpy as jnp

from backprop_jax.nets import nn

INPUT_DIM = (1, 28, 28)
# (filter_num, pad) of the six convolutions, as the book's conv_param_1 ... conv_param_6.
CONV_PARAMS = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))


def model(input_dim=INPUT_DIM, *, hidden_size=50, output_size=10, dtype=jnp.float32, conv_method=None):
    """The network as a ``Model`` for images of shape ``input_dim`` (C, H, W) or flattened ones.

    ``conv_method``: how the convolutions and poolings are computed, ``"im2col"`` (the book's
    way), ``"xla"`` or None (``default_conv_method()``); the same function either way.
    """
    layers = []
    for i, (filter_num, pad) in enumerate(CONV_PARAMS):
        layers += [nn.Convolution(filter_num, 3, stride=1, pad=pad, weight_init_std="he", dtype=dtype,
                                  method=conv_method), nn.Relu]
        if i % 2 == 1:
            layers.append(nn.MaxPooling(2, 2, stride=2, method=conv_method))
    layers += [nn.Affine(hidden_size, weight_init_std="he", dtype=dtype), nn.Relu, nn.Dropout(0.5),
               nn.Affine(output_size, weight_init_std="he", dtype=dtype), nn.Dropout(0.5)]
    return nn.classifier(nn.serial(*layers), input_dim)
