"""Your own network: the book's conv net composed from the layer library, plus a layer of your own.

``leaky_relu`` below is a new layer written the way the book writes its
layers: a forward, and a backward derived by hand. It joins the network
through ``nn.elementwise``; ``gradcheck`` compares its rule with autodiff and
central differences; ``bj.train`` trains the network. Run:

    uv run python examples/own_network.py [--iters 300]
"""

import argparse

import jax
import jax.numpy as jnp

import backprop_jax as bj
from backprop_jax import nn


@jax.custom_vjp
def leaky_relu(x):
    """``x`` where positive, ``0.01 x`` elsewhere."""
    return _leaky_relu_fwd(x)[0]


def _leaky_relu_fwd(x):
    mask = x <= 0
    return jnp.where(mask, 0.01 * x, x), mask


def _leaky_relu_bwd(mask, dout):
    return (jnp.where(mask, 0.01 * dout, dout),)  # the local derivative is 0.01 or 1


leaky_relu.defvjp(_leaky_relu_fwd, _leaky_relu_bwd)


def conv_net():
    """The book's SimpleConvNet with the reader's leaky ReLU after the convolution."""
    return nn.classifier(nn.serial(
        nn.Convolution(30, 5, weight_init_std=0.01), nn.elementwise(leaky_relu), nn.MaxPooling(2, 2, stride=2),
        nn.Affine(100, weight_init_std=0.01), nn.Relu, nn.Affine(10, weight_init_std=0.01),
    ), input_shape=(1, 28, 28))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=300)
    args = parser.parse_args()
    model = conv_net()

    # 1. Check the new rule, inside a small net, in float64: hand rule vs autodiff vs numeric.
    with jax.enable_x64(True):
        small = nn.classifier(nn.serial(nn.Convolution(2, 3, dtype=jnp.float64), nn.elementwise(leaky_relu),
                                        nn.Affine(3, dtype=jnp.float64)), input_shape=(1, 6, 6))
        params, state = small.init(jax.random.key(0))
        x = jax.random.normal(jax.random.key(1), (4, 1, 6, 6), jnp.float64)
        report = bj.gradcheck(small.loss_fn(state), params, x, jnp.array([0, 1, 2, 0]), argnums=0)
    print(report)

    # 2. Train the whole network like any other.
    data = bj.datasets.load_mnist_sample()
    config = bj.TrainConfig(iters_num=args.iters, batch_size=100, optimizer="adam")
    _, history = bj.train(model, data, config)
    print(f"after {history[-1].iteration} iterations: test accuracy {history[-1].test_acc:.3f}")


if __name__ == "__main__":
    main()
