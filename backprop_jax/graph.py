"""Draw a computational graph as the chapter does: values above the arrows, gradients below.

``trace(f, *args)`` runs ``f`` on concrete inputs through its jaxpr, records
every intermediate value, and runs the backward pass to find the gradient of
the output with respect to the value on every arrow. Nodes are our layers
(``mul``, ``add``, ``affine``, ``relu``, ...) and any plain JAX operation
between them; ``expand=True`` shows the primitive operations inside the
layers instead, and ``book=True`` draws sigmoid, affine and softmax-with-loss
as the book's figures. A value keeps the name the traced function gives it
(``apple_price``). The result renders as Graphviz DOT, SVG or PNG (through
Graphviz's ``dot``) and as Mermaid text::

    from backprop_jax import graph
    from backprop_jax.shopping import buy_apple
    g = graph.trace(buy_apple, 100.0, 2.0, 1.1)
    g.render("apple.svg")        # or .dot, .png, .mmd

The gradient on an arrow is the part of ``d output / d value`` that flows
along that arrow (the book's numbers below its arrows); where a value feeds
several nodes, the gradients on its arrows add up to its total gradient. A
non-scalar output starts the backward pass from ``dout = 1`` everywhere, as
the book's ``dprice = 1``.

A ``lax.scan`` of up to ``MAX_UNROLL`` steps (``fori_loop`` with fixed
bounds is one) is drawn step by step, its body's nodes once per step; a
``lax.cond`` or ``switch`` shows every branch and a ``select`` of the one its
index picks. The nesting is read through the same jaxpr walker that
``without_hand_rules`` uses (``checking._jaxpr``).
"""

import dataclasses
import html
import inspect
import shutil
import string
import subprocess
import sys
import uuid
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

from backprop_jax._io import atomic_path
from backprop_jax.checking._jaxpr import bind, call_body, is_layer, layer_body, layer_name, leaf_names, open_body

# Symbols the book draws in its nodes.
_SYMBOLS = {"mul": "×", "add": "+"}
FORMATS = (".dot", ".svg", ".png", ".mmd", ".html")


class GraphvizNotFound(RuntimeError):
    """Rendering SVG or PNG needs Graphviz's ``dot`` program."""


@dataclasses.dataclass(frozen=True)
class Node:
    id: str
    label: str  # layer or primitive name, input name, or "output"
    kind: str  # "input", "const", "layer", "op" or "output"
    name: str = ""  # the traced function's own name for the node's output (``apple_price``), if any
    note: str = ""  # in the book's views, the node's local derivative or backward rule


@dataclasses.dataclass(frozen=True)
class Edge:
    src: str  # Node ids
    dst: str
    value: np.ndarray  # the forward value carried by the arrow
    grad: np.ndarray | None  # d output / d value along this arrow; None if not differentiable


@dataclasses.dataclass(frozen=True)
class _Step:
    node: Node
    ins: tuple  # refs (ints) of the values it reads
    outs: tuple  # refs it defines
    eqn: object  # the jaxpr equation to evaluate, or a function of the input values returning a list

    def evaluate(self, invals):
        return self.eqn(*invals) if callable(self.eqn) and not hasattr(self.eqn, "primitive") \
            else bind(self.eqn, invals)


# A scan of at most this many steps is drawn step by step; a longer one is one node.
MAX_UNROLL = 16


