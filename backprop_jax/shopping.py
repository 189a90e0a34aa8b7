"""The chapter's shopping examples as computational graphs (sec. 5.3 - 5.4).

Built from ``mul`` and ``add`` nodes, so ``jax.grad`` differentiates them
through the hand rules. ``examples/buy_apple.py`` and
``examples/buy_apple_orange.py`` run the book's manual chain beside them.
"""

from backprop_jax.layers import add, mul


def buy_apple(apple, apple_num, tax):
    """Price of ``apple_num`` apples at ``apple`` each, with ``tax`` (1.1 for 10%)."""
    apple_price = mul(apple, apple_num)
    return mul(apple_price, tax)


def buy_apple_orange(apple, apple_num, orange, orange_num, tax):
    """Price of apples and oranges, with ``tax``."""
    apple_price = mul(apple, apple_num)
    orange_price = mul(orange, orange_num)
    all_price = add(apple_price, orange_price)
    return mul(all_price, tax)


# The book's inputs: 2 apples at 100 yen, 3 oranges at 150 yen, 10% tax.
APPLE = {"apple": 100.0, "apple_num": 2.0, "tax": 1.1}
APPLE_ORANGE = {"apple": 100.0, "apple_num": 2.0, "orange": 150.0, "orange_num": 3.0, "tax": 1.1}
