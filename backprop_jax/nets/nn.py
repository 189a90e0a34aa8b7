"""Compose the hand-rule layers into networks, in the style of ``stax`` (with state).

A layer is a ``Layer``: two pure functions and the names of its parameters.

* ``init(key, input_shape) -> (output_shape, params, state)``: shapes include
  the batch axis, whose size may be -1 (``(-1, 784)``, ``(-1, 1, 28, 28)``);
  the output shape is inferred, so a net is built from its input shape alone.
* ``apply(params, state, x, *, key=None, train=False) -> (out, new_state)``:
  ``key`` draws dropout masks, ``train`` picks batch or running statistics.

``serial`` chains layers and keys their parameters like the book: the i-th
layer with a ``W`` gets ``W{i}``, the i-th with a ``gamma`` ``gamma{i}``, so
``serial(Convolution(30, 5), Relu, MaxPooling(2, 2, stride=2), Affine(100), Relu,
Affine(10))`` has the book's ``W1, b1, W2, b2, W3, b3``. ``parallel``,
``FanOut``, ``FanInSum`` and ``FanInConcat`` build branches. ``classifier``
makes a ``Model`` (Softmax-with-Loss on top) that ``backprop_jax.train`` trains::

    from backprop_jax import nn
    net = nn.serial(nn.Affine(100, weight_init_std="he"), nn.Relu,
                    nn.Affine(10, weight_init_std="he"))
    model = nn.classifier(net, input_shape=(784,))

Your own ``custom_vjp`` function becomes a layer with ``elementwise(fn)`` (no
parameters, output shaped like the input), or with ``Layer(init, apply, ...)``
in general; a ``stax`` pair with ``from_stax``.
"""

import math
import operator
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from backprop_jax.layers import (
    affine, batch_norm, conv_method, dropout, init_batch_norm_state, relu, sigmoid, weight_decay)
from backprop_jax.nets._model import Model


class Layer(NamedTuple):
    """One layer (or a combination of layers) in the ``stax`` style, with state."""
    init: Callable  # (key, input_shape) -> (output_shape, params, state)
    apply: Callable  # (params, state, x, *, key=None, train=False) -> (out, new_state)
    name: str = "layer"
    # Keys of its params dict, numbered by ``serial`` (W -> W1, W2, ...); () for none; None for
    # params of any structure, which ``serial`` keeps whole under "{name}{position}".
    param_names: tuple | None = ()
    state_names: tuple | None = ()  # the same for its state
    # Which of its params are weights, the arrays the book's weight decay penalises (not biases,
    # not batch norm's gamma and beta): names among param_names, or, for params of any structure,
    # weight_mask(params) -> a pytree of bools shaped like params (optax's mask convention).
    weight_names: tuple = ()
    weight_mask: Callable | None = None


# --- weight initialisation: the book's, in one place -------------------------------------------

_INIT_SCALES = {"he": 2.0, "relu": 2.0, "xavier": 1.0, "sigmoid": 1.0}


def weight_std(weight_init_std, fan_in):
    """The std of ``W = std * N(0, 1)``: a number as given, ``"he"``/``"relu"`` sqrt(2 / fan_in),
    ``"xavier"``/``"sigmoid"`` sqrt(1 / fan_in) (the book's ``MultiLayerNet``, sec. 6.2)."""
    if isinstance(weight_init_std, str):
        scale = _INIT_SCALES.get(weight_init_std.lower())
        if scale is None:
            raise ValueError(f"weight_init_std must be a number, 'he' or 'xavier', got {weight_init_std!r}")
        return math.sqrt(scale / fan_in)
    if isinstance(weight_init_std, bool) or not weight_init_std > 0:
        raise ValueError(f"weight_init_std must be positive, got {weight_init_std}")
    return float(weight_init_std)


def _check_count(layer, name, value):
    try:
        ok = not isinstance(value, bool) and operator.index(value) >= 1
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")


def _normal(key, shape, std, dtype):
    return (std * jax.random.normal(key, shape)).astype(dtype)


def _batch_of(input_shape):
    return input_shape[0]


