"""SIGINT (Ctrl-C) and SIGTERM end every command at any moment, in one line, with status 130 or
143: while Python and JAX are still being imported, while XLA compiles, inside a long compiled
call; a training run keeps its complete checkpoints. (Stopping between compiled calls, with the
iteration reached saved, is tested in test_cli.)"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from backprop_jax.cli import main

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def stopped(args, sig, after, cwd=None):
    """Starts ``backprop-jax *args``, sends ``sig`` ``after`` seconds later (or when ``after()``
    holds), and returns ``(status, stderr, seconds from the signal to the end)``, or None if the
    command ended before the signal."""
    with subprocess.Popen([sys.executable, "-m", "backprop_jax", *args], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd) as proc:
        try:
            if callable(after):
                deadline = time.monotonic() + 120
                while not after() and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.02)
            else:
                time.sleep(after)
            if proc.poll() is not None:
                proc.communicate()
                return None
            sent = time.monotonic()
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
            return proc.returncode, err, time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()


def one_line(err):
    lines = err.strip().splitlines()
    return len(lines) == 1 and "Traceback" not in err and "Exception" not in err


def test_a_signal_while_the_command_starts_ends_it_in_one_line():
    # Moments spread over the imports of NumPy and JAX, the data and the model: each ends the same way.
    for after in (0.15, 0.5, 1.0):
        status, err, took = stopped(["train", "--iters", "100000", "--no-progress"], signal.SIGINT, after)
        assert status == 130 and one_line(err), (after, err)  # (a None would be a training of 100,000 done)
        assert err.strip().startswith("backprop-jax: "), err


def test_a_command_called_in_process_gives_back_the_signal_handlers(tmp_path):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    main(["graph", "apple", "--out", str(tmp_path / "apple.dot")])
    assert {sig: signal.getsignal(sig) for sig in before} == before
    assert signal.set_wakeup_fd(-1) == -1  # no wakeup descriptor left behind
    with pytest.raises(SystemExit):
        main(["graph", "nothing-like-this", "--out", str(tmp_path / "x.dot")])
    assert {sig: signal.getsignal(sig) for sig in before} == before


SLOW_MODEL = '''
    import time

    import jax

    from backprop_jax import two_layer_net

    steps = [0]


    def _step(_):
        steps[0] += 1
        if steps[0] > 40:  # from the second epoch on (40 iterations of 100 of the 4,000 digits), a step lasts minutes
            time.sleep(600)


    def model():
        net = two_layer_net.model(784, 8, 10)

        def apply(params, state, x, *, key=None, train=False):
            if train:
                jax.debug.callback(_step, x[0, 0])
            return net.apply(params, state, x, key=key, train=train)

        return net._replace(apply=apply)
'''


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_a_signal_during_a_long_compiled_call_ends_training_promptly_with_its_checkpoint(tmp_path):
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW_MODEL))
    for sig, status in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        out = tmp_path / sig.name
        args = ["train", "--model", f"{tmp_path / 'slow.py'}:model", "--iters", "400", "--checkpoint-every", "1",
                "--checkpoint-interval", "0", "--no-progress", "--out", str(out)]
        # The second epoch's call is under way once the first epoch's checkpoint is complete.
        code, err, took = stopped(args, sig, lambda: (out / "checkpoints" / "40").is_dir())
        assert code == status and one_line(err), err
        assert took < 10, took  # the grace of 3 s, not the call's minutes
        assert (f"backprop-jax: stopped by {sig.name} without waiting for the run's compiled call (it did not "
                f"return within 3 s); the last checkpoint is iteration 40; resume with --resume --out {out}") in err
        resumed = subprocess.run([sys.executable, "-m", "backprop_jax", *args[:4], "80", *args[5:], "--resume"],
                                 capture_output=True, text=True, env=ENV, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming from iteration 40" in resumed.stdout and "after 80 iterations" in resumed.stdout


@pytest.mark.slow
def test_a_second_signal_ends_a_stopping_run_at_once(tmp_path):
    (tmp_path / "slow.py").write_text(textwrap.dedent(SLOW_MODEL))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "backprop_jax", "train", "--model",
                             f"{tmp_path / 'slow.py'}:model", "--iters", "400", "--checkpoint-every", "1",
                             "--no-progress", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoints" / "40").is_dir() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - sent < 2.5  # before the first signal's grace is over
    assert proc.returncode == 130 and one_line(err), err
    assert "backprop-jax: stopped at once by a second SIGINT" in err


@pytest.mark.slow
def test_every_command_stops_in_one_line_while_it_compiles_or_computes(tmp_path):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "backprop_jax", "train", "--iters", "40", "--no-progress",
                           "--out", str(run)], capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr
    commands = [["gradcheck"], ["compare-optimizers", "--iters", "2000", "--out", str(tmp_path / "co")],
                ["experiment", "weight-init", "--out", str(tmp_path / "ex")],
                ["evaluate", "--params", str(run)], ["graph", "two-layer-net", "--out", str(tmp_path / "g.svg")],
                ["train", "--model", "convnet", "--iters", "400", "--no-progress", "--out", str(tmp_path / "cnn")]]
    for args in commands:
        landed = 0
        # Moments from JAX's import to the command's work (evaluate, the quickest, lasts about 2 s).
        for sig, status, after in ((signal.SIGINT, 130, 0.5), (signal.SIGTERM, 143, 0.9), (signal.SIGINT, 130, 1.3)):
            result = stopped(args, sig, after, cwd=tmp_path)
            if result is None:
                continue
            code, err, took = result
            landed += 1
            assert code == status and one_line(err), (args, err)
            assert took < 5, (args, took)
        assert landed >= 2, args
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []  # no write under way was left half done
