"""The experiments' files: the figure on a bare matplotlib ``Figure`` and the numbers beside it."""

from backprop_jax._io import write_json


def figure(*args, **kwargs):
    from matplotlib.figure import Figure  # matplotlib only when drawing
    return Figure(*args, **kwargs)


def write(out, name, result, fig):
    from backprop_jax.training.plots import save_figure  # matplotlib only when drawing

    write_json(out / f"{name}.json", result)
    save_figure(fig, out / f"{name}.png")
    return result
