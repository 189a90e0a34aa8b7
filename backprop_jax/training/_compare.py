"""The book's optimiser comparison (sec. 6.1.8): the same net and data, four update rules."""

import dataclasses

from backprop_jax._io import writable_directory, write_json
from backprop_jax.nets import multi_layer_net
from backprop_jax.training._loop import TrainConfig, train

# The book's comparison: name, optax optimiser, learning rate.
BOOK_OPTIMIZERS = (("SGD", "sgd", 0.01), ("Momentum", "momentum", 0.01),
                   ("AdaGrad", "adagrad", 0.01), ("Adam", "adam", 0.001))


def compare_optimizers(data, out, *, iters_num=2000, batch_size=128, hidden_size_list=(100, 100, 100, 100),
                       seed=0, log=print):
    """Trains the book's 5-layer ReLU net (He init) with each optimiser; writes
    ``out/optimizers.png`` (loss curves) and ``out/optimizers.json``.

    Returns:
      ``{name: [Epoch, ...]}``.
    Raises:
      OSError: ``out`` is not a directory that can be written, before any training.
    """
    out = writable_directory(out)  # before training, not after
    model = multi_layer_net.model(784, hidden_size_list, 10, weight_init_std="he")
    histories = {}
    for name, optimizer, lr in BOOK_OPTIMIZERS:
        config = TrainConfig(iters_num=iters_num, batch_size=batch_size, learning_rate=lr,
                             optimizer=optimizer, seed=seed)
        _, histories[name] = train(model, data, config)
        last = histories[name][-1]
        log(f"{name:<9} lr {lr:<6} final loss {last.train_loss:.4f}, test acc {last.test_acc:.4f}")
    write_json(out / "optimizers.json", {
        "net": [784, *hidden_size_list, 10], "iters_num": iters_num, "batch_size": batch_size, "seed": seed,
        "optimizers": {name: {"optimizer": opt, "learning_rate": lr,
                              "epochs": [dataclasses.asdict(e) for e in histories[name]]}
                       for name, opt, lr in BOOK_OPTIMIZERS}})
    from backprop_jax.training._plot import plot_losses  # matplotlib only when drawing
    plot_losses(histories, out / "optimizers.png")
    return histories
