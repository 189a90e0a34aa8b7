"""The commands that query a trained run: ``words`` (the sequel's most_similar and analogy on a
word2vec run's vectors, or count-based vectors of a text) and ``generate`` (the sequel's
generate_text.py on a language model's run), each against the sequel's formulas written out."""

import hashlib
import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import datasets
from backprop_jax.cli import main


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "words.txt"
    path.write_text(datasets.date_text(300, seed=5))
    return path


def forge_digest(step_dir):
    """Sets the record's digest of the arrays to zeros and makes the record's own digest again."""
    path = step_dir / "record" / "metadata"
    record = json.loads(path.read_text())
    record["digest"] = "0" * 64
    fields = {k: v for k, v in record.items() if k != "record_digest"}
    record["record_digest"] = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    path.write_text(json.dumps(record))


def printed_pairs(out, header):
    """The ``word: score`` lines under ``header`` in the command's output."""
    lines = out.splitlines()
    start = lines.index(header) + 1
    pairs = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        word, _, score = line.strip().rpartition(": ")
        pairs.append((word, float(score)))
    return pairs


def test_words_answers_as_the_sequels_most_similar_and_analogy_on_a_cbow_run(text, tmp_path, capsys):
    out = tmp_path / "cbow"
    main(["train", "--model", "cbow", "--data", str(text), "--hidden", "8", "--window-size", "2", "--epochs", "1",
          "--no-progress", "--out", str(out)])
    assert "'reading': 'shuffled'" in capsys.readouterr().out
    main(["words", str(out), "--similar", "july", "--analogy", "january", "february", "march", "--top", "3"])
    printed = capsys.readouterr().out
    recipe = bj.RECIPES["cbow"].with_settings(hidden=8, window_size=2)
    data = recipe.load_data(str(text))
    W = np.asarray(bj.restore_run(out, recipe.model(data)).params["W_in"], np.float64)
    word_to_id, id_to_word = data.source.word_to_id, data.source.id_to_word
    # The sequel's common/util.py at 842ae31c: cos_similarity(x, y, eps=1e-8) = (x / (sqrt(sum x**2) + eps))
    # . (y / (sqrt(sum y**2) + eps)); most_similar sorts (-1 * similarity).argsort() and skips the query.
    cos = lambda x, y: np.dot(x / (np.sqrt(np.sum(x ** 2)) + 1e-8), y / (np.sqrt(np.sum(y ** 2)) + 1e-8))  # noqa: E731
    similarity = np.array([cos(W[i], W[word_to_id["july"]]) for i in range(len(id_to_word))])
    book = [(id_to_word[i], similarity[i]) for i in (-1 * similarity).argsort() if id_to_word[i] != "july"][:3]
    got = printed_pairs(printed, "[query] july")
    assert [w for w, _ in got] == [w for w, _ in book]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in book], atol=1e-4)
    # analogy on normalize(W) (ch04/eval.py): query = normalize(b - a + c), dot with every row.
    Wn = W / np.sqrt((W * W).sum(1)).reshape((W.shape[0], 1))
    q = Wn[word_to_id["february"]] - Wn[word_to_id["january"]] + Wn[word_to_id["march"]]
    scores = np.dot(Wn, q / np.sqrt((q * q).sum()))
    book = [(id_to_word[i], scores[i]) for i in (-1 * scores).argsort()
            if id_to_word[i] not in ("january", "february", "march")][:3]
    got = printed_pairs(printed, "[analogy] january:february = march:?")
    assert [w for w, _ in got] == [w for w, _ in book]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in book], atol=1e-4)
    other = tmp_path / "other.txt"
    other.write_text(datasets.date_text(300, seed=6))
    with pytest.raises(SystemExit, match=r"other.txt is not the text the run in .* trained on"):
        main(["words", str(out), "--data", str(other), "--similar", "july"])
    with pytest.raises(SystemExit, match=r"'zebra' not in the vocabulary"):
        main(["words", str(out), "--similar", "zebra"])
    with pytest.raises(SystemExit):
        main(["generate", str(out)])
    assert "is a run of 'cbow'; this command takes runs of rnnlm, better-rnnlm" in capsys.readouterr().err
    # Arrays that do not match their digest are never queried, as evaluate never scores them.
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    for step in (forged / "checkpoints").iterdir():
        forge_digest(step)
    with pytest.raises(SystemExit) as e:
        main(["words", str(forged), "--similar", "july"])
    err = e.value.code  # printed as one line, status 1
    assert isinstance(err, str) and len(err.splitlines()) == 1, err
    assert re.match(r"backprop-jax: error: .*forged: no checkpoint in .* can be read and verified for this model: "
                    r".*do not match the digest saved with them", err), err


