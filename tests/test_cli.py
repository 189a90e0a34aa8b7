"""The backprop-jax command: usage errors, train on files, kill and resume, gradcheck."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import chex
import pytest

import backprop_jax as bj
from backprop_jax.cli import main
from conftest import fake_mnist, final_params


def cli(*args, timeout=300, check=True):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-m", "backprop_jax", *args], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("args, message", [
    (["train", "--iters", "0"], "argument --iters: expected a positive integer, got '0'"),
    (["train", "--lr", "-1"], "argument --learning-rate/--lr: expected a number > 0, got '-1'"),
    (["train", "--lr", "nan"], "expected a finite number, got 'nan'"),
    (["train", "--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["train", "--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["train", "--resume"], "--resume needs --out DIR"),
    (["train", "--weight-decay", "0.1"],
     "--weight-decay does not apply to --model two-layer (its flags: --hidden, --weight-init)"),
    (["train", "--hidden-sizes", "100,x"], "expected comma-separated sizes"),
    (["train", "--weight-init", "lecun"], "argument --weight-init: expected a number, got 'lecun'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["train", "--num-processes", "2"], "a multi-process run needs --coordinator, --num-processes and --process-id"),
    (["train", "--coordinator", "node0", "--num-processes", "2", "--process-id", "0"],
     "--coordinator must be HOST:PORT, got 'node0'"),
    (["train", "--coordinator", "node0:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be below --num-processes (2), got 2"),
    ([], "the following arguments are required: COMMAND"),
    (["train", "--seed", "4294967296"],
     "argument --seed: seed must be an integer from 0 to 2**32 - 1 = 4294967295, got 4294967296"),
    (["train", "--seed", str(2 ** 64)], "argument --seed: seed must be an integer from 0 to 2**32 - 1 = 4294967295"),
    (["train", "--iters", "1e30"], "argument --iters: expected a positive integer, got '1e30'"),
    (["train", "--epochs", "1e20"], "argument --epochs: expected a positive integer, got '1e20'"),
    (["train", "--batch-size", "1e12"], "argument --batch-size: expected a positive integer, got '1e12'"),
    (["train", "--heartbeat-timeout", "1e30"], "argument --heartbeat-timeout: expected a positive integer"),
    (["train", "--heartbeat-timeout", str(10 ** 30)],
     "argument --heartbeat-timeout: expected at most 2**31 - 1 = 2147483647 seconds"),
    (["train", "--dataset", "mnist-sample", "--iters", "2147483648"],
     "--iters 2147483648: iters_num must be at most 2**31 - 1 = 2147483647 (the compiled loop counts it in "
     "32-bit integers), got 2147483648"),
    (["train", "--dataset", "mnist-sample", "--epochs", str(10 ** 20)],
     f"--epochs {10 ** 20}: iters_num must be at most 2**31 - 1 = 2147483647"),
    (["train", "--dataset", "mnist-sample", "--batch-size", str(10 ** 12)],
     f"--batch-size {10 ** 12}: batch_size must be at most 2**31 - 1 = 2147483647"),
])
def test_invalid_flags_give_a_usage_error(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage: backprop-jax" in err and message in err and "Traceback" not in err


def test_an_absent_coordinator_is_a_clean_error_in_bounded_time(capsys):
    import socket
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main(["train", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "1",
              "--connect-timeout", "1"])
    assert time.monotonic() - start < 10
    assert f"process 0 is not reachable at 127.0.0.1:{port} after 1 s" in str(e.value.code)
    assert "process 1 of 2" not in capsys.readouterr().err  # it never tried to join


def test_process_0_whose_peers_never_join_ends_with_a_clean_error_in_bounded_time():
    import socket
    with socket.socket() as s:  # a free port for process 0 to serve on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    result = cli("train", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", "0",
                 "--connect-timeout", "3", check=False, timeout=120)
    assert time.monotonic() - start < 60
    assert result.returncode == 1, result.stderr
    assert ("backprop-jax: error: not every process joined the run within 3 s (--connect-timeout); "
            "start all 2 processes") in result.stderr
    assert "DEADLINE_EXCEEDED" not in result.stderr and "@ 0x" not in result.stderr  # no C++ stack trace


def test_missing_full_mnist_is_a_clean_error(tmp_path):
    result = cli("train", "--dataset", "mnist", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"MNIST not found in {tmp_path}" in result.stderr
    assert "train-images-idx3-ubyte.gz" in result.stderr


def test_train_on_full_mnist_files_writes_metrics_plot_and_checkpoints(tmp_path):
    data_dir, out = tmp_path / "mnist", tmp_path / "run"
    fake_mnist(data_dir, n_train=300, n_test=50)
    result = cli("train", "--data-dir", str(data_dir), "--iters", "12", "--out", str(out), "--no-progress")
    assert f"dataset: mnist (full MNIST from {data_dir})" in result.stdout
    assert "epoch 4: train acc" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist"
    assert metrics["config"] == {"model": "two-layer", "hidden": 50, "weight_init": 0.01, "iters_num": 12,
                                 "batch_size": 100, "learning_rate": 0.1, "optimizer": "sgd", "seed": 0,
                                 "evaluate_sample_num_per_epoch": None}
    assert [e["iteration"] for e in metrics["epochs"]] == [3, 6, 9, 12]
    assert set(metrics["epochs"][0]) >= {"epoch", "iteration", "train_loss", "train_acc", "test_acc"}
    assert metrics["final_test_acc"] == metrics["epochs"][-1]["test_acc"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The first epoch, then none within --checkpoint-interval (10 s), then the last.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["12", "3"]


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_compiled_programs_are_kept_in_the_user_cache_and_long_runs_print_fewer_lines(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", XDG_CACHE_HOME=str(tmp_path / "cache"))
    args = [sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample", "--iters", "1280",
            "--no-progress"]  # 40 iterations an epoch, 32 epochs
    first = subprocess.run([*args, "--every-epoch"], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr
    assert [line.split(":")[0] for line in first.stdout.splitlines() if line.startswith("epoch ")] == [
        f"epoch {i}" for i in range(1, 33)]
    cache = tmp_path / "cache" / "backprop-jax" / "xla"
    entries = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith("jit_epochs-") for name in entries)
    second = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr
    assert [line.split(":")[0] for line in second.stdout.splitlines() if line.startswith("epoch ")] == [
        f"epoch {i}" for i in (1, *range(2, 33, 2))]  # about 20 lines: the first, every second, the last
    assert sorted(p.name for p in cache.iterdir()) == entries  # nothing compiled again


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_lengths_follow_the_books_scripts_or_the_flags(tmp_path):
    data_dir = tmp_path / "mnist"
    fake_mnist(data_dir, n_train=200, n_test=50)  # 2 iterations an epoch at batch 100
    convnet = cli("train", "--data-dir", str(data_dir), "--model", "convnet", "--filter-num", "2", "--hidden", "4",
                  "--no-progress", "--evaluate-sample-num", "20")
    assert "40 iterations of batch 100, adam lr 0.001" in convnet.stdout  # train_convnet.py: 20 epochs
    assert "epoch 20: train acc" in convnet.stdout
    two_layer = cli("train", "--data-dir", str(data_dir), "--epochs", "3", "--no-progress")
    assert "6 iterations of batch 100, sgd lr 0.1" in two_layer.stdout and "epoch 3: train acc" in two_layer.stdout
    both = cli("train", "--epochs", "3", "--iters", "5", check=False)
    assert both.returncode == 2 and "argument --iters: not allowed with argument --epochs" in both.stderr


def test_multi_layer_model_from_the_command_line(tmp_path):
    data_dir = tmp_path / "mnist"
    fake_mnist(data_dir, n_train=200, n_test=50)
    result = cli("train", "--data-dir", str(data_dir), "--model", "multi-layer", "--hidden-sizes", "20,20",
                 "--activation", "sigmoid", "--weight-decay", "0.01", "--optimizer", "adam", "--iters", "4",
                 "--no-progress")
    assert "'model': 'multi-layer', 'hidden_sizes': [20, 20], 'activation': 'sigmoid', " \
           "'weight_init': 'he', 'weight_decay': 0.01" in result.stdout  # the book's default
    assert "adam lr 0.001" in result.stdout and "epoch 2: train acc" in result.stdout




def kill_when(args, out, ready, timeout=240):
    """Starts ``backprop-jax *args --out out``, SIGKILLs it as soon as ``ready(names in
    out/checkpoints)`` holds, and returns those names; fails if the run ends first."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "backprop_jax", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + timeout
        names = []
        while time.monotonic() < deadline and proc.poll() is None:
            ckpts = out / "checkpoints"
            names = [p.name for p in ckpts.iterdir()] if ckpts.is_dir() else []
            if ready(names):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        return names
    finally:
        if proc.poll() is None:
            proc.kill()