def _flatten(jaxpr, in_refs, const_refs, expand, steps, counter, consts_out):
    """Appends the steps of ``jaxpr`` to ``steps``, inlining jit calls (and layers if ``expand``)."""
    env = dict(zip(jaxpr.invars, in_refs))
    env.update(zip(jaxpr.constvars, const_refs))

    def ref_of(v):
        if isinstance(v, jcore.Literal):
            ref = next(counter)
            consts_out[ref] = v.val
            return ref
        return env[v]

    for eqn in jaxpr.eqns:
        ins = [ref_of(v) for v in eqn.invars]
        body = (layer_body(eqn) if expand is True else None) if is_layer(eqn) else call_body(eqn)
        name = eqn.primitive.name
        book = _BOOK_FIGURES.get(layer_name(eqn)) if expand == "book" and is_layer(eqn) else None
        if book is not None and book.fits(eqn):
            outs = book.draw(ins, lambda value: _const(value, counter, consts_out),
                             lambda label, ins, fn, note: _op(steps, counter, label, ins, fn, note))
        elif name == "scan" and eqn.params["length"] <= MAX_UNROLL and not eqn.params["jaxpr"].consts:
            outs = _unroll_scan(eqn, ins, expand, steps, counter, consts_out)
        elif name == "cond" and not any(b.consts for b in eqn.params["branches"]):
            outs = _both_branches(eqn, ins, expand, steps, counter, consts_out)
        elif body is not None:
            inner, inner_consts = open_body(body)
            const_refs_inner = []
            for c in inner_consts:
                ref = next(counter)
                consts_out[ref] = c
                const_refs_inner.append(ref)
            outs = _flatten(inner, ins, const_refs_inner, expand, steps, counter, consts_out)
        else:
            outs = [next(counter) for _ in eqn.outvars]
            if is_layer(eqn):
                node = Node(f"n{len(steps)}", layer_name(eqn), "layer")
            else:
                node = Node(f"n{len(steps)}", eqn.primitive.name, "op")
            steps.append(_Step(node, tuple(ins), tuple(outs), eqn))
        for v, ref in zip(eqn.outvars, outs):
            env[v] = ref
    return [ref_of(v) for v in jaxpr.outvars]


def _new_step(steps, counter, label, ins, n_out, fn):
    outs = [next(counter) for _ in range(n_out)]
    steps.append(_Step(Node(f"n{len(steps)}", label, "op"), tuple(ins), tuple(outs), fn))
    return outs


def _const(value, counter, consts_out):
    ref = next(counter)
    consts_out[ref] = value
    return ref


def _op(steps, counter, label, ins, fn, note):
    (out,) = _new_step(steps, counter, label, ins, 1, lambda *values: [fn(*values)])
    step = steps[-1]
    steps[-1] = dataclasses.replace(step, node=dataclasses.replace(step.node, note=note))
    return out


# The book's figures of three layers (sec. 5.5.2, 5.6.2, 5.6.3), drawn from the same inputs in
# plain JAX operations: the gradients on their arrows come from autodiff of those operations.

@dataclasses.dataclass(frozen=True)
class _BookFigure:
    fits: object  # eqn -> whether the figure can draw this call (its shapes)
    draw: object  # (in refs, const, op) -> out refs


def _sigmoid_figure(ins, const, op):
    (x,) = ins
    a = op("×", [x, const(-1.0)], lambda x, c: x * c, "local derivative: -1")
    b = op("exp", [a], jnp.exp, "local derivative: exp(-x)")
    c = op("+", [b, const(1.0)], lambda b, one: b + one, "local derivative: 1")
    y = op("/", [c], lambda c: 1 / c, "local derivative: -1/(1 + exp(-x))² = -y²")
    return [y]


def _affine_figure(ins, const, op):
    X, W, B = ins
    XW = op("dot", [X, W], lambda X, W: X @ W, "dX = dY · Wᵀ, dW = Xᵀ · dY")
    return [op("+", [XW, B], lambda XW, B: XW + B[None, :], "dB = dY summed over the batch (axis 0)")]


def _cross_entropy_error(y, t):
    n = y.shape[0]
    if jnp.issubdtype(t.dtype, jnp.integer):
        return -jnp.sum(jnp.log(y[jnp.arange(n), t])) / n
    return -jnp.sum(t * jnp.log(y)) / n


def _softmax_with_loss_figure(ins, const, op):
    a, t = ins
    y = op("Softmax", [a], lambda a: jax.nn.softmax(a, axis=1), "passes back (y - t) / N")
    return [op("Cross Entropy Error", [y, t], _cross_entropy_error, "passes back -t / (N y)")]


def _shapes(eqn):
    return [tuple(v.aval.shape) for v in eqn.invars]


_BOOK_FIGURES = {
    "sigmoid": _BookFigure(lambda eqn: len(eqn.invars) == 1, _sigmoid_figure),
    "affine": _BookFigure(lambda eqn: [len(s) for s in _shapes(eqn)] == [2, 2, 1], _affine_figure),
    "softmax_with_loss": _BookFigure(lambda eqn: len(eqn.invars) == 2 and len(_shapes(eqn)[0]) == 2,
                                     _softmax_with_loss_figure),
}


