"""The sequel's count-based methods (ch. 2) and word-vector queries, each against its loop in
``common/util.py`` at 842ae31c written out here in the book's order."""

import numpy as np
import pytest

from backprop_jax import count_based, similarity

TEXT = "You say goodbye and I say hello."


def book_preprocess(text):
    text = text.lower()
    text = text.replace('.', ' .')
    words = text.split(' ')
    word_to_id, id_to_word = {}, {}
    for word in words:
        if word not in word_to_id:
            new_id = len(word_to_id)
            word_to_id[word] = new_id
            id_to_word[new_id] = word
    return np.array([word_to_id[w] for w in words]), word_to_id, id_to_word


def book_create_co_matrix(corpus, vocab_size, window_size=1):
    corpus_size = len(corpus)
    co_matrix = np.zeros((vocab_size, vocab_size), dtype=np.int32)
    for idx, word_id in enumerate(corpus):
        for i in range(1, window_size + 1):
            left_idx = idx - i
            right_idx = idx + i
            if left_idx >= 0:
                co_matrix[word_id, corpus[left_idx]] += 1
            if right_idx < corpus_size:
                co_matrix[word_id, corpus[right_idx]] += 1
    return co_matrix


def book_ppmi(C, eps=1e-8):  # with the eps of commit c8766da
    M = np.zeros_like(C, dtype=np.float32)
    N = np.sum(C)
    S = np.sum(C, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                pmi = np.log2(C[i, j] * N / (S[j] * S[i]) + eps)
                M[i, j] = max(0, pmi)
    return M


def book_cos_similarity(x, y, eps=1e-8):
    nx = x / (np.sqrt(np.sum(x ** 2)) + eps)
    ny = y / (np.sqrt(np.sum(y ** 2)) + eps)
    return np.dot(nx, ny)


def random_corpus(seed=0, words=400, vocab=23):
    corpus = np.random.default_rng(seed).integers(0, vocab, words)
    corpus[-1] = vocab + 2  # a word id with no neighbours on its right, and id vocab + 1 never used
    return corpus


def test_preprocess_and_the_co_matrix_as_the_sequel():
    corpus, word_to_id, id_to_word = count_based.preprocess(TEXT)
    book = book_preprocess(TEXT)
    np.testing.assert_array_equal(corpus, book[0])
    assert word_to_id == book[1] and id_to_word == book[2]
    C = count_based.create_co_matrix(corpus, len(word_to_id))
    assert C.dtype == np.int32
    np.testing.assert_array_equal(C, book_create_co_matrix(book[0], len(word_to_id)))
    np.testing.assert_array_equal(C[0], [0, 1, 0, 0, 0, 0, 0])  # the sequel's printout for "you"
    corpus = random_corpus()
    for window in (1, 2, 3):
        np.testing.assert_array_equal(count_based.create_co_matrix(corpus, 26, window),
                                      book_create_co_matrix(corpus, 26, window))
    with pytest.raises(ValueError, match="create_co_matrix: the corpus holds word id 25, not below vocab_size 20"):
        count_based.create_co_matrix(corpus, 20)


def test_ppmi_as_the_sequel_including_words_never_seen():
    corpus, word_to_id, _ = count_based.preprocess(TEXT)
    C = count_based.create_co_matrix(corpus, len(word_to_id))
    W = count_based.ppmi(C)
    assert W.dtype == np.float32
    np.testing.assert_array_equal(W, book_ppmi(C))
    np.testing.assert_allclose(W[0], [0, 1.807, 0, 0, 0, 0, 0], atol=5e-4)  # the sequel's printout
    C = count_based.create_co_matrix(random_corpus(), 26, 2)  # id 24 never occurs: a zero row and column
    assert C[24].sum() == 0
    np.testing.assert_array_equal(count_based.ppmi(C), book_ppmi(C))


def test_svd_word_vectors_are_the_first_columns_of_u():
    corpus, word_to_id, _ = count_based.preprocess(TEXT)
    W = count_based.ppmi(count_based.create_co_matrix(corpus, len(word_to_id)))
    U, S, V = np.linalg.svd(W)  # count_method_small.py
    vecs = count_based.svd_word_vectors(W, 2)
    np.testing.assert_array_equal(vecs, U[:, :2])
    # They are W's best rank-2 factor: U2 S2 V2 reproduces W as well as any rank 2 can.
    assert np.linalg.norm(W - (vecs * S[:2]) @ V[:2]) == pytest.approx(np.sqrt(np.sum(S[2:] ** 2)), rel=1e-5)
    with pytest.raises(ValueError, match="svd_word_vectors: wordvec_size must be from 1 to 7, got 8"):
        count_based.svd_word_vectors(W, 8)


def test_most_similar_and_analogy_as_the_sequel():
    corpus, word_to_id, id_to_word = count_based.preprocess(TEXT)
    C = count_based.create_co_matrix(corpus, len(word_to_id))
    found = similarity.most_similar("you", word_to_id, id_to_word, C, top=5)
    # The sequel's loop: cos_similarity of every row with the query's, (-1 * similarity).argsort(),
    # the query skipped, the first `top` printed.
    sims = np.array([book_cos_similarity(C[i], C[word_to_id["you"]]) for i in range(len(id_to_word))])
    book = [(id_to_word[i], sims[i]) for i in (-1 * sims).argsort() if id_to_word[i] != "you"][:5]
    assert [w for w, _ in found] == [w for w, _ in book]
    np.testing.assert_array_equal([s for _, s in found], [s for _, s in book])
    assert [round(s, 4) for _, s in found][:3] == [0.7071] * 3  # goodbye, i, hello in the sequel's printout
    assert similarity.cos_similarity(C[0], C[0]) == pytest.approx(1.0, abs=1e-7)
    # analogy: normalize(b - a + c), dot with every row, a, b and c skipped.
    rng = np.random.default_rng(1)
    vecs = similarity.normalize(rng.standard_normal((len(id_to_word), 4)))
    np.testing.assert_allclose(np.sum(vecs ** 2, axis=1), 1.0, rtol=1e-12)
    q = vecs[word_to_id["say"]] - vecs[word_to_id["you"]] + vecs[word_to_id["i"]]
    q = q / np.sqrt((q * q).sum())
    scores = vecs @ q
    book = [(id_to_word[i], scores[i]) for i in (-1 * scores).argsort() if id_to_word[i] not in ("you", "say", "i")]
    found = similarity.analogy("you", "say", "i", word_to_id, id_to_word, vecs, top=3)
    assert found == [(w, float(s)) for w, s in book[:3]]
    with pytest.raises(ValueError, match="analogy: 'king' not in the vocabulary"):
        similarity.analogy("you", "king", "i", word_to_id, id_to_word, vecs)


def test_count_based_vectors_of_the_date_text_put_months_beside_months():
    # The sequel's count_method_big.py on a small text: co-occurrence (window 2), PPMI, SVD.
    from backprop_jax import datasets
    data = datasets.load_text(datasets.date_text(2000, seed=0))
    V = len(data.word_to_id)
    vecs = count_based.svd_word_vectors(count_based.ppmi(count_based.create_co_matrix(data.train, V, 2)), 30)
    months = {m for full in ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                             "october", "november", "december") for m in (full, full[:3])}
    found = similarity.most_similar("january", data.word_to_id, data.id_to_word, vecs, top=3)
    assert {w for w, _ in found} <= months, found
    assert found[0][1] > 0.5
