"""How a command ends on SIGINT (Ctrl-C) and SIGTERM: in one line, promptly, at any moment.

Python runs a signal handler only between two steps of Python code, and an exception raised
there lands wherever that step is: in an extension module being imported (which prints it and
turns it into an ImportError), in a finaliser (which swallows it), in JAX's exit hooks (which
crash on it). So the handler here raises nothing. The signal is also written to a pipe
(``signal.set_wakeup_fd``) where a watching thread sees it at once, even while the main thread
is inside the compiler or a compiled call, and ends the process itself: the temporary files of
writes under way removed, one line written, status 128 + the signal's number. Nothing finished
is lost: results and metrics are written atomically, and a checkpoint is complete before it
gets its name.

A run that is training asks for the signal instead (``request_mode``): after every compiled
call it asks ``requested()``, saves the iteration reached and stops. If it has not asked within
``GRACE_S`` seconds (it is compiling, or in one long compiled call), the watcher ends the
process, its complete checkpoints kept. A second signal always ends it at once.
"""

import os
import select
import signal
import sys
import threading
import time

GRACE_S = 3.0  # how long a training run has to take a signal before the process is ended without it
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NUMBERS = frozenset(int(s) for s in SIGNALS)


def _stopped(name):
    """A command's last line when a signal ends it."""
    return f"backprop-jax: stopped by {name}"


def current():
    """The ``Signals`` the running command installed (a fresh one, not installed, outside a command)."""
    return _current[-1] if _current else Signals()


_current = []


class Signals:
    """The command's handling of SIGINT and SIGTERM while it is installed (a context manager; the
    previous handlers come back on leaving, unless ``keep`` is set: the program then keeps them
    through Python's shutdown)."""

    def __init__(self, grace_s=GRACE_S):
        self.grace_s = grace_s
        self.received = []  # signal names, in order
        self.keep = False
        self._requests = False  # a run asks for the first signal
        self._answered = threading.Event()  # ... and has taken it
        self._last_words = _stopped
        self._installed = None

    def request_mode(self, last_words):
        """From now on, until ``immediate_mode``, the first signal is a request that ``requested()``
        reports; ``last_words(name)`` is the line written if the process is ended without it."""
        self._last_words = last_words
        self._requests = True

    def immediate_mode(self):
        """From now on a signal ends the process at once (the default)."""
        self._requests = False
        self._last_words = _stopped

    def requested(self):
        """The name of the first signal received, or None; a name returned is the run's answer."""
        if self.received:
            self._answered.set()
            return self.received[0]
        return None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread() or os.name != "posix":
            return self  # only the main thread may handle signals, a POSIX pipe wake the watcher
        reader, writer = os.pipe()
        os.set_blocking(writer, False)
        try:
            previous_fd = signal.set_wakeup_fd(writer, warn_on_full_buffer=False)
        except ValueError:  # not the main interpreter
            os.close(reader), os.close(writer)
            return self
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        watcher = threading.Thread(target=self._watch, args=(reader,), name="backprop-jax signals", daemon=True)
        watcher.start()
        self._installed = (reader, writer, previous_fd, previous, watcher)
        _current.append(self)
        return self

    def __exit__(self, *exc):
        if self._installed is None or self.keep:
            return
        reader, writer, previous_fd, previous, watcher = self._installed
        self._installed = None
        _current.remove(self)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(writer)  # the watcher reads the end of the pipe: it ends
        watcher.join(timeout=1.0)
        os.close(reader)

    def _handle(self, signum, frame):
        self.received.append(signal.Signals(signum).name)  # the watcher does the rest

    def _watch(self, reader):
        first, deadline = None, None  # the first signal, and when a run's time to take it ends
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready, _, _ = select.select([reader], [], [], timeout)
                data = os.read(reader, 64) if ready else None
            except OSError:
                return
            if data == b"":
                return  # uninstalled
            if data is None:  # a run's time is up
                if self._requests and self._answered.is_set():
                    deadline = None  # the run took the request and is saving: only a second signal ends it
                    continue
                self._end(first)
            for number in data:
                if number not in _NUMBERS:
                    continue  # a signal handled elsewhere (the wakeup pipe is the whole process's)
                name = signal.Signals(number).name
                if first is not None:
                    _end(f"backprop-jax: stopped at once by a second {name}", 128 + number)
                first = name
                if not self._requests:
                    self._end(name)
                deadline = time.monotonic() + self.grace_s

    def _end(self, name):
        _end(self._last_words(name), 128 + signal.Signals[name].value)


def end_program(code):
    """Ends the process as Python would on ``sys.exit(code)`` (a message printed, status 1; a number
    its status; None 0), after its other threads and exit functions (JAX's, logging's, ...), but
    without Python's finalisation and the native libraries' teardown after it: they take a few
    tenths of a second after the work is done, during which the signals are the system's again
    and would end the process without a word."""
    import atexit

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        status = 1
        try:
            print(code, file=sys.stderr)
        except Exception:  # noqa: BLE001 - no standard error to say it on
            pass
    # What Python does before its finalisation, in its order: the threading module's exit hooks
    # (thread pools told to stop), its other threads joined, then the exit functions.
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    _flush()
    os._exit(status & 0xFF)


def _end(message, status):
    """Ends the process now: the temporary files of atomic writes under way removed, ``message`` and
    a newline written to standard error, without Python's shutdown (whose finalisers and exit hooks
    would run while the main thread is still somewhere in the middle of its work)."""
    io = sys.modules.get("backprop_jax._io")  # not imported: no file was written
    if io is not None:
        io.remove_writes_under_way()
    # What was printed goes out, unless the stream is stuck (a pipe nobody reads): then not waited for.
    try:
        flushing = threading.Thread(target=_flush, daemon=True)
        flushing.start()
        flushing.join(0.5)
    except RuntimeError:  # Python is shutting down: it flushes them itself
        pass
    try:
        os.write(2, (message + "\n").encode(errors="backslashreplace"))
    except OSError:
        pass
    os._exit(status)


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or full stream: the last line still goes out
            pass
