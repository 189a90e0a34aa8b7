"""Exercises: write a layer's backward yourself and get told, gradient by gradient, if it is right.

Each exercise gives the inputs the book's layer keeps and asks for its ``backward``::

    from backprop_jax import exercises

    def backward(dout, x, y):       # the book's MulLayer.backward
        return dout * y, dout * x

    print(exercises.check("mul", backward))   # mul: correct. dx: exact ... dy: exact ...
    print(exercises.hint("mul"))

Every gradient is called *exact* (equal up to rounding), *close* (equal to about half the
digits: a different but sound order of operations) or *wrong*, with the largest difference and
the elements that are wrong. ``check_layer`` does the same for a layer of your own: a forward
written with ``jax.numpy`` and your backward.

The feedback is in English unless asked otherwise: ``check``, ``check_layer``, ``exercise``
and ``hint`` take ``language="zh"`` (中文) or ``language="ja"`` (日本語)::

    print(exercises.check("mul", backward, language="zh"))   # mul：正确。 dx：精确（exact）...
    print(exercises.hint("mul", language="ja"))

The expected gradients come from JAX's autodiff of a forward written here in plain
``jax.numpy``, independently of the library's layers and of its checker.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from backprop_jax._exercise_words import LANGUAGES, words  # LANGUAGES: those the feedback speaks

# How many wrong elements a report names.
MAX_NAMED = 5
# How many differing elements are looked at for a kink (two evaluations of the forward each).
MAX_KINKS = 64


@dataclasses.dataclass(frozen=True)
class GradientVerdict:
    """One gradient of a backward: ``verdict`` is ``"exact"``, ``"close"`` or ``"wrong"``."""
    name: str  # the gradient's name, "dx", "dW", ...
    verdict: str
    max_difference: float  # largest |yours - expected| (inf if the shapes differ)
    wrong: tuple  # up to MAX_NAMED indices of wrong elements, each a tuple
    n_wrong: int  # how many elements are wrong
    size: int  # how many elements the gradient has
    problem: str = ""  # what is wrong with the value as a whole (its shape), if anything
    examples: tuple = ()  # (index, yours, expected) for the wrong elements named
    language: str = "en"  # the language str() speaks: "en", "zh" or "ja"
    kinks: int = 0  # elements at a kink of the forward, yours between its one-sided slopes: right

    def __str__(self):
        say = words(self.language)
        if self.problem:
            return say["wrong_whole"].format(name=self.name, problem=self.problem)
        if self.verdict in ("exact", "close"):
            at_kinks = say["at_kinks"].format(n=self.kinks) if self.kinks else ""
            return say[self.verdict].format(name=self.name, difference=self.max_difference) + at_kinks
        lines = [say["wrong"].format(name=self.name, n_wrong=self.n_wrong, size=self.size,
                                     difference=self.max_difference)]
        lines += [say["wrong_element"].format(index=_index(i), yours=y, expected=e) for i, y, e in self.examples]
        if self.n_wrong > len(self.examples):
            lines.append(say["more"].format(more=self.n_wrong - len(self.examples)))
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Feedback:
    """What ``check`` found: one ``GradientVerdict`` per gradient, or a ``problem`` that
    stopped the check (the backward raised, or returned the wrong number of gradients)."""
    exercise: str
    gradients: tuple
    problem: str = ""
    language: str = "en"  # the language str() speaks: "en", "zh" or "ja"

    @property
    def correct(self):
        """True when every gradient is exact or close."""
        return not self.problem and all(g.verdict != "wrong" for g in self.gradients)

    def __str__(self):
        say = words(self.language)
        if self.problem:
            return say["stopped"].format(exercise=self.exercise, problem=self.problem)
        wrong = [g.name for g in self.gradients if g.verdict == "wrong"]
        head = (say["correct"] if not wrong else say["not_yet_one" if len(wrong) == 1 else "not_yet_many"])
        lines = [head.format(exercise=self.exercise, names=say["list"].join(wrong))]
        lines += [f"  {g}" for g in self.gradients]
        if wrong and self.exercise in EXERCISES:
            lines.append(say["hint_line"].format(exercise=self.exercise))
        return "\n".join(lines)


def _index(i):
    return "(" + ", ".join(map(str, i)) + ")" if len(i) != 1 else f"[{i[0]}]"


def compare(name, yours, expected, language="en", at_kinks=None):
    """Compares one gradient with the expected one, element by element; its ``str()`` speaks
    ``language`` (``"en"``, ``"zh"`` or ``"ja"``). ``at_kinks(indices, values)``, if given, says which
    of the differing elements lie at a kink of the forward with the value between its one-sided
    slopes (there autodiff's choice is one right value among many)."""
    say = words(language)
    expected = np.asarray(expected)
    try:
        yours = np.asarray(yours, dtype=np.float64)
    except (TypeError, ValueError) as e:
        return GradientVerdict(name, "wrong", math.inf, (), expected.size, expected.size,
                               problem=say["not_array"].format(error=e), language=language)
    if yours.shape != expected.shape:
        return GradientVerdict(name, "wrong", math.inf, (), expected.size, expected.size,
                               problem=say["shape"].format(yours=yours.shape, expected=expected.shape),
                               language=language)
    eps = float(jnp.finfo(expected.dtype if jnp.issubdtype(expected.dtype, jnp.floating) else jnp.float32).eps)
    e64 = expected.astype(np.float64)
    scale = np.maximum(np.abs(e64), np.mean(np.abs(e64)) if e64.size else 0.0)
    diff = np.abs(yours - e64)
    diff = np.where(np.isfinite(yours), diff, np.inf)
    exact = diff <= 16 * eps * scale + np.finfo(np.float64).tiny
    close = diff <= math.sqrt(eps) * scale + np.finfo(np.float64).tiny
    n_kinks = 0
    if at_kinks is not None and not close.all() and np.count_nonzero(~close) <= MAX_KINKS:
        bad = np.argwhere(~close)
        kink = np.asarray(at_kinks([tuple(map(int, i)) for i in bad], yours[~close]), bool)
        n_kinks = int(kink.sum())
        for i in bad[kink]:
            exact[tuple(i)] = close[tuple(i)] = True
            diff[tuple(i)] = 0.0
    largest = float(diff.max()) if diff.size else 0.0
    if exact.all():
        return GradientVerdict(name, "exact", largest, (), 0, expected.size, language=language, kinks=n_kinks)
    if close.all():
        return GradientVerdict(name, "close", largest, (), 0, expected.size, language=language, kinks=n_kinks)
    bad = np.argwhere(~close)
    order = np.argsort(-diff[~close], kind="stable")[:MAX_NAMED]
    named = tuple(tuple(int(k) for k in bad[j]) for j in sorted(order))
    examples = tuple((i, float(yours[i]), float(e64[i])) for i in named)
    return GradientVerdict(name, "wrong", largest, named, len(bad), expected.size, examples=examples,
                           language=language)


def check_layer(forward, backward, *inputs, dout=None, names=None, exercise=None, language="en"):
    """Checks ``backward`` against JAX's autodiff of ``forward``.

    Args:
      forward: ``forward(*inputs) -> out``, written with ``jax.numpy``.
      backward: ``backward(dout, *inputs)``, returning one gradient per input (a tuple, or
        the gradient itself for one input); ``None`` for an input with no gradient
        (integer labels) is accepted where autodiff also gives none.
      *inputs: arrays; integer arrays get no gradient.
      dout: the gradient arriving from above, shaped as ``forward``'s output (ones if None).
      names: the gradients' names (``dx``, ``dW``, ...); ``d0``, ``d1``, ... if None.
      exercise: the name the feedback gives the layer ("your layer", in ``language``, if None).
      language: the language of the feedback: ``"en"`` (English), ``"zh"`` (中文) or ``"ja"`` (日本語).
    Returns:
      A ``Feedback``; ``str()`` of it says what is right and wrong in plain words.

    Where your forward has a kink (a ReLU at exactly 0, tied maxima), autodiff's value there is
    one right value among many (``jnp.maximum`` splits a tie in halves): an element whose value
    differs from it but lies between the forward's one-sided slopes there is right, and counted
    as such. (The book's own exercises, ``check``, ask for the book's choice at its kinks.)
    """
    return _check_layer(forward, backward, *inputs, dout=dout, names=names, exercise=exercise, language=language,
                        kinks=True)


def _check_layer(forward, backward, *inputs, dout=None, names=None, exercise=None, language="en", kinks=False):
    say = words(language)
    exercise = say["your_layer"] if exercise is None else exercise
    stop = lambda problem: Feedback(exercise, (), problem=problem, language=language)
    inputs = tuple(jnp.asarray(x) for x in inputs)
    out, vjp = jax.vjp(forward, *inputs)
    dout = jnp.ones_like(out) if dout is None else jnp.asarray(dout, out.dtype)
    expected = vjp(dout)
    names = names or [f"d{i}" for i in range(len(inputs))]
    try:
        yours = backward(dout, *inputs)
    except NotImplementedError as e:
        if not e.args:  # the blank an exercise starts from, not a library's own NotImplementedError
            return stop(say["unwritten"])
        return stop(say["raised"].format(kind="NotImplementedError", error=e))
    except _Answer as e:
        key, values = e.args
        return stop(say[key].format(**values))
    except Exception as e:  # the learner's code: say what it raised, in one line
        return stop(say["raised"].format(kind=type(e).__name__, error=e))
    differentiable = [i for i, x in enumerate(inputs) if jnp.issubdtype(x.dtype, jnp.inexact)]
    if isinstance(yours, dict):
        if set(yours) != set(names):
            return stop(say["keys"].format(got=sorted(yours), names=sorted(names)))
        yours = tuple(yours[n] for n in names)
    elif not isinstance(yours, (tuple, list)):
        yours = (yours,)
    if len(yours) != len(inputs):
        return stop(say["count_named"].format(got=len(yours), n=len(inputs), names=say["list"].join(names)))
    return Feedback(exercise, tuple(compare(names[i], yours[i], expected[i], language,
                                            _kinks_of(forward, inputs, dout, i) if kinks else None)
                                    for i in differentiable), language=language)


def _kinks_of(forward, inputs, dout, i):
    """``(indices, values) -> mask``: which elements of input ``i`` lie at a kink of ``<forward, dout>``
    (its one-sided differences disagree) with the value between the two one-sided slopes."""
    x = inputs[i]
    h = 1e-6 if x.dtype == jnp.float64 else 1e-2 if jnp.finfo(x.dtype).bits < 32 else 1e-3

    @jax.jit
    def s(xi):
        return jnp.sum(forward(*inputs[:i], xi, *inputs[i + 1:]) * dout).astype(jnp.float64 if x.dtype == jnp.float64
                                                                                  else jnp.float32)

    def at_kinks(indices, values):
        f0 = float(s(x))
        left, right = [], []
        for index in indices:
            step = jnp.zeros_like(x).at[index].set(h)
            left.append((f0 - float(s(x - step))) / h)
            right.append((float(s(x + step)) - f0) / h)
        left, right, values = np.array(left), np.array(right), np.asarray(values, np.float64)
        tol = math.sqrt(float(jnp.finfo(x.dtype).eps)) * np.maximum(np.maximum(np.abs(left), np.abs(right)), 1.0)
        inside = (values >= np.minimum(left, right) - tol) & (values <= np.maximum(left, right) + tol)
        return (np.abs(left - right) > tol) & inside
    return at_kinks


# The exercises: the book's layers, each forward written here in plain jax.numpy ------------

def _normal(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, dtype=jnp.result_type(float))


def _one_hot(labels, n):
    return (labels[:, None] == jnp.arange(n)[None, :]).astype(jnp.result_type(float))


def _softmax_with_loss(x, t):
    return -jnp.sum(t * jax.nn.log_softmax(x, axis=1)) / x.shape[0]


def _two_layer_loss(x, t, W1, b1, W2, b2):
    h = x @ W1 + b1[None, :]
    h = jnp.where(h > 0, h, 0.0)
    return _softmax_with_loss(h @ W2 + b2[None, :], t)


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One exercise: what ``backward`` receives and returns, its inputs, and a hint."""
    signature: str  # the backward to write, as the book's code names things; {} is where `about` goes
    about: dict  # language -> what the layer computes and what backward receives, a comment to the signature
    forward: object  # forward(*inputs) in plain jax.numpy: the reference
    inputs: object  # () -> the inputs, small and fixed
    names: tuple  # the gradients' names, one per input
    given: object  # (*inputs) -> what backward receives after dout (the layer's kept values)
    hint: dict  # language -> the hint, in the book's words
    dout: object = None  # () -> dout, or None for ones


def _x(shape, seed=0):
    return lambda: (_normal(seed, shape),)


EXERCISES = {
    "mul": Exercise(
        "backward(dout, x, y) -> (dx, dy)   # {}",
        {"en": "MulLayer: out = x * y", "zh": "MulLayer（乘法层）：out = x * y",
         "ja": "MulLayer（乗算レイヤ）：out = x * y"},
        lambda x, y: x * y, lambda: (_normal(0, (2, 3)), _normal(1, (2, 3))), ("dx", "dy"),
        lambda x, y: (x, y),
        {"en": "For out = x * y, d out / d x = y and d out / d y = x: each input gets dout times the "
               "other input (sec. 5.4.1).",
         "zh": "对于 out = x * y，d out / d x = y，d out / d y = x：每个输入得到的是 dout 乘以另一个输入（5.4.1 节）。",
         "ja": "out = x * y では d out / d x = y、d out / d y = x です：各入力は、dout にもう一方の入力を掛けたものを"
               "受け取ります（5.4.1 節）。"},
        lambda: _normal(2, (2, 3))),
    "add": Exercise(
        "backward(dout, x, y) -> (dx, dy)   # {}",
        {"en": "AddLayer: out = x + y", "zh": "AddLayer（加法层）：out = x + y",
         "ja": "AddLayer（加算レイヤ）：out = x + y"},
        lambda x, y: x + y, lambda: (_normal(0, (2, 3)), _normal(1, (2, 3))), ("dx", "dy"),
        lambda x, y: (x, y),
        {"en": "Both local derivatives of x + y are 1: dout goes back to both inputs unchanged (sec. 5.4.2).",
         "zh": "x + y 的两个局部导数都是 1：dout 原封不动地传回两个输入（5.4.2 节）。",
         "ja": "x + y の局所的な微分はどちらも 1 です：dout はそのまま両方の入力へ戻ります（5.4.2 節）。"},
        lambda: _normal(2, (2, 3))),
    "relu": Exercise(
        "backward(dout, x) -> dx   # {}",
        {"en": "Relu: out = max(x, 0)", "zh": "Relu：out = max(x, 0)", "ja": "Relu：out = max(x, 0)"},
        # One input exactly 0, where the derivative is 0 (the book's mask is x <= 0).
        lambda x: jnp.where(x > 0, x, 0.0), lambda: (_normal(0, (3, 4)).at[1, 2].set(0.0),), ("dx",),
        lambda x: (x,),
        {"en": "The derivative is 1 where x > 0 and 0 elsewhere: keep mask = (x <= 0) and zero dout "
               "where the mask is true (sec. 5.5.1).",
         "zh": "在 x > 0 处导数为 1，其他地方为 0：保存 mask = (x <= 0)，在 mask 为 True 的地方把 dout 置为 0"
               "（5.5.1 节）。",
         "ja": "微分は x > 0 で 1、それ以外で 0 です：mask = (x <= 0) を保持し、mask が True のところで dout を 0 に"
               "します（5.5.1 節）。"},
        lambda: _normal(2, (3, 4))),
    "sigmoid": Exercise(
        "backward(dout, out) -> dx   # {}",
        {"en": "Sigmoid: out = 1 / (1 + exp(-x)); you get out, not x",
         "zh": "Sigmoid：out = 1 / (1 + exp(-x))；你得到的是 out，不是 x",
         "ja": "Sigmoid：out = 1 / (1 + exp(-x))。受け取るのは x ではなく out"},
        lambda x: 1 / (1 + jnp.exp(-x)), _x((3, 4)), ("dx",), lambda x: (1 / (1 + jnp.exp(-x)),),
        {"en": "d out / d x = out * (1 - out): the backward needs only the forward's output. "
               "dx = dout * (1 - out) * out (sec. 5.5.2).",
         "zh": "d out / d x = out * (1 - out)：反向传播只需要正向传播的输出。dx = dout * (1 - out) * out（5.5.2 节）。",
         "ja": "d out / d x = out * (1 - out) です：逆伝播に必要なのは順伝播の出力だけです。"
               "dx = dout * (1 - out) * out（5.5.2 節）。"},
        lambda: _normal(2, (3, 4))),
    "affine": Exercise(
        "backward(dout, x, W, b) -> (dx, dW, db)   # {}",
        {"en": "Affine: out = x @ W + b, x (N, D), W (D, H)",
         "zh": "Affine：out = x @ W + b，x 为 (N, D)，W 为 (D, H)",
         "ja": "Affine：out = x @ W + b、x は (N, D)、W は (D, H)"},
        lambda x, W, b: x @ W + b[None, :], lambda: (_normal(0, (4, 3)), _normal(1, (3, 5)), _normal(2, (5,))),
        ("dx", "dW", "db"), lambda x, W, b: (x, W, b),
        {"en": "Match the shapes: dx (N, D) = dout (N, H) @ W.T (H, D); dW (D, H) = x.T (D, N) @ dout (N, H); "
               "db (H,) sums dout over the batch axis 0 (sec. 5.6.2).",
         "zh": "让形状对上：dx (N, D) = dout (N, H) @ W.T (H, D)；dW (D, H) = x.T (D, N) @ dout (N, H)；"
               "db (H,) 是 dout 沿批次的第 0 轴求和（5.6.2 节）。",
         "ja": "形状を合わせます：dx (N, D) = dout (N, H) @ W.T (H, D)、dW (D, H) = x.T (D, N) @ dout (N, H)、"
               "db (H,) は dout をバッチの軸 0 について合計したものです（5.6.2 節）。"},
        lambda: _normal(3, (4, 5))),
    "softmax_with_loss": Exercise(
        "backward(dout, y, t) -> dx   # {}",
        {"en": "y = softmax(x), t one-hot, loss = mean cross-entropy",
         "zh": "y = softmax(x)，t 为 one-hot 形式，损失为交叉熵误差的平均值",
         "ja": "y = softmax(x)、t は one-hot 表現、損失は交差エントロピー誤差の平均"},
        _softmax_with_loss, lambda: (_normal(0, (4, 3)), _one_hot(jnp.array([0, 2, 1, 2]), 3)), ("dx", "dt"),
        lambda x, t: (jax.nn.softmax(x, axis=1), t),
        {"en": "The gradient is (y - t) / batch_size, times dout (sec. 5.6.3). Divide by the batch size: "
               "the loss is a mean over the batch.",
         "zh": "梯度是 (y - t) / batch_size，再乘以 dout（5.6.3 节）。要除以批大小（batch_size）：损失是整个批次上的平均值。",
         "ja": "勾配は (y - t) / batch_size に dout を掛けたものです（5.6.3 節）。バッチサイズ（batch_size）で割って"
               "ください：損失はバッチ全体の平均です。"}),
    "two_layer_net": Exercise(
        "backward(x, t, W1, b1, W2, b2) -> {{'W1': ..., 'b1': ..., 'W2': ..., 'b2': ...}}\n    # {}",
        {"en": "Affine -> Relu -> Affine -> SoftmaxWithLoss, t one-hot: the forward, then the backward",
         "zh": "Affine -> Relu -> Affine -> SoftmaxWithLoss，t 为 one-hot 形式：先正向传播，再反向传播",
         "ja": "Affine -> Relu -> Affine -> SoftmaxWithLoss、t は one-hot 表現：順伝播、続いて逆伝播"},
        _two_layer_loss,
        lambda: (_normal(0, (4, 5)), _one_hot(jnp.array([1, 0, 2, 2]), 3), 0.5 * _normal(1, (5, 6)),
                 0.1 * _normal(2, (6,)), 0.5 * _normal(3, (6, 3)), 0.1 * _normal(4, (3,))),
        ("dx", "dt", "W1", "b1", "W2", "b2"), None,
        {"en": "Run the forward keeping what each layer needs (x, the first affine's output, the ReLU's "
               "output, the softmax). Then go backward: dscore = (y - t) / N; dW2 = h.T @ dscore, db2 = "
               "dscore.sum(0); dh = dscore @ W2.T; zero dh where the first affine's output was <= 0; "
               "dW1 = x.T @ dh, db1 = dh.sum(0) (sec. 5.7.2).",
         "zh": "进行正向传播，并保存每一层需要的值（x、第一个 Affine 层的输出、ReLU 层的输出、softmax 的输出）。"
               "然后进行反向传播：dscore = (y - t) / N；dW2 = h.T @ dscore，db2 = dscore.sum(0)；dh = dscore @ W2.T；"
               "在第一个 Affine 层的输出 <= 0 的地方把 dh 置为 0；dW1 = x.T @ dh，db1 = dh.sum(0)（5.7.2 节）。",
         "ja": "各レイヤに必要な値（x、1 つ目の Affine の出力、ReLU の出力、softmax の出力）を保持しながら順伝播を"
               "行います。続いて逆伝播：dscore = (y - t) / N、dW2 = h.T @ dscore、db2 = dscore.sum(0)、"
               "dh = dscore @ W2.T、1 つ目の Affine の出力が <= 0 だったところで dh を 0 にし、dW1 = x.T @ dh、"
               "db1 = dh.sum(0)（5.7.2 節）。"}),
}


def exercise(name, language="en"):
    """What the exercise ``name`` asks: the backward to write and what it receives, in
    ``language`` (``"en"``, ``"zh"`` or ``"ja"``)."""
    say, ex = words(language), _get(name)
    return say["write"].format(name=name, signature=ex.signature.format(ex.about[language]))


def hint(name, language="en"):
    """A hint for the exercise ``name``, in the book's words, in ``language`` (``"en"``,
    ``"zh"`` or ``"ja"``)."""
    say, ex = words(language), _get(name)
    return say["hint"].format(name=name, hint=ex.hint[language])


def inputs(name):
    """The inputs the exercise ``name`` checks with, to try your backward on by hand."""
    ex = _get(name)
    values = ex.inputs()
    return values if ex.given is None else ex.given(*values)


def check(name, backward, language="en"):
    """Checks your ``backward`` for the exercise ``name`` (one of ``EXERCISES``).

    Args:
      name: the exercise, a key of ``EXERCISES``.
      backward: your backward, as ``exercise(name)`` describes it.
      language: the language of the feedback: ``"en"`` (English), ``"zh"`` (中文) or ``"ja"`` (日本語).
    Returns:
      A ``Feedback``: ``.correct``, and ``str()`` in plain words, per gradient exact, close
      or wrong, with the largest difference and the wrong elements.
    """
    words(language)  # an unknown language is refused before anything runs
    ex = _get(name)
    values = ex.inputs()
    dout = None if ex.dout is None else ex.dout()
    if ex.given is None:  # the whole net: backward gets the inputs and the parameters, no dout
        params = [n for n in ex.names if not n.startswith("d")]
        fb = _check_layer(ex.forward, lambda _, x, t, *p: _net_grads(backward(x, t, *p), params),
                          *values, names=list(ex.names), exercise=name, language=language)
        gradients = tuple(g for g in fb.gradients if g.name in params)
        return dataclasses.replace(fb, gradients=gradients)
    kept = ex.given(*values)
    n = len(ex.names) - (1 if name == "softmax_with_loss" else 0)  # t, the labels, gets no gradient
    fb = _check_layer(ex.forward, lambda d, *_: _as_tuple(backward(d, *kept), n, values), *values,
                      dout=dout, names=list(ex.names), exercise=name, language=language)
    if name == "softmax_with_loss":
        fb = dataclasses.replace(fb, gradients=tuple(g for g in fb.gradients if g.name != "dt"))
    return fb


class _Answer(ValueError):
    """An answer of the wrong form (how many gradients, which keys): the key of its sentence in
    ``_exercise_words.WORDS`` and the values the sentence names."""

    def __init__(self, key, **values):
        super().__init__(key, values)


def _as_tuple(grads, n, values):
    grads = grads if isinstance(grads, (tuple, list)) else (grads,)
    if len(grads) != n:
        raise _Answer("count", got=len(grads), n=n)
    return tuple(grads) + tuple(jnp.zeros_like(v) for v in values[n:])


def _net_grads(grads, params):
    if not isinstance(grads, dict) or set(grads) != set(params):
        got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
        raise _Answer("dict", names=", ".join(params), got=got)
    return (0.0, 0.0) + tuple(grads[p] for p in params)


def _get(name):
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r}; there are {', '.join(EXERCISES)}")
    return EXERCISES[name]