def steps_in(names):
    return [int(name) for name in names if name.isdigit()]


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_a_run_killed_again_and_again_resumes_to_exactly_the_uninterrupted_parameters(tmp_path):
    # A checkpoint after every epoch (40 iterations), each written in the background while training goes on.
    args = ["train", "--dataset", "mnist-sample", "--iters", "800", "--no-progress", "--checkpoint-every", "1",
            "--checkpoint-interval", "0"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    cli(*args, "--out", str(whole))

    # Killed three times: after a checkpoint, while orbax writes one (its temporary directory
    # exists), and after a later checkpoint; each time resumed from the last complete one.
    kill_when(args, broken, lambda names: max(steps_in(names), default=0) >= 120)
    resume = [*args, "--resume"]
    names = kill_when(resume, broken, lambda names: max(steps_in(names), default=0) >= 280
                      and any("tmp" in name for name in names))
    assert any("tmp" in name for name in names)  # killed mid-write
    kill_when(resume, broken, lambda names: max(steps_in(names), default=0) >= 520)
    killed_at = final_params(broken)
    assert 520 <= int(killed_at.iteration) < 800

    result = cli(*resume, "--out", str(broken))
    assert f"resuming from iteration {int(killed_at.iteration)}" in result.stdout
    a, b = final_params(whole), final_params(broken)
    assert int(a.iteration) == int(b.iteration) == 800
    chex.assert_trees_all_equal(a.params, b.params)
    # The metrics agree too, epoch by epoch, apart from wall-clock times.
    resumed = json.loads((broken / "metrics.json").read_text())
    uninterrupted = json.loads((whole / "metrics.json").read_text())
    clocks = ("seconds", "compile_seconds")
    strip = lambda m: {**m, "epochs": [{k: v for k, v in e.items() if k not in clocks} for e in m["epochs"]]}
    assert [e["epoch"] for e in resumed["epochs"]] == list(range(1, 21))
    assert strip(resumed) == strip(uninterrupted)


def test_gradcheck_command(capsys):
    # The full 784-50-10 check runs in test_examples; here a small net, sampled.
    main(["gradcheck", "--batch", "2", "--hidden", "4", "--numeric-elements", "50"])
    out = capsys.readouterr().out
    assert "(50 of 3136 elements)" in out
    lines = out.splitlines()
    assert lines[0].startswith("mean |hand - numeric| per parameter")
    assert [l.split(":")[0].strip() for l in lines[1:5]] == ["W1", "W2", "b1", "b2"]
    assert out.rstrip().endswith("gradient check passed")


@pytest.mark.parametrize("flag, part", [("--batch", r"inputs 628 TB"),
                                        ("--hidden", r"parameters and two gradients 1.91e\+03 TB")])
def test_gradcheck_refuses_sizes_that_cannot_fit_before_computing(flag, part):
    # 99999999999 float64 inputs of 784 values: 628 TB; that many hidden units: 3 x 795 x 8 bytes each.
    with pytest.raises(SystemExit) as e:
        main(["gradcheck", flag, "99999999999"])
    assert re.fullmatch(rf"backprop-jax: error: the gradient check needs at least .*\(.*{part}.*\), more than the "
                        r".* the \w+ device has; give a smaller --batch or --hidden", e.value.code), e.value.code


def test_compare_optimizers_refuses_a_length_the_loop_cannot_count_before_any_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare-optimizers", "--iters", str(2 ** 31), "--out", str(tmp_path / "co")])
    assert e.value.code == 2 and not (tmp_path / "co").exists()
    assert re.search(r"error: --iters 2147483648: iters_num must be at most 2\*\*31 - 1 = 2147483647 .*, got "
                     r"2147483648\n$", capsys.readouterr().err)


def test_output_paths_are_checked_before_any_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as e:
        main(["compare-optimizers", "--out", str(blocker), "--iters", "1"])
    assert e.value.code == f"backprop-jax: error: --out {blocker} is a file, not a directory"
    with pytest.raises(SystemExit) as e:
        main(["train", "--out", str(blocker), "--iters", "1", "--no-progress"])
    assert e.value.code == f"backprop-jax: error: --out {blocker} is a file, not a directory"
    assert "epoch 1" not in capsys.readouterr().out


def test_resuming_a_finished_run_writes_its_metrics_again(tmp_path, capsys):
    args = ["train", "--dataset", "mnist-sample", "--iters", "80", "--no-progress", "--out", str(tmp_path)]
    main(args)
    first = json.loads((tmp_path / "metrics.json").read_text())
    (tmp_path / "metrics.json").unlink()
    main([*args, "--resume"])
    assert json.loads((tmp_path / "metrics.json").read_text()) == first
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow  # an end-to-end check: `pytest -m slow`, run by .ci/run
def test_ctrl_c_and_sigterm_stop_with_one_line_and_a_resumable_checkpoint(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out = tmp_path / sig.name
        proc = subprocess.Popen([sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample",
                                 "--iters", "100000", "--no-progress", "--checkpoint-interval", "0", "--out", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        def saved():
            return (out / "checkpoints").is_dir() and steps_in(p.name for p in (out / "checkpoints").iterdir())

        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not saved():
                time.sleep(0.05)
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == status, err
        assert "Traceback" not in err and err.count("\n") == 1, err
        last = max(steps_in(p.name for p in (out / "checkpoints").iterdir()))
        assert f"interrupted ({sig.name}) at iteration {last}; the last checkpoint is iteration {last}; " \
               f"resume with --resume --out {out}" in err, err
        resumed = cli("train", "--dataset", "mnist-sample", "--iters", str(last + 40), "--no-progress",
                      "--out", str(out), "--resume")
        assert f"resuming from iteration {last}" in resumed.stdout


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample",
                             "--iters", "400", "--no-progress", "--every-epoch"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()  # what `| head -1` reads, and then it goes away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.wait(timeout=120)
    assert first.startswith(b"training") and "Traceback" not in err and "BrokenPipe" not in err, err
    assert proc.returncode == 141


def test_a_run_of_your_own_model_resumes_with_its_file_given_by_another_path(tmp_path, capsys, monkeypatch):
    mine = tmp_path / "a" / "mine.py"
    mine.parent.mkdir()
    mine.write_text("from backprop_jax import two_layer_net\n\n"
                    "def model():\n    return two_layer_net.model(784, 6, 10)\n")
    out = tmp_path / "run"
    flags = ["train", "--dataset", "mnist-sample", "--no-progress", "--out", str(out)]
    main([*flags, "--model", f"{mine}:model", "--iters", "40"])
    # The same file from another working directory, by a relative path, and a copy elsewhere.
    monkeypatch.chdir(tmp_path / "a")
    copy = tmp_path / "copy.py"
    copy.write_text(mine.read_text())
    for given, iters in (("mine.py", "80"), (str(copy), "120")):
        capsys.readouterr()
        main([*flags, "--model", f"{given}:model", "--iters", iters, "--resume"])
        assert f"resuming from iteration {int(iters) - 40}" in capsys.readouterr().out
    # Another content is another model: refused, naming the settings that differ.
    copy.write_text(mine.read_text().replace("784, 6, 10", "784, 7, 10"))
    with pytest.raises(SystemExit) as e:
        main([*flags, "--model", f"{copy}:model", "--iters", "160", "--resume"])
    assert "model_file_sha256" in str(e.value.code)


def test_library_errors_reach_the_command_line_as_one_line(tmp_path, capsys):
    five = tmp_path / "five.py"
    five.write_text("from backprop_jax import nn\n"
                    "def model():\n"
                    "    return nn.classifier(nn.serial(nn.Affine(5)), (784,))\n")
    result = cli("train", "--dataset", "mnist-sample", "--iters", "5", "--model", f"{five}:model", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "train labels must be classes 0 to 4 (the model scores 5)" in result.stderr
    huge = cli("train", "--dataset", "mnist-sample", "--iters", "5", "--hidden", "100000000", check=False)
    assert huge.returncode == 1 and "Traceback" not in huge.stderr, huge.stderr
    assert "training needs at least" in huge.stderr and "use a smaller --batch-size or model" in huge.stderr
    (tmp_path / "drawn.svg").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["graph", "apple", "--out", str(tmp_path / "drawn.svg")])
    assert e.value.code == 2 and "is a directory" in capsys.readouterr().err
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: a path under a file cannot be written by anyone
            target = str(tmp_path / "five.py" / "apple.dot")
        else:
            target = str(locked / "apple.dot")
        with pytest.raises(SystemExit, match="cannot be written"):
            main(["graph", "apple", "--out", target])
    finally:
        locked.chmod(0o700)


def test_an_empty_dataset_and_a_looping_checkpoints_link_are_one_line(tmp_path):
    fake_mnist(tmp_path / "empty", n_train=0, n_test=5)
    empty = cli("train", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"), "--iters", "5", check=False)
    assert empty.returncode == 1 and "Traceback" not in empty.stderr, empty.stderr
    assert empty.stderr.strip().endswith("train set is empty"), empty.stderr
    run_dir = tmp_path / "loop"
    run_dir.mkdir()
    (run_dir / "checkpoints").symlink_to(run_dir / "checkpoints")  # a link to itself
    looped = cli("train", "--dataset", "mnist-sample", "--iters", "5", "--out", str(run_dir), check=False)
    assert looped.returncode == 1 and "Traceback" not in looped.stderr, looped.stderr
    assert "checkpoints is a symbolic link; a run never writes through one" in looped.stderr


def test_a_file_size_limit_while_checkpointing_is_one_line(tmp_path):
    # 100 kB: below the first checkpoint's W1 (157 kB), above metrics.json. Set by the shell, so
    # that this process (JAX is multithreaded) never forks.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "run"
    command = (f"ulimit -f 100 && exec {sys.executable} -m backprop_jax train --dataset mnist-sample "
               f"--iters 200 --no-progress --out {out}")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"backprop-jax: error: cannot write checkpoint 40 in {out}/checkpoints: the file size limit is reached; "
        f"the checkpoints before it and metrics.json are kept (resume with --resume once there is room)")
    assert json.loads((out / "metrics.json").read_text())["epochs"][-1]["iteration"] == 200


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "convnet", "--hidden-sizes", "80"],
     "--hidden-sizes does not apply to --model convnet (its flags: --hidden, --weight-init, --filter-num, "
     "--filter-size, --pad, --stride)"),
    (["train", "--batch-norm", "--dropout", "0.1"], "--batch-norm, --dropout do not apply to --model two-layer"),
    (["train", "--model", "nets.py:make", "--hidden", "3"], "--hidden does not apply to --model nets.py:make"),
    (["train", "--model", "resnet"], "--model must be two-layer, multi-layer, convnet, deep-convnet, seq2seq, peeky-seq2seq, "
                                "attention-seq2seq, cbow, skip-gram, rnnlm, better-rnnlm or FILE.py:FUNCTION"),
    (["train", "--model", "multi-layer", "--dropout", "1.5"], "expected a fraction in [0, 1), got '1.5'"),
    (["train", "--model", "convnet", "--weight-init", "-1"], "argument --weight-init: expected a number > 0, got '-1'"),
    (["train", "--model", "convnet", "--filter-size", "40"],
     "--model convnet with --filter-size 40: convolution: the 40x40 window is larger than the input 28x28"),
])
def test_new_flags_are_checked(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


# --- your own network from the command line ----------------------------------------------------

def test_a_user_model_file_trains_through_the_command_line(tmp_path, capsys):
    source = textwrap.dedent('''
        from backprop_jax import nn

        def tiny():
            return nn.classifier(nn.serial(nn.Affine(16, weight_init_std="he"), nn.Relu, nn.Affine(10)),
                                 input_shape=(784,))

        def not_a_model():
            return 42
    ''')
    (tmp_path / "my_net.py").write_text(source)
    spec, out = f"{tmp_path / 'my_net.py'}:tiny", tmp_path / "run"
    args = ["train", "--model", spec, "--iters", "80", "--no-progress", "--dataset", "mnist-sample",
            "--out", str(out)]
    main(args)
    assert "epoch 2: train acc" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == spec and metrics["epochs"][-1]["iteration"] == 80
    assert len(metrics["config"]["model_file_sha256"]) == 64
    # Resuming with a changed file is refused: the model may not be the one that was trained.
    (tmp_path / "my_net.py").write_text(source.replace("16", "17"))
    with pytest.raises(SystemExit, match="other settings.*model_file_sha256"):
        main([*args, "--resume", "--iters", "160"])
    with pytest.raises(SystemExit) as e:
        main(["train", "--model", f"{tmp_path / 'my_net.py'}:not_a_model"])
    assert e.value.code == 2
    assert "not_a_model() returned int, not a backprop_jax.Model" in capsys.readouterr().err


def test_the_sequels_seq2seq_trains_on_a_problems_file_and_reports_exact_matches(tmp_path, capsys):
    from backprop_jax import datasets

    problems = tmp_path / "addition.txt"
    problems.write_text("".join(line + "\n" for line in datasets.addition_lines(400, seed=2)))
    out = tmp_path / "run"
    args = ["train", "--model", "peeky-seq2seq", "--data", str(problems), "--hidden", "16", "--iters", "12",
            "--no-progress", "--out", str(out)]
    main(args)
    printed = capsys.readouterr().out
    assert "dataset: " + str(problems) + ", 360 problems to train, 40 to test, the questions reversed" in printed
    assert "adam lr 0.001, gradients clipped at 5" in printed and "batch 128" in printed
    assert "exact-match accuracy on the 40 held-out problems: " in printed
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert config["model"] == "peeky-seq2seq" and config["hidden"] == 16 and config["wordvec_size"] == 16
    assert config["vocab_size"] == 13 and config["question_length"] == 7 and config["batch_size"] == 128
    assert metrics["epochs"][-1]["test_acc"] is None and metrics["epochs"][-1]["test_loss"] > 0
    main([*args, "--resume", "--iters", "15"])  # the same settings and data: it resumes
    assert "resuming from iteration 12" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="other settings"):
        main([*args[:-2], "--max-grad", "1", "--resume", "--out", str(out), "--iters", "18"])


