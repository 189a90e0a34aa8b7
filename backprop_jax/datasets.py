"""MNIST: the full set from IDX files, and a 5,000-digit sample shipped inside the package; and
the sequel's character sequences (``addition_lines``, ``load_sequence``).

Both loaders follow the book's ``load_mnist(normalize, flatten, one_hot_label)``
and return ``((x_train, t_train), (x_test, t_test))``:

* ``normalize``: pixels as float32 in [0, 1] (else uint8 in 0..255);
* ``flatten``: images of shape (N, 784) (else (N, 1, 28, 28));
* ``one_hot_label``: labels as float32 rows of shape (N, 10) (else int32 (N,)).
"""

import gzip
import hashlib
import http.client
import os
import urllib.request
import zlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from backprop_jax._io import atomic_path, read_regular_file, remove_stale_temporaries
from backprop_jax._values import check_count

# The four files of the MNIST database and their MD5 checksums.
MNIST_FILES = {
    "train_img": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_label": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_img": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_label": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}
# Public mirrors of those files, tried in order.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
# 5,000 digits of MNIST (500 of each), split stratified and fixed: 400 of each to train, 100 to test.
SAMPLE_FILE = "mnist_sample.npz"


class DatasetError(RuntimeError):
    """A data file is missing, corrupt or could not be downloaded."""


def cache_dir():
    """``$BACKPROP_JAX_DATA`` if set, else the user cache directory (``~/.cache/backprop-jax``)."""
    if os.environ.get("BACKPROP_JAX_DATA"):
        return Path(os.environ["BACKPROP_JAX_DATA"]).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("backprop-jax"))


# --- IDX files ----------------------------------------------------------------

