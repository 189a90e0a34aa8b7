"""The typed part of the public API (the recipes, the training settings and errors, the Model
contract: the scope is in pyproject.toml) passes ``mypy --strict``."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_typed_part_of_the_api_passes_mypy_strict():
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_a_missing_annotation_fails_it(tmp_path):
    (tmp_path / "untyped.py").write_text("def f(x):\n    return x\n")
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "untyped.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Function is missing a type annotation" in result.stdout