def test_the_sequels_language_model_trains_on_a_text_file_by_truncated_bptt(tmp_path, capsys):
    from backprop_jax import datasets

    text = tmp_path / "words.txt"
    text.write_text(datasets.date_text(300, seed=5))
    out = tmp_path / "run"
    args = ["train", "--model", "rnnlm", "--data", str(text), "--hidden", "12", "--wordvec-size", "8",
            "--batch-size", "4", "--epochs", "2", "--no-progress", "--out", str(out)]
    main(args)
    printed = capsys.readouterr().out
    words = len(text.read_text().replace("\n", " <eos> ").split())
    assert f"dataset: {text}, {words - words // 10} words to train, {words // 10} to test" in printed
    assert "windows of 35 words" in printed and "sgd lr 20.0, gradients clipped at 0.25" in printed
    assert "epoch 2: train perplexity" in printed and "final test perplexity" in printed
    assert "(the sequel's eval_perplexity): " in printed
    metrics = json.loads((out / "metrics.json").read_text())
    config, last = metrics["config"], metrics["epochs"][-1]
    assert config["model"] == "rnnlm" and config["batch_size"] == 4 and config["hidden"] == 12
    assert config["time_size"] == 35  # the sequel's window, recorded: a resume with another is refused
    assert last["test_perplexity"] == pytest.approx(2.718281828459045 ** last["test_loss"])
    main([*args, "--resume", "--epochs", "3"])  # the carried state is checkpointed with the rest
    printed = capsys.readouterr().out
    assert "resuming from iteration" in printed and "epoch 3: train perplexity" in printed
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 3
    with pytest.raises(SystemExit, match="other settings"):
        main([*args, "--resume", "--time-size", "10"])
    text.write_text("word " * 60 + "\n")
    with pytest.raises(SystemExit, match="too short for one window of 35 words in each of 4 streams"):
        main([*args[:-2], "--out", str(tmp_path / "other")])