def read_idx(path, ndim):
    """Reads a gzip-compressed IDX file of unsigned bytes with ``ndim`` dimensions.

    Raises ``DatasetError`` naming the file if it is not a regular file (a FIFO, a device: what
    it is), is not gzip, has the wrong magic number, or is truncated or too long for the sizes
    in its header.
    """
    path = Path(path)
    try:
        compressed = read_regular_file(path)  # never a FIFO or a device: neither ends
    except OSError as e:
        raise DatasetError(f"{e}; delete it and download the file again") from None
    try:
        raw = gzip.decompress(compressed)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{path}: not a readable gzip file ({e}); delete it and download it again") from None
    expected_magic = bytes([0, 0, 0x08, ndim])
    if raw[:4] != expected_magic:
        raise DatasetError(
            f"{path}: wrong magic number {raw[:4].hex()} (expected {expected_magic.hex()}: "
            f"unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}); is it the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated header ({len(raw)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DatasetError(
            f"{path}: header says {dims} = {size} bytes of data but the file holds "
            f"{len(raw) - header}; the file is truncated or corrupt")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def write_idx(path, array):
    """Writes a uint8 array as a gzip-compressed IDX file (the inverse of ``read_idx``)."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with atomic_path(path) as tmp, gzip.open(tmp, "wb") as f:
        f.write(header + array.tobytes())


def _md5(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _directory(path):
    """``path``, unless it exists and is not a directory (``DatasetError``)."""
    if path.exists() and not path.is_dir():
        raise DatasetError(f"the data directory {path} is a file, not a directory (check data_dir=... "
                           f"and $BACKPROP_JAX_DATA)")
    return path


def missing_files(data_dir):
    """Names of the four MNIST files that are not in ``data_dir`` (nothing by that name, or a
    symbolic link to nothing); ``DatasetError`` if the directory cannot be read or is a file. A
    name that is there but not a regular file (a FIFO, a device) is not missing: reading it
    (``load_mnist``) says what it is."""
    data_dir = _directory(Path(data_dir))
    try:
        return [name for name, _ in MNIST_FILES.values() if not (data_dir / name).exists()]
    except OSError as e:
        raise DatasetError(f"cannot read the data directory {data_dir}: {e.strerror or e}") from None


def download_mnist(data_dir=None, *, mirrors=MIRRORS, files=MNIST_FILES, timeout=60, log=print):
    """Downloads the MNIST files into ``data_dir`` (default ``cache_dir()``), checking MD5s.

    Files already present with the right checksum are kept. Each download is
    written to a temporary file and renamed only once its checksum matches, so
    an interrupted download never leaves a partial file under the real name.

    Returns:
      The directory.
    Raises:
      DatasetError: if a file could not be fetched intact from any mirror.
    """
    data_dir = _directory(Path(data_dir) if data_dir is not None else cache_dir())
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create the data directory {data_dir}: {e.strerror or e}") from None
    for name, md5 in files.values():
        target = data_dir / name
        for tmp in remove_stale_temporaries(target):  # left by a download that was killed
            log(f"removed {tmp.name}, left by an interrupted download")
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror + name
            log(f"downloading {url}")
            try:
                with atomic_path(target) as tmp:
                    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                    got = _md5(tmp)
                    if got != md5:
                        raise DatasetError(f"checksum mismatch: MD5 {got}, expected {md5}")
                break
            except (OSError, http.client.HTTPException, DatasetError) as e:
                errors.append(f"  {url}: {e}")
        else:
            raise DatasetError(f"could not download {name} into {data_dir}:\n" + "\n".join(errors))
    return data_dir


# --- Loaders ------------------------------------------------------------------

def _prepare(images, labels, normalize, flatten, one_hot_label):
    x = images.reshape(len(images), 784) if flatten else images.reshape(len(images), 1, 28, 28)
    if normalize:
        x = x.astype(np.float32) / 255.0
    t = labels.astype(np.int32)
    if one_hot_label:
        t = np.eye(10, dtype=np.float32)[t]
    return x, t


def load_mnist(normalize=True, flatten=True, one_hot_label=False, *, data_dir=None, download=False):
    """Full MNIST, 60,000 training and 10,000 test digits, from the four IDX files.

    Args:
      normalize: as in the book, pixels scaled to [0, 1] (see the module doc).
      flatten: as in the book, images as rows of 784.
      one_hot_label: as in the book, labels as one-hot rows.
      data_dir: directory holding the files (default ``cache_dir()``).
      download: fetch missing files from a public mirror first.
    Raises:
      DatasetError: files missing (the message names the directory and the
        files to place there), corrupt, or inconsistent with each other.
    """
    data_dir = Path(data_dir) if data_dir is not None else cache_dir()
    if download:
        download_mnist(data_dir)
    missing = missing_files(data_dir)
    if missing:
        all_names = ", ".join(name for name, _ in MNIST_FILES.values())
        raise DatasetError(
            f"MNIST not found in {data_dir}: missing {', '.join(missing)}. Place the four "
            f"files {all_names} there, or run `backprop-jax download` on a machine with "
            f"internet access (set BACKPROP_JAX_DATA or pass data_dir=... to use another directory)")
    arrays = {}
    for key, (name, _) in MNIST_FILES.items():
        arrays[key] = read_idx(data_dir / name, 3 if key.endswith("img") else 1)
    for split in ("train", "test"):
        img, lab = arrays[f"{split}_img"], arrays[f"{split}_label"]
        img_name, lab_name = MNIST_FILES[f"{split}_img"][0], MNIST_FILES[f"{split}_label"][0]
        if img.shape[1:] != (28, 28):
            raise DatasetError(f"{data_dir / img_name}: images are {img.shape[1:]}, expected 28x28")
        if len(img) != len(lab):
            raise DatasetError(f"{data_dir}: {img_name} holds {len(img)} images but {lab_name} "
                               f"holds {len(lab)} labels")
        if lab.size and lab.max() > 9:
            raise DatasetError(f"{data_dir / lab_name}: label {int(lab.max())} is not a digit 0-9")
    return (_prepare(arrays["train_img"], arrays["train_label"], normalize, flatten, one_hot_label),
            _prepare(arrays["test_img"], arrays["test_label"], normalize, flatten, one_hot_label))


def load_mnist_sample(normalize=True, flatten=True, one_hot_label=False):
    """5,000 real MNIST digits shipped with the package: 4,000 to train, 1,000 to test.

    The split is stratified (400 training and 100 test images per digit) and
    fixed, each split in a fixed shuffled order as MNIST's own files are (so
    the book's ``x_train[:300]`` holds every digit); the images are uint8
    28x28 like MNIST's own, and ``normalize``,
    ``flatten`` and ``one_hot_label`` work as in ``load_mnist``.
    """
    source = resources.files("backprop_jax").joinpath("data", SAMPLE_FILE)
    try:
        with source.open("rb") as f, np.load(f) as data:
            x_train, t_train, x_test, t_test = (data[k] for k in ("x_train", "t_train", "x_test", "t_test"))
    except Exception as e:  # noqa: BLE001 - BadZipFile, a bad CRC, a missing array, ...
        raise DatasetError(f"the embedded sample {source} is damaged ({type(e).__name__}: {e}); "
                           f"reinstall backprop-jax") from None
    return (_prepare(x_train, t_train, normalize, flatten, one_hot_label),
            _prepare(x_test, t_test, normalize, flatten, one_hot_label))


# --- the sequel's character sequences (Deep Learning from Scratch 2, ch. 7) ------------------

class SequenceData(NamedTuple):
    """Questions and answers as character ids, split as the sequel's ``sequence.load_data``."""
    train: tuple  # (x, t): int32 (N, question width) and (N, answer width)
    test: tuple
    char_to_id: dict
    id_to_char: dict

    def decode(self, ids):
        """The text of a row of character ids."""
        return "".join(self.id_to_char[int(i)] for i in np.asarray(ids).ravel())


