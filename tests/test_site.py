"""The built site as a reader sees it, in headless Chromium: notebook 1's graphs step forward
and backward with the book's numbers, math is typeset, and no page asks another host for
anything (scripts, fonts, MathJax: the site serves them all)."""

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import browser

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds the site and runs notebook 1: `pytest -m slow`, run by .ci/run
GUIDES = ["gradcheck", "own-layer", "training", "experiments", "devices", "performance"]
PAGES = ["index.html", "guides/layers.html", "guides/graph.html", "notebooks/1_computational_graphs.html",
         *[f"guides/{name}.html" for name in GUIDES], "reference/api.html", "reference/cli.html",
         "notebooks/2_layer_rules.html", "notebooks/6_exercises.html",
         "zh/index.html", "ja/index.html", "zh/notebooks/1_computational_graphs.html",
         "ja/notebooks/1_computational_graphs.html", "zh/guides/layers.html", "ja/guides/layers.html",
         "zh/notebooks/6_exercises.html", "ja/notebooks/6_exercises.html",
         "zh/notebooks/5_backprop_through_time.html", "ja/notebooks/5_backprop_through_time.html"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The site, built with notebook 1 executed (its graphs are outputs), served on loopback."""
    out = tmp_path_factory.mktemp("site")
    notebook_1 = "1_computational_graphs.ipynb,1_computational_graphs.zh.ipynb,1_computational_graphs.ja.ipynb"
    env = {**os.environ, "BACKPROP_JAX_DOCS_EXECUTE": notebook_1, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    driver = browser()
    yield f"http://127.0.0.1:{server.server_address[1]}", driver, out
    driver.quit()
    server.shutdown()
    server.server_close()


def open_page(driver, url):
    driver.get(url)
    # MathJax typesets after the page loads; wait until it says it is done.
    for _ in range(100):
        if driver.execute_script("return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"):
            driver.execute_async_script("MathJax.startup.promise.then(arguments[0])")
            return
        time.sleep(0.05)
    raise AssertionError(f"MathJax never started on {url}")


def test_every_graph_of_notebook_1_steps_forward_and_backward_with_the_books_numbers(served):
    from selenium.webdriver.common.by import By

    base, driver, _ = served
    open_page(driver, f"{base}/notebooks/1_computational_graphs.html")
    # No script error (two graphs on one page used to throw). The theme's language switcher
    # looks for a sitemap.xml beside the page, which a site without a site_url does not have.
    errors = [e for e in driver.get_log("browser") if "sitemap.xml" not in e["message"]]
    assert errors == []
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "price 715" in body and "dapple_num 110, dapple 2.2, dorange 3.3, dorange_num 165, dtax 650" in body
    assert "TqdmWarning" not in body  # no red box of stderr
    assert driver.find_elements(By.CSS_SELECTOR, '[data-mime-type="application/vnd.jupyter.stderr"]') == []
    graphs = driver.find_elements(By.CSS_SELECTOR, ".bj-graph")
    assert len(graphs) == 2
    expected = [  # the book's numbers (sec. 5.4): every gradient, as it appears below its arrow
        (8, ["1", "1.1", "200", "2.2", "110"], "backward: node × passes back dapple = 2.2, dapple_num = 110"),
        (14, ["1", "1.1", "650", "1.1", "1.1", "3.3", "165", "2.2", "110"],
         "backward: node × passes back dapple = 2.2, dapple_num = 110")]
    for root, (n_steps, grads, last) in zip(graphs, expected):
        find = lambda cls: root.find_element(By.CSS_SELECTOR, cls)
        shown = lambda kind: sorted(e.text for e in root.find_elements(By.CSS_SELECTOR, f"text.{kind}.shown"))
        assert find(".bj-counter").text == f"step 0 of {n_steps}"
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", find(".bj-next"))
        for _ in range(n_steps):
            find(".bj-next").click()
        assert find(".bj-counter").text == f"step {n_steps} of {n_steps}" and not find(".bj-next").is_enabled()
        assert shown("grad") == sorted(grads) and find(".bj-status").text == last
        values = shown("value")
        assert ("715" if n_steps == 14 else "220") in values and "200" in values
        for _ in range(n_steps):
            find(".bj-prev").click()
        assert shown("grad") == [] and shown("value") == [] and find(".bj-counter").text == f"step 0 of {n_steps}"


def test_math_is_typeset_and_no_page_asks_another_host(served):
    from selenium.webdriver.common.by import By

    base, driver, _ = served
    driver.get_log("performance")  # forget what came before
    typeset = {}
    for page in PAGES:
        open_page(driver, f"{base}/{page}")
        text = driver.find_element(By.CSS_SELECTOR, "article").text
        # Outside code, no math is left as TeX source ($...$, \(, \partial); a lone $ (as in
        # $BACKPROP_JAX_DATA) is text.
        raw = driver.execute_script("""
            const walk = document.createTreeWalker(document.querySelector('article'), NodeFilter.SHOW_TEXT);
            const left = [];
            while (walk.nextNode()) {
              const n = walk.currentNode;
              if (n.parentElement.closest('pre, code, mjx-container, .jp-OutputArea, script, style')) continue;
              if (/\\$[^$]+\\$|\\\\\\(|\\\\partial|\\\\frac/.test(n.textContent)) left.push(n.textContent.trim().slice(0, 60));
            }
            return left;""")
        assert raw == [], (page, raw)
        typeset[page] = len(driver.find_elements(By.CSS_SELECTOR, "mjx-container"))
        assert text
    assert typeset["notebooks/1_computational_graphs.html"] >= 5 and typeset["notebooks/2_layer_rules.html"] >= 5
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith(("data:", "blob:")):
                hosts.add(urlparse(url).netloc)
    assert hosts == {urlparse(base).netloc}, hosts


def test_each_language_builds_and_its_pages_link_to_each_other(served):
    from selenium.webdriver.common.by import By

    base, driver, out = served
    titles = {"": "Computational graphs and the chain rule", "zh/": "计算图与链式法则",
              "ja/": "計算グラフと連鎖律"}
    for prefix, title in titles.items():
        open_page(driver, f"{base}/{prefix}notebooks/1_computational_graphs.html")
        assert title in driver.find_element(By.TAG_NAME, "h1").text
        assert len(driver.find_elements(By.CSS_SELECTOR, ".bj-graph")) == 2  # the same graphs, executed
        assert "715" in driver.find_element(By.TAG_NAME, "body").text
        assert driver.find_elements(By.CSS_SELECTOR, ".stale-translation") == []  # up to date
        # The language switcher names every language and leads to this page in each.
        switch = {a.get_attribute("hreflang"): a.get_attribute("href")
                  for a in driver.find_elements(By.CSS_SELECTOR, "a.md-select__link")}
        assert switch == {"en": f"{base}/notebooks/1_computational_graphs.html",
                          "zh": f"{base}/zh/notebooks/1_computational_graphs.html",
                          "ja": f"{base}/ja/notebooks/1_computational_graphs.html"}
    open_page(driver, f"{base}/zh/index.html")
    text = driver.find_element(By.TAG_NAME, "article").text
    assert "《深度学习入门：基于Python的理论与实现》" in text and "误差反向传播法" in text
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "article a")]
    assert f"{base}/zh/notebooks/1_computational_graphs.html" in links
    open_page(driver, f"{base}/ja/index.html")
    assert "『ゼロから作るDeep Learning ―Pythonで学ぶディープラーニングの理論と実装』" in \
        driver.find_element(By.TAG_NAME, "article").text
    open_page(driver, f"{base}/zh/guides/layers.html")
    switch = {a.get_attribute("hreflang"): a.get_attribute("href")
              for a in driver.find_elements(By.CSS_SELECTOR, "a.md-select__link")}
    assert switch["en"] == f"{base}/guides/layers.html" and switch["ja"] == f"{base}/ja/guides/layers.html"
    for prefix in ("", "zh/", "ja/"):  # a notebook not executed for the site, in each language
        open_page(driver, f"{base}/{prefix}notebooks/5_backprop_through_time.html")
        switch = {a.get_attribute("hreflang"): a.get_attribute("href")
                  for a in driver.find_elements(By.CSS_SELECTOR, "a.md-select__link")}
        assert switch == {lang: f"{base}/{'' if lang == 'en' else lang + '/'}notebooks/5_backprop_through_time.html"
                          for lang in ("en", "zh", "ja")}
    assert "Truncated BPTT：状態が引き継がれる言語モデル" in driver.find_element(By.TAG_NAME, "article").text
    open_page(driver, f"{base}/zh/guides/layers.html")
    text = driver.find_element(By.TAG_NAME, "article").text
    assert "手动执行书中的反向传播链" in text and "715.0000000000001" in text
    assert "续作的层" in text and "两本书，逐项对照" in text and "time_lstm" in text
    for link in [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "article a")]:
        if link.startswith(base):  # the sequel's part links to pages not translated: they are there
            assert (out / link[len(base) + 1:].split("#")[0]).is_file(), link
    open_page(driver, f"{base}/ja/notebooks/6_exercises.html")
    assert "演習：各レイヤの逆伝播を自分で書く" in driver.find_element(By.TAG_NAME, "h1").text
    for link in links:  # every link of the Chinese home page that stays on the site is there
        if link.startswith(base):
            path = link[len(base) + 1:].split("#")[0]
            assert (out / path).is_file(), link
