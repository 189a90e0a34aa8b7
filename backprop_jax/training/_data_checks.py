"""What the trainer checks of its data before anything is compiled: the structure, the
labels against the model's classes, and finite values."""

import math

import jax
import numpy as np


def _structure(data):
    """A few words on what ``data`` is: ``a tuple of 3``, ``a dict with keys [...]``, ``an ndarray``."""
    if isinstance(data, (tuple, list)):
        return f"a {type(data).__name__} of {len(data)}: ({', '.join(_structure(d) if isinstance(d, (tuple, list)) else type(d).__name__ for d in data)})"
    if isinstance(data, dict):
        return f"a dict with keys {sorted(map(str, data))}"
    return f"a {type(data).__name__}"


def split_data(data):
    """``((x_train, t_train), (x_test, t_test))`` from ``data``, or a ``ValueError`` that names the
    structure expected and the one given."""
    try:
        (x_train, t_train), (x_test, t_test) = data
    except (TypeError, ValueError):
        raise ValueError(f"data must be ((x_train, t_train), (x_test, t_test)), got {_structure(data)}") from None
    return (x_train, t_train), (x_test, t_test)


def _check_data(model, data, shapes):
    """Raises ValueError naming what in ``data`` does not fit ``model``; returns the shape and dtype
    of the scores ``model.predict`` makes for one training example (found from shapes alone)."""
    (x_train, t_train), (x_test, t_test) = split_data(data)
    for name, x, t in (("train", x_train, t_train), ("test", x_test, t_test)):
        if len(x) != len(t):
            raise ValueError(f"{name} set: {len(x)} inputs of shape {np.shape(x)} but {len(t)} "
                             f"{'labels' if model.classifies() else 'targets'} of shape {np.shape(t)}")
        if len(x) == 0:
            raise ValueError(f"{name} set is empty")
        for what, a in (("inputs", x), ("labels" if model.classifies() else "targets", t)):
            a = np.asarray(a)
            if np.issubdtype(a.dtype, np.inexact):
                bad = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
                if bad.any():
                    raise ValueError(f"{name} {what} hold NaN or infinite values: {int(bad.sum())} of {len(a)} "
                                     f"examples, the first at index {int(np.argmax(bad))}")
        if model.input_ids is not None:
            ids = np.asarray(x).reshape(len(x), -1)
            bad = ((ids < 0) | (ids >= model.input_ids)).any(axis=1)
            if bad.any():
                first = ids[int(np.argmax(bad))]
                outside = sorted(set(first[(first < 0) | (first >= model.input_ids)].tolist()))
                raise ValueError(f"{name} inputs hold ids outside 0 to {model.input_ids - 1} (the model's "
                                 f"vocabulary): {int(bad.sum())} of {len(x)} examples, the first at index "
                                 f"{int(np.argmax(bad))} (ids {', '.join(map(str, outside[:5]))})")
    params, state = shapes.params, shapes.model_state
    example = jax.ShapeDtypeStruct((1, *np.shape(x_train)[1:]), np.asarray(x_train[:1]).dtype)
    if not model.classifies():
        # Any targets the criterion takes: ask it, on the shapes alone.
        target = jax.ShapeDtypeStruct((1, *np.shape(t_train)[1:]), np.asarray(t_train[:1]).dtype)
        try:
            jax.eval_shape(lambda p, s, x, t: model.loss(p, s, x, t, train=False)[0], params, state, example, target)
        except Exception as e:  # noqa: BLE001 - any failure: the targets do not fit the model
            raise ValueError(f"the model's criterion does not take targets of shape {np.shape(t_train)[1:]} "
                             f"and dtype {np.asarray(t_train[:1]).dtype} for inputs of shape "
                             f"{np.shape(x_train)[1:]}: {str(e).splitlines()[0]}") from None
        return jax.eval_shape(model.predict, params, state, example)
    # The number of classes, from the shapes alone: nothing is computed.
    scores = jax.eval_shape(model.predict, params, state, example)
    n_classes = scores.shape[-1]
    for name, t in (("train", t_train), ("test", t_test)):
        t = np.asarray(t)
        if np.issubdtype(t.dtype, np.integer) and t.ndim == 1:
            bad = np.flatnonzero((t < 0) | (t >= n_classes))
            if bad.size:
                raise ValueError(f"{name} labels must be classes 0 to {n_classes - 1} (the model scores "
                                 f"{n_classes}), got {t[bad[0]]} at index {bad[0]} ({bad.size} such labels)")
        elif np.issubdtype(t.dtype, np.floating) and t.shape[1:] == (n_classes,):
            sums = t.sum(axis=1, dtype=np.float64)
            bad = np.flatnonzero((np.abs(sums - 1) > 1e-3) | np.any(t < 0, axis=1))
            if bad.size:
                raise ValueError(f"{name} one-hot labels: each row must be non-negative and sum to 1, but row "
                                 f"{bad[0]} sums to {sums[bad[0]]:.6g} ({bad.size} such rows)")
        else:
            raise ValueError(f"{name} labels must be integers of shape (N,) or one-hot rows of shape "
                             f"(N, {n_classes}) (the model scores {n_classes} classes), got shape {t.shape} "
                             f"and dtype {t.dtype}; a model that is not a classifier says so with "
                             f"Model(metric='loss') or a criterion other than softmax_with_loss")
    return scores


def nbytes(tree):
    """Bytes of every array (or shape and dtype) of ``tree``."""
    return sum(math.prod(leaf.shape) * getattr(leaf.dtype, "itemsize", 4) for leaf in jax.tree_util.tree_leaves(tree))
