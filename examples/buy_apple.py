"""Buying apples (sec. 5.4.1): the book's manual backward chain next to jax.grad.

Two apples at 100 yen each, 10% consumption tax. Run:

    uv run python examples/buy_apple.py
"""

import jax

# The book computes in NumPy's float64; so do we, to print the same digits.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from backprop_jax import mul  # noqa: E402
from backprop_jax.shopping import buy_apple  # noqa: E402


def main():
    apple, apple_num, tax = 100.0, 2.0, 1.1

    # The book's way: each node's forward, left to right ...
    apple_price, mul_apple_layer = mul.fwd(apple, apple_num)
    price, mul_tax_layer = mul.fwd(apple_price, tax)
    # ... then each node's backward, right to left, from dprice = 1.
    dprice = jnp.ones_like(price)
    dapple_price, dtax = mul.bwd(mul_tax_layer, dprice)
    dapple, dapple_num = mul.bwd(mul_apple_layer, dapple_price)

    # JAX's way: jax.grad runs the same hand rules for us.
    grad_price, grads = jax.value_and_grad(buy_apple, argnums=(0, 1, 2))(apple, apple_num, tax)

    print(f"{'':<12}{'manual chain':>24}{'jax.grad':>24}")
    rows = [("price", price, grad_price), ("dapple", dapple, grads[0]),
            ("dapple_num", dapple_num, grads[1]), ("dtax", dtax, grads[2])]
    for name, manual, auto in rows:
        print(f"{name:<12}{float(manual)!r:>24}{float(auto)!r:>24}")


if __name__ == "__main__":
    main()