def _infer(fn, input_shape, dtype):
    """Output shape of ``fn`` (batch axis kept as given) by tracing it on a batch of one."""
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, *input_shape[1:]), dtype))
    return (_batch_of(input_shape), *out.shape[1:])


def _check_shape(name, input_shape, ndim=None):
    input_shape = tuple(input_shape)
    if ndim is not None and len(input_shape) != ndim:
        raise ValueError(f"{name}: input_shape must have {ndim} axes (batch first), got {input_shape}")
    if len(input_shape) < 2 or any(not isinstance(d, int) or d < 1 for d in input_shape[1:]):
        raise ValueError(f"{name}: input_shape must be (batch, d1, ...) with positive sizes, got {input_shape}")
    return input_shape


# --- the layers -------------------------------------------------------------------------------

def Affine(out_dim, *, weight_init_std=0.01, dtype=jnp.float32):
    """``affine``: (N, d1, ...) -> (N, out_dim); params ``W`` (d1 * ..., out_dim) and ``b`` (out_dim,).

    ``weight_init_std``: a number, ``"he"`` or ``"xavier"`` (scaled by the fan-in d1 * ...).
    """
    weight_std(weight_init_std, 1)  # validate now, not at init
    _check_count("Affine", "out_dim", out_dim)

    def init(key, input_shape):
        input_shape = _check_shape("Affine", input_shape)
        fan_in = math.prod(input_shape[1:])
        W = _normal(key, (fan_in, out_dim), weight_std(weight_init_std, fan_in), dtype)
        return (_batch_of(input_shape), out_dim), {"W": W, "b": jnp.zeros(out_dim, dtype)}, {}

    def apply(params, state, x, *, key=None, train=False):
        return affine(x, params["W"], params["b"]), state

    return Layer(init, apply, "Affine", ("W", "b"), weight_names=("W",))


def Convolution(filter_num, filter_size, *, stride=1, pad=0, weight_init_std=0.01, dtype=jnp.float32,
                method=None):
    """``convolution``: (N, C, H, W) -> (N, filter_num, out_h, out_w); params ``W``
    (filter_num, C, filter_size, filter_size) and ``b`` (filter_num,).

    ``weight_init_std``: a number, ``"he"`` or ``"xavier"`` (fan-in C * filter_size ** 2).
    ``method``: ``"im2col"`` (the book's ``convolution``), ``"xla"`` (``convolution_xla``) or None
    (``default_conv_method()`` of the device the net is traced for).
    """
    weight_std(weight_init_std, 1)
    conv_method(method)  # an unknown name fails here, when the net is built
    _check_count("Convolution", "filter_num", filter_num)
    _check_count("Convolution", "filter_size", filter_size)

    def init(key, input_shape):
        input_shape = _check_shape("Convolution", input_shape, 4)
        C = input_shape[1]
        std = weight_std(weight_init_std, C * filter_size * filter_size)
        W = _normal(key, (filter_num, C, filter_size, filter_size), std, dtype)
        b = jnp.zeros(filter_num, dtype)
        out = _infer(lambda x: conv_method(method).convolution(x, W, b, stride, pad), input_shape, dtype)
        return out, {"W": W, "b": b}, {}

    def apply(params, state, x, *, key=None, train=False):
        return conv_method(method).convolution(x, params["W"], params["b"], stride, pad), state

    return Layer(init, apply, "Convolution", ("W", "b"), weight_names=("W",))


