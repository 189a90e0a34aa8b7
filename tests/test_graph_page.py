"""The interactive graph page in a real headless browser (Chromium through Selenium): press
next until the end and watch the forward values, then the backward gradients, appear."""

import shutil
import subprocess
import sys

from backprop_jax import graph, shopping
from conftest import browser




def test_the_apple_page_steps_forward_then_backward(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page = tmp_path / "apple.html"
    result = subprocess.run([sys.executable, "-m", "backprop_jax", "graph", "apple", "--out", str(page)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "http" not in page.read_text().split("<body>")[1].replace("http://www.w3.org/2000/svg", "")  # no fetches
    driver = browser()
    try:
        driver.get(page.as_uri())
        shown = lambda kind: [e.text for e in driver.find_elements(By.CSS_SELECTOR, f"text.{kind}.shown")]
        assert shown("value") == [] and shown("grad") == []
        history = []
        next_button = driver.find_element(By.CSS_SELECTOR, ".bj-next")
        while next_button.is_enabled():
            if len(history) % 2:
                next_button.click()
            else:  # the arrow key does the same
                driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
            history.append((shown("value"), shown("grad"), driver.find_element(By.CSS_SELECTOR, ".bj-status").text))
        assert len(history) == 8  # 5 forward steps, 3 backward
        # Forward, left to right: the inputs, 200, then 220; no gradient yet.
        assert history[4][0][-1] == "220" and "200" in history[3][0] and history[4][1] == []
        assert history[4][2] == "forward: node × = 220"
        assert history[3][2] == "forward: node × gives apple_price = 200"  # the function's own name
        # Backward, right to left: 1 into the output, then dtax 200 (with 1.1), then dapple 2.2 and dapple_num 110.
        assert history[5][1] == ["1"]
        assert sorted(history[6][1]) == sorted(["1", "1.1", "200"])
        assert sorted(history[7][1]) == sorted(["1", "1.1", "200", "2.2", "110"])
        assert history[7][2] == "backward: node × passes back dapple = 2.2, dapple_num = 110"
        assert history[6][2] == "backward: node × passes back dapple_price = 1.1, dtax = 200"
        # And back again.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
        assert sorted(shown("grad")) == sorted(["1", "1.1", "200"])
    finally:
        driver.quit()


def test_the_page_is_written_for_any_traced_function_and_shows_inline(tmp_path):
    g = graph.trace(shopping.buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1)
    text = g.to_html()
    assert text.startswith("<!DOCTYPE html>") and "<script>" in text and "<svg" in text
    steps = g.steps()
    assert [t for t, _ in steps][-1].startswith("backward: node ×") and steps[0][0] == "forward: input apple = 100"
    assert sum(1 for t, _ in steps if t.startswith("forward")) == 9  # 5 inputs, 4 nodes
    bundle = g._repr_mimebundle_()
    assert bundle["text/markdown"].startswith("```mermaid\nflowchart LR")
    assert bundle["text/html"].startswith('<div class="bj-graph" id="bj-graph-') and "<!DOCTYPE" not in bundle["text/html"]


def test_several_graphs_on_one_page_each_step_on_their_own(tmp_path):
    """Two steppers of the same graph and one of another on one page: no id or name is shared
    (a page-wide ``const steps`` or ``id="next"`` would break the second one)."""
    from selenium.webdriver.common.by import By

    apple = graph.trace(shopping.buy_apple, 100.0, 2.0, 1.1)
    both = graph.trace(shopping.buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1)
    fragments = [apple.to_html_fragment(), both.to_html_fragment(), apple.to_html_fragment()]
    assert len({f.split('"')[3] for f in fragments}) == 3  # three different ids
    page = tmp_path / "several.html"
    page.write_text("<!DOCTYPE html><html><body>" + "".join(fragments) + "</body></html>")
    driver = browser()
    try:
        driver.get(page.as_uri())
        assert driver.get_log("browser") == []  # no script error
        roots = driver.find_elements(By.CSS_SELECTOR, ".bj-graph")
        counter = lambda r: r.find_element(By.CSS_SELECTOR, ".bj-counter").text
        assert [counter(r) for r in roots] == ["step 0 of 8", "step 0 of 14", "step 0 of 8"]
        for _ in range(14):
            roots[1].find_element(By.CSS_SELECTOR, ".bj-next").click()
        roots[2].find_element(By.CSS_SELECTOR, ".bj-next").click()
        assert [counter(r) for r in roots] == ["step 0 of 8", "step 14 of 14", "step 1 of 8"]
        grads = sorted(e.text for e in roots[1].find_elements(By.CSS_SELECTOR, "text.grad.shown"))
        assert grads == sorted(["2.2", "110", "3.3", "165", "1.1", "1.1", "1.1", "650", "1"])
        assert roots[0].find_elements(By.CSS_SELECTOR, "text.shown") == []
    finally:
        driver.quit()