def addition_lines(n=50_000, seed=1984):
    """``n`` addition problems in the sequel's ``addition.txt`` format, from ``seed``: two numbers
    below 1000, the question padded to 7 characters and the answer, after ``_``, to 4
    (``"16+75  _91  "``)."""
    check_count("addition_lines: n", n)
    a, b = np.random.default_rng(seed).integers(0, 1000, (2, n))
    return [f"{x}+{y}".ljust(7) + "_" + str(x + y).ljust(4) for x, y in zip(a.tolist(), b.tolist())]


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# The human ways of writing a date that date_lines mixes, by their parts: the first four are
# the four that the sequel's dataset/date.txt mixes, the last two the project's own.
DATE_FORMATS = (
    "{month} {day}, {year}", "{mon} {day}, {year}", "{weekday}, {month} {day}, {year}", "{m}/{day}/{yy}",
    "{day} {month} {year}", "{day}.{m}.{year}",
)
BOOK_DATE_FORMATS = DATE_FORMATS[:4]


def date_lines(n=50_000, seed=1984, *, formats=DATE_FORMATS):
    """``n`` date problems in the sequel's ``date.txt`` line format, from ``seed``: the project's own
    generator, not the sequel's file. A date between 1970 and 2020 written one of ``formats``
    ways (by default the six of ``DATE_FORMATS``), in lower, upper or title case, padded to 29
    characters, and after ``_`` the same date as ``YYYY-MM-DD`` (``"september 27, 1994
    _1994-09-27"``).

    The sequel's ``date.txt`` (50,000 lines, dates from 1970 to 2017) mixes four of these ways,
    ``BOOK_DATE_FORMATS``; the default adds two (``"27 september 1994"``, ``"27.9.1994"``) and
    the years to 2020, and draws the cases evenly. ``formats=BOOK_DATE_FORMATS`` keeps to the
    book's four. To train on the book's own problems, read its file with ``load_sequence``.
    """
    import datetime

    check_count("date_lines: n", n)
    formats = tuple(formats)
    if not formats or not all(isinstance(f, str) for f in formats):
        raise ValueError(f"date_lines: formats must be format strings (as DATE_FORMATS), got {formats!r}")
    rng = np.random.default_rng(seed)
    first, days = datetime.date(1970, 1, 1), (datetime.date(2020, 12, 31) - datetime.date(1970, 1, 1)).days
    lines = []
    for offset, form, case in zip(rng.integers(0, days + 1, n).tolist(), rng.integers(0, len(formats), n).tolist(),
                                  rng.integers(0, 3, n).tolist()):
        date = first + datetime.timedelta(days=offset)
        text = formats[form].format(
            month=_MONTHS[date.month - 1], mon=_MONTHS[date.month - 1][:3], weekday=_WEEKDAYS[date.weekday()],
            day=date.day, m=date.month, year=date.year, yy=f"{date.year % 100:02d}")
        text = (text.lower(), text.upper(), text.title())[case]
        lines.append(text.ljust(29) + "_" + date.isoformat())
    return lines


def _read_text(path):
    """The UTF-8 text of ``path``; DatasetError naming it when it cannot be read."""
    try:
        return read_regular_file(path).decode("utf-8")
    except OSError as e:
        raise DatasetError(str(e)) from None  # names the file
    except UnicodeDecodeError as e:
        raise DatasetError(f"cannot read {path}: {e}") from None


