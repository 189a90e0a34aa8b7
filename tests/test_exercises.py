"""Exercises: the book's rules, written here as its code writes them (oreilly-japan/
deep-learning-from-scratch HEAD 07b1161, common/layers.py and ch05/layer_naive.py), are called
correct; a rule 1% off is called wrong and the wrong elements are named."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import backprop_jax as bj
from backprop_jax import exercises


def mul_backward(dout, x, y):  # MulLayer.backward
    dx = dout * y
    dy = dout * x
    return dx, dy


def add_backward(dout, x, y):  # AddLayer.backward
    dx = dout * 1
    dy = dout * 1
    return dx, dy


def relu_backward(dout, x):  # Relu: mask = (x <= 0); dout[mask] = 0
    mask = x <= 0
    return jnp.where(mask, 0.0, dout)


def sigmoid_backward(dout, out):  # Sigmoid.backward
    return dout * (1.0 - out) * out


def affine_backward(dout, x, W, b):  # Affine.backward
    dx = jnp.dot(dout, W.T)
    dW = jnp.dot(x.T, dout)
    db = jnp.sum(dout, axis=0)
    return dx, dW, db


def softmax_with_loss_backward(dout, y, t):  # SoftmaxWithLoss.backward, one-hot t (dout is 1)
    batch_size = t.shape[0]
    return (y - t) / batch_size


def two_layer_net_backward(x, t, W1, b1, W2, b2):  # ch05/two_layer_net.py: gradient(), through the layers
    a1 = jnp.dot(x, W1) + b1[None, :]  # the book broadcasts b1 implicitly; the suite raises on that
    mask = a1 <= 0
    z1 = jnp.where(mask, 0.0, a1)
    a2 = jnp.dot(z1, W2) + b2[None, :]
    y = jnp.exp(a2 - a2.max(axis=1, keepdims=True))
    y = y / y.sum(axis=1, keepdims=True)
    dout = softmax_with_loss_backward(1, y, t)
    dz1, dW2, db2 = affine_backward(dout, z1, W2, b2)
    da1 = relu_backward(dz1, a1)
    _, dW1, db1 = affine_backward(da1, x, W1, b1)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


BOOK = {"mul": mul_backward, "add": add_backward, "relu": relu_backward, "sigmoid": sigmoid_backward,
        "affine": affine_backward, "softmax_with_loss": softmax_with_loss_backward,
        "two_layer_net": two_layer_net_backward}


def test_every_exercise_has_the_books_answer_here():
    assert set(BOOK) == set(exercises.EXERCISES)


@pytest.mark.parametrize("name", list(BOOK))
def test_the_books_rule_is_correct(name):
    feedback = exercises.check(name, BOOK[name])
    assert feedback.correct, str(feedback)
    assert all(g.verdict in ("exact", "close") for g in feedback.gradients) and feedback.gradients
    assert str(feedback).startswith(f"{name}: correct.")


def test_a_rule_one_percent_off_in_some_elements_names_them():
    def off(dout, x, W, b):
        dx, dW, db = affine_backward(dout, x, W, b)
        return dx, dW.at[1, 2].multiply(1.01).at[0, 4].multiply(1.01), db
    feedback = exercises.check("affine", off)
    assert not feedback.correct
    verdicts = {g.name: g for g in feedback.gradients}
    assert verdicts["dx"].verdict == "exact" and verdicts["db"].verdict == "exact"
    dW = verdicts["dW"]
    assert dW.verdict == "wrong" and dW.wrong == ((0, 4), (1, 2)) and dW.n_wrong == 2 and dW.size == 15
    W = exercises.inputs("affine")
    _, expected_dW, _ = affine_backward(exercises.EXERCISES["affine"].dout(), *W)
    assert dW.max_difference == pytest.approx(0.01 * float(max(abs(expected_dW[1, 2]), abs(expected_dW[0, 4]))), rel=1e-6)
    text = str(feedback)
    assert text.startswith("affine: not yet: dW is wrong.")
    assert "dW: wrong in 2 of 15 elements" in text and "at (1, 2): yours" in text and "at (0, 4): yours" in text
    assert "exercises.hint('affine')" in text


def test_a_rule_one_percent_off_everywhere_is_wrong_everywhere():
    feedback = exercises.check("sigmoid", lambda dout, out: 1.01 * sigmoid_backward(dout, out))
    (dx,) = feedback.gradients
    assert dx.verdict == "wrong" and dx.n_wrong == dx.size == 12 and len(dx.wrong) == exercises.MAX_NAMED
    assert "and 7 more" in str(feedback)


def test_relu_at_exactly_zero_passes_nothing_back():
    (x,) = exercises.inputs("relu")
    assert float(x[1, 2]) == 0.0
    feedback = exercises.check("relu", lambda dout, x: jnp.where(x >= 0, dout, 0.0))  # mask x < 0: a slip at 0
    (dx,) = feedback.gradients
    assert dx.verdict == "wrong" and dx.wrong == ((1, 2),) and dx.n_wrong == 1


def test_forgetting_the_batch_size_is_wrong_and_the_hint_says_so():
    feedback = exercises.check("softmax_with_loss", lambda dout, y, t: y - t)
    assert not feedback.correct
    assert "batch" in exercises.hint("softmax_with_loss")


def test_a_sound_rule_in_another_order_is_close_or_exact_and_a_tiny_error_is_close():
    # (1 - out) * out * dout rounds differently from the book's order; both are right.
    assert exercises.check("sigmoid", lambda dout, out: out * dout - out * out * dout).correct
    feedback = exercises.check("mul", lambda dout, x, y: (dout * y * (1 + 1e-12), dout * x))
    assert [g.verdict for g in feedback.gradients] == ["close", "exact"]


def test_answers_of_the_wrong_form_are_told_in_one_line():
    def unwritten(dout, x, y):
        raise NotImplementedError
    assert str(exercises.check("mul", unwritten)) == "mul: not written yet: the backward raises NotImplementedError."
    assert str(exercises.check("affine", lambda dout, x, W, b: (dout, x))) == \
        "affine: the backward returned 2 gradient(s); it should return 3."
    text = str(exercises.check("relu", lambda dout, x: dout[0]))
    assert "dx: wrong: it has shape (4,), the input has shape (3, 4)." in text
    text = str(exercises.check("two_layer_net", lambda *args: {"W1": 0}))
    assert "should return a dict with keys W1, b1, W2, b2" in text
    assert "\n" not in str(exercises.check("mul", lambda dout, x, y: 1 / 0))
    with pytest.raises(KeyError, match="no exercise 'tanh'; there are mul, add"):
        exercises.check("tanh", mul_backward)


def test_your_own_layer_is_checked_the_same_way():
    x = jnp.linspace(-2.0, 2.0, 5)
    good = exercises.check_layer(jnp.tanh, lambda dout, x: dout * (1 - jnp.tanh(x) ** 2), x, names=["dx"])
    assert good.correct and str(good).startswith("your layer: correct.")
    bad = exercises.check_layer(jnp.tanh, lambda dout, x: dout * (1 - jnp.tanh(x)), x, names=["dx"])
    (dx,) = bad.gradients
    assert dx.verdict == "wrong" and (2,) not in dx.wrong  # at x = 0 both rules give 1
    # The library's own layer, run by hand, passes the same check.
    W, b = jnp.ones((5, 2)), jnp.zeros(2)
    X = x.reshape(1, 5)
    via_library = lambda dout, X, W, b: bj.affine.bwd(bj.affine.fwd(X, W, b)[1], dout)
    assert exercises.check_layer(lambda X, W, b: X @ W + b[None, :], via_library, X, W, b).correct


def test_the_exercises_say_what_to_write():
    assert exercises.exercise("affine").startswith("affine: write backward(dout, x, W, b) -> (dx, dW, db)")
    x, W, b = exercises.inputs("affine")
    assert (x.shape, W.shape, b.shape) == ((4, 3), (3, 5), (5,))
    (out,) = exercises.inputs("sigmoid")
    assert bool(jnp.all((out > 0) & (out < 1)))  # the sigmoid exercise gives the forward's output


# The feedback in each language, its sentences written out here -----------------------------

def _unwritten(dout, x, y):
    raise NotImplementedError


def _affine_off(dout, x, W, b):
    dx, dW, db = affine_backward(dout, x, W, b)
    return dx, dW.at[1, 2].multiply(1.01).at[0, 4].multiply(1.01), db


SAID = {  # language -> what the feedback says; {} holds the numbers the check measured
    "en": {"correct": "mul: correct.\n  dx: exact (largest difference 0).\n  dy: exact (largest difference 0).",
           "wrong": ["affine: not yet: dW is wrong.", "  dx: exact (largest difference {}).",
                     "  dW: wrong in 2 of 15 elements (largest difference {}):",
                     "    at (0, 4): yours {}, expected {}", "    at (1, 2): yours {}, expected {}",
                     "  db: exact (largest difference {}).", "  A hint: exercises.hint('affine')."],
           "close": "  dx: close, not exact: right to about half the digits (largest difference {}).",
           "more": "    and 7 more",
           "unwritten": "mul: not written yet: the backward raises NotImplementedError.",
           "count": "affine: the backward returned 2 gradient(s); it should return 3.",
           "shape": "  dx: wrong: it has shape (4,), the input has shape (3, 4).",
           "dict": "two_layer_net: the backward should return a dict with keys W1, b1, W2, b2; it returned ['W1'].",
           "raised": "mul: the backward raised ZeroDivisionError: division by zero",
           "layer": "your layer: not yet: dx is wrong.",
           "exercise": "relu: write backward(dout, x) -> dx   # Relu: out = max(x, 0)",
           "hint": "add: Both local derivatives of x + y are 1: dout goes back to both inputs unchanged (sec. 5.4.2).",
           "many": "mul: not yet: dx, dy are wrong.",
           "keys": "your layer: the backward returned gradients for ['dy']; expected ['dx'].",
           "count_named": "your layer: the backward returned 2 gradient(s); it should return 1: dx.",
           "not_array": "  dx: wrong: it is not an array of numbers (could not convert string to float: 'a')."},
    "zh": {"correct": "mul：正确。\n  dx：精确（exact），最大差值 0。\n  dy：精确（exact），最大差值 0。",
           "wrong": ["affine：还不对：dW 错误。", "  dx：精确（exact），最大差值 {}。",
                     "  dW：错误（wrong），15 个元素中有 2 个错误（最大差值 {}）：",
                     "    在 (0, 4)：你的值 {}，期望值 {}", "    在 (1, 2)：你的值 {}，期望值 {}",
                     "  db：精确（exact），最大差值 {}。", "  提示：exercises.hint('affine', language='zh')。"],
           "close": "  dx：接近（close），但不精确：大约一半的有效数字正确（最大差值 {}）。",
           "more": "    还有 7 个",
           "unwritten": "mul：还没有写：backward 引发了 NotImplementedError。",
           "count": "affine：backward 返回了 2 个梯度；应当返回 3 个。",
           "shape": "  dx：错误（wrong）：它的形状是 (4,)，而输入的形状是 (3, 4)。",
           "dict": "two_layer_net：backward 应当返回键为 W1, b1, W2, b2 的字典；它返回了 ['W1']。",
           "raised": "mul：backward 引发了 ZeroDivisionError：division by zero",
           "layer": "你的层：还不对：dx 错误。",
           "exercise": "relu：请写出 backward(dout, x) -> dx   # Relu：out = max(x, 0)",
           "hint": "add：x + y 的两个局部导数都是 1：dout 原封不动地传回两个输入（5.4.2 节）。",
           "many": "mul：还不对：dx、dy 错误。",
           "keys": "你的层：backward 返回了 ['dy'] 的梯度；期望的是 ['dx']。",
           "count_named": "你的层：backward 返回了 2 个梯度；应当返回 1 个：dx。",
           "not_array": "  dx：错误（wrong）：它不是数值数组（could not convert string to float: 'a'）。"},
    "ja": {"correct": "mul：正解。\n  dx：正確（exact）。最大の差 0。\n  dy：正確（exact）。最大の差 0。",
           "wrong": ["affine：まだです：dW が誤り。", "  dx：正確（exact）。最大の差 {}。",
                     "  dW：誤り（wrong）、15 個の要素のうち 2 個が誤り（最大の差 {}）：",
                     "    (0, 4) で：あなたの値 {}、期待される値 {}", "    (1, 2) で：あなたの値 {}、期待される値 {}",
                     "  db：正確（exact）。最大の差 {}。", "  ヒント：exercises.hint('affine', language='ja')。"],
           "close": "  dx：近い（close）が正確ではない：桁の半分ほどが正しい（最大の差 {}）。",
           "more": "    ほかに 7 個",
           "unwritten": "mul：まだ書かれていません：backward が NotImplementedError を送出します。",
           "count": "affine：backward は 2 個の勾配を返しました。返すべきなのは 3 個です。",
           "shape": "  dx：誤り（wrong）：形状が (4,) ですが、入力の形状は (3, 4) です。",
           "dict": "two_layer_net：backward はキー W1, b1, W2, b2 を持つ辞書を返すべきですが、['W1'] を返しました。",
           "raised": "mul：backward が ZeroDivisionError を送出しました：division by zero",
           "layer": "あなたのレイヤ：まだです：dx が誤り。",
           "exercise": "relu：次の関数を書いてください：backward(dout, x) -> dx   # Relu：out = max(x, 0)",
           "hint": "add：x + y の局所的な微分はどちらも 1 です：dout はそのまま両方の入力へ戻ります（5.4.2 節）。",
           "many": "mul：まだです：dx、dy が誤り。",
           "keys": "あなたのレイヤ：backward は ['dy'] の勾配を返しました。期待されるのは ['dx'] です。",
           "count_named": "あなたのレイヤ：backward は 2 個の勾配を返しました。返すべきなのは 1 個です：dx。",
           "not_array": "  dx：誤り（wrong）：数値の配列ではありません（could not convert string to float: 'a'）。"},
}


@pytest.mark.parametrize("language", list(SAID))
def test_the_feedback_speaks_the_language_asked_for(language):
    said = SAID[language]
    g = lambda value: f"{value:.3g}"
    assert str(exercises.check("mul", mul_backward, language=language)) == said["correct"]
    feedback = exercises.check("affine", _affine_off, language=language)
    dx, dW, db = feedback.gradients
    (i1, y1, e1), (i2, y2, e2) = dW.examples
    assert (i1, i2) == ((0, 4), (1, 2))
    numbers = [[], [g(dx.max_difference)], [g(dW.max_difference)], [f"{y1:.6g}", f"{e1:.6g}"],
               [f"{y2:.6g}", f"{e2:.6g}"], [g(db.max_difference)], []]
    assert str(feedback).split("\n") == [line.format(*n) for line, n in zip(said["wrong"], numbers)]
    close = exercises.check("mul", lambda dout, x, y: (dout * y * (1 + 1e-12), dout * x), language=language)
    assert str(close).split("\n")[1] == said["close"].format(g(close.gradients[0].max_difference))
    off = exercises.check("sigmoid", lambda dout, out: 1.01 * sigmoid_backward(dout, out), language=language)
    assert said["more"] in str(off).split("\n")
    assert str(exercises.check("mul", _unwritten, language=language)) == said["unwritten"]
    assert str(exercises.check("affine", lambda dout, x, W, b: (dout, x), language=language)) == said["count"]
    assert str(exercises.check("relu", lambda dout, x: dout[0], language=language)).split("\n")[1] == said["shape"]
    assert str(exercises.check("two_layer_net", lambda *args: {"W1": 0}, language=language)) == said["dict"]
    assert str(exercises.check("mul", lambda dout, x, y: 1 / 0, language=language)) == said["raised"]
    x = jnp.linspace(-2.0, 2.0, 5)
    layer = exercises.check_layer(jnp.tanh, lambda dout, x: dout * (1 - jnp.tanh(x)), x, names=["dx"],
                                  language=language)
    assert str(layer).split("\n")[0] == said["layer"] and layer.language == language
    assert exercises.exercise("relu", language=language) == said["exercise"]
    assert exercises.hint("add", language=language) == said["hint"]
    swapped = exercises.check("mul", lambda dout, x, y: (dout * x, dout * y), language=language)
    assert str(swapped).split("\n")[0] == said["many"]
    keys = exercises.check_layer(jnp.tanh, lambda dout, x: {"dy": dout}, x, names=["dx"], language=language)
    assert str(keys) == said["keys"]
    two = exercises.check_layer(jnp.tanh, lambda dout, x: (dout, dout), x, names=["dx"], language=language)
    assert str(two) == said["count_named"]
    text = exercises.check("relu", lambda dout, x: "a", language=language)
    assert str(text).split("\n")[1] == said["not_array"]


def test_english_is_the_default_and_every_exercise_speaks_every_language():
    assert str(exercises.check("mul", mul_backward)) == SAID["en"]["correct"]
    assert exercises.hint("add") == SAID["en"]["hint"] and exercises.exercise("relu") == SAID["en"]["exercise"]
    assert exercises.LANGUAGES == tuple(SAID)
    for language in exercises.LANGUAGES:
        for ex in exercises.EXERCISES.values():
            assert set(ex.hint) == set(ex.about) == set(exercises.LANGUAGES)
            assert ex.hint[language] and ex.about[language]
        if language != "en":  # each translated, not the English left in place
            assert all(ex.hint[language] != ex.hint["en"] for ex in exercises.EXERCISES.values())


def test_an_unknown_language_is_refused_by_name():
    message = "language must be one of 'en', 'zh', 'ja'; got 'fr'"
    for call in (lambda: exercises.check("mul", mul_backward, language="fr"),
                 lambda: exercises.check_layer(jnp.tanh, lambda dout, x: dout, jnp.ones(2), language="fr"),
                 lambda: exercises.hint("mul", language="fr"), lambda: exercises.exercise("mul", language="fr")):
        with pytest.raises(ValueError, match=message):
            call()


def test_your_own_layer_at_a_kink_is_judged_by_its_one_sided_slopes():
    # jnp.maximum splits a tie in halves: autodiff says 0.5 where ReLU's one-sided slopes are 0 and 1.
    x = jnp.array([[-1.0, 0.0, 2.0], [0.0, 3.0, -2.0]])
    book = exercises.check_layer(lambda x: jnp.maximum(x, 0.0), lambda dout, x: dout * (x > 0), x, names=["dx"])
    assert book.correct and "2 element(s) lie at a kink of the forward" in str(book), str(book)
    for language, said in (("zh", "其中 2 个元素位于正向传播的折点"), ("ja", "うち 2 個の要素は順伝播の折れ点")):
        translated = exercises.check_layer(lambda x: jnp.maximum(x, 0.0), lambda dout, x: dout * (x > 0), x,
                                           names=["dx"], language=language)
        assert translated.correct and said in str(translated), str(translated)
    (dx,) = exercises.check_layer(lambda x: jnp.maximum(x, 0.0), lambda dout, x: 2.0 * dout * (x >= 0), x,
                                  names=["dx"]).gradients
    assert dx.verdict == "wrong" and (0, 1) in dx.wrong and (1, 0) in dx.wrong  # 2 is outside [0, 1]
