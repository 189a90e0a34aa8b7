"""The book's gradient check (sec. 5.7.3) on the two-layer net, three ways.

For each parameter of a 784-50-10 net (the book's init), the hand-derived
gradient is compared with JAX's autodiff of the same forward and with the
book's numerical (central-difference) gradient. Run:

    uv run python examples/gradient_check.py
"""

import jax

# Like the book's NumPy check, in float64: central differences need it.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import backprop_jax as bj  # noqa: E402
from backprop_jax import two_layer_net  # noqa: E402


def main():
    key_init, key_b, key_x, key_t = jax.random.split(jax.random.key(0), 4)
    params = two_layer_net.init(key_init, input_size=784, hidden_size=50, output_size=10,
                                dtype=jnp.float64)
    params["b1"] = 0.01 * jax.random.normal(key_b, (50,), jnp.float64)  # exercise db1 too
    x_batch = jax.random.uniform(key_x, (3, 784), jnp.float64)  # three "images"
    t_batch = jax.random.randint(key_t, (3,), 0, 10)

    report = bj.gradcheck(two_layer_net.loss, params, x_batch, t_batch, argnums=0)
    # The book prints the mean absolute difference per parameter:
    for line in report.book_lines():
        print(line)
    print()
    print(report)


if __name__ == "__main__":
    main()