def load_sequence(source, seed=1984):
    """The sequel's ``sequence.load_data``: each line split at its ``_`` into a question and an
    answer (the answer keeps the ``_``, the decoder's first input), characters numbered in order
    of first appearance, the rows shuffled by ``seed`` exactly as the sequel shuffles them
    (``numpy.random.seed(seed); numpy.random.shuffle``), and the last tenth held out.

    Args:
      source: a text file in the sequel's format (``addition.txt``, ``date.txt``) or a list of
        such lines (``addition_lines()``).
    Returns:
      A ``SequenceData``.
    Raises:
      DatasetError: a line without ``_``, or questions or answers of different widths (named by
        line number).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        lines = _read_text(path).split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        where = str(path)
    else:
        lines, where = [str(line).rstrip("\n") for line in source], "the lines given"
    if not lines:
        raise DatasetError(f"{where}: no problems in it")
    questions, answers = [], []
    for number, line in enumerate(lines, 1):
        cut = line.find("_")
        if cut < 1:
            raise DatasetError(f"{where}, line {number}: {line!r} has no question before a '_' starting its answer")
        questions.append(line[:cut])
        answers.append(line[cut:])
        for kind, texts in (("question", questions), ("answer", answers)):
            if len(texts[-1]) != len(texts[0]):
                raise DatasetError(f"{where}, line {number}: its {kind} is {len(texts[-1])} characters wide, "
                                   f"line 1's {len(texts[0])}; pad every {kind} to one width")
    char_to_id = {}
    for q, a in zip(questions, answers):
        for c in q + a:
            char_to_id.setdefault(c, len(char_to_id))
    x = np.array([[char_to_id[c] for c in q] for q in questions], np.int32)
    t = np.array([[char_to_id[c] for c in a] for a in answers], np.int32)
    order = np.arange(len(x))
    np.random.RandomState(seed).shuffle(order)  # what numpy.random.seed(seed); shuffle(...) does
    x, t = x[order], t[order]
    split = len(x) - len(x) // 10
    return SequenceData((x[:split], t[:split]), (x[split:], t[split:]), char_to_id,
                        {i: c for c, i in char_to_id.items()})


# --- text for a language model (Deep Learning from Scratch 2, ch. 5-6) -------------------------

class TextData(NamedTuple):
    """A corpus of word ids, as the sequel's ``ptb.load_data`` gives it, split into training and
    test text."""
    train: np.ndarray  # int32 (words,): the corpus's first part
    test: np.ndarray  # int32 (words,): its last part, in order
    word_to_id: dict
    id_to_word: dict

    def decode(self, ids):
        """The words of a sequence of ids, separated by spaces."""
        return " ".join(self.id_to_word[int(i)] for i in np.asarray(ids).ravel())


def load_text(source, test_fraction=0.1):
    """A text as the sequel's ``ptb.load_data`` reads ``ptb.train.txt``: every line end replaced by
    the word ``<eos>``, the text split at whitespace, words numbered in order of first appearance;
    the last ``test_fraction`` of the words held out, in order, as the test text.

    Args:
      source: a text file (UTF-8), or the text itself as a ``str`` holding a line break.
      test_fraction: in (0, 1).
    Returns:
      A ``TextData``.
    Raises:
      DatasetError: the file cannot be read, or holds too few words to split (named).
    """
    if not (isinstance(test_fraction, float) and 0 < test_fraction < 1):
        raise ValueError(f"load_text: test_fraction must be a float in (0, 1), got {test_fraction!r}")
    if isinstance(source, str) and "\n" in source:
        text, where = source, "the text given"
    else:
        path = Path(source)
        text = _read_text(path)
        where = str(path)
    words = text.replace("\n", " <eos> ").split()
    n_test = int(len(words) * test_fraction)
    if n_test < 2 or len(words) - n_test < 2:
        raise DatasetError(f"{where}: {len(words)} words, too few to hold out {test_fraction:g} of them as a test "
                           f"text of at least 2 words")
    word_to_id = {}
    for word in words:
        word_to_id.setdefault(word, len(word_to_id))
    corpus = np.array([word_to_id[w] for w in words], np.int32)
    return TextData(corpus[:len(words) - n_test], corpus[len(words) - n_test:], word_to_id,
                    {i: w for w, i in word_to_id.items()})


def date_text(n=20_000, seed=1984):
    """A text of ``n`` lines, each a date of ``date_lines(n, seed)`` as written there, split into
    words and punctuation (``"september 27 , 1994"``, ``"8 / 25 / 70"``): a small language with a
    vocabulary of a few hundred words, for a language model to learn when no text is given."""
    import re

    lines = (line.partition("_")[0].strip() for line in date_lines(n, seed))
    return "".join(" ".join(re.findall(r"\w+|[^\w\s]", line)) + "\n" for line in lines)


# --- the sequel's spiral (ch. 1) ---------------------------------------------------------------

def spiral(seed=1984, one_hot_label=True):
    """The sequel's ``spiral.load_data``: three arms of 100 points each in the plane, arm ``j``'s
    point ``i`` at radius ``i / 100`` and angle ``4j + 4i / 100 + 0.2 * N(0, 1)``, drawn in the
    sequel's order from ``numpy.random.seed(seed)``.

    Returns:
      ``(x, t)``: float32 (300, 2) and one-hot float32 (300, 3) rows (the sequel's values), or
      int32 labels (300,) with ``one_hot_label=False``.
    """
    rng = np.random.RandomState(seed)  # what numpy.random.seed(seed) then numpy.random.randn() draw
    n, classes = 100, 3
    x = np.zeros((n * classes, 2))
    labels = np.repeat(np.arange(classes), n).astype(np.int32)
    for j in range(classes):
        for i in range(n):
            rate = i / n
            theta = j * 4.0 + 4.0 * rate + rng.randn() * 0.2
            x[n * j + i] = rate * np.sin(theta), rate * np.cos(theta)
    if one_hot_label:
        return x.astype(np.float32), np.eye(classes, dtype=np.float32)[labels]
    return x.astype(np.float32), labels
