"""Computational graphs: the chapter's numbers on the arrows, layers in order, real gradients."""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import backprop_jax as bj
from backprop_jax import graph, shopping, two_layer_net
from conftest import normal


def arrows(g):
    """``(source label, target label, value, gradient)`` per edge."""
    label = {n.id: n.label for n in g.nodes}
    return [(label[e.src], label[e.dst], float(e.value), float(e.grad)) for e in g.edges]


def test_apple_graph_carries_the_chapters_numbers():
    g = graph.trace(shopping.buy_apple, 100.0, 2.0, 1.1)
    assert g.layers() == ["mul", "mul"]
    got = arrows(g)
    expected = [("apple", "mul", 100, 2.2), ("apple_num", "mul", 2, 110), ("mul", "mul", 200, 1.1),
                ("tax", "mul", 1.1, 200), ("mul", "output", 220, 1)]
    assert [a[:2] for a in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([a[2:] for a in got], [e[2:] for e in expected], rtol=1e-6)
    dot = g.to_dot()
    for text in ("100", "2.2", "110", "200", "1.1", "220", ">1<", "×"):
        assert text in dot


def test_apple_orange_graph_carries_the_chapters_numbers():
    g = graph.trace(shopping.buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1)
    assert g.layers() == ["mul", "mul", "add", "mul"]
    got = {(a[0], round(a[2], 4)): round(a[3], 4) for a in arrows(g)}
    assert got == {("apple", 100): 2.2, ("apple_num", 2): 110, ("orange", 150): 3.3, ("orange_num", 3): 165,
                   ("mul", 200): 1.1, ("mul", 450): 1.1, ("add", 650): 1.1, ("tax", 1.1): 650,
                   ("mul", 715): 1}


def net_inputs():
    params = two_layer_net.init(jax.random.key(0), 784, 50, 10, dtype=jnp.float64)
    params["b1"] = 0.1 * normal(5, (50,))
    return params, jax.random.uniform(jax.random.key(1), (3, 784), jnp.float64), jnp.array([3, 7, 1])


@pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])
def test_two_layer_net_graph_has_the_four_layers_with_their_shapes(transform):
    params, x, t = net_inputs()
    g = graph.trace(transform(two_layer_net.loss), params, x, t)
    assert g.layers() == ["affine", "relu", "affine", "softmax_with_loss"]
    label = {n.id: n.label for n in g.nodes}
    into = lambda name: [(label[e.src], e.value.shape) for e in g.edges_into(name)]
    assert sorted(into("affine")) == sorted([("x", (3, 784)), ("W1", (784, 50)), ("b1", (50,)),
                                             ("relu", (3, 50)), ("W2", (50, 10)), ("b2", (10,))])
    assert into("relu") == [("affine", (3, 50))]
    assert into("softmax_with_loss") == [("affine", (3, 10)), ("t", (3,))]
    (t_edge,) = [e for e in g.edges_into("softmax_with_loss") if label[e.src] == "t"]
    assert t_edge.grad is None  # integer labels: no gradient below their arrow
    (out,) = g.edges_into("output")
    np.testing.assert_allclose(out.value, two_layer_net.loss(params, x, t), rtol=1e-12)


def test_edge_gradients_equal_jax_grad_with_respect_to_that_value():
    params, x, t = net_inputs()
    g = graph.trace(two_layer_net.loss, params, x, t)
    label = {n.id: n.label for n in g.nodes}
    (relu_out,) = [e for e in g.edges if label[e.src] == "relu"]
    (scores,) = [e for e in g.edges if label[e.dst] == "softmax_with_loss" and label[e.src] == "affine"]
    # Written here with optax and jnp, independently of the library.
    rest_from_h = lambda h: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
        h @ params["W2"] + params["b2"][None, :], t))
    h = jnp.maximum(x @ params["W1"] + params["b1"][None, :], 0)
    np.testing.assert_allclose(relu_out.value, h, rtol=1e-12)
    np.testing.assert_allclose(relu_out.grad, jax.grad(rest_from_h)(h), rtol=1e-10, atol=1e-15)
    s = h @ params["W2"] + params["b2"][None, :]
    ds = jax.grad(lambda s: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(s, t)))(s)
    np.testing.assert_allclose(scores.grad, ds, rtol=1e-10, atol=1e-15)
    w1 = [e for e in g.edges if label[e.src] == "W1"][0]
    np.testing.assert_allclose(w1.grad, jax.grad(two_layer_net.loss)(params, x, t)["W1"], rtol=1e-10, atol=1e-15)