@pytest.mark.parametrize("args, message", [
    (["train", "--model", "seq2seq", "--dataset", "mnist"],
     "--dataset and --data-dir choose MNIST; --model seq2seq learns the sequel's addition problems"),
    (["train", "--data", "addition.txt"],
     "--data gives the seq2seq and language models their data; --model two-layer learns MNIST"),
    (["train", "--model", "rnnlm", "--data-dir", "mnist"],
     "--dataset and --data-dir choose MNIST; --model rnnlm learns a text (give it with --data)"),
    (["evaluate", "--model", "better-rnnlm", "--params", "p.pkl"],
     "--model better-rnnlm learns a text; the evaluate command takes the MNIST networks"),
    (["train", "--model", "better-rnnlm", "--hidden", "8"],
     "--model better-rnnlm with --hidden 8: rnnlm: tied weights (the output layer's matrix is W_embed.T) need "
     "wordvec_size == hidden_size, got 650 and 8"),
    (["train", "--model", "rnnlm", "--dropout", "1"], "expected a fraction in [0, 1), got '1'"),
    (["evaluate", "--model", "attention-seq2seq", "--params", "p.pkl"],
     "--model attention-seq2seq learns the sequel's dates problems; the evaluate command takes the MNIST networks"),
    (["train", "--model", "seq2seq", "--filter-num", "3"], "--filter-num does not apply to --model seq2seq"),
])
def test_seq2seq_flags_are_checked(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_command_caches_every_program_that_compiles_in_a_fifth_of_a_second(monkeypatch):
    import jax

    from backprop_jax import cli

    before = jax.config.jax_persistent_cache_min_compile_time_secs
    try:
        # JAX keeps only programs of 1 s or more by default, also under $JAX_COMPILATION_CACHE_DIR.
        monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", os.environ.get("JAX_COMPILATION_CACHE_DIR", "/tmp/x"))
        monkeypatch.delenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", raising=False)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
        cli._use_compilation_cache()
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.2
        monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "3")  # the user's choice stands
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 3.0)
        cli._use_compilation_cache()
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 3.0
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before)


