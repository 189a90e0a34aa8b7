"""MNIST files: parsing, errors, download with checksums, the embedded sample."""

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from backprop_jax import datasets
from conftest import fake_mnist


def test_load_mnist_parses_idx_files_like_the_book(tmp_path):
    arrays = fake_mnist(tmp_path)
    (x, t), (xt, tt) = datasets.load_mnist(data_dir=tmp_path)
    assert x.shape == (30, 784) and x.dtype == np.float32 and xt.shape == (10, 784)
    np.testing.assert_array_equal(x, arrays["train_img"].reshape(30, 784) / np.float32(255))
    np.testing.assert_array_equal(t, arrays["train_label"])
    assert t.dtype == np.int32 and x.min() >= 0 and x.max() <= 1
    (x, t), _ = datasets.load_mnist(normalize=False, flatten=False, one_hot_label=True, data_dir=tmp_path)
    assert x.shape == (30, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], arrays["train_img"])
    np.testing.assert_array_equal(t.argmax(axis=1), arrays["train_label"])
    assert t.shape == (30, 10) and np.all(t.sum(axis=1) == 1)


def test_missing_files_error_names_directory_and_files(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(datasets.DatasetError) as e:
        datasets.load_mnist(data_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path) in message and "missing t10k-labels-idx1-ubyte.gz" in message
    for name, _ in datasets.MNIST_FILES.values():
        assert name in message


@pytest.mark.parametrize("kind", ["a FIFO", "a device"])
def test_files_that_are_not_regular_files_are_named_as_what_they_are(tmp_path, kind):
    import os

    fake_mnist(tmp_path)
    for name, _ in datasets.MNIST_FILES.values():  # none read: a FIFO would wait, /dev/zero never ends
        (tmp_path / name).unlink()
        os.mkfifo(tmp_path / name) if kind == "a FIFO" else (tmp_path / name).symlink_to("/dev/zero")
    assert datasets.missing_files(tmp_path) == []  # there, though unreadable: not missing
    first = tmp_path / datasets.MNIST_FILES["train_img"][0]
    with pytest.raises(datasets.DatasetError, match=rf"^{first} is {kind}, not a regular file; delete it and "
                                                    r"download the file again$"):
        datasets.load_mnist(data_dir=tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()  # a name that is not there at all is still missing
    with pytest.raises(datasets.DatasetError, match="missing t10k-labels-idx1-ubyte.gz. Place"):
        datasets.load_mnist(data_dir=tmp_path)


def corrupt(path, how):
    raw = gzip.decompress(path.read_bytes())
    if how == "truncated":
        path.write_bytes(gzip.compress(raw[:-5]))
    elif how == "magic":
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x02" + raw[4:]))
    elif how == "not-gzip":
        path.write_bytes(raw)
    elif how == "cut-gzip":
        path.write_bytes(path.read_bytes()[:-100] if path.stat().st_size > 200 else b"\x1f\x8b")


@pytest.mark.parametrize("how, message", [
    ("truncated", r"header says \(30, 28, 28\) = 23520 bytes of data but the file holds 23515"),
    ("magic", r"wrong magic number 00000802 \(expected 00000803"),
    ("not-gzip", r"not a readable gzip file"),
    ("cut-gzip", r"not a readable gzip file"),
])
def test_corrupt_files_are_named(tmp_path, how, message):
    fake_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    corrupt(path, how)
    with pytest.raises(datasets.DatasetError, match=message) as e:
        datasets.load_mnist(data_dir=tmp_path)
    assert str(path) in str(e.value)


def test_inconsistent_counts_and_labels(tmp_path):
    fake_mnist(tmp_path)
    datasets.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))
    with pytest.raises(datasets.DatasetError, match="holds 30 images but train-labels-idx1-ubyte.gz holds 29"):
        datasets.load_mnist(data_dir=tmp_path)
    datasets.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.full(30, 12, np.uint8))
    with pytest.raises(datasets.DatasetError, match="label 12 is not a digit"):
        datasets.load_mnist(data_dir=tmp_path)


class _Server:
    """Serves files from a directory on 127.0.0.1; ``cut`` names files sent half-way then dropped."""

    def __init__(self, root, cut=()):
        root, cut_names = Path(root), set(cut)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if path.name in cut_names else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def checksums(directory):
    return {key: (name, hashlib.md5((Path(directory) / name).read_bytes()).hexdigest())
            for key, (name, _) in datasets.MNIST_FILES.items()}