def test_a_value_used_twice_shows_each_arrows_share():
    # out = x * x + x: the three arrows leaving x carry x, 3, 1 (sum: 2x + 1).
    g = graph.trace(lambda x: bj.add(bj.mul(x, x), x), 3.0)
    from_x = sorted(a[3] for a in arrows(g) if a[0] == "x")
    assert from_x == [1.0, 3.0, 3.0]
    assert sum(from_x) == jax.grad(lambda x: x * x + x)(3.0)


def test_plain_jax_operations_and_constants_are_nodes():
    g = graph.trace(lambda x: jnp.sum(bj.relu(x) * 2.0), jnp.array([-1.0, 2.0]))
    assert g.layers() == ["relu", "mul", "reduce_sum"]
    assert [n.label for n in g.nodes if n.kind == "const"] == ["2"]


def test_expand_shows_primitives_inside_the_layers():
    params, x, t = net_inputs()
    g = graph.trace(two_layer_net.loss, params, x, t, expand=True)
    ops = g.layers()
    assert "affine" not in ops and "relu" not in ops
    assert ops.count("dot_general") == 2 and "log" in ops
    (out,) = g.edges_into("output")
    np.testing.assert_allclose(out.value, two_layer_net.loss(params, x, t), rtol=1e-12)


def test_mermaid_and_dot_files(tmp_path):
    g = graph.trace(shopping.buy_apple, 100.0, 2.0, 1.1)
    mmd = g.render(tmp_path / "apple.mmd").read_text()
    assert mmd.startswith("flowchart LR") and '-->|"100<br/>grad: 2.2"|' in mmd
    dot = g.render(tmp_path / "apple.dot").read_text()
    assert dot.startswith("digraph") and dot == g.to_dot()
    with pytest.raises(ValueError, match=r"the extension must be one of \.dot, \.svg, \.png, \.mmd"):
        g.render(tmp_path / "apple.jpg")


def test_arrays_are_summarised_or_shown_in_full():
    assert graph.format_value(np.float64(220.00000000000003)) == "220"
    assert graph.format_value(np.array([[3.0, -4.0]], np.float32)) == "f32[1,2] |x|=5 [-4, 3]"
    assert graph.format_value(np.array([3.0, -4.0]), full_arrays=True) == "[ 3., -4.]"


def test_svg_rendered_with_graphviz(tmp_path):
    if shutil.which("dot") is None:
        assert not os.environ.get("CI"), ".ci/run installs Graphviz; it must be there in CI"
        pytest.skip("Graphviz's dot is not installed on this machine")
    path = graph.trace(shopping.buy_apple, 100.0, 2.0, 1.1).render(tmp_path / "apple.svg")
    root = ET.parse(path).getroot()
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for text in ("apple", "apple_num", "tax", "100", "2.2", "2", "110", "200", "1.1", "220", "1", "×"):
        assert text in texts, text


def test_missing_graphviz_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    g = graph.trace(shopping.buy_apple, 100.0, 2.0, 1.1)
    with pytest.raises(graph.GraphvizNotFound, match=r"install the 'graphviz' package"):
        g.render(tmp_path / "apple.png")
    assert not (tmp_path / "apple.png").exists()


def test_graph_command(tmp_path):
    user = tmp_path / "mine.py"
    user.write_text("import backprop_jax as bj\n\n"
                    "def price(apple=100.0, n=3.0):\n    return bj.mul(apple, n)\n")
    run = lambda *a: subprocess.run([sys.executable, "-m", "backprop_jax", "graph", *a],
                                    capture_output=True, text=True, timeout=300)
    result = run(f"{user}:price", "--out", str(tmp_path / "p.mmd"))
    assert result.returncode == 0, result.stderr
    assert '-->|"100<br/>grad: 3"|' in (tmp_path / "p.mmd").read_text()
    result = run("apple", "--out", str(tmp_path / "a.dot"))
    assert result.returncode == 0 and "wrote" in result.stdout


def test_graph_command_draws_the_books_figures(tmp_path, capsys):
    from backprop_jax.cli import main
    main(["graph", "two-layer-net", "--book", "--out", str(tmp_path / "net.dot")])
    dot = (tmp_path / "net.dot").read_text()
    for text in ('label="dot"', 'label="Softmax"', 'label="Cross Entropy Error"', 'xlabel="dX = dY · Wᵀ, dW = Xᵀ · dY"'):
        assert text in dot, text
    with pytest.raises(SystemExit) as e:
        main(["graph", "apple", "--book", "--expand", "--out", str(tmp_path / "x.dot")])
    assert e.value.code == 2 and "--expand and --book are two different views" in capsys.readouterr().err



