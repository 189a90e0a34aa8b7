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


def test_your_own_layer_at_a_kink_is_judged_by_its_one_sided_slopes():
    # jnp.maximum splits a tie in halves: autodiff says 0.5 where ReLU's one-sided slopes are 0 and 1.
    x = jnp.array([[-1.0, 0.0, 2.0], [0.0, 3.0, -2.0]])
    book = exercises.check_layer(lambda x: jnp.maximum(x, 0.0), lambda dout, x: dout * (x > 0), x, names=["dx"])
    assert book.correct and "2 elements lie at a kink of the forward" in str(book), str(book)
    (dx,) = exercises.check_layer(lambda x: jnp.maximum(x, 0.0), lambda dout, x: 2.0 * dout * (x >= 0), x,
                                  names=["dx"]).gradients
    assert dx.verdict == "wrong" and (0, 1) in dx.wrong and (1, 0) in dx.wrong  # 2 is outside [0, 1]