def test_words_count_based_are_the_sequels_ppmi_and_svd_of_the_text(text, capsys):
    main(["words", "--count-based", "--data", str(text), "--similar", "july", "--top", "2", "--wordvec-size", "10"])
    printed = capsys.readouterr().out
    data = datasets.load_text(str(text))
    corpus = np.concatenate([data.train, data.test])
    V = len(data.word_to_id)
    # The sequel's create_co_matrix (window 1) and ppmi(C, verbose=False, eps=1e-8), written out.
    C = np.zeros((V, V), dtype=np.int32)
    for idx, word_id in enumerate(corpus):
        for i in (1,):
            if idx - i >= 0:
                C[word_id, corpus[idx - i]] += 1
            if idx + i < len(corpus):
                C[word_id, corpus[idx + i]] += 1
    M, N, S = np.zeros_like(C, dtype=np.float32), np.sum(C), np.sum(C, axis=0)
    for i in range(V):
        for j in range(V):
            M[i, j] = max(0, np.log2(C[i, j] * N / (S[j] * S[i]) + 1e-8))
    U = np.linalg.svd(M)[0][:, :10]
    assert f"a vocabulary of {V}" in printed
    got = printed_pairs(printed, "[query] july")
    norms = np.sqrt(np.sum(U ** 2, axis=1)) + 1e-8
    sims = (U / norms[:, None]) @ (U[data.word_to_id["july"]] / norms[data.word_to_id["july"]])
    for word, score in got:
        np.testing.assert_allclose(score, sims[data.word_to_id[word]], atol=1e-4)
    assert len(got) == 2 and got[0][1] >= got[1][1]


@pytest.mark.parametrize("model, flags", [("rnnlm", ["--wordvec-size", "8"]), ("better-rnnlm", ["--wordvec-size", "8"])])
def test_generate_samples_the_runs_language_model_as_the_sequels_generate_text(model, flags, text, tmp_path, capsys):
    out = tmp_path / model
    main(["train", "--model", model, "--data", str(text), "--hidden", "8", *flags, "--batch-size", "4",
          "--epochs", "1", "--no-progress", "--out", str(out)])
    capsys.readouterr()
    main(["generate", str(out), "--start", "july", "--length", "30", "--seed", "3", "--skip", ",", "/"])
    printed = capsys.readouterr().out
    recipe = bj.RECIPES[model].with_settings(hidden=8, wordvec_size=8)
    data = recipe.load_data(str(text), batch_size=4)
    from backprop_jax.training import Checkpoints, init_state
    config = recipe.config(data)
    state, _ = Checkpoints(out / "checkpoints").restore(jax.eval_shape(lambda: init_state(recipe.model(data), config)))
    ids = bj.generation.generate(state.params, data.source.word_to_id["july"], key=jax.random.key(3), sample_size=30,
                                 skip_ids=[data.source.word_to_id[w] for w in (",", "/")])
    words = [data.source.id_to_word[int(i)] for i in ids]
    # generate_text.py: ' '.join(words), then ' <eos>' as '.\n'
    assert printed == " ".join(words).replace(" <eos>", ".\n") + "\n"
    assert words[0] == "july" and "," not in words and "/" not in words


def test_generate_verifies_the_checkpoint_as_evaluate_and_falls_back_to_the_one_before(text, tmp_path, capsys):
    out = tmp_path / "rnnlm"
    main(["train", "--model", "rnnlm", "--data", str(text), "--hidden", "8", "--wordvec-size", "8", "--batch-size", "4",
          "--epochs", "2", "--no-progress", "--out", str(out)])
    newest, older = sorted((out / "checkpoints").iterdir(), key=lambda p: -int(p.name))
    only_older = tmp_path / "only-older"
    shutil.copytree(out, only_older)
    shutil.rmtree(only_older / "checkpoints" / newest.name)
    capsys.readouterr()
    main(["generate", str(only_older), "--length", "12", "--seed", "1"])
    from_older = capsys.readouterr().out
    main(["generate", str(out), "--length", "12", "--seed", "1"])
    assert capsys.readouterr().out != from_older  # the newest is what an intact run generates from
    with pytest.raises(SystemExit) as e:
        main(["generate", str(out), "--length", str(2 ** 31)])
    assert re.fullmatch(r"backprop-jax: error: --length 2147483648: generate: sample_size must be at most "
                        r"2\*\*31 - 1 = 2147483647 \(.*\), got 2147483648", e.value.code), e.value.code
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    forge_digest(forged / "checkpoints" / newest.name)
    truncated = tmp_path / "truncated"
    shutil.copytree(out, truncated)
    arrays = [os.path.join(d, f) for d, _, files in os.walk(truncated / "checkpoints" / newest.name / "state" / "d")
              for f in files]
    for path in arrays:
        os.truncate(path, 10)
    for run, why in [(forged, "its arrays do not match the digest saved with them"), (truncated, "ValueError")]:
        main(["generate", str(run), "--length", "12", "--seed", "1"])
        captured = capsys.readouterr()
        assert captured.out == from_older
        assert re.fullmatch(rf"checkpoint {newest.name} in .* cannot be trusted \(.*{why}.*\); skipped it\n",
                            captured.err), captured.err
    # A record that is not a regular file is skipped too; when none reads, one line and status 1.
    for step in (forged / "checkpoints").iterdir():
        (step / "record" / "metadata").unlink()
        os.mkfifo(step / "record" / "metadata")
    with pytest.raises(SystemExit) as e:
        main(["generate", str(forged), "--length", "5"])
    assert re.fullmatch(r"backprop-jax: error: .*forged: no checkpoint in .* has a record that reads",
                        str(e.value.code)), e.value.code
