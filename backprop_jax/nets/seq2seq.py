"""The sequel's ``Seq2seq``, ``PeekySeq2seq`` (*Deep Learning from Scratch 2*, ch. 7) and
``AttentionSeq2seq`` (ch. 8), composed of its hand-rule layers: an encoder (``embedding``,
``time_lstm``) whose last hidden state starts a decoder (``embedding``, ``time_lstm``,
``time_affine``; with attention, ``time_attention`` over the encoder's states beside the
decoder's) trained by teacher forcing under ``time_softmax_with_loss``. Every gradient comes from the layers' hand rules, backpropagation
through time included.

On the ``Model`` contract as it is: a model's input is one array, so a batch row is the
question followed by the answer (``training_data``), and ``apply`` feeds the answer but its last
character to the decoder; the targets are the answer but its first (the ``_`` that starts it).
The trainer then records the test loss; ``exact_match`` is the sequel's ``eval_seq2seq``
accuracy, from greedy generation (``generate``).

Parameters (V characters, D ``wordvec_size``, H ``hidden_size``): ``enc_W_embed`` (V, D),
``enc_Wx`` (D, 4H), ``enc_Wh`` (H, 4H), ``enc_b`` (4H,), ``dec_W_embed`` (V, D), ``dec_Wx``
(D, 4H), or (H + D, 4H) peeky, ``dec_Wh``, ``dec_b``, ``W_affine`` (H, V), or (2H, V) peeky or
with attention, ``b_affine`` (V,). Initialised as the sequel's: embeddings ``0.01 * N(0, 1)``, the others
``N(0, 1) / sqrt(fan-in)``, biases zero.
"""

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.layers import (
    attention_weights, embedding, time_affine, time_attention, time_lstm, time_softmax_with_loss)
from backprop_jax._values import check_count
from backprop_jax.nets._model import Model


KINDS = ("plain", "peeky", "attention")

BOOK_ORDER = ("enc_W_embed", "enc_Wx", "enc_Wh", "enc_b", "dec_W_embed", "dec_Wx", "dec_Wh", "dec_b", "W_affine",
              "b_affine")
"""The keys in the order of the sequel's ``model.params`` list (the encoder's, then the
decoder's), as its ``save_params`` pickles them, for every decoder: ``fit_params(model, list,
order=BOOK_ORDER)``."""


def init(key, vocab_size, wordvec_size=16, hidden_size=128, *, peeky=False, attention=False, dtype=jnp.float32):
    """The parameters, as the sequel's ``Encoder`` and ``Decoder`` (``PeekyDecoder``,
    ``AttentionDecoder``) make them."""
    if peeky and attention:
        raise ValueError("seq2seq: peeky and attention are two different decoders; choose one")
    _check_sizes(vocab_size=vocab_size, wordvec_size=wordvec_size, hidden_size=hidden_size)
    V, D, H = vocab_size, wordvec_size, hidden_size
    keys = iter(jax.random.split(key, 7))
    normal = lambda shape, scale: (scale * jax.random.normal(next(keys), shape)).astype(dtype)  # noqa: E731
    dec_in, affine_in = (H + D, 2 * H) if peeky else (D, 2 * H) if attention else (D, H)
    return {"enc_W_embed": normal((V, D), 0.01),
            "enc_Wx": normal((D, 4 * H), 1 / np.sqrt(D)), "enc_Wh": normal((H, 4 * H), 1 / np.sqrt(H)),
            "enc_b": jnp.zeros(4 * H, dtype),
            "dec_W_embed": normal((V, D), 0.01),
            "dec_Wx": normal((dec_in, 4 * H), 1 / np.sqrt(dec_in)), "dec_Wh": normal((H, 4 * H), 1 / np.sqrt(H)),
            "dec_b": jnp.zeros(4 * H, dtype),
            "W_affine": normal((affine_in, V), 1 / np.sqrt(affine_in)), "b_affine": jnp.zeros(V, dtype)}


def _check_sizes(**sizes):
    for name, value in sizes.items():
        check_count(f"seq2seq: {name}", value)


def encode(params, questions):
    """The sequel's ``Encoder.forward``: the LSTM's hidden states (N, T, H) over the questions;
    the plain and peeky decoders start from the last, ``hs[:, -1]``."""
    xs = embedding(params["enc_W_embed"], questions)
    n, hidden = questions.shape[0], params["enc_Wh"].shape[0]
    zeros = jnp.zeros((n, hidden), xs.dtype)
    hs, _, _ = time_lstm(xs, zeros, zeros, params["enc_Wx"], params["enc_Wh"], params["enc_b"])
    return hs


def kind(params):
    """``"plain"``, ``"peeky"`` or ``"attention"``: which decoder the parameters are for."""
    if params["dec_Wx"].shape[0] != params["dec_W_embed"].shape[1]:
        return "peeky"
    return "attention" if params["W_affine"].shape[0] == 2 * params["dec_Wh"].shape[0] else "plain"


def decode(params, enc_hs, inputs, state=None):
    """The sequel's ``Decoder.forward`` (``PeekyDecoder``'s, ``AttentionDecoder``'s, by the
    parameters' ``kind``): scores (N, T, V) for the decoder inputs (N, T), from the encoder's
    states ``enc_hs`` (N, T_enc, H); the LSTM starts from ``enc_hs[:, -1]`` and a zero cell, or
    from ``state = (h, c)``. Returns ``(scores, (h_last, c_last))``."""
    xs = embedding(params["dec_W_embed"], inputs)
    h_enc = enc_hs[:, -1]
    h, c = (h_enc, jnp.zeros_like(h_enc)) if state is None else state
    which = kind(params)
    if which == "peeky":  # the encoder's h beside every step's input, and beside every output
        repeated = jnp.broadcast_to(h_enc[:, None, :], (*inputs.shape, h_enc.shape[1]))
        xs = jnp.concatenate([repeated, xs], axis=2)
    hs, h_last, c_last = time_lstm(xs, h, c, params["dec_Wx"], params["dec_Wh"], params["dec_b"])
    if which == "peeky":
        hs = jnp.concatenate([repeated, hs], axis=2)
    elif which == "attention":  # the context of every step beside its hidden state
        hs = jnp.concatenate([time_attention(enc_hs, hs), hs], axis=2)
    return time_affine(hs, params["W_affine"], params["b_affine"]), (h_last, c_last)


