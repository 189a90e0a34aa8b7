"""The sequel's language models (*Deep Learning from Scratch 2*): ``Rnnlm`` (sec. 6.4:
``embedding``, ``time_lstm``, ``time_affine``) and ``BetterRnnlm`` (sec. 6.5: two LSTM layers,
``time_dropout`` between the layers, the embedding's matrix shared with the output layer),
trained by truncated backpropagation through time under ``time_softmax_with_loss``, with
perplexity as the measure. Every gradient comes from the layers' hand rules.

Truncated BPTT is explicit: the model's ``state`` holds each LSTM layer's last hidden and cell
state (``h0``, ``c0``, ``h1``, ...; (batch_size, H) each). In training, ``apply`` starts the
LSTMs from it and returns the states it ended in, which the trainer carries to the next update
(the sequel's ``stateful=True``); the gradient stops there, as the sequel's does, since the state
is not a parameter. The model reads its training windows in order (``sequential_rows``), laid out
by ``training_data`` so that each update's row ``b`` continues the text of the last update's.
In evaluation (``train=False``) every window starts from zeros, and the state is left as it was;
``eval_perplexity`` is the sequel's evaluation over a whole corpus, the state carried.

Parameters (V words, D ``wordvec_size``, H ``hidden_size``): ``W_embed`` (V, D), for each LSTM
layer ``l`` ``lstm{l}_Wx`` (D or H, 4H), ``lstm{l}_Wh`` (H, 4H), ``lstm{l}_b`` (4H,), then
``W_affine`` (H, V) (absent when tied: the output layer uses ``W_embed.T``) and ``b_affine``
(V,). Initialised as the sequel's: the embedding ``N(0, 1) / 100``, the others
``N(0, 1) / sqrt(fan-in)``, biases zero.
"""

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.layers import embedding, time_affine, time_dropout, time_lstm, time_softmax_with_loss
from backprop_jax.nets._model import Model, sequential_rows


def _check_count(name, value, least=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"rnnlm: {name} must be an integer >= {least}, got {value!r}")


def init(key, vocab_size, wordvec_size=100, hidden_size=100, *, lstm_layers=1, tie_weights=False,
         dtype=jnp.float32):
    """The parameters, as the sequel's ``Rnnlm`` (``BetterRnnlm``: ``lstm_layers=2``,
    ``tie_weights=True``) makes them."""
    _check_sizes(vocab_size, wordvec_size, hidden_size, lstm_layers, tie_weights)
    V, D, H = vocab_size, wordvec_size, hidden_size
    keys = iter(jax.random.split(key, 2 * lstm_layers + 2))
    normal = lambda shape, scale: (scale * jax.random.normal(next(keys), shape)).astype(dtype)  # noqa: E731
    params = {"W_embed": normal((V, D), 0.01)}
    for layer in range(lstm_layers):
        fan_in = D if layer == 0 else H
        params[f"lstm{layer}_Wx"] = normal((fan_in, 4 * H), 1 / np.sqrt(fan_in))
        params[f"lstm{layer}_Wh"] = normal((H, 4 * H), 1 / np.sqrt(H))
        params[f"lstm{layer}_b"] = jnp.zeros(4 * H, dtype)
    if not tie_weights:
        params["W_affine"] = normal((H, V), 1 / np.sqrt(H))
    params["b_affine"] = jnp.zeros(V, dtype)
    return params


def _check_sizes(vocab_size, wordvec_size, hidden_size, lstm_layers, tie_weights):
    for name, value in (("vocab_size", vocab_size), ("wordvec_size", wordvec_size),
                        ("hidden_size", hidden_size), ("lstm_layers", lstm_layers)):
        _check_count(name, value)
    if tie_weights and wordvec_size != hidden_size:
        raise ValueError(f"rnnlm: tied weights (the output layer's matrix is W_embed.T) need wordvec_size == "
                         f"hidden_size, got {wordvec_size} and {hidden_size}")


def book_order(lstm_layers=1, tie_weights=False):
    """The keys of the parameters in the order of the sequel's ``model.params`` list, which its
    ``save_params`` pickles (as float16): for ``fit_params(model, list, order=...)``. A tied
    model's list holds the output layer's matrix too, ``"W_embed.T"``."""
    order = ["W_embed"]
    for layer in range(lstm_layers):
        order += [f"lstm{layer}_Wx", f"lstm{layer}_Wh", f"lstm{layer}_b"]
    return (*order, "W_embed.T" if tie_weights else "W_affine", "b_affine")


