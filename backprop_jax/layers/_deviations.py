"""Where a book's backward is not the exact derivative of its own forward, by the rule's name.

``gradcheck`` names these beside a rule that disagrees with autodiff, so that a
report says why a faithful copy of the book differs.
"""

DEVIATIONS = {
    "sigmoid_with_loss": (
        "the sequel's backward (y - t) * dout / N ignores the 1e-7 its forward adds inside log: autodiff of "
        "that forward differs by about 1e-7 / y (sec. 4.2.3, common/layers.py SigmoidWithLoss)"),
}
