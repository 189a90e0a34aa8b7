"""Querying word vectors as the sequel does (*Deep Learning from Scratch 2*, ``common/util.py``):
cosine similarity, the most similar words (sec. 2.3.6) and analogies (sec. 4.4.2).

The sequel prints its answers; these return them, as ``(word, similarity)`` pairs, best first,
in the sequel's order (``(-1 * similarity).argsort()``). Plain NumPy.
"""

import numpy as np


def cos_similarity(x, y, eps=1e-8):
    """The sequel's ``cos_similarity`` (sec. 2.3.5): ``x / (|x| + eps)`` dotted with ``y / (|y| + eps)``.

    Args: x, y float vectors (D,). Returns a float; ``eps`` keeps a zero vector at 0.
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"cos_similarity: x and y must be vectors of one length, got shapes {x.shape} and {y.shape}")
    nx = x / (np.sqrt(np.sum(x ** 2)) + eps)
    ny = y / (np.sqrt(np.sum(y ** 2)) + eps)
    return np.dot(nx, ny)


def _check(fn, words, word_to_id, word_matrix):
    word_matrix = np.asarray(word_matrix)
    if word_matrix.ndim != 2 or word_matrix.shape[0] < len(word_to_id):
        raise ValueError(f"{fn}: word_matrix must hold a row (a vector) for each of the {len(word_to_id)} words, "
                         f"got shape {word_matrix.shape}")
    missing = [w for w in words if w not in word_to_id]
    if missing:
        raise ValueError(f"{fn}: {', '.join(map(repr, missing))} not in the vocabulary ({len(word_to_id)} words)")
    return word_matrix


def most_similar(query, word_to_id, id_to_word, word_matrix, top=5):
    """The sequel's ``most_similar`` (sec. 2.3.6): the ``top`` words whose vectors have the largest
    ``cos_similarity`` with the query's, the query itself left out.

    Args:
      query: a word of ``word_to_id``.
      word_to_id: the vocabulary's ids (``preprocess``, ``datasets.load_text``).
      id_to_word: its words by id.
      word_matrix: (V, D), row ``i`` word ``i``'s vector.
      top: how many words.
    Returns:
      A list of ``(word, similarity)``, most similar first.
    Raises:
      ValueError: the query is not in the vocabulary.
    """
    word_matrix = _check("most_similar", (query,), word_to_id, word_matrix)
    query_vec = word_matrix[word_to_id[query]]
    # Row by row as the sequel: a matrix product would round differently and could reorder ties.
    similarity = np.array([cos_similarity(word_matrix[i], query_vec) for i in range(len(id_to_word))])
    found = []
    for i in (-1 * similarity).argsort():
        if id_to_word[i] == query:
            continue
        found.append((id_to_word[i], float(similarity[i])))
        if len(found) >= top:
            break
    return found


def normalize(x):
    """The sequel's ``normalize``: each row of a matrix (or a vector) divided by its length.
    Returns a new array (the sequel's divides in place)."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x / np.sqrt((x * x).sum(1)).reshape((x.shape[0], 1))
    if x.ndim == 1:
        return x / np.sqrt((x * x).sum())
    raise ValueError(f"normalize: x must be a vector or a matrix, got shape {x.shape}")


def analogy(a, b, c, word_to_id, id_to_word, word_matrix, top=5):
    """The sequel's ``analogy`` (sec. 4.4.2), "a is to b as c is to ?": the ``top`` words whose
    vectors have the largest dot product with ``normalize(b - a + c)``, the three words left out.

    Args:
      a: a word of ``word_to_id`` (``"man"``).
      b: a word (``"king"``).
      c: a word (``"woman"``).
      word_to_id: the vocabulary's ids.
      id_to_word: its words by id.
      word_matrix: (V, D) word vectors (the sequel passes ``normalize``'d ones, as
        ``ch04/eval.py`` does after loading them).
    Returns:
      A list of ``(word, score)``, best first.
    Raises:
      ValueError: a word is not in the vocabulary.
    """
    word_matrix = _check("analogy", (a, b, c), word_to_id, word_matrix)
    a_vec, b_vec, c_vec = word_matrix[word_to_id[a]], word_matrix[word_to_id[b]], word_matrix[word_to_id[c]]
    query_vec = normalize(b_vec - a_vec + c_vec)
    similarity = np.dot(word_matrix[:len(id_to_word)], query_vec)
    found = []
    for i in (-1 * similarity).argsort():
        if np.isnan(similarity[i]) or id_to_word[i] in (a, b, c):
            continue
        found.append((id_to_word[i], float(similarity[i])))
        if len(found) >= top:
            break
    return found