def test_every_command_says_what_it_does_and_the_command_its_version(capsys):
    from backprop_jax.cli import COMMANDS, build_parser
    from backprop_jax.experiments import EXPERIMENTS

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subparsers) == set(COMMANDS)
    for name, sub in subparsers.items():
        assert sub.description and sub.description.endswith("."), name
    experiment = " ".join(subparsers["experiment"].format_help().split())
    for name, fn in EXPERIMENTS.items():  # each description whole: its docstring's first sentence
        first = " ".join(fn.__doc__.replace("``", "").split()).split(". ")[0].rstrip(".")
        assert f"{name}: {first}" in experiment.replace("- ", "-"), name
    assert ".html" in subparsers["graph"].format_help()
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"backprop-jax {bj.__version__}"


@pytest.mark.parametrize("command", [["compare-optimizers"], ["experiment", "weight-init"]])
def test_an_empty_out_is_refused_and_the_working_directory_untouched(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "optimizers.json").write_text("kept")
    (tmp_path / "weight-init.json").write_text("kept")
    with pytest.raises(SystemExit, match=r"^backprop-jax: error: --out '': give a directory for the results$"):
        main([*command, "--out", ""])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizers.json", "weight-init.json"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"kept"}


def test_a_finished_run_without_checkpoints_is_kept_unless_started_over(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["train", "--dataset", "mnist-sample", "--iters", "5", "--no-progress", "--out", str(out)]
    main(flags)
    import shutil
    shutil.rmtree(out / "checkpoints")
    kept = (out / "metrics.json").read_text()
    with pytest.raises(SystemExit) as e:
        main([*flags, "--hidden", "20"])
    assert str(e.value.code).endswith("holds the metrics.json of a run whose checkpoints are gone; a new run would "
                                      "overwrite it: start over knowingly (--start-over), or choose another --out")
    assert (out / "metrics.json").read_text() == kept
    main([*flags, "--start-over"])
    assert (out / "checkpoints").is_dir()


@pytest.mark.slow
def test_a_closed_or_full_stdout_is_one_line_after_the_work_is_done(tmp_path):
    out = tmp_path / "apple.dot"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = f"exec {sys.executable} -m backprop_jax graph apple --out {out}"
    for redirect, message in [(">&-", "standard output is closed"), ("> /dev/full", "No space left on device")]:
        out.unlink(missing_ok=True)
        # By the shell, so that this process (JAX is multithreaded) never forks.
        result = subprocess.run(["bash", "-c", f"{command} {redirect}"], stderr=subprocess.PIPE, text=True,
                                timeout=120, env=env)
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"backprop-jax: error: cannot write the output: {message}\n"
        assert out.read_text().startswith("digraph")


def test_help_and_version_to_a_closed_or_full_stdout_are_one_line():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for args in ("--help", "--version", "train --help"):
        for redirect, message in [(">&-", "standard output is closed"), ("> /dev/full", "No space left on device")]:
            result = subprocess.run(["bash", "-c", f"exec {sys.executable} -m backprop_jax {args} {redirect}"],
                                    stderr=subprocess.PIPE, text=True, timeout=120, env=env)
            assert (result.returncode, result.stderr) == (1, f"backprop-jax: error: cannot write the output: {message}\n")


@pytest.mark.slow
def test_platforms_encodings_and_long_names_are_one_line(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "bogus"}
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "graph", "apple", "--out", str(tmp_path / "a.dot")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("backprop-jax: error: JAX_PLATFORMS=bogus: Unable to initialize backend 'bogus'")
    assert "known backends: ['cpu'" in result.stderr
    # A path in other letters with an ASCII-only output: escaped, not a traceback.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONIOENCODING": "ascii"}
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "graph", "apple", "--out", str(tmp_path / "é.dot")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path}/\\xe9.dot" in result.stdout and (tmp_path / "é.dot").exists()


