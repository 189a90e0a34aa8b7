"""The words of the exercises' feedback, in each language a learner may ask for.

Every language has every key: ``tests/test_exercises.py`` writes out each language's
sentences and has the feedback say every one of them. The verdicts keep their English name in brackets (``精确（exact）``), as the
translated notebooks introduce them, so a verdict reads the same as ``GradientVerdict.verdict``.
"""

LANGUAGES = ("en", "zh", "ja")

WORDS = {
    "en": {
        "list": ", ",
        "exact": "{name}: exact (largest difference {difference:.3g}).",
        "close": "{name}: close, not exact: right to about half the digits (largest difference {difference:.3g}).",
        "at_kinks": (" {n} element(s) lie at a kink of the forward (a ReLU at exactly 0, tied maxima), where any "
                     "value between its one-sided slopes is right, and yours is."),
        "wrong": "{name}: wrong in {n_wrong} of {size} elements (largest difference {difference:.3g}):",
        "wrong_element": "    at {index}: yours {yours:.6g}, expected {expected:.6g}",
        "more": "    and {more} more",
        "wrong_whole": "{name}: wrong: {problem}.",
        "not_array": "it is not an array of numbers ({error})",
        "shape": "it has shape {yours}, the input has shape {expected}",
        "correct": "{exercise}: correct.",
        "not_yet_one": "{exercise}: not yet: {names} is wrong.",
        "not_yet_many": "{exercise}: not yet: {names} are wrong.",
        "hint_line": "  A hint: exercises.hint({exercise!r}).",
        "stopped": "{exercise}: {problem}",
        "unwritten": "not written yet: the backward raises NotImplementedError.",
        "raised": "the backward raised {kind}: {error}",
        "count": "the backward returned {got} gradient(s); it should return {n}.",
        "count_named": "the backward returned {got} gradient(s); it should return {n}: {names}.",
        "keys": "the backward returned gradients for {got}; expected {names}.",
        "dict": "the backward should return a dict with keys {names}; it returned {got}.",
        "your_layer": "your layer",
        "write": "{name}: write {signature}",
        "hint": "{name}: {hint}",
    },
    "zh": {
        "list": "、",
        "exact": "{name}：精确（exact），最大差值 {difference:.3g}。",
        "close": "{name}：接近（close），但不精确：大约一半的有效数字正确（最大差值 {difference:.3g}）。",
        "at_kinks": "其中 {n} 个元素位于正向传播的折点（恰好为 0 的 ReLU、并列的最大值），在那里介于左右单侧斜率之间的任何值都正确，你的值正是如此。",
        "wrong": "{name}：错误（wrong），{size} 个元素中有 {n_wrong} 个错误（最大差值 {difference:.3g}）：",
        "wrong_element": "    在 {index}：你的值 {yours:.6g}，期望值 {expected:.6g}",
        "more": "    还有 {more} 个",
        "wrong_whole": "{name}：错误（wrong）：{problem}。",
        "not_array": "它不是数值数组（{error}）",
        "shape": "它的形状是 {yours}，而输入的形状是 {expected}",
        "correct": "{exercise}：正确。",
        "not_yet_one": "{exercise}：还不对：{names} 错误。",
        "not_yet_many": "{exercise}：还不对：{names} 错误。",
        "hint_line": "  提示：exercises.hint({exercise!r}, language='zh')。",
        "stopped": "{exercise}：{problem}",
        "unwritten": "还没有写：backward 引发了 NotImplementedError。",
        "raised": "backward 引发了 {kind}：{error}",
        "count": "backward 返回了 {got} 个梯度；应当返回 {n} 个。",
        "count_named": "backward 返回了 {got} 个梯度；应当返回 {n} 个：{names}。",
        "keys": "backward 返回了 {got} 的梯度；期望的是 {names}。",
        "dict": "backward 应当返回键为 {names} 的字典；它返回了 {got}。",
        "your_layer": "你的层",
        "write": "{name}：请写出 {signature}",
        "hint": "{name}：{hint}",
    },
    "ja": {
        "list": "、",
        "exact": "{name}：正確（exact）。最大の差 {difference:.3g}。",
        "close": "{name}：近い（close）が正確ではない：桁の半分ほどが正しい（最大の差 {difference:.3g}）。",
        "at_kinks": "うち {n} 個の要素は順伝播の折れ点（ちょうど 0 の ReLU、同点の最大値）にあり、そこでは左右の片側の傾きの間の値はどれも正しく、あなたの値もそうです。",
        "wrong": "{name}：誤り（wrong）、{size} 個の要素のうち {n_wrong} 個が誤り（最大の差 {difference:.3g}）：",
        "wrong_element": "    {index} で：あなたの値 {yours:.6g}、期待される値 {expected:.6g}",
        "more": "    ほかに {more} 個",
        "wrong_whole": "{name}：誤り（wrong）：{problem}。",
        "not_array": "数値の配列ではありません（{error}）",
        "shape": "形状が {yours} ですが、入力の形状は {expected} です",
        "correct": "{exercise}：正解。",
        "not_yet_one": "{exercise}：まだです：{names} が誤り。",
        "not_yet_many": "{exercise}：まだです：{names} が誤り。",
        "hint_line": "  ヒント：exercises.hint({exercise!r}, language='ja')。",
        "stopped": "{exercise}：{problem}",
        "unwritten": "まだ書かれていません：backward が NotImplementedError を送出します。",
        "raised": "backward が {kind} を送出しました：{error}",
        "count": "backward は {got} 個の勾配を返しました。返すべきなのは {n} 個です。",
        "count_named": "backward は {got} 個の勾配を返しました。返すべきなのは {n} 個です：{names}。",
        "keys": "backward は {got} の勾配を返しました。期待されるのは {names} です。",
        "dict": "backward はキー {names} を持つ辞書を返すべきですが、{got} を返しました。",
        "your_layer": "あなたのレイヤ",
        "write": "{name}：次の関数を書いてください：{signature}",
        "hint": "{name}：{hint}",
    },
}


def words(language):
    """The sentences of ``language`` (``"en"``, ``"zh"`` or ``"ja"``)."""
    if language not in WORDS:
        raise ValueError(f"language must be one of {', '.join(map(repr, LANGUAGES))}; got {language!r}")
    return WORDS[language]