@pytest.mark.parametrize("what, out, message", [
    ("{user}:needs_input", "x.dot", "give every parameter a default value to draw it at (no default for x)"),
    ("{user}:nothing", "x.dot", "has no function 'nothing'"),
    ("banana", "x.dot", "WHAT must be apple, apple-orange, two-layer-net or FILE.py:FUNCTION"),
    ("apple", "x.gif", "--out must end in one of .dot, .svg, .png, .mmd"),
])
def test_graph_command_usage_errors(tmp_path, capsys, what, out, message):
    from backprop_jax.cli import main
    user = tmp_path / "mine.py"
    user.write_text("def needs_input(x):\n    return x\n")
    with pytest.raises(SystemExit) as e:
        main(["graph", what.format(user=user), "--out", str(tmp_path / out)])
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("source, message", [
    ("def f(x=1.0):\n    return x +\n", "broken.py, line 2: invalid syntax"),
    ("import jax.numpy as jnp\n\ndef f(x=1.0):\n    y = jnp.sin(x)\n    raise ValueError('no graph today')\n",
     "f raised ValueError: no graph today (line 5)"),
    ("raise RuntimeError('at import')\n\ndef f(x=1.0):\n    return x\n",
     "running {user} raised RuntimeError: at import (line 1)"),
])
def test_a_user_file_that_fails_is_one_line_naming_where(tmp_path, capsys, source, message):
    from backprop_jax.cli import main
    user = tmp_path / "broken.py"
    user.write_text(source)
    with pytest.raises(SystemExit) as e:
        main(["graph", f"{user}:f", "--out", str(tmp_path / "x.dot")])
    assert str(e.value.code).startswith(f"backprop-jax: error: WHAT {user}:f: ")
    assert message.format(user=user) in str(e.value.code) and "\n" not in str(e.value.code)


def test_a_short_scan_is_drawn_step_by_step_and_a_cond_shows_its_branches():
    x = jnp.array([0.5, -1.0, 2.0])
    f = lambda x: jnp.sum(jax.lax.scan(lambda h, _: (bj.sigmoid(h), None), x, None, length=3)[0])
    g = graph.trace(f, x)
    assert g.layers().count("sigmoid") == 3 and "scan" not in g.layers()
    # The gradient on the arrow into the first sigmoid is d out / d x, as jax.grad says.
    (first,) = [e for e in g.edges_into("sigmoid") if e.src.startswith("in")]
    np.testing.assert_allclose(first.grad, jax.grad(f)(x), rtol=1e-6)
    ys = lambda x: jnp.sum(jax.lax.scan(lambda h, xt: (h + xt, bj.relu(h * xt)), 0.0, x)[1])
    g = graph.trace(ys, x)
    assert "stack" in g.layers() and g.layers().count("relu") == 3
    np.testing.assert_allclose([e.value for e in g.edges if e.dst == "out"][0], ys(x), rtol=1e-6)
    c = lambda x: jnp.sum(jax.lax.cond(jnp.sum(x) > 0, bj.sigmoid, bj.relu, x))
    g = graph.trace(c, x)
    assert {"sigmoid", "relu", "select"} <= set(g.layers())
    (into_sigmoid,) = [e for e in g.edges_into("sigmoid") if e.src.startswith("in")]
    (into_relu,) = [e for e in g.edges_into("relu") if e.src.startswith("in")]
    np.testing.assert_allclose(into_sigmoid.grad + into_relu.grad, jax.grad(c)(x), rtol=1e-6)
    assert not np.any(into_relu.grad)  # the branch not taken gets no gradient
    long = lambda x: jnp.sum(jax.lax.scan(lambda h, _: (bj.sigmoid(h), None), x, None, length=100)[0])
    assert graph.trace(long, x).layers().count("scan") == 1  # longer than MAX_UNROLL: one node


def test_a_page_title_holding_the_templates_words_stays_a_title():
    g = graph.trace(shopping.buy_apple, 100.0, 2.0, 1.1)
    page = g.to_html(title="SVG and STEPS")
    assert page.count("<svg") == 1 and "<h2>SVG and STEPS</h2>" in page and "const steps = [" in page


def test_values_are_named_as_the_traced_function_names_them():
    g = graph.trace(shopping.buy_apple_orange, 100.0, 2.0, 150.0, 3.0, 1.1)
    assert [n.name for n in g.nodes if n.kind == "layer"] == ["apple_price", "orange_price", "all_price", ""]
    texts = [t for t, _ in g.steps()]
    assert "backward: node + passes back dapple_price = 1.1, dorange_price = 1.1" in texts
    assert "forward: node + gives all_price = 650" in texts
    # Two locals holding the same value name neither: a name is given only where it is sure.
    def twice(x):
        a = bj.mul(x, 2.0)
        b = bj.mul(x, 2.0)
        return bj.add(a, b)
    assert {n.name for n in graph.trace(twice, 3.0).nodes} == {""}


