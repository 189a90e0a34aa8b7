"""The public surface: every name in __all__ exists, every layer exposes the book's pair."""

import jax

import backprop_jax as bj

LAYERS = ["mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss", "weight_decay",
          "dropout", "batch_norm", "convolution", "max_pooling"]


def test_all_names_exist():
    assert [name for name in bj.__all__ if not hasattr(bj, name)] == []


def test_every_layer_is_a_custom_vjp_with_fwd_and_bwd():
    for name in LAYERS:
        layer = getattr(bj, name)
        assert isinstance(layer, jax.custom_vjp), name
        assert callable(layer.fwd) and callable(layer.bwd) and callable(layer.fun), name
        assert layer.__doc__ and "Backward" in layer.__doc__, name