def _unroll_scan(eqn, ins, expand, steps, counter, consts_out):
    """A ``lax.scan`` drawn step by step: ``x[t]`` taken from each scanned input, the body's
    nodes once per step with the carry threaded through, the outputs stacked at the end."""
    p = eqn.params
    n_consts, n_carry, length = p["num_consts"], p["num_carry"], p["length"]
    consts, carry, xs = ins[:n_consts], ins[n_consts:n_consts + n_carry], ins[n_consts + n_carry:]
    body = p["jaxpr"].jaxpr
    ys_by_step = {}
    for t in (range(length - 1, -1, -1) if p["reverse"] else range(length)):
        x_t = [_new_step(steps, counter, f"[{t}]", [x], 1, lambda v, t=t: [v[t]])[0] for x in xs]
        outs = _flatten(body, consts + carry + x_t, [], expand, steps, counter, consts_out)
        carry, ys_by_step[t] = list(outs[:n_carry]), outs[n_carry:]
    n_ys = len(eqn.outvars) - n_carry
    stacked = [_new_step(steps, counter, "stack", [ys_by_step[t][k] for t in range(length)], 1,
                         lambda *vals: [jnp.stack(vals)])[0] for k in range(n_ys)]
    return carry + stacked


def _both_branches(eqn, ins, expand, steps, counter, consts_out):
    """A ``lax.cond``/``switch``: every branch drawn, and a ``select`` of the one the index picks
    (the others get no gradient)."""
    index, operands = ins[0], ins[1:]
    results = [_flatten(b.jaxpr, list(operands), [], expand, steps, counter, consts_out)
               for b in eqn.params["branches"]]
    n = len(results)

    def select(i, *values):
        i = jnp.clip(i, 0, n - 1)
        return [sum(jnp.where(i == k, values[k], jnp.zeros_like(values[k])) for k in range(n))]

    return [_new_step(steps, counter, "select", [index] + [r[j] for r in results], 1, select)[0]
            for j in range(len(eqn.outvars))]