def generate(params, questions, start_id, length):
    """The sequel's ``Seq2seq.generate``, for a batch: from ``start_id`` (an int or (N,) ids), feed
    each step's arg-max back ``length`` times. Returns int32 (N, length)."""
    questions = jnp.asarray(questions)
    enc_hs = encode(params, questions)
    first = jnp.broadcast_to(jnp.asarray(start_id, jnp.int32), (questions.shape[0],))
    h = enc_hs[:, -1]

    def step(carry, _):
        ids, state = carry
        scores, state = decode(params, enc_hs, ids[:, None], state)
        nxt = jnp.argmax(scores[:, 0, :], axis=-1).astype(jnp.int32)
        return (nxt, state), nxt

    _, out = jax.lax.scan(step, (first, (h, jnp.zeros_like(h))), None, length=length)
    return out.T


def attention_map(params, questions, inputs):
    """The attention weights (N, T_dec, T_enc) each decoder step put on each question character,
    for the decoder inputs (N, T_dec): what the sequel's ``visualize_attention.py`` draws."""
    if kind(params) != "attention":
        raise ValueError(f"seq2seq.attention_map: these are parameters of the {kind(params)} decoder, "
                         f"which has no attention")
    enc_hs = encode(params, jnp.asarray(questions))
    xs = embedding(params["dec_W_embed"], jnp.asarray(inputs))
    h = enc_hs[:, -1]
    dec_hs, _, _ = time_lstm(xs, h, jnp.zeros_like(h), params["dec_Wx"], params["dec_Wh"], params["dec_b"])
    return attention_weights(enc_hs, dec_hs)


def exact_match(params, questions, answers):
    """The sequel's ``eval_seq2seq`` accuracy: the fraction of questions whose greedy answer,
    generated from each answer's first character, is the rest of the answer exactly."""
    answers = jnp.asarray(answers)
    guess = generate(params, questions, answers[:, 0], answers.shape[1] - 1)
    return jnp.mean(jnp.all(guess == answers[:, 1:], axis=1).astype(jnp.float32))


def training_data(data, reverse=False):
    """``((x, t), (x_test, t_test))`` for ``train`` from ``((questions, answers), (..., ...))``
    (``load_sequence``): a row of x is the question (reversed, with ``reverse``, the sequel's
    trick) followed by the answer; t is the answer without its first character."""
    def one(questions, answers):
        questions, answers = np.asarray(questions), np.asarray(answers)
        if reverse:
            questions = questions[:, ::-1]
        return np.concatenate([questions, answers], axis=1).astype(np.int32), answers[:, 1:].astype(np.int32)
    (q, a), (q_test, a_test) = data
    return one(q, a), one(q_test, a_test)


def exact_match_metric(question_length):
    """``(params, state, x, t) -> (N,)``: 1.0 where the greedy answer to the row's question,
    generated from the answer's first character, is ``t`` exactly (``exact_match`` row by row),
    for rows of ``training_data``; a ``Model.metric``, so that the trainer records the sequel's
    ``eval_seq2seq`` accuracy after every epoch."""
    def metric(params, state, x, t):
        del state
        guess = generate(params, x[:, :question_length], x[:, question_length], t.shape[1])
        return jnp.all(guess == t, axis=1).astype(jnp.float32)
    return metric


def model(vocab_size, question_length, wordvec_size=16, hidden_size=128, *, peeky=False, attention=False,
          metric="loss", dtype=jnp.float32):
    """The network as a ``Model`` over rows of ``training_data``: question (``question_length``
    ids) then answer; scores (N, answer length - 1, V) under ``time_softmax_with_loss``.

    ``metric``: what the trainer records after each epoch: ``"loss"`` (the test loss) or
    ``"exact_match"`` (the fraction answered exactly by greedy generation, as accuracy, on the
    training and test sets; each evaluation then generates every answer).
    """
    if metric not in ("loss", "exact_match"):
        raise ValueError(f"seq2seq: metric must be 'loss' or 'exact_match', got {metric!r}")
    _check_sizes(vocab_size=vocab_size, question_length=question_length, wordvec_size=wordvec_size,
                 hidden_size=hidden_size)
    if peeky and attention:
        raise ValueError("seq2seq: peeky and attention are two different decoders; choose one")

    def apply(params, state, x, *, key=None, train=False):
        if x.ndim != 2 or x.shape[1] < question_length + 2:
            raise ValueError(f"seq2seq: x must be (N, question_length + answer length) = (N, "
                             f"{question_length} + at least 2), got shape {x.shape}")
        questions, answers = x[:, :question_length], x[:, question_length:]
        scores, _ = decode(params, encode(params, questions), answers[:, :-1])
        return scores, state

    return Model(
        init=lambda key: (init(key, vocab_size, wordvec_size, hidden_size, peeky=peeky, attention=attention,
                               dtype=dtype), {}),
        apply=apply, criterion=time_softmax_with_loss,
        metric=exact_match_metric(question_length) if metric == "exact_match" else "loss",
        weight_mask=lambda params: {k: not k.startswith(("enc_b", "dec_b", "b_")) for k in params},
        input_ids=vocab_size)
