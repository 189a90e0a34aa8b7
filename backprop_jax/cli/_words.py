"""``backprop-jax words``: the sequel's queries of word vectors, ``most_similar`` and ``analogy``,
on a trained word2vec run's vectors (``W_in``) or on count-based vectors of a text (ch. 2:
co-occurrence, PPMI, SVD)."""

from backprop_jax.cli._flags import fail, positive_int
from backprop_jax.cli._trained import trained_run


def add_parser(sub):
    words = sub.add_parser(
        "words", help="most similar words and analogies from word vectors: a cbow or skip-gram run, or "
                      "count-based vectors of a text",
        description="Query word vectors as the sequel's most_similar (sec. 2.3.6) and analogy (sec. 4.4.2): "
                    "the vectors of a trained cbow or skip-gram run (train --model cbow --out RUN_DIR), or, "
                    "with --count-based, the sequel's chapter 2 vectors of a text: its co-occurrence "
                    "matrix (window 1), PPMI and SVD.")
    words.add_argument("run", nargs="?", metavar="RUN_DIR", help="a train --out directory of cbow or skip-gram")
    words.add_argument("--count-based", action="store_true",
                       help="count-based vectors of the text instead of a run (as count_method_small.py)")
    words.add_argument("--data", metavar="FILE.txt",
                       help="the text: for a run, the one it trained on (default: what it recorded, its file or "
                            "the generated text of its seed); for --count-based, any UTF-8 text (default: "
                            "20,000 generated dates in words)")
    words.add_argument("--similar", metavar="WORD", action="append", default=[],
                       help="the words most like WORD, by the cosine of their vectors (repeatable)")
    words.add_argument("--analogy", nargs=3, metavar=("A", "B", "C"), action="append", default=[],
                       help="A is to B as C is to ?: the words nearest normalize(B - A + C) (repeatable)")
    words.add_argument("--top", type=positive_int, default=5, help="how many words each answer lists (default 5)")
    words.add_argument("--wordvec-size", type=positive_int, default=100, metavar="N",
                       help="for --count-based: the SVD's dimensions kept (default 100, at most the vocabulary)")


def run(args, parser):
    import numpy as np

    from backprop_jax import count_based, datasets, similarity

    if args.count_based == bool(args.run):
        parser.error("give a RUN_DIR of cbow or skip-gram, or --count-based (with --data or the generated text)")
    if not args.similar and not args.analogy:
        parser.error("ask something: --similar WORD or --analogy A B C")
    if args.count_based:
        try:
            text = datasets.load_text(args.data if args.data else datasets.date_text(20_000, seed=0))
        except datasets.DatasetError as e:
            fail(f"--data {e}" if args.data else str(e))
        corpus = np.concatenate([text.train, text.test])
        vocab = len(text.word_to_id)
        vectors = count_based.svd_word_vectors(count_based.ppmi(count_based.create_co_matrix(corpus, vocab)),
                                               min(args.wordvec_size, vocab))
        print(f"count-based vectors (PPMI, SVD to {min(args.wordvec_size, vocab)}) of {args.data or 'dates in words'}"
              f": {len(corpus)} words, a vocabulary of {vocab}")
    else:
        _, data, params = trained_run(args.run, args.data, parser, ("words",))
        text, vectors = data.source, np.asarray(params["W_in"], np.float64)
        print(f"the word vectors of {args.run} ({vectors.shape[1]} each, a vocabulary of {len(text.word_to_id)})")
    try:
        for word in args.similar:
            found = similarity.most_similar(word, text.word_to_id, text.id_to_word, vectors, args.top)
            print(f"[query] {word}\n" + "".join(f" {w}: {s:.4f}\n" for w, s in found), end="")
        for a, b, c in args.analogy:  # ch04/eval.py queries normalised vectors
            found = similarity.analogy(a, b, c, text.word_to_id, text.id_to_word, similarity.normalize(vectors),
                                       args.top)
            print(f"[analogy] {a}:{b} = {c}:?\n" + "".join(f" {w}: {s:.4f}\n" for w, s in found), end="")
    except ValueError as e:  # a word not in the vocabulary
        fail(str(e))