def zero_state(params, batch_size):
    """The state of a fresh run: zeros (batch_size, H) for each LSTM layer's ``h`` and ``c``."""
    _check_count("batch_size", batch_size)
    state = {}
    for layer in range(_layers(params)):
        wh = params[f"lstm{layer}_Wh"]
        state[f"h{layer}"] = state[f"c{layer}"] = jnp.zeros((batch_size, wh.shape[0]), wh.dtype)
    return state


def _layers(params):
    return sum(1 for k in params if k.endswith("_Wh"))


def forward(params, state, x, *, key=None, drop_rate=0.0, train=False):
    """Scores (N, T, V) for the word ids ``x`` (N, T), the LSTMs started from ``state`` (as
    ``zero_state`` makes it), and the state they ended in: ``(scores, new_state)``. With
    ``train`` and ``drop_rate`` > 0, ``key`` draws the dropout masks (the sequel's
    ``TimeDropout`` before the first LSTM, between the LSTMs and before the output layer)."""
    x = jnp.asarray(x)
    if x.ndim != 2 or not jnp.issubdtype(x.dtype, jnp.integer):
        raise ValueError(f"rnnlm: x must be word ids of shape (N, T), integers, got shape {x.shape} "
                         f"and dtype {x.dtype}")
    drop = train and drop_rate > 0
    if drop and key is None:
        raise ValueError("rnnlm: training with dropout needs a PRNG key (pass key=...) to draw the masks")
    layers = _layers(params)
    keys = jax.random.split(key, layers + 1) if drop else [None] * (layers + 1)
    xs = embedding(params["W_embed"], x)
    if drop:
        xs = time_dropout(xs, keys[0], drop_rate, train)
    new_state = {}
    for layer in range(layers):
        h, c = state[f"h{layer}"], state[f"c{layer}"]
        if h.shape[0] != x.shape[0]:
            raise ValueError(f"rnnlm: the state carries batches of {h.shape[0]} rows (h{layer} {h.shape}), but "
                             f"x has {x.shape[0]} (shape {x.shape}); make the model with batch_size="
                             f"{x.shape[0]}")
        xs, h, c = time_lstm(xs, h, c, params[f"lstm{layer}_Wx"], params[f"lstm{layer}_Wh"],
                             params[f"lstm{layer}_b"])
        new_state[f"h{layer}"], new_state[f"c{layer}"] = h, c
        if drop:
            xs = time_dropout(xs, keys[layer + 1], drop_rate, train)
    W = params["W_affine"] if "W_affine" in params else params["W_embed"].T
    return time_affine(xs, W, params["b_affine"]), new_state


def model(vocab_size, batch_size, wordvec_size=100, hidden_size=100, dropout=0.0, time_size=None, *,
          lstm_layers=1, tie_weights=False, dtype=jnp.float32):
    """The network as a ``Model`` over windows of word ids (N, T), scoring the next word at each
    step (targets: the ids one step on, ``training_data``); its state carries the LSTMs'
    last states between the ``batch_size``-row updates. The sequel's ``Rnnlm`` by default;
    ``BetterRnnlm`` is ``better_model``. ``time_size``: the window length T it takes (the sequel's
    35 on the command line), checked on every input; None: any."""
    _check_sizes(vocab_size, wordvec_size, hidden_size, lstm_layers, tie_weights)
    _check_count("batch_size", batch_size)
    if time_size is not None:
        _check_count("time_size", time_size)
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"rnnlm: dropout must be a fraction in [0, 1), got {dropout!r}")

    def init_fn(key):
        params = init(key, vocab_size, wordvec_size, hidden_size, lstm_layers=lstm_layers,
                      tie_weights=tie_weights, dtype=dtype)
        return params, zero_state(params, batch_size)

    def apply(params, state, x, *, key=None, train=False):
        if time_size is not None and jnp.ndim(x) == 2 and jnp.shape(x)[1] != time_size:
            raise ValueError(f"rnnlm: x must be windows of time_size = {time_size} words, got shape {jnp.shape(x)}")
        if train and state:  # truncated BPTT: start where the last update ended, hand on where this one ends
            return forward(params, state, x, key=key, drop_rate=dropout, train=True)
        # Evaluation, or no state given (gradcheck of loss_fn()): every window from zeros.
        scores, _ = forward(params, zero_state(params, jnp.shape(x)[0]), x, key=key, drop_rate=dropout,
                            train=train)
        return scores, state

    return Model(init=init_fn, apply=apply, criterion=time_softmax_with_loss, metric="perplexity",
                 batch_rows=sequential_rows,
                 weight_mask=lambda params: {k: k.startswith("W") or k.endswith(("_Wx", "_Wh")) for k in params})


