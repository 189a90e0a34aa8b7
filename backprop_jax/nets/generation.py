"""The sequel's text generation (*Deep Learning from Scratch 2*, sec. 7.1, ``ch07/rnnlm_gen.py``):
``RnnlmGen.generate`` and ``BetterRnnlmGen.generate`` as functions of a trained language model's
parameters (``rnnlm.model`` or ``rnnlm.better_model``, dropout off), with an explicit PRNG key.

One ``lax.while_loop``, compiled once per ``sample_size``: each step feeds the last word to the
model, whose LSTM state moves on, and draws the next word from ``softmax(score)``; a word in
``skip_ids`` is not kept and the same word is fed again (the state has still moved on, as the
sequel's ``predict`` has run).
"""

import functools

import jax
import jax.numpy as jnp

from backprop_jax.nets import rnnlm


def state_after(params, ids, state=None):
    """The LSTM state after reading the word ids ``ids`` (a 1-D sequence) from ``state`` (default:
    zeros): the sequel's ``model.predict`` of each word of a prefix before ``generate``
    (``generate_better_text.py``: "the meaning of life is"). Returns the state ``rnnlm.zero_state``
    lays out, for one row."""
    ids = jnp.asarray(ids)
    if ids.ndim != 1 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"state_after: ids must be a 1-D sequence of word ids, got shape {ids.shape} and "
                         f"dtype {ids.dtype}")
    state = rnnlm.zero_state(params, 1) if state is None else state
    if ids.shape[0] == 0:
        return state
    return rnnlm.forward(params, state, ids[None, :])[1]


def generate(params, start_id, *, key, sample_size=100, skip_ids=(), state=None):
    """The sequel's ``RnnlmGen.generate(start_id, skip_ids, sample_size)`` (and
    ``BetterRnnlmGen``'s, the same loop): ``sample_size`` word ids, the first ``start_id``.

    Args:
      params: a language model's parameters (``rnnlm``: one LSTM layer or two, tied or not).
      start_id: the first word's id.
      key: the PRNG key; step ``k`` (skipped draws counted) draws with ``fold_in(key, k)``
        from ``softmax(score)`` of the model's scores for the word fed.
      sample_size: how many ids to return, ``start_id`` included.
      skip_ids: ids never kept (the sequel skips ``N``, ``<unk>``, ``$``).
      state: the LSTM state to start from (``state_after`` a prefix); default zeros.
    Returns:
      int32 (sample_size,).
    """
    V = params["b_affine"].shape[0]
    if isinstance(sample_size, bool) or not isinstance(sample_size, int) or sample_size < 1:
        raise ValueError(f"generate: sample_size must be an integer >= 1, got {sample_size!r}")
    if sample_size > 2 ** 31 - 1:  # the compiled loop counts the words in 32-bit integers
        raise ValueError(f"generate: sample_size must be at most 2**31 - 1 = {2 ** 31 - 1} (the compiled loop "
                         f"counts it in 32-bit integers), got {sample_size}")
    skip = jnp.asarray(list(skip_ids) if not isinstance(skip_ids, jax.Array) else skip_ids, jnp.int32).reshape(-1)
    if skip.size and (int(skip.min()) < 0 or int(skip.max()) >= V):
        raise ValueError(f"generate: skip_ids must be word ids from 0 to {V - 1}, got {skip.tolist()}")
    if skip.size and len(set(skip.tolist())) >= V:
        raise ValueError(f"generate: skip_ids leave no word of the {V} to keep")
    if not 0 <= int(start_id) < V:
        raise ValueError(f"generate: start_id must be a word id from 0 to {V - 1}, got {start_id}")
    state = rnnlm.zero_state(params, 1) if state is None else state
    return _generate(params, jnp.int32(start_id), key, sample_size, skip, state)


@functools.partial(jax.jit, static_argnums=3)
def _generate(params, start_id, key, sample_size, skip, state):
    word_ids = jnp.zeros(sample_size, jnp.int32).at[0].set(start_id)

    def more(carry):
        return carry[0] < sample_size

    def step(carry):
        kept, k, x, state, word_ids = carry
        score, state = rnnlm.forward(params, state, x.reshape(1, 1))
        sampled = jax.random.categorical(jax.random.fold_in(key, k), score.reshape(-1)).astype(jnp.int32)
        keep = ~jnp.any(sampled == skip)
        word_ids = jnp.where(keep, word_ids.at[kept].set(sampled), word_ids)
        return kept + keep, k + 1, jnp.where(keep, sampled, x), state, word_ids

    return jax.lax.while_loop(more, step, (jnp.int32(1), jnp.int32(0), start_id, state, word_ids))[4]