def test_the_books_sigmoid_figure_has_its_four_nodes_and_local_derivatives():
    x = 0.5
    g = graph.trace(bj.sigmoid, x, book=True)
    assert g.layers() == ["×", "exp", "+", "/"]
    y = 1 / (1 + np.exp(-x))  # written here, independently
    (into_div,) = g.edges_into("/")
    np.testing.assert_allclose(into_div.grad, -y ** 2, rtol=1e-12)  # d(1/u)/du = -1/u² = -y²
    (into_exp,) = g.edges_into("exp")
    np.testing.assert_allclose(into_exp.grad, -y ** 2 * np.exp(-x), rtol=1e-12)
    (from_x,) = [e for e in g.edges if e.src.startswith("in")]
    np.testing.assert_allclose(from_x.grad, y * (1 - y), rtol=1e-12)  # the book's y(1 - y)
    texts = [t for t, _ in g.steps()]
    assert "backward: node / passes back d(+) = -0.387456 (local derivative: -1/(1 + exp(-x))² = -y²)" in texts
    assert [n.note for n in g.nodes if n.kind == "op"] == [
        "local derivative: -1", "local derivative: exp(-x)", "local derivative: 1",
        "local derivative: -1/(1 + exp(-x))² = -y²"]
    with pytest.raises(ValueError, match="expand and book are two different views"):
        graph.trace(bj.sigmoid, x, book=True, expand=True)


def test_the_books_affine_and_softmax_with_loss_figures_carry_their_rules():
    X, W, B = normal(0, (2, 3)), normal(1, (3, 4)), normal(2, (4,))
    t = jnp.array([1, 3])
    g = graph.trace(lambda X, W, B, t: bj.softmax_with_loss(bj.affine(X, W, B), t), X, W, B, t, book=True)
    assert g.layers() == ["dot", "+", "Softmax", "Cross Entropy Error"]
    label = {n.id: n.label for n in g.nodes}
    grads = {label[e.src]: e.grad for e in g.edges if e.src.startswith("in")}
    shapes = {label[e.src]: e.value.shape for e in g.edges if e.src.startswith("in")}
    assert shapes == {"X": (2, 3), "W": (3, 4), "B": (4,), "t": (2,)}
    # Independently: y = softmax(X W + B), dY = (y - t) / N, dX = dY Wᵀ, dW = Xᵀ dY, dB = Σ dY.
    a = np.asarray(X) @ np.asarray(W) + np.asarray(B)
    y = np.exp(a - a.max(axis=1, keepdims=True))
    y /= y.sum(axis=1, keepdims=True)
    dY = (y - np.eye(4)[np.asarray(t)]) / 2
    (into_softmax,) = g.edges_into("Softmax")
    np.testing.assert_allclose(into_softmax.grad, dY, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(grads["X"], dY @ np.asarray(W).T, rtol=1e-10)
    np.testing.assert_allclose(grads["W"], np.asarray(X).T @ dY, rtol=1e-10)
    np.testing.assert_allclose(grads["B"], dY.sum(axis=0), rtol=1e-10)
    assert grads["t"] is None
    notes = {n.label: n.note for n in g.nodes if n.note}
    assert notes == {"dot": "dX = dY · Wᵀ, dW = Xᵀ · dY", "+": "dB = dY summed over the batch (axis 0)",
                     "Softmax": "passes back (y - t) / N", "Cross Entropy Error": "passes back -t / (N y)"}


def test_the_two_layer_net_is_laid_out_left_to_right_with_its_parameters_above():
    params, x, t = net_inputs()
    g = graph.trace(two_layer_net.loss, params, x, t)
    place = graph._layout(g)
    by_label = {}
    for n in g.nodes:
        by_label.setdefault(n.label, []).append(place[n.id])
    layers = [place[n.id] for n in g.nodes if n.kind == "layer"]
    assert [c for c, _ in layers] == [1, 2, 3, 4] and len({r for _, r in layers}) == 1  # one row, in order
    row = layers[0][1]
    assert by_label["x"] == [(0, row)]
    for name in ("W1", "b1", "W2", "b2", "t"):
        (column, r) = by_label[name][0]
        assert r < row, name  # above the layers
    assert by_label["W1"][0][0] == 0 and by_label["W2"][0][0] == 2  # just left of the affine they feed
    assert len(set(place.values())) == len(place)  # no two nodes in one place
