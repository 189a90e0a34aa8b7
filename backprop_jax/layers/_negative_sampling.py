"""The sequel's negative sampling (*Deep Learning from Scratch 2*, sec. 4.2): a unigram sampler
drawing with an explicit key, and the loss composed of ``embedding_dot`` and
``sigmoid_with_loss``, whose hand rules give its backward (the sequel's
``NegativeSamplingLoss.backward`` adds ``dh`` over the same layers).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax.layers._sequence import embedding_dot, sigmoid_with_loss


class UnigramSampler(NamedTuple):
    """The sequel's ``UnigramSampler``: words drawn with probability ``count ** power``, normalised.

    ``UnigramSampler.of(corpus, power=0.75, sample_size=5)`` counts the word ids of ``corpus``
    (ids ``0 .. max(corpus)``; the sequel counts ``0 .. len(set(corpus)) - 1``, the same for a
    corpus using every id). ``sample(key, target)`` draws ``sample_size`` different negatives
    for each target, never the target itself, as the sequel does on the CPU.
    """
    word_p: jax.Array  # (V,) float32, the probability of each word id
    sample_size: int

    @classmethod
    def of(cls, corpus, power=0.75, sample_size=5):
        corpus = np.asarray(corpus)
        if corpus.ndim != 1 or corpus.size == 0 or not np.issubdtype(corpus.dtype, np.integer) or corpus.min() < 0:
            raise ValueError(f"UnigramSampler: corpus must be a non-empty 1-D array of word ids >= 0, got "
                             f"shape {corpus.shape} and dtype {corpus.dtype}")
        if not power > 0:
            raise ValueError(f"UnigramSampler: power must be positive, got {power}")
        counts = np.bincount(corpus).astype(np.float64)
        if not 1 <= sample_size < np.count_nonzero(counts):
            raise ValueError(f"UnigramSampler: sample_size must be from 1 to the number of words seen less one "
                             f"({np.count_nonzero(counts) - 1}), got {sample_size}")
        p = counts ** power
        return cls(jnp.asarray(p / p.sum(), jnp.float32), int(sample_size))

    def sample(self, key, target):
        """``(N, sample_size)`` int32 negatives for the targets ``(N,)``: without replacement, each
        row excluding its target, with the others' probabilities renormalised."""
        target = jnp.asarray(target)
        if target.ndim != 1 or not jnp.issubdtype(target.dtype, jnp.integer):
            raise ValueError(f"UnigramSampler.sample: target must be integer word ids of shape (N,), got "
                             f"shape {target.shape} and dtype {target.dtype}")
        vocab = self.word_p.shape[0]

        def row(key, t):
            p = self.word_p.at[t].set(0.0)
            return jax.random.choice(key, vocab, (self.sample_size,), replace=False, p=p / p.sum())
        keys = jax.random.split(key, target.shape[0])
        return jax.vmap(row)(keys, target).astype(jnp.int32)


def negative_sampling_loss(h, W, target, negatives):
    """The sequel's ``NegativeSamplingLoss`` (sec. 4.2.6) at given negatives.

    Args:
      h: float (N, D), the hidden vectors.
      W: float (V, D), the output-side word vectors (``W_out`` transposed, as the sequel stores it).
      target: integer (N,), the correct words, labelled 1.
      negatives: integer (N, S), the words labelled 0 (``UnigramSampler.sample``).
    Returns:
      ``sigmoid_with_loss(embedding_dot(h, W, target), 1)`` plus the same at label 0 for every
      column of ``negatives``: the sequel's sum of ``1 + S`` binary losses, each a mean over N.

    Backward: the hand rules of ``sigmoid_with_loss`` and ``embedding_dot``, ``dh`` summed over the
    ``1 + S`` terms and ``dW`` scatter-added at every word, as the sequel's backward.
    """
    negatives = jnp.asarray(negatives)
    target = jnp.asarray(target)
    if negatives.ndim != 2 or negatives.shape[0] != target.shape[0]:
        raise ValueError(f"negative_sampling_loss: negatives must be (N, S) with N = {target.shape[0]} "
                         f"targets, got shape {negatives.shape}")
    n = target.shape[0]
    loss = sigmoid_with_loss(embedding_dot(h, W, target), jnp.ones(n, jnp.int32))
    for i in range(negatives.shape[1]):
        loss = loss + sigmoid_with_loss(embedding_dot(h, W, negatives[:, i]), jnp.zeros(n, jnp.int32))
    return loss