def test_an_out_whose_name_is_too_long_is_one_line(tmp_path):
    out = tmp_path / ("a" * 300)
    with pytest.raises(SystemExit) as e:
        main(["train", "--dataset", "mnist-sample", "--iters", "5", "--no-progress", "--out", str(out)])
    assert e.value.code == f"backprop-jax: error: --out {out}: File name too long"


@pytest.mark.slow
def test_a_resume_in_another_precision_is_one_line_naming_both(tmp_path):
    out = tmp_path / "run"
    cli("train", "--dataset", "mnist-sample", "--iters", "5", "--no-progress", "--out", str(out))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_ENABLE_X64": "1"}
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "train", "--dataset", "mnist-sample", "--iters", "10",
                             "--no-progress", "--out", str(out), "--resume"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 1 and result.stderr == (
        f"backprop-jax: error: --resume: the checkpoint in {out} was computed in float32 with JAX_ENABLE_X64 unset, "
        f"and this run would compute in float32 with JAX_ENABLE_X64=1: resume it in the precision it started in\n")


def test_a_model_file_that_is_a_fifo_or_a_device_is_never_read(tmp_path, capsys):
    os.mkfifo(tmp_path / "fifo.py")
    os.symlink("/dev/zero", tmp_path / "zero.py")
    for name in ("fifo.py", "zero.py"):
        spec = f"{tmp_path / name}:tiny"
        with pytest.raises(SystemExit) as e:
            main(["train", "--model", spec])
        assert e.value.code == 2
        assert f"--model {spec}: {tmp_path / name} is not a regular file" in capsys.readouterr().err