@dataclasses.dataclass(frozen=True)
class Graph:
    """Nodes and edges of a traced computation, each edge with its value and gradient."""
    nodes: tuple
    edges: tuple

    def layers(self):
        """Labels of the layer and operation nodes, in evaluation order."""
        return [n.label for n in self.nodes if n.kind in ("layer", "op")]

    def edges_into(self, label):
        """Edges entering the nodes labelled ``label``, in order."""
        ids = {n.id for n in self.nodes if n.label == label}
        return [e for e in self.edges if e.dst in ids]

    def to_dot(self, full_arrays=False):
        """Graphviz DOT text: values above each arrow, gradients below in red."""
        lines = ["digraph backprop {", "  rankdir=LR;", '  node [fontname="Helvetica"];',
                 '  edge [fontname="Helvetica", fontsize=11];']
        for n in self.nodes:
            if n.kind in ("input", "const"):
                lines.append(f'  {n.id} [label="{_escape(n.label)}", shape=plaintext];')
            elif n.kind == "output":
                lines.append(f'  {n.id} [label="", shape=point];')
            else:
                label = _SYMBOLS.get(n.label, n.label)
                shape = "circle" if len(label) <= 4 else "ellipse"
                note = f', xlabel="{_escape(n.note)}", fontcolor="#2a7d2a"' if n.note else ""
                lines.append(f'  {n.id} [label="{_escape(label)}", shape={shape}{note}];')
        for e in self.edges:
            rows = f"<tr><td>{_escape(format_value(e.value, full_arrays), html=True)}</td></tr>"
            if e.grad is not None:  # integer labels have no gradient
                grad = _escape(format_value(e.grad, full_arrays), html=True)
                rows += f'<tr><td><font color="#d62728">{grad}</font></td></tr>'
            label = f'<<table border="0" cellspacing="0" cellpadding="1">{rows}</table>>'
            lines.append(f"  {e.src} -> {e.dst} [label={label}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self, full_arrays=False):
        """Mermaid flowchart text; each arrow reads ``value<br/>grad: gradient``."""
        lines = ["flowchart LR"]
        for n in self.nodes:
            label = _SYMBOLS.get(n.label, n.label).replace('"', "'")
            if n.kind in ("input", "const"):
                lines.append(f'  {n.id}["{label}"]')
            elif n.kind == "output":
                lines.append(f'  {n.id}((" "))')
            else:
                lines.append(f'  {n.id}(("{label}"))')
        for e in self.edges:
            text = format_value(e.value, full_arrays)
            if e.grad is not None:
                text += "<br/>grad: " + format_value(e.grad, full_arrays)
            lines.append(f'  {e.src} -->|"{text.replace(chr(34), chr(39))}"| {e.dst}')
        return "\n".join(lines) + "\n"

    def steps(self):
        """The page's steps: ``(text, [(edge index, "value" or "grad"), ...])`` per step, first
        the forward pass node by node (each node's outgoing values, left to right), then the
        backward pass (the gradients on each node's incoming arrows, right to left). A value is
        called by the traced function's own name where it has one (``apple_price``)."""
        symbol = lambda n: _SYMBOLS.get(n.label, n.label)
        steps = []
        for n in self.nodes:
            out = [i for i, e in enumerate(self.edges) if e.src == n.id]
            if not out or n.kind == "output":
                continue
            values = ", ".join(dict.fromkeys(format_value(self.edges[i].value) for i in out))
            if n.kind in ("input", "const"):
                what = f"input {n.label} = {values}"
            elif n.name:
                what = f"node {symbol(n)} gives {n.name} = {values}"
            else:
                what = f"node {symbol(n)} = {values}"
            steps.append((f"forward: {what}", [(i, "value") for i in out]))
        by_id = {n.id: n for n in self.nodes}

        def name(edge):  # the book's names: dapple for an input, dapple_price for a named value
            src = by_id[edge.src]
            if src.kind in ("input", "const"):
                return src.label
            return src.name or f"({symbol(src)})"

        for n in reversed(self.nodes):
            into = [i for i, e in enumerate(self.edges) if e.dst == n.id and e.grad is not None]
            if not into:
                continue
            grads = ", ".join(f"d{name(self.edges[i])} = {format_value(self.edges[i].grad)}" for i in into)
            what = "the output: dout = 1" if n.kind == "output" else f"node {symbol(n)} passes back {grads}"
            if n.note:
                what += f" ({n.note})"
            steps.append((f"backward: {what}", [(i, "grad") for i in into]))
        return steps

    def to_html(self, full_arrays=False, title="computational graph"):
        """One self-contained HTML page (no network needed) that steps through the forward pass
        (each value appears above its arrow) and then the backward pass (each gradient below
        it, right to left), with next/previous buttons and the arrow keys."""
        return _PAGE.substitute(title=html.escape(title),
                                graph=_fragment(self, full_arrays, title, keys_on_page=True))

    def to_html_fragment(self, full_arrays=False, title="computational graph"):
        """The same stepper as one ``<div>``, for a page that holds any number of graphs: its
        ids, style and script are its own, and its arrow keys work while it has the focus."""
        return _fragment(self, full_arrays, title, keys_on_page=False)

    def _repr_mimebundle_(self, include=None, exclude=None):
        """Shows the graph in Jupyter with no extra call: the interactive stepper (any number
        of them on one page), and Mermaid text for front ends that do not run scripts."""
        return {"text/plain": f"Graph({len(self.nodes)} nodes, {len(self.edges)} arrows)",
                "text/html": self.to_html_fragment(),
                "text/markdown": "```mermaid\n" + self.to_mermaid() + "```\n"}

    def render(self, path, full_arrays=False):
        """Writes the graph to ``path``; the format follows the extension (.dot, .svg, .png, .mmd,
        .html: the interactive page)."""
        path = Path(path)
        ext = path.suffix.lower()
        if ext not in FORMATS:
            raise ValueError(f"cannot write {path}: the extension must be one of {', '.join(FORMATS)}")
        if ext == ".dot":
            data = self.to_dot(full_arrays).encode()
        elif ext == ".mmd":
            data = self.to_mermaid(full_arrays).encode()
        elif ext == ".html":
            data = self.to_html(full_arrays, title=path.stem).encode()
        else:
            data = _run_dot(self.to_dot(full_arrays), ext[1:], path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        return path


def _run_dot(dot_text, fmt, path):
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizNotFound(
            f"writing {path} needs Graphviz's `dot` program, which is not installed: install the "
            f"'graphviz' package (apt-get install graphviz, brew install graphviz or conda install "
            f"graphviz), or write .dot or .mmd instead")
    result = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed on the graph for {path}: {result.stderr.decode(errors='replace')}")
    return result.stdout


def _layout(graph):
    """``{node id: (column, row)}``, layers left to right as the book draws them: each
    operation one column right of its deepest operand, the first operand's chain on one row,
    and each input in the column just left of the node it feeds, above it where there is
    room (a network's parameters above its layers). Rows start at 0."""
    into = {n.id: [e.src for e in graph.edges if e.dst == n.id] for n in graph.nodes}
    consumers = {n.id: [e.dst for e in graph.edges if e.src == n.id] for n in graph.nodes}
    is_input = {n.id: n.kind in ("input", "const") for n in graph.nodes}
    column = {}
    for n in graph.nodes:
        if not is_input[n.id]:
            column[n.id] = 1 + max([column[s] for s in into[n.id] if s in column], default=0)
    for n in graph.nodes:
        if is_input[n.id]:
            column[n.id] = max(0, min([column[c] for c in consumers[n.id] if c in column], default=1) - 1)
    taken, row = set(), {}

    def place(node_id, candidates):
        for r in candidates:
            if (column[node_id], r) not in taken:
                row[node_id] = r
                taken.add((column[node_id], r))
                return

    far = range(1, 2 * len(graph.nodes) + 2)
    for n in graph.nodes:  # operations in evaluation order, each on its first operand's row, else below
        if not is_input[n.id]:
            first = [row[s] for s in into[n.id] if s in row]
            r = first[0] if first else 0
            place(n.id, [r] + [r + j for j in far])

    def consumer_and_position(node_id):  # x before W and b: the first operand sits on its node's row
        target = next((c for c in consumers[node_id] if c in row), None)
        return (target, into[target].index(node_id)) if target is not None else (None, 0)

    for n in sorted((n for n in graph.nodes if is_input[n.id]), key=lambda n: consumer_and_position(n.id)[1]):
        target, k = consumer_and_position(n.id)
        r = row[target] if target is not None else 0
        # Operand k at k rows above its node (a network's parameters above its layers); else below.
        place(n.id, [r - k] + [r + j for j in far] + [r - k - j for j in far])
    top = min(row.values())
    return {k: (column[k], row[k] - top) for k in column}


def _fragment(graph, full_arrays, title, keys_on_page):
    import json

    place = _layout(graph)
    label = lambda x: format_value(x, full_arrays, brief=True)  # the step text gives the summary
    symbol = {n.id: _SYMBOLS.get(n.label, n.label) for n in graph.nodes}
    # A short label in a circle, as the book's × and +; a long one (Softmax) in a box.
    half = {n.id: (20 if len(symbol[n.id]) <= 4 else 10 + 4 * len(symbol[n.id])) if n.kind in ("layer", "op")
            else 4 for n in graph.nodes}
    longest = max([len(label(e.value)) for e in graph.edges]
                  + [len(label(e.grad)) for e in graph.edges if e.grad is not None], default=0)
    # Room between two nodes for the longest label on an arrow.
    dx, dy, margin = max(190, 7 * longest + 40) + 2 * (max(half.values()) - 20), 110, 70
    names = [len(n.label) for n in graph.nodes if n.kind in ("input", "const")]
    left = max(margin, 30 + 9 * max(names, default=0))  # room for the input names
    pos = {k: (left + c * dx, margin + r * dy) for k, (c, r) in place.items()}
    width = left + margin + dx * max(c for c, _ in place.values())
    height = margin * 2 + dy * max(r for _, r in place.values())
    # Each stepper has its own id (outputs of several kernels can share a page); its elements
    # are found inside it, never by a page-wide id.
    uid = f"bj-graph-{uuid.uuid4().hex[:12]}"
    parts = []
    for i, e in enumerate(graph.edges):
        (x1, y1), (x2, y2) = pos[e.src], pos[e.dst]
        mx, my = (x1 + half[e.src] + x2 - half[e.dst]) / 2, (y1 + y2) / 2
        value = html.escape(label(e.value))
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2 - half[e.dst] - 2}" y2="{y2}" class="arrow" '
                     f'marker-end="url(#{uid}-head)"/>')
        parts.append(f'<text data-show="v{i}" class="value" x="{mx}" y="{my - 8}" text-anchor="middle">{value}</text>')
        if e.grad is not None:
            grad = html.escape(label(e.grad))
            parts.append(f'<text data-show="g{i}" class="grad" x="{mx}" y="{my + 18}" '
                         f'text-anchor="middle">{grad}</text>')
    for n in graph.nodes:
        x, y = pos[n.id]
        label = html.escape(_SYMBOLS.get(n.label, n.label))
        if n.kind in ("input", "const"):
            parts.append(f'<text class="input" x="{x - 8}" y="{y + 5}" text-anchor="end">{label}</text>')
        elif n.kind == "output":
            parts.append(f'<circle cx="{x}" cy="{y}" r="4" class="out"/>')
        else:
            tip = f"<title>{html.escape(n.name)}</title>" if n.name else ""
            if half[n.id] == 20:
                parts.append(f'<circle cx="{x}" cy="{y}" r="20" class="node">{tip}</circle>'
                             f'<text class="op" x="{x}" y="{y + 5}" text-anchor="middle">{label}</text>')
            else:
                w = 2 * half[n.id]
                parts.append(f'<rect x="{x - half[n.id]}" y="{y - 18}" width="{w}" height="36" rx="6" '
                             f'class="node">{tip}</rect>'
                             f'<text class="op long" x="{x}" y="{y + 5}" text-anchor="middle">{label}</text>')
            if n.name:
                parts.append(f'<text class="name" x="{x}" y="{y - 28}" text-anchor="middle">'
                             f'{html.escape(n.name)}</text>')
            if n.note:
                parts.append(f'<text class="note" x="{x}" y="{y + 58}" text-anchor="middle">'
                             f'{html.escape(n.note)}</text>')
    steps = [{"text": text, "show": [("v" if kind == "value" else "g") + str(i) for i, kind in shown]}
             for text, shown in graph.steps()]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" style="max-width: 100%; height: auto"><defs>'
           f'<marker id="{uid}-head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto">'
           f'<path d="M0,0 L10,4 L0,8 z"/></marker></defs>' + "".join(parts) + "</svg>")
    # string.Template: a title that happens to contain "$svg" stays a title.
    return _FRAGMENT.substitute(uid=uid, svg=svg, keys="document" if keys_on_page else "root",
                                steps=json.dumps(steps).replace("</", "<\\/"))