def test_download_verifies_checksums_and_falls_back_to_the_next_mirror(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    arrays = fake_mnist(good)
    fake_mnist(bad, seed=1)  # same names, other bytes: wrong checksums
    files = checksums(good)
    target = tmp_path / "cache"
    with _Server(bad) as wrong, _Server(good) as right:
        log = []
        datasets.download_mnist(target, mirrors=(wrong.url, right.url), files=files, log=log.append)
    assert len(log) == 8  # every file tried on the wrong mirror, then fetched from the right one
    (x, t), _ = datasets.load_mnist(data_dir=target, normalize=False)
    np.testing.assert_array_equal(t, arrays["train_label"])
    assert sorted(p.name for p in target.iterdir()) == sorted(n for n, _ in files.values())


def test_interrupted_or_wrong_download_leaves_no_file(tmp_path):
    good = tmp_path / "good"
    fake_mnist(good)
    files = checksums(good)
    target = tmp_path / "cache"
    with _Server(good, cut=["train-images-idx3-ubyte.gz"]) as server:
        with pytest.raises(datasets.DatasetError, match=r"could not download train-images-idx3-ubyte.gz"):
            datasets.download_mnist(target, mirrors=(server.url,), files=files, timeout=10, log=lambda m: None)
    assert list(target.iterdir()) == []  # no partial file, no temporary left behind
    wrong = dict(files, train_img=(files["train_img"][0], "0" * 32))
    with _Server(good) as server:
        with pytest.raises(datasets.DatasetError, match=r"checksum mismatch: MD5 [0-9a-f]{32}, expected 0{32}"):
            datasets.download_mnist(target, mirrors=(server.url,), files=wrong, log=lambda m: None)
    assert list(target.iterdir()) == []


def test_download_keeps_good_files(tmp_path):
    good = tmp_path / "good"
    fake_mnist(good)
    files = checksums(good)
    with _Server(good) as server:
        datasets.download_mnist(tmp_path / "cache", mirrors=(server.url,), files=files, log=lambda m: None)
    log = []
    datasets.download_mnist(tmp_path / "cache", mirrors=("http://127.0.0.1:9/",), files=files, log=log.append)
    assert log == []


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKPROP_JAX_DATA", str(tmp_path / "data"))
    assert datasets.cache_dir() == tmp_path / "data"
    monkeypatch.delenv("BACKPROP_JAX_DATA")
    assert datasets.cache_dir().name == "backprop-jax"


def test_embedded_sample_ships_in_the_package_stratified_and_disjoint():
    (x, t), (xt, tt) = datasets.load_mnist_sample()
    assert x.shape == (4000, 784) and xt.shape == (1000, 784)
    assert np.bincount(t).tolist() == [400] * 10 and np.bincount(tt).tolist() == [100] * 10
    # Shuffled like MNIST's own files, not sorted by digit: the book's x_train[:300] has every digit.
    assert np.bincount(t[:300], minlength=10).min() >= 15 and np.bincount(tt[:100], minlength=10).min() >= 5
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() == 1.0
    assert t.dtype == np.int32
    # Real digits, not noise: the mean image of each digit is far from the others'.
    means = np.stack([x[t == d].mean(axis=0) for d in range(10)])
    nearest = [int(np.argmin(((means - row) ** 2).sum(axis=1))) for row in xt]
    assert np.mean(np.asarray(nearest) == tt) > 0.75
    # No image is in both splits.
    train_rows = {row.tobytes() for row in (x * 255).astype(np.uint8)}
    assert not any(row.tobytes() in train_rows for row in (xt * 255).astype(np.uint8))
    # The book's three flags.
    (xi, ti), _ = datasets.load_mnist_sample(normalize=False, flatten=False, one_hot_label=True)
    assert xi.shape == (4000, 1, 28, 28) and xi.dtype == np.uint8
    np.testing.assert_array_equal(xi.reshape(4000, 784) / np.float32(255), x)
    np.testing.assert_array_equal(ti.argmax(axis=1), t)


def test_a_data_directory_that_is_a_file_is_named(tmp_path):
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    for call in (lambda: datasets.load_mnist(data_dir=path), lambda: datasets.missing_files(path),
                 lambda: datasets.download_mnist(path, mirrors=(), log=lambda m: None)):
        with pytest.raises(datasets.DatasetError, match=rf"the data directory {path} is a file, not a directory"):
            call()


def test_download_removes_temporaries_left_by_a_killed_download(tmp_path):
    import os
    import time

    good = tmp_path / "good"
    fake_mnist(good)
    files = checksums(good)
    target = tmp_path / "cache"
    target.mkdir()
    stale = target / ".train-images-idx3-ubyte.gz.abc123.tmp"  # what atomic_path leaves when killed
    stale.write_bytes(b"half a download")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = target / ".t10k-images-idx3-ubyte.gz.def456.tmp"  # another download, still writing
    fresh.write_bytes(b"being written")
    logged = []
    with _Server(good) as server:
        datasets.download_mnist(target, mirrors=(server.url,), files=files, log=logged.append)
    assert not stale.exists() and fresh.exists()
    assert f"removed {stale.name}, left by an interrupted download" in logged


def test_the_spiral_is_the_sequels():
    # The sequel's spiral.load_data, as it writes it: np.random.seed(seed), then one randn per point.
    np.random.seed(1984)
    N, DIM, CLS_NUM = 100, 2, 3
    x = np.zeros((N * CLS_NUM, DIM))
    t = np.zeros((N * CLS_NUM, CLS_NUM), dtype=int)
    for j in range(CLS_NUM):
        for i in range(N):
            rate = i / N
            radius = 1.0 * rate
            theta = j * 4.0 + 4.0 * rate + np.random.randn() * 0.2
            ix = N * j + i
            x[ix] = np.array([radius * np.sin(theta), radius * np.cos(theta)]).flatten()
            t[ix, j] = 1
    ours_x, ours_t = datasets.spiral()
    assert ours_x.dtype == ours_t.dtype == np.float32 and ours_x.shape == (300, 2)
    np.testing.assert_allclose(ours_x, x, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(ours_t, t)
    _, labels = datasets.spiral(one_hot_label=False)
    np.testing.assert_array_equal(labels, np.argmax(t, axis=1))
    assert not np.allclose(datasets.spiral(seed=1)[0], ours_x)


# Lines of the sequel's dataset/date.txt at 842ae31c (the first, third, fifth, sixth and seventeenth).
BOOK_DATE_TXT = ["september 27, 1994           _1994-09-27", "2/10/93                      _1993-02-10",
                 "TUESDAY, SEPTEMBER 25, 1984  _1984-09-25", "JUN 17, 2013                 _2013-06-17",
                 "Wednesday, February 26, 1997 _1997-02-26"]


def written_ways(iso, formats):
    """Every text a date can be written as in ``formats`` (strftime's names, in three cases),
    padded as date.txt pads it."""
    import datetime
    d = datetime.date.fromisoformat(iso)
    parts = {"month": d.strftime("%B"), "mon": d.strftime("%b"), "weekday": d.strftime("%A"), "day": d.day,
             "m": d.month, "year": d.year, "yy": d.strftime("%y")}
    texts = [f.format(**parts) for f in formats]
    return {t.ljust(29) + "_" + iso for text in texts for t in (text.lower(), text.upper(), text.title())}


def test_date_lines_are_the_projects_generator_in_the_books_line_format():
    # Each of the book's lines is its date written one of the four BOOK_DATE_FORMATS ways.
    for line in BOOK_DATE_TXT:
        assert line in written_ways(line[-10:], datasets.BOOK_DATE_FORMATS), line
    lines = datasets.date_lines(300, seed=0)
    assert all(line in written_ways(line[-10:], datasets.DATE_FORMATS) for line in lines)
    assert all(len(line) == 40 for line in lines)
    # The default adds the project's two ways, which the book's file does not have ...
    own = [line for line in lines if line not in written_ways(line[-10:], datasets.BOOK_DATE_FORMATS)]
    assert 50 < len(own) < 150
    # ... and formats=BOOK_DATE_FORMATS keeps to the book's four.
    book = datasets.date_lines(300, seed=0, formats=datasets.BOOK_DATE_FORMATS)
    assert all(line in written_ways(line[-10:], datasets.BOOK_DATE_FORMATS) for line in book)
    assert max(int(line[-10:-6]) for line in datasets.date_lines(2000, seed=1)) > 2017  # years past the book's
    with pytest.raises(ValueError, match="date_lines: formats must be format strings"):
        datasets.date_lines(3, formats=())
