"""The package as an index would hold it: the wheel carries its licence and type marker, and,
installed into a fresh environment, runs the README's quick start and says its version."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import backprop_jax as bj

ROOT = Path(__file__).resolve().parent.parent


def uv():
    """``python3 -m uv``, as the README spells it: the interpreter that has uv, else ``uv``."""
    for python in (shutil.which("python3"), sys.executable):
        if python and subprocess.run([python, "-m", "uv", "--version"], capture_output=True).returncode == 0:
            return [python, "-m", "uv"]
    if shutil.which("uv"):
        return ["uv"]
    pytest.fail("uv is needed to build the wheel: python3 -m pip install uv")


def run(*args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_environment_and_runs_the_quick_start(tmp_path):
    run(*uv(), "build", "--wheel", "--out-dir", str(tmp_path / "dist"), cwd=ROOT)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "backprop_jax/py.typed" in names and "backprop_jax/data/mnist_sample.npz" in names
    (licence,) = [n for n in names if n.endswith("/LICENSE")]
    assert "MIT License" in zipfile.ZipFile(wheel).read(licence).decode()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "License-Expression: MIT" in metadata and "Classifier: Typing :: Typed" in metadata
    # The locked versions of the dependencies, then the wheel, into an environment of its own.
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(run(*uv(), "export", "--locked", "--no-dev", "--no-emit-project", "--no-hashes",
                                cwd=ROOT).stdout)
    venv = tmp_path / "venv"
    run(*uv(), "venv", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    run(*uv(), "pip", "install", "--python", str(python), "-r", str(requirements), str(wheel))
    command = venv / "bin" / "backprop-jax"
    assert run(str(command), "--version").stdout.strip() == f"backprop-jax {bj.__version__}"
    quick = run(str(command), "train", "--out", "runs/quickstart", "--resume", cwd=tmp_path)
    assert "final test accuracy" in quick.stdout
    assert (tmp_path / "runs" / "quickstart" / "metrics.json").is_file()
    # Installed, not read from the checkout.
    where = run(str(python), "-c", "import backprop_jax; print(backprop_jax.__file__)", cwd=tmp_path).stdout
    assert str(venv) in where
