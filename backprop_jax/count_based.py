"""The sequel's count-based word vectors (*Deep Learning from Scratch 2*, ch. 2, ``common/util.py``):
a text as word ids, the co-occurrence matrix, PPMI and its SVD.

Plain NumPy: nothing here is differentiated. The sequel's loops are written as whole-array
operations that compute the same numbers (``tests/test_count_based.py`` runs the loops beside
them). Querying the vectors is ``similarity``.
"""

import numpy as np


def preprocess(text):
    """The sequel's ``preprocess`` (sec. 2.3.1): the text lower-cased, ``"."`` made a word of its
    own, split at single spaces, words numbered in order of first appearance.

    Args:
      text: a ``str`` (``"You say goodbye and I say hello."``).
    Returns:
      ``(corpus, word_to_id, id_to_word)``: int32 ids (words,) and the two dicts. (The sequel's
      corpus has NumPy's default integer dtype; the ids are the same.)
    """
    if not isinstance(text, str):
        raise TypeError(f"preprocess: text must be a str, got {type(text).__name__}")
    words = text.lower().replace(".", " .").split(" ")
    word_to_id = {}
    for word in words:
        word_to_id.setdefault(word, len(word_to_id))
    corpus = np.array([word_to_id[w] for w in words], np.int32)
    return corpus, word_to_id, {i: w for w, i in word_to_id.items()}


def _check_corpus(fn, corpus):
    corpus = np.asarray(corpus)
    if corpus.ndim != 1 or not np.issubdtype(corpus.dtype, np.integer) or (corpus.size and corpus.min() < 0):
        raise ValueError(f"{fn}: corpus must be a 1-D array of word ids >= 0, got shape {corpus.shape} and dtype "
                         f"{corpus.dtype}")
    return corpus


def create_co_matrix(corpus, vocab_size, window_size=1):
    """The sequel's ``create_co_matrix`` (sec. 2.3.4): ``C[w, c]`` counts how often word ``c``
    stands within ``window_size`` words of word ``w``, left or right.

    Args:
      corpus: int word ids (words,), each below ``vocab_size``.
      vocab_size: V.
      window_size: how many words on each side are the context.
    Returns:
      int32 (V, V), symmetric.
    """
    corpus = _check_corpus("create_co_matrix", corpus)
    if corpus.size and corpus.max() >= vocab_size:
        raise ValueError(f"create_co_matrix: the corpus holds word id {corpus.max()}, not below vocab_size "
                         f"{vocab_size}")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1:
        raise ValueError(f"create_co_matrix: window_size must be an integer >= 1, got {window_size!r}")
    co_matrix = np.zeros((vocab_size, vocab_size), np.int32)
    for i in range(1, window_size + 1):
        np.add.at(co_matrix, (corpus[i:], corpus[:-i]), 1)  # the word i to the left
        np.add.at(co_matrix, (corpus[:-i], corpus[i:]), 1)  # the word i to the right
    return co_matrix


def ppmi(C, eps=1e-8):
    """The sequel's ``ppmi`` (sec. 2.4.1): positive pointwise mutual information,
    ``max(0, log2(C[i, j] * N / (S[j] * S[i]) + eps))`` with ``N = sum(C)`` and ``S = sum(C, axis=0)``.

    Args:
      C: a co-occurrence matrix (V, V) of counts.
      eps: the sequel's ``1e-8``, inside the logarithm (its commit c8766da).
    Returns:
      float32 (V, V). Rows of a word with no co-occurrence at all (``S = 0``) are 0, as the
      sequel's ``max(0, nan)`` makes them.
    """
    C = np.asarray(C)
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"ppmi: C must be a square co-occurrence matrix (V, V), got shape {C.shape}")
    C = C.astype(np.int64)  # the sequel's products of counts are int64: no overflow, exact
    N = np.sum(C)
    S = np.sum(C, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log2(C * N / (S[None, :] * S[:, None]) + eps)
    return np.where(pmi > 0, pmi, 0).astype(np.float32)  # Python's max(0, nan) is 0


def svd_word_vectors(W, wordvec_size=None):
    """The sequel's SVD embedding (sec. 2.4.3, ``count_method_small.py``): ``U, S, V =
    np.linalg.svd(W)`` and the first ``wordvec_size`` columns of ``U`` as the word vectors.

    Args:
      W: the PPMI matrix (V, V).
      wordvec_size: how many dimensions to keep; None: all V.
    Returns:
      float (V, wordvec_size): row ``i`` is word ``i``'s vector. The full SVD is exact and
      costs O(V**3) (``count_method_big.py`` reaches for scikit-learn's randomized SVD for the
      PTB's 10,000 words; its vectors agree up to the signs of the columns).
    """
    W = np.asarray(W)
    if W.ndim != 2:
        raise ValueError(f"svd_word_vectors: W must be a matrix (V, V), got shape {W.shape}")
    if wordvec_size is not None and (isinstance(wordvec_size, bool) or not isinstance(wordvec_size, int)
                                     or not 1 <= wordvec_size <= W.shape[1]):
        raise ValueError(f"svd_word_vectors: wordvec_size must be from 1 to {W.shape[1]}, got {wordvec_size!r}")
    U, S, V = np.linalg.svd(W)
    return U[:, :wordvec_size]
