"""Atomic file writes: a reader (or a crash) never sees half a file; reading only regular files."""

import contextlib
import glob
import json
import os
import stat
import tempfile
import time
from pathlib import Path


READ_LIMIT = 2 ** 31  # bytes: far above any file of data or parameters this package reads
_UNDER_WAY = set()  # the temporary files of atomic_path writes not finished yet


def read_regular_file(path, limit=READ_LIMIT):
    """The bytes of ``path``, a regular file of at most ``limit`` bytes. ``OSError`` with a one-line
    message otherwise: a FIFO, a device (``/dev/zero``) or a directory is never read, so that
    reading can neither wait forever nor grow without end."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens without waiting
    except OSError as e:
        raise type(e)(f"cannot read {path}: {e.strerror or e}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(info.st_mode) else "a directory" if stat.S_ISDIR(info.st_mode)
                else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else "a socket")
        raise OSError(f"{path} is {kind}, not a regular file")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > limit:
            raise OSError(f"{path} is {info.st_size} bytes, more than the {limit} read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path} is more than the {limit} bytes read")
    return data


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; on success it replaces ``path`` in one step.

    If the body raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    _UNDER_WAY.add(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        _UNDER_WAY.discard(tmp)


def remove_writes_under_way():
    """Removes the temporary files of the ``atomic_path`` writes not finished yet, for a process
    that is about to end at once (their targets stay as they were)."""
    for tmp in list(_UNDER_WAY):
        try:
            os.remove(tmp)
        except OSError:
            pass


def writable_directory(path):
    """Creates the directory ``path`` if needed and checks that files can be written in it;
    ``OSError`` with a one-line message naming it otherwise. For output directories, checked
    before any work whose results would be lost."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise type(e)(f"{path} cannot be written: {e.strerror or e}") from None
    return path


def _umask():
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def remove_stale_temporaries(path, older_than_s=60.0):
    """Removes the temporary files that ``atomic_path(path)`` left behind when a process died
    while writing (untouched for ``older_than_s`` seconds); returns their paths."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # removed meanwhile
            pass
    return removed


def write_json(path, obj):
    """Writes ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")
