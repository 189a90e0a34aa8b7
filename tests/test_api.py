"""The public surface: every name in __all__ exists, every layer exposes the book's pair,
imports point down the package's layers, and tests and benchmarks use public names only."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import jax

import backprop_jax as bj

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["mul", "add", "relu", "sigmoid", "affine", "softmax_with_loss", "weight_decay",
          "dropout", "batch_norm", "convolution", "max_pooling", "convolution_xla", "max_pooling_xla"]
# The package's parts in their order of dependence: each may import only those before it.
ORDER = ["_io", "count_based", "similarity", "layers", "nets", "checking", "training", "datasets", "experiments",
         "shopping", "graph", "exercises", "cli"]


def test_all_names_exist():
    assert [name for name in bj.__all__ if not hasattr(bj, name)] == []


def test_every_layer_is_a_custom_vjp_with_fwd_and_bwd():
    for name in LAYERS:
        layer = getattr(bj, name)
        assert isinstance(layer, jax.custom_vjp), name
        assert callable(layer.fwd) and callable(layer.bwd) and callable(layer.fun), name
        assert layer.__doc__ and "Backward" in layer.__doc__, name


def imported_modules(path):
    """Every ``backprop_jax...`` module that ``path`` imports (at any depth of the file)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "backprop_jax":
            found += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "backprop_jax"]
    return found


def part_of(module_parts):
    return module_parts[1].removesuffix(".py") if len(module_parts) > 1 else None


def test_imports_point_down_the_package():
    wrong = []
    for path in (ROOT / "backprop_jax").rglob("*.py"):
        part = part_of(path.relative_to(ROOT).parts)
        if part not in ORDER:  # __init__.py and __main__.py see everything
            continue
        for module in imported_modules(path):
            other = part_of(module.split("."))
            if other in ORDER and ORDER.index(other) > ORDER.index(part):
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert wrong == []


def test_tests_benchmarks_and_examples_import_only_public_names():
    private = []
    for folder in ("tests", "benchmarks", "examples"):
        for path in (ROOT / folder).glob("*.py"):
            private += [f"{path.relative_to(ROOT)}: {m}" for m in imported_modules(path)
                        if any(p.startswith("_") for p in m.split("."))]
    assert private == []


def test_importing_the_package_leaves_heavy_libraries_for_later():
    # orbax (with TensorStore) and matplotlib take seconds to import: only a run with files needs them.
    code = ("import sys, backprop_jax; "
            "print(sorted(m for m in ('orbax', 'tensorstore', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_written_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        bj.write_json(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644  # readable by others, as open() makes it
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