def better_model(vocab_size, batch_size, wordvec_size=650, hidden_size=650, dropout=0.5, time_size=None, *,
                 dtype=jnp.float32):
    """The sequel's ``BetterRnnlm`` (sec. 6.5): two LSTM layers, dropout, weight tying."""
    return model(vocab_size, batch_size, wordvec_size, hidden_size, dropout, time_size, lstm_layers=2,
                 tie_weights=True, dtype=dtype)


def training_data(corpus, batch_size, time_size=35):
    """``(x, t)`` for ``train`` from a corpus of word ids, laid out for ``sequential_rows``, as the
    sequel's ``RnnlmTrainer`` reads it: the corpus (but its last word) cut into ``batch_size``
    streams starting ``len // batch_size`` words apart, each stream into windows of
    ``time_size`` words; row ``w * batch_size + b`` is window ``w`` of stream ``b``, and its
    targets are the words one step on. Int32 (windows * batch_size, time_size) both; the words
    past the last whole window of each stream are left out. Train with the same ``batch_size``
    in the model and in ``TrainConfig`` (the model refuses another; a layout made for another
    batch size would not continue each row from one update to the next).

    Raises:
      ValueError: the corpus holds fewer than ``batch_size * time_size + 1`` words.
    """
    _check_count("batch_size", batch_size)
    _check_count("time_size", time_size)
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer):
        raise ValueError(f"rnnlm.training_data: corpus must be a 1-D array of word ids, got shape "
                         f"{corpus.shape} and dtype {corpus.dtype}")
    xs, ts = corpus[:-1], corpus[1:]
    jump = len(xs) // batch_size
    windows = len(xs) // (batch_size * time_size)
    if windows == 0:
        raise ValueError(f"rnnlm.training_data: a corpus of {len(corpus)} words is too short for one window of "
                         f"{time_size} words in each of {batch_size} streams (it needs "
                         f"{batch_size * time_size + 1})")
    starts = (np.arange(windows)[:, None] * time_size + np.arange(batch_size)[None, :] * jump).reshape(-1)
    positions = starts[:, None] + np.arange(time_size)[None, :]
    return xs[positions].astype(np.int32), ts[positions].astype(np.int32)


def every_window(corpus, time_size=35):
    """``(x, t)`` for ``carried_rows(time_size)``: a window of ``time_size`` words starting at every
    position of the corpus but its last word, wrapping round its end, as the sequel's
    ``RnnlmTrainer.get_batch`` reads ``xs = corpus[:-1]`` and ``ts = corpus[1:]``: row ``p`` is
    ``xs[(p + tau) % n]`` for ``tau = 0 .. time_size - 1`` (and ``ts`` likewise), ``n = len(corpus) - 1``.
    Int32 (n, time_size) both: ``time_size`` times the corpus, for any order of reading it."""
    _check_count("time_size", time_size)
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer) or len(corpus) < 2:
        raise ValueError(f"rnnlm.every_window: corpus must be a 1-D array of at least 2 word ids, got shape "
                         f"{corpus.shape} and dtype {corpus.dtype}")
    xs, ts = corpus[:-1], corpus[1:]
    positions = (np.arange(len(xs))[:, None] + np.arange(time_size)[None, :]) % len(xs)
    return xs[positions].astype(np.int32), ts[positions].astype(np.int32)


def eval_perplexity(params, corpus, batch_size=10, time_size=35):
    """The sequel's ``eval_perplexity``: the exp of the mean loss over the corpus read as
    ``training_data(corpus, batch_size, time_size)`` lays it out, one block of windows after the
    other, each block's LSTMs starting from the last block's states (no dropout). A float."""
    x, t = training_data(corpus, batch_size, time_size)
    blocks = len(x) // batch_size
    x = jnp.asarray(x).reshape(blocks, batch_size, time_size)
    t = jnp.asarray(t).reshape(blocks, batch_size, time_size)

    @jax.jit
    def total(params, x, t):
        def block(state, xt):
            scores, state = forward(params, state, xt[0])
            return state, time_softmax_with_loss(scores, xt[1])
        _, losses = jax.lax.scan(block, zero_state(params, batch_size), (x, t))
        return jnp.mean(losses)
    return float(np.exp(float(total(params, x, t))))
