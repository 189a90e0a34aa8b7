"""Buying apples and oranges (sec. 5.4.2): the manual chain next to jax.grad.

Two apples at 100 yen, three oranges at 150 yen, 10% consumption tax. Run:

    uv run python examples/buy_apple_orange.py
"""

import jax

# The book computes in NumPy's float64; so do we, to print the same digits.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from backprop_jax import add, mul  # noqa: E402
from backprop_jax.shopping import buy_apple_orange  # noqa: E402


def main():
    apple, apple_num, orange, orange_num, tax = 100.0, 2.0, 150.0, 3.0, 1.1

    # Forward, left to right.
    apple_price, mul_apple_layer = mul.fwd(apple, apple_num)  # (1)
    orange_price, mul_orange_layer = mul.fwd(orange, orange_num)  # (2)
    all_price, add_apple_orange_layer = add.fwd(apple_price, orange_price)  # (3)
    price, mul_tax_layer = mul.fwd(all_price, tax)  # (4)

    # Backward, right to left.
    dprice = jnp.ones_like(price)
    dall_price, dtax = mul.bwd(mul_tax_layer, dprice)  # (4)
    dapple_price, dorange_price = add.bwd(add_apple_orange_layer, dall_price)  # (3)
    dorange, dorange_num = mul.bwd(mul_orange_layer, dorange_price)  # (2)
    dapple, dapple_num = mul.bwd(mul_apple_layer, dapple_price)  # (1)

    grad_price, grads = jax.value_and_grad(buy_apple_orange, argnums=(0, 1, 2, 3, 4))(
        apple, apple_num, orange, orange_num, tax)

    print(f"{'':<12}{'manual chain':>24}{'jax.grad':>24}")
    rows = [("price", price, grad_price), ("dapple_num", dapple_num, grads[1]),
            ("dapple", dapple, grads[0]), ("dorange", dorange, grads[2]),
            ("dorange_num", dorange_num, grads[3]), ("dtax", dtax, grads[4])]
    for name, manual, auto in rows:
        print(f"{name:<12}{float(manual)!r:>24}{float(auto)!r:>24}")


if __name__ == "__main__":
    main()