_FRAGMENT = string.Template("""<div class="bj-graph" id="$uid" tabindex="0">
<style>
#$uid .arrow { stroke: #333; stroke-width: 1.5; }
#$uid .node { fill: #fff; stroke: #333; stroke-width: 1.5; }
#$uid .op { font-size: 18px; } #$uid .input { font-size: 15px; } #$uid .name { font-size: 12px; fill: #555; }
#$uid .note { font-size: 11px; fill: #2a7d2a; } #$uid .op.long { font-size: 14px; }
#$uid .value { fill: #1f4e9c; font-size: 14px; visibility: hidden; }
#$uid .grad { fill: #d62728; font-size: 14px; visibility: hidden; }
#$uid .shown { visibility: visible; }
#$uid .bj-status { margin: 0.8em 0; min-height: 1.4em; }
#$uid button { font-size: 1em; margin-right: 0.5em; padding: 0.1em 0.6em; border: 1px solid #888; border-radius: 3px; }
</style>
<div><button class="bj-prev" type="button">&larr; previous</button><button class="bj-next" type="button">next &rarr;</button>
<span class="bj-counter"></span></div>
<div class="bj-status">press next to start the forward pass</div>
$svg
<script>
(function () {
  const root = document.getElementById("$uid");
  const steps = $steps;
  const find = (cls) => root.querySelector("." + cls);
  let at = 0;  // steps shown
  function draw() {
    root.querySelectorAll(".value, .grad").forEach(e => e.classList.remove("shown"));
    for (let i = 0; i < at; i++)
      steps[i].show.forEach(id => root.querySelector('[data-show="' + id + '"]').classList.add("shown"));
    find("bj-status").textContent = at ? steps[at - 1].text : "press next to start the forward pass";
    find("bj-counter").textContent = "step " + at + " of " + steps.length;
    find("bj-next").disabled = at === steps.length;
    find("bj-prev").disabled = at === 0;
  }
  function next() { if (at < steps.length) { at++; draw(); } }
  function prev() { if (at > 0) { at--; draw(); } }
  find("bj-next").onclick = next;
  find("bj-prev").onclick = prev;
  const keys = "$keys" === "document" ? document : root;
  keys.addEventListener("keydown", e => {
    if (e.key === "ArrowRight") { next(); e.preventDefault(); }
    if (e.key === "ArrowLeft") { prev(); e.preventDefault(); }
  });
  draw();
})();
</script>
</div>""")

