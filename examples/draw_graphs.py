"""Draw the chapter's graphs: forward values above each arrow, gradients below.

Renders the apple graph, the apple-and-orange graph and the two-layer net's
graph into a directory (default ``graphs/``) as SVG when Graphviz is
installed, and as DOT and Mermaid text in any case. Run:

    uv run python examples/draw_graphs.py [DIR]
"""

import shutil
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from backprop_jax import graph, shopping, two_layer_net


def main(out_dir="graphs"):
    out_dir = Path(out_dir)
    key_init, key_x = jax.random.split(jax.random.key(0))
    params = two_layer_net.init(key_init, 784, 50, 10)
    x = jax.random.uniform(key_x, (2, 784))
    t = jnp.array([3, 7])
    graphs = {
        "apple": graph.trace(shopping.buy_apple, *shopping.APPLE.values()),
        "apple_orange": graph.trace(shopping.buy_apple_orange, *shopping.APPLE_ORANGE.values()),
        "two_layer_net": graph.trace(two_layer_net.loss, params, x, t),
    }
    formats = [".dot", ".mmd"] + ([".svg"] if shutil.which("dot") else [])
    for name, g in graphs.items():
        for ext in formats:
            print(g.render(out_dir / f"{name}{ext}"))
    # The book's numbers, read off the apple graph's arrows:
    apple = graphs["apple"]
    label = {n.id: {"×": "mul"}.get(n.label, n.label) for n in apple.nodes}
    for e in apple.edges:
        print(f"{label[e.src]:>10} -> {label[e.dst]:<7} value {graph.format_value(e.value):>4}"
              f"   gradient {graph.format_value(e.grad)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