def MaxPooling(pool_h, pool_w, *, stride=2, pad=0, method=None):
    """``max_pooling``: (N, C, H, W) -> (N, C, out_h, out_w); no parameters.

    ``stride`` defaults to 2, as the book's ``Pooling`` class (since its commit
    77a0807) and ``max_pooling``: ``MaxPooling(2, 2)`` is the book's
    non-overlapping 2x2 pooling.

    ``method``: ``"im2col"`` (the book's ``max_pooling``), ``"xla"`` (``max_pooling_xla``) or None
    (``default_conv_method()`` of the device the net is traced for).
    """
    conv_method(method)  # an unknown name fails here, when the net is built

    def init(key, input_shape):
        input_shape = _check_shape("MaxPooling", input_shape, 4)
        out = _infer(lambda x: conv_method(method).max_pooling(x, pool_h, pool_w, stride, pad), input_shape,
                     jnp.float32)
        return out, {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return conv_method(method).max_pooling(x, pool_h, pool_w, stride, pad), state

    return Layer(init, apply, "MaxPooling")


def BatchNorm(*, momentum=0.9, eps=1e-6, dtype=jnp.float32):
    """``batch_norm`` of every activation: (N, D) or (N, C, H, W) -> the same shape.

    Params ``gamma`` (ones) and ``beta`` (zeros) of shape (D,) (D = C*H*W for
    images, as in the book); state ``bn``: ``{"running_mean", "running_var"}``.
    ``train=True`` normalises with the batch's statistics and returns the
    updated running ones; ``train=False`` uses the running ones.
    """
    def init(key, input_shape):
        input_shape = _check_shape("BatchNorm", input_shape)
        D = math.prod(input_shape[1:])
        params = {"gamma": jnp.ones(D, dtype), "beta": jnp.zeros(D, dtype)}
        return input_shape, params, {"bn": init_batch_norm_state(D, dtype)}

    def apply(params, state, x, *, key=None, train=False):
        out, bn = batch_norm(x, params["gamma"], params["beta"], state["bn"], train, momentum, eps)
        return out, {"bn": bn}

    return Layer(init, apply, "BatchNorm", ("gamma", "beta"), ("bn",))


def Dropout(drop_rate):
    """``dropout``: zeroes the fraction ``drop_rate`` of units in training (the key draws the
    mask; training without a key is an error) and scales by ``1 - drop_rate`` in evaluation."""
    if isinstance(drop_rate, bool) or not 0 <= drop_rate < 1:
        raise ValueError(f"Dropout: drop_rate must be in [0, 1), got {drop_rate!r}")

    def init(key, input_shape):
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        if train and key is None:
            raise ValueError("Dropout: training needs a PRNG key (pass key=...) to draw the masks")
        return dropout(x, jax.random.key(0) if key is None else key, drop_rate, train), state

    return Layer(init, apply, "Dropout")


def elementwise(fn, name=None):
    """A layer without parameters that applies ``fn`` to its input (same shape out).

    This is how your own ``custom_vjp`` function joins a network: ``nn.elementwise(my_tanh)``.
    """
    def init(key, input_shape):
        return tuple(input_shape), {}, {}

    def apply(params, state, x, *, key=None, train=False):
        return fn(x), state

    return Layer(init, apply, name or getattr(fn, "__name__", "elementwise"))


Relu = elementwise(relu, "Relu")
Sigmoid = elementwise(sigmoid, "Sigmoid")


def _flatten_init(key, input_shape):
    return (_batch_of(input_shape), math.prod(input_shape[1:])), {}, {}


Flatten = Layer(_flatten_init, lambda params, state, x, *, key=None, train=False:
                (x.reshape(x.shape[0], -1), state), "Flatten")


def from_stax(layer, name="stax", *, weight_mask=None):
    """A ``jax.example_libraries.stax`` pair ``(init_fun, apply_fun)`` as a ``Layer``.

    Its params keep stax's structure (``serial`` stores them whole under
    ``"{name}{position}"``); ``key`` is passed to ``apply_fun`` as ``rng``.
    ``weight_mask(params)`` says which of them are weights (a pytree of bools);
    by default every array of two or more dimensions: stax's ``Dense`` and
    ``Conv`` hold ``(W, b)``, and ``W`` is the weight; biases and
    ``BatchNorm``'s ``(beta, gamma)`` are one-dimensional.
    """
    init_fun, apply_fun = layer

    def init(key, input_shape):
        output_shape, params = init_fun(key, tuple(input_shape))
        return tuple(output_shape), params, {}

    def apply(params, state, x, *, key=None, train=False):
        return apply_fun(params, x, rng=key), state

    return Layer(init, apply, name, None, (), weight_mask=weight_mask or _rank_two_or_more)


def _rank_two_or_more(params):
    return jax.tree_util.tree_map(lambda a: jnp.ndim(a) >= 2, params)


def mask_of(layer, params):
    """``layer``'s weight mask for ``params``: a pytree of bools, True at the weights."""
    if layer.weight_mask is not None:
        return layer.weight_mask(params)
    return {k: k in layer.weight_names for k in params} if isinstance(params, dict) else \
        jax.tree_util.tree_map(lambda _: False, params)


# --- combinators ------------------------------------------------------------------------------

def _number(layers, which):
    """For each layer: how to find its part of the combined dict, ``(kind, names)``."""
    counts, slots = {}, []
    for position, layer in enumerate(layers, start=1):
        names = getattr(layer, which)
        if names is None:  # kept whole
            slots.append(("whole", f"{layer.name}{position}"))
            continue
        numbered = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
            numbered[n] = f"{n}{counts[n]}"
        slots.append(("numbered", numbered))
    return slots


def _merge(slots, parts, what):
    merged = {}
    for (kind, where), part in zip(slots, parts):
        if kind == "whole":
            if jax.tree_util.tree_leaves(part):  # nothing stored for a part without arrays
                merged[where] = part
            continue
        if set(part) != set(where):
            raise ValueError(f"serial: a layer declared {what} {sorted(where)} but its init returned "
                             f"{sorted(part)}")
        merged.update({where[n]: part[n] for n in where})
    return merged


def _split(slots, merged):
    return [merged.get(where, {}) if kind == "whole" else {n: merged[k] for n, k in where.items()}
            for kind, where in slots]


def _combined_mask(layers, slots, split_params):
    """The weight mask of a combination: each part's, put back where ``_merge`` put its params."""
    def mask(params):
        parts = split_params(params)
        out = {}
        for layer, (kind, where), part in zip(layers, slots, parts):
            m = mask_of(layer, part)
            if kind == "whole":
                if where in params:
                    out[where] = m
            else:
                out.update({where[n]: m[n] for n in where})
        return out
    return mask


def serial(*layers):
    """Layers applied one after another; params and state are dicts keyed like the book.

    The i-th layer that has a parameter ``W`` gets ``W{i}`` (likewise ``b``,
    ``gamma``, ``beta`` and the state ``bn``); layers without declared names
    (``from_stax``, nested combinators) are kept whole under ``"{name}{position}"``,
    unless they hold no arrays at all.
    ``key`` is split over the layers in training.
    """
    if not layers:
        raise ValueError("serial: give at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"serial: argument {i} is {type(layer).__name__}, not a Layer "
                            f"(wrap a function with nn.elementwise or a stax pair with nn.from_stax)")
    param_slots, state_slots = _number(layers, "param_names"), _number(layers, "state_names")

    def init(key, input_shape):
        params, states = [], []
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            input_shape, p, s = layer.init(k, input_shape)
            params.append(p)
            states.append(s)
        return input_shape, _merge(param_slots, params, "params"), _merge(state_slots, states, "state")

    def apply(params, state, x, *, key=None, train=False):
        keys = [None] * len(layers) if key is None else jax.random.split(key, len(layers))
        new_states = []
        for layer, p, s, k in zip(layers, _split(param_slots, params), _split(state_slots, state), keys):
            x, s = layer.apply(p, s, x, key=k, train=train)
            new_states.append(s)
        return x, _merge(state_slots, new_states, "state")

    return Layer(init, apply, "serial", None, None,
                 weight_mask=_combined_mask(layers, param_slots, lambda params: _split(param_slots, params)))


def parallel(*layers):
    """Applies the i-th layer to the i-th of a tuple of inputs; params and state are tuples."""
    def init(key, input_shape):
        shapes, params, states = zip(*(layer.init(k, shape) for layer, k, shape in
                                       zip(layers, jax.random.split(key, len(layers)), input_shape)))
        return list(shapes), tuple(params), tuple(states)

    def apply(params, state, xs, *, key=None, train=False):
        keys = [None] * len(layers) if key is None else jax.random.split(key, len(layers))
        params = params or ({},) * len(layers)  # {}: no branch has any (see serial)
        state = state or ({},) * len(layers)
        outs, states = zip(*(layer.apply(p, s, x, key=k, train=train)
                             for layer, p, s, x, k in zip(layers, params, state, xs, keys)))
        return list(outs), tuple(states)

    def weight_mask(params):
        params = params or ({},) * len(layers)
        return tuple(mask_of(layer, p) for layer, p in zip(layers, params))

    return Layer(init, apply, "parallel", None, None, weight_mask=weight_mask)


def FanOut(n):
    """Copies the input into a list of ``n`` (to feed ``parallel`` branches)."""
    return Layer(lambda key, input_shape: ([tuple(input_shape)] * n, {}, {}),
                 lambda params, state, x, *, key=None, train=False: ([x] * n, state), "FanOut")


def _fan_in_sum_init(key, input_shape):
    return tuple(input_shape[0]), {}, {}


FanInSum = Layer(_fan_in_sum_init, lambda params, state, xs, *, key=None, train=False:
                 (sum(xs[1:], xs[0]), state), "FanInSum")


def FanInConcat(axis=-1):
    """Concatenates a list of inputs along ``axis`` (not the batch axis)."""
    def init(key, input_shape):
        shapes = [tuple(s) for s in input_shape]
        ax = axis % len(shapes[0])
        if ax == 0:
            raise ValueError("FanInConcat: cannot concatenate along the batch axis")
        out = list(shapes[0])
        out[ax] = sum(s[ax] for s in shapes)
        return tuple(out), {}, {}

    return Layer(init, lambda params, state, xs, *, key=None, train=False:
                 (jnp.concatenate(xs, axis), state), "FanInConcat")


# --- networks ---------------------------------------------------------------------------------

def weights(model, params):
    """The arrays of ``params`` that ``model`` (a ``Model`` or a ``Layer``) declares weights, in
    tree order: what the book's weight decay penalises (``W``s; not biases, not batch norm's
    gamma and beta)."""
    mask = model.weight_mask(params) if model.weight_mask is not None else mask_of(model, params)
    return [leaf for leaf, m in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if m]


def classifier(layer, input_shape, *, weight_decay_lambda=0.0):
    """A ``Model`` whose scores are ``layer``'s output and whose loss is Softmax-with-Loss on them.

    Args:
      layer: a ``Layer`` whose output has shape (N, C).
      input_shape: one example's shape, without the batch axis: ``(784,)``,
        ``(1, 28, 28)``. Inputs may also come flattened, (N, 784) for
        ``(1, 28, 28)``; they are reshaped.
      weight_decay_lambda: adds ``lambda / 2 * sum(W ** 2)`` over the weights the
        layers declare (``weights(model, params)``) to the loss (the book's weight
        decay, sec. 6.4.1).
    """
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ValueError(f"classifier: input_shape must be one example's shape, e.g. (784,) or "
                         f"(1, 28, 28), got {input_shape}")
    traced = isinstance(weight_decay_lambda, jax.core.Tracer)  # a strength vmapped over, say
    if not traced and (isinstance(weight_decay_lambda, bool) or not weight_decay_lambda >= 0):
        raise ValueError(f"weight_decay_lambda must be >= 0, got {weight_decay_lambda}")
    size = math.prod(input_shape)

    def init(key):
        output_shape, params, state = layer.init(key, (-1, *input_shape))
        if len(output_shape) != 2:
            raise ValueError(f"classifier: the network's output must be scores of shape (N, C), "
                             f"got shape {tuple(output_shape)} for input shape {(-1, *input_shape)}")
        return params, state

    def apply(params, state, x, *, key=None, train=False):
        if tuple(x.shape[1:]) != input_shape:
            if math.prod(x.shape[1:]) != size:
                raise ValueError(f"classifier: x of shape {x.shape} does not hold examples of shape "
                                 f"{input_shape} (nor flattened ones of {size})")
            x = x.reshape(x.shape[0], *input_shape)
        return layer.apply(params, state, x, key=key, train=train)

    def weight_mask(params):
        return mask_of(layer, params)

    penalty = None
    if traced or weight_decay_lambda:
        penalty = lambda params: weight_decay(weights(layer, params), weight_decay_lambda)  # noqa: E731
    return Model(init, apply, penalty, weight_mask=weight_mask)
