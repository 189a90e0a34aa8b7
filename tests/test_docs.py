"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link, a missing
page, a docstring that does not parse or a public name with no entry fails), its generated
pages say what the code and the benchmark results say, and a browser finds the API and a
rendered notebook in it."""

import argparse
import functools
import http.server
import importlib.util
import json
import re
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import backprop_jax as bj
from backprop_jax.cli import build_parser
from conftest import browser

ROOT = Path(__file__).resolve().parent.parent


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    # The notebooks are executed by test_notebooks.py; here they are rendered from source.
    env = {**os.environ, "BACKPROP_JAX_DOCS_EXECUTE": "false", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in ["index.html", "guides/gradcheck.html", "guides/training.html", "guides/performance.html",
                 "reference/api.html", "reference/cli.html", "notebooks/4_your_own_layer.html"]:
        assert (site / page).is_file(), page
    api = (site / "reference" / "api.html").read_text()
    for name in bj.__all__:
        assert f'id="backprop_jax.{name}"' in api, name


def test_a_public_name_without_an_entry_fails_the_build():
    module = hooks()
    module._documented.update(bj.__all__)
    module.on_post_build(config=None)  # all there: passes
    module._documented.discard("gradcheck")
    with pytest.raises(Exception, match="no entry in docs/reference/api.md: gradcheck"):
        module.on_post_build(config=None)


def test_the_cli_reference_is_the_parser():
    text = hooks().cli_reference()
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name, command in sub.choices.items():
        assert f"## `{name}`" in text
        for action in command._actions:
            for flag in action.option_strings:
                if action.help != argparse.SUPPRESS and flag not in ("-h", "--help"):
                    assert f"`{flag}`" in text, (name, flag)
    assert "--checkpoint-every" in text and "--evaluate-sample-num" in text


def test_the_performance_tables_are_the_json(tmp_path):
    result = json.loads((ROOT / "benchmarks" / "results" / "cpu-2core-plain.json").read_text())
    text = hooks().benchmark_tables("cpu-2core-plain")
    assert f"measured {result['date']}" in text and f"JAX {result['machine']['jax']}" in text
    book = result["workloads"]["book 784-50-10"]["steps_per_s"]
    row = next(line for line in text.splitlines() if line.startswith("| book 784-50-10"))
    assert f"| {book['hand']:.0f} | {book['autodiff']:.0f} |" in row
    assert f"| {book['hand'] / book['autodiff']:.2f} |" in row
    seconds = result["end_to_end"]["seconds"]
    assert f"| `bj.train` | {seconds['train']:.2f} | {result['end_to_end']['vs_plain']['train']:.2f} |" in text
    with pytest.raises(Exception, match="no-such-run.json, which does not exist"):
        hooks().benchmark_tables("no-such-run")


def test_a_browser_finds_the_gradcheck_entry_and_a_rendered_notebook(site):
    from selenium.webdriver.common.by import By

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    driver = browser()
    try:
        driver.get(f"{base}/reference/api.html")
        entry = driver.find_element(By.ID, "backprop_jax.gradcheck")
        assert "gradcheck" in entry.text
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Compares the hand rule with autodiff and with central differences." in body
        driver.get(f"{base}/notebooks/1_computational_graphs.html")
        cells = driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
        assert len(cells) >= 4
        assert "buy_apple" in driver.find_element(By.TAG_NAME, "body").text
        driver.get(f"{base}/index.html")
        links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "article a")]
        assert f"{base}/guides/gradcheck.html" in links
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


def test_the_readme_is_short_renders_on_an_index_page_and_its_paths_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    # A package index shows the README without the repository: no link or image may be relative.
    assert re.findall(r"\]\((?!https?://)[^)]*\)", text) == []
    named = re.findall(r"`((?:docs|backprop_jax)/[^`]+)`", text)
    assert "docs/guides/training.md" in named
    for path in named:
        assert (ROOT / path).exists(), path
    # One spelling of the installer, the one that works without uv on the PATH.
    assert re.findall(r"(?<!-m )\buv (?:run|pip|build)", text) == []


def test_the_readme_example_runs_and_prints_the_books_numbers():
    text = (ROOT / "README.md").read_text()
    (block,) = re.findall(r"## In fifteen lines\n\n```python\n(.*?)```", text, re.S)
    assert len(block.splitlines()) <= 16
    result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "JAX_ENABLE_X64": "0"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    price, dapple, dapple_num, dtax = map(float, lines[0].split())
    # The book's numbers (sec. 5.4.1): price 220, dapple 2.2, dapple_num 110, dtax 200.
    assert (price, dapple, dapple_num, dtax) == pytest.approx((100 * 2 * 1.1, 2 * 1.1, 100 * 1.1, 100 * 2), rel=1e-6)
    assert [float(v) for v in re.findall(r"Array\(([\d.]+)", lines[1])] == pytest.approx([2.2, 110, 200], rel=1e-6)
    assert "replaced by autodiff: affine x1, sigmoid x1" in result.stdout
    assert result.stdout.rstrip().endswith("gradient check passed")