_PAGE = string.Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>$title</title>
<style>body { font-family: Helvetica, Arial, sans-serif; margin: 1.5em; }</style></head>
<body>
<h2>$title</h2>
<p>Values appear above the arrows from left to right (forward pass), then gradients below
them in red from right to left (backward pass). Use the buttons or the arrow keys.</p>
$graph
</body></html>
""")


def _escape(text, html=False):
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") if html else text
    return text.replace('"', '\\"')


def format_value(x, full_arrays=False, max_full=16, brief=False):
    """A scalar as a number (6 significant digits), an array as dtype, shape and a short summary
    (``brief``: dtype and shape only)."""
    x = np.asarray(x)
    if x.ndim == 0:
        if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            return str(x.item())
        return f"{float(x):.6g}"
    if full_arrays and x.size <= max_full:
        return np.array2string(x, precision=4, separator=", ").replace("\n", "")
    short = {"float32": "f32", "float64": "f64", "bfloat16": "bf16", "float16": "f16", "int32": "i32",
             "int64": "i64", "bool": "bool"}.get(x.dtype.name, x.dtype.name)
    head = f"{short}{list(x.shape)}".replace(" ", "")
    if x.size == 0 or brief:
        return head
    if np.issubdtype(x.dtype, np.floating) or x.dtype.name == "bfloat16":
        xf = x.astype(np.float64)
        return f"{head} |x|={np.linalg.norm(xf):.3g} [{xf.min():.3g}, {xf.max():.3g}]"
    return f"{head} [{x.min()}, {x.max()}]"


def _local_names(f, args):
    """``{name: value}`` of the local variables ``f`` holds when it returns (``apple_price``),
    from one more run of ``f``, eager; empty where ``f`` is not plain Python or that run fails."""
    code = getattr(inspect.unwrap(f), "__code__", None)
    if code is None:
        return {}
    found = {}

    def profile(frame, event, arg):
        if event == "return" and frame.f_code is code and not found:
            found.update(frame.f_locals)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        with jax.disable_jit():
            f(*args)
    except Exception:  # noqa: BLE001 - names are a courtesy; the traced graph stands without them
        return {}
    finally:
        sys.setprofile(previous)
    params = set(code.co_varnames[:code.co_argcount + code.co_kwonlyargcount])
    return {k: np.asarray(v) for k, v in found.items()
            if k not in params and not k.startswith("_") and isinstance(v, (jax.Array, np.ndarray))
            and not isinstance(v, jax.core.Tracer)}


def _name_of(value, locals_):
    """The one local whose value is ``value`` (same shape and dtype, equal), else ``""``."""
    value = np.asarray(value)
    hits = [k for k, v in locals_.items()
            if v.shape == value.shape and v.dtype == value.dtype and np.array_equal(v, value)]
    return hits[0] if len(hits) == 1 else ""


def trace(f, *args, expand=False, book=False):
    """Traces ``f(*args)`` into a ``Graph`` with every value and gradient filled in.

    Args:
      f: a function of arrays (or pytrees of arrays) built from our layers and
        JAX operations, returning one array (a scalar loss, typically).
      *args: concrete inputs (Python floats are fine).
      expand: show the primitive operations inside each layer instead of the
        layer as one node. The gradients then come from JAX's differentiation
        of those operations rather than from the layer's hand rule.
      book: draw ``sigmoid``, ``affine`` and ``softmax_with_loss`` as the book's figures
        (sec. 5.5.2, 5.6.2, 5.6.3): sigmoid as ×(-1), exp, +1 and / with each node's local
        derivative; Affine as dot and + with the shapes of X, W and B and dX = dY·Wᵀ,
        dW = Xᵀ·dY; Softmax-with-Loss as Softmax and Cross Entropy Error, passing back
        (y - t) / N. Their gradients come from autodiff of those operations; other layers
        stay one node.
    Returns:
      A ``Graph``. Inputs are named after ``f``'s parameters (dict leaves by key), and a
      node's output after the local variable of ``f`` that holds it (``apple_price``), where
      exactly one does (``f`` runs once more, eagerly, to read them).
    """
    if expand and book:
        raise ValueError("graph.trace: expand and book are two different views; ask for one")
    args = tuple(jax.tree_util.tree_map(jnp.asarray, a) for a in args)
    closed = jax.make_jaxpr(f)(*args)
    if len(closed.jaxpr.outvars) != 1:
        raise ValueError(f"graph.trace: f must return one array, got {len(closed.jaxpr.outvars)} outputs")
    flat_args = jax.tree_util.tree_leaves(args)
    names = leaf_names(f, args, range(len(args)))

    counter = iter(range(10 ** 9))
    in_refs = [next(counter) for _ in flat_args]
    consts = {}
    const_refs = []
    for c in closed.consts:
        ref = next(counter)
        consts[ref] = c
        const_refs.append(ref)
    steps = []
    (out_ref,) = _flatten(closed.jaxpr, in_refs, const_refs, "book" if book else bool(expand), steps, counter,
                          consts)
    # Keep only the steps the output depends on (a layer's forward may compute
    # values that only its backward uses).
    needed, kept = {out_ref}, []
    for step in reversed(steps):
        if needed.intersection(step.outs):
            needed.update(step.ins)
            kept.append(step)
    steps = kept[::-1]

    # An arrow is an input slot ``(step, position)``; perturbing the value along
    # one arrow alone and differentiating gives the gradient that flows along it.
    arrows = {(k, j): ref for k, step in enumerate(steps) for j, ref in enumerate(step.ins)}

    def differentiable(x):
        return jnp.issubdtype(jnp.result_type(x), jnp.inexact)

    def run(eps):
        env = dict(zip(in_refs, flat_args))
        env.update(consts)
        for k, step in enumerate(steps):
            invals = [env[ref] + eps[(k, j)] if (k, j) in eps else env[ref]
                      for j, ref in enumerate(step.ins)]
            for ref, val in zip(step.outs, step.evaluate(invals)):
                env[ref] = val
        return env

    env = run({})
    out = env[out_ref]
    eps = {a: jnp.zeros_like(env[ref]) for a, ref in arrows.items() if differentiable(env[ref])}
    out_key = (len(steps), 0)  # the arrow into the output
    eps[out_key] = jnp.zeros_like(out)
    grads = {}
    if differentiable(out):
        def total(eps):
            o = run(eps)[out_ref] + eps[out_key]
            return jnp.sum(o)  # dout = 1 everywhere, as the book's dprice = 1
        grads = jax.grad(total)(eps)

    locals_ = _local_names(f, args)
    nodes, edges, producer = [], [], {}
    for name, ref in zip(names, in_refs):
        node = Node(f"in{ref}", name, "input")
        nodes.append(node)
        producer[ref] = node.id
    for step in steps:
        for ref in step.ins:
            if ref not in producer:  # a constant or literal
                node = Node(f"c{ref}", format_value(consts[ref]), "const")
                nodes.append(node)
                producer[ref] = node.id
        node = step.node
        if len(step.outs) == 1 and locals_:
            node = dataclasses.replace(node, name=_name_of(env[step.outs[0]], locals_))
        nodes.append(node)
        for ref in step.outs:
            producer[ref] = step.node.id
    for k, step in enumerate(steps):
        for j, ref in enumerate(step.ins):
            g = grads.get((k, j))
            edges.append(Edge(producer[ref], step.node.id, np.asarray(env[ref]),
                              None if g is None else np.asarray(g)))
    out_node = Node("out", "output", "output")
    nodes.append(out_node)
    g = grads.get(out_key)
    edges.append(Edge(producer[out_ref], out_node.id, np.asarray(out), None if g is None else np.asarray(g)))
    return Graph(nodes=tuple(nodes), edges=tuple(edges))
