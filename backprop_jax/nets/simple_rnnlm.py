"""The sequel's ``SimpleRnnlm`` (*Deep Learning from Scratch 2*, sec. 5.5, ``ch05/simple_rnnlm.py``):
``embedding``, ``time_rnn``, ``time_affine`` under ``time_softmax_with_loss``, trained by truncated
backpropagation through time; every gradient comes from the layers' hand rules.

As ``rnnlm`` (whose ``training_data`` lays its windows out): the model's ``state`` holds the RNN's
last hidden state ``h0`` (batch_size, H), carried from one update to the next in training (the
sequel's ``TimeRNN(stateful=True)``); in evaluation every window starts from zeros.

Parameters (V words, D ``wordvec_size``, H ``hidden_size``): ``W_embed`` (V, D) ``N(0, 1) / 100``,
``rnn_Wx`` (D, H) ``N(0, 1) / sqrt(D)``, ``rnn_Wh`` (H, H) ``N(0, 1) / sqrt(H)``, ``rnn_b`` (H,)
zeros, ``W_affine`` (H, V) ``N(0, 1) / sqrt(H)``, ``b_affine`` (V,) zeros, as the sequel's.
"""

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.layers import embedding, time_affine, time_rnn, time_softmax_with_loss
from backprop_jax.nets._model import Model, sequential_rows

BOOK_ORDER = ("W_embed", "rnn_Wx", "rnn_Wh", "rnn_b", "W_affine", "b_affine")  # the sequel's params list


def init(key, vocab_size, wordvec_size=100, hidden_size=100, *, dtype=jnp.float32):
    """The parameters, as the sequel's ``SimpleRnnlm.__init__`` makes them."""
    for name, value in (("vocab_size", vocab_size), ("wordvec_size", wordvec_size), ("hidden_size", hidden_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"simple_rnnlm: {name} must be an integer >= 1, got {value!r}")
    V, D, H = vocab_size, wordvec_size, hidden_size
    k = jax.random.split(key, 4)
    rn = lambda key, shape, scale: (jax.random.normal(key, shape) * scale).astype(dtype)  # noqa: E731
    return {"W_embed": rn(k[0], (V, D), 1 / 100), "rnn_Wx": rn(k[1], (D, H), 1 / np.sqrt(D)),
            "rnn_Wh": rn(k[2], (H, H), 1 / np.sqrt(H)), "rnn_b": jnp.zeros(H, dtype),
            "W_affine": rn(k[3], (H, V), 1 / np.sqrt(H)), "b_affine": jnp.zeros(V, dtype)}


def zero_state(params, batch_size):
    """The state of a fresh run: ``{"h0": zeros (batch_size, H)}``."""
    wh = params["rnn_Wh"]
    return {"h0": jnp.zeros((batch_size, wh.shape[0]), wh.dtype)}


def forward(params, state, x):
    """Scores (N, T, V) for the word ids ``x`` (N, T), the RNN started from ``state["h0"]``, and
    the state it ended in: ``(scores, new_state)``."""
    x = jnp.asarray(x)
    if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"simple_rnnlm: x must be word ids of shape (N, T), integers, got shape {x.shape} "
                         f"and dtype {x.dtype}")
    if state["h0"].shape[0] != x.shape[0]:
        raise ValueError(f"simple_rnnlm: the state carries batches of {state['h0'].shape[0]} rows, but x has "
                         f"{x.shape[0]} (shape {x.shape}); make the model with batch_size={x.shape[0]}")
    xs = embedding(params["W_embed"], x)
    hs, h = time_rnn(xs, state["h0"], params["rnn_Wx"], params["rnn_Wh"], params["rnn_b"])
    return time_affine(hs, params["W_affine"], params["b_affine"]), {"h0": h}


def model(vocab_size, batch_size, wordvec_size=100, hidden_size=100, *, dtype=jnp.float32):
    """The network as a ``Model`` over windows of word ids (N, T) (``rnnlm.training_data``), read
    in order (``sequential_rows``), its state carrying the RNN's last hidden state between the
    ``batch_size``-row updates; measured by perplexity."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"simple_rnnlm: batch_size must be an integer >= 1, got {batch_size!r}")

    def init_fn(key):
        params = init(key, vocab_size, wordvec_size, hidden_size, dtype=dtype)
        return params, zero_state(params, batch_size)

    def apply(params, state, x, *, key=None, train=False):
        del key
        if train and state:  # truncated BPTT: start where the last update ended
            return forward(params, state, x)
        scores, _ = forward(params, zero_state(params, jnp.shape(x)[0]), x)
        return scores, state

    return Model(init=init_fn, apply=apply, criterion=time_softmax_with_loss, metric="perplexity",
                 batch_rows=sequential_rows,
                 weight_mask=lambda params: {k: k.startswith("W") or k in ("rnn_Wx", "rnn_Wh") for k in params})
