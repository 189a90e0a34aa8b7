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
        next_button = driver.find_element(By.ID, "next")
        while next_button.is_enabled():
            if len(history) % 2:
                next_button.click()
            else:  # the arrow key does the same
                driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
            history.append((shown("value"), shown("grad"), driver.find_element(By.ID, "status").text))
        assert len(history) == 8  # 5 forward steps, 3 backward
        # Forward, left to right: the inputs, 200, then 220; no gradient yet.
        assert history[4][0][-1] == "220" and "200" in history[3][0] and history[4][1] == []
        assert history[4][2] == "forward: node × = 220"
        # Backward, right to left: 1 into the output, then dtax 200 (with 1.1), then dapple 2.2 and dapple_num 110.
        assert history[5][1] == ["1"]
        assert sorted(history[6][1]) == sorted(["1", "1.1", "200"])
        assert sorted(history[7][1]) == sorted(["1", "1.1", "200", "2.2", "110"])
        assert history[7][2] == "backward: node × passes back dapple = 2.2, dapple_num = 110"
        assert history[6][2] == "backward: node × passes back d(×) = 1.1, dtax = 200"
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
    assert ("image/svg+xml" in bundle) == (shutil.which("dot") is not None)
    if "image/svg+xml" not in bundle:
        assert bundle["text/html"] == text
