"""What training will cost, from shapes alone (nothing is computed or compiled): the values one
step and one evaluation chunk compute, their FLOPs, and the seconds those take at a rate the
device shows on a small matrix product.

``computed_values`` walks a traced function's jaxpr, the values no output needs left out as XLA
leaves them out, into every body an equation holds (``jit``, the layers' ``custom_vjp`` calls,
``checkpoint``, each ``cond`` branch, keeping the dearest; a ``scan`` body ``length`` times; a
``while`` body once, as its trip count is not known from shapes). ``estimate_cost`` traces the
training step (the loss's gradient and the optimiser's update) for a batch, and the evaluation's
forward, with ``jax.make_jaxpr`` on shapes (``ShapeDtypeStruct``).
"""

import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from backprop_jax.checking._jaxpr import bodies, open_body
from backprop_jax.training._config import init_state
from backprop_jax.training._data_checks import split_data
from backprop_jax.training._placement import chunking, eval_chunk_size

try:  # JAX's dead-code elimination (no public name), which prunes the bodies of jit, scan, cond, while
    from jax._src.interpreters.partial_eval import dce_jaxpr as _dce_jaxpr
except ImportError:  # pragma: no cover - a JAX without it
    _dce_jaxpr = None

# Primitives that move or relabel values without arithmetic: no FLOPs.
_MOVES = frozenset({
    "reshape", "squeeze", "expand_dims", "broadcast_in_dim", "transpose", "slice", "dynamic_slice",
    "dynamic_update_slice", "concatenate", "pad", "gather", "scatter", "copy", "copy_p", "iota",
    "convert_element_type", "rev", "select_n", "stop_gradient", "device_put", "sharding_constraint",
    "split", "stack", "bitcast_convert_type"})
# Primitives whose work is one operation per element of their input, not of their output.
_REDUCTIONS = frozenset({"argmax", "argmin", "cumsum", "cumprod", "cummax", "cumlogsumexp", "sort"})


class ComputedValues(NamedTuple):
    """What a traced function computes, from the shapes of its values."""
    bytes: int  # every value every equation outputs, added up (as if XLA fused and reused nothing)
    largest: int  # bytes of the largest single value
    # Bytes of the largest output of a matrix product or convolution (that contracts more than one
    # value) certain to run: the device writes it out whole, so it holds at least this at once.
    largest_product: int
    flops: float  # floating-point operations: 2 per multiply-add of a product, ~1 per element elsewhere


_NOTHING = ComputedValues(0, 0, 0, 0.0)


def _size(aval):
    return math.prod(getattr(aval, "shape", ()))


def _nbytes(aval):
    if not hasattr(aval, "shape"):  # a token, a reference
        return 0
    return _size(aval) * getattr(aval.dtype, "itemsize", 8)  # a PRNG key's dtype says its size too


def _product_flops(eqn):
    """2 x the output's size x the size contracted, for ``dot_general`` and ``conv_general_dilated``."""
    out = _size(eqn.outvars[0].aval)
    lhs, rhs = (v.aval for v in eqn.invars[:2])
    if eqn.primitive.name == "dot_general":
        (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
        return 2.0 * out * math.prod(lhs.shape[d] for d in lhs_contracting)
    # A convolution: each output element contracts the kernel over its input features and window,
    # the kernel's size divided by its output features.
    out_features = rhs.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
    return 2.0 * out * math.prod(rhs.shape) / max(out_features, 1)


def _add(a, b, times=1):
    return ComputedValues(a.bytes + times * b.bytes, max(a.largest, b.largest),
                          max(a.largest_product, b.largest_product), a.flops + times * b.flops)


def _body(body):
    return _values(open_body(body)[0])


def computed_values(jaxpr):
    """The ``ComputedValues`` of a ``Jaxpr`` or ``ClosedJaxpr``, every body inside it included, once
    the values no output depends on are left out, as XLA leaves them out (a hand rule's ``dx`` for
    an input that is not differentiated)."""
    jaxpr = open_body(jaxpr)[0]
    if _dce_jaxpr is None:  # every value counted: a product may be dead, so none is certain
        return _values(jaxpr)._replace(largest_product=0)
    return _values(_dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))[0])


def _values(jaxpr):
    total = _NOTHING
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        found = [body for _, _, body in bodies(eqn.params)]
        outs = [v.aval for v in eqn.outvars]
        if found:
            inner = [_body(b) for b in found]
            if name == "cond":  # one branch runs: the dearest, and of products only what every branch holds
                total = _add(total, ComputedValues(max(b.bytes for b in inner), max(b.largest for b in inner),
                                                   min(b.largest_product for b in inner), max(b.flops for b in inner)))
            elif name == "while":  # runs once or more often, or never: its products are not certain
                for b in inner:
                    total = _add(total, b._replace(largest_product=0))
            else:
                times = eqn.params.get("length", 1) if name == "scan" else 1
                for b in inner:
                    total = _add(total, b if times else b._replace(largest_product=0), times)
            # The equation's own outputs are its body's (a scan's stacked: each iteration's), counted
            # there; they count here only as values held at once.
            total = total._replace(largest=max([total.largest] + [_nbytes(a) for a in outs]))
            continue
        out_bytes = sum(_nbytes(a) for a in outs)
        largest = max([_nbytes(a) for a in outs], default=0)
        if name in ("dot_general", "conv_general_dilated"):
            flops = _product_flops(eqn)
            product = largest if flops > 2 * sum(_size(a) for a in outs) else 0  # a product by one value
            # is an elementwise multiplication, which XLA may fuse into what reads it
        elif name in _MOVES:
            flops, product = 0.0, 0
        elif name.startswith("reduce_") or name in _REDUCTIONS:
            flops, product = float(sum(_size(v.aval) for v in eqn.invars if not hasattr(v, "val"))), 0
        else:
            flops, product = float(sum(_size(a) for a in outs)), 0
        total = _add(total, ComputedValues(out_bytes, largest, product, flops))
    return total


class Cost(NamedTuple):
    """``estimate_cost``'s figures, from shapes alone: the values and FLOPs of a whole batch and a
    whole chunk, which ``devices`` devices share (each holds at least its part of any value).

    The seconds are a rough figure and an optimistic one, a lower bound: the FLOPs at the rate
    a matrix product reaches on the device (``device_flops_per_second``, measured once per
    process when first needed), as if every operation ran as fast and nothing waited for memory."""
    step: ComputedValues  # one training step (forward, backward, update) for a batch
    evaluation_chunk: int  # at most so many examples in an evaluation chunk (``eval_chunk_size``)
    largest_chunk: int  # examples in the largest chunk evaluated (a set smaller than a chunk is one)
    chunk: ComputedValues  # that chunk's forward
    evaluation_flops: float  # one evaluation: the test set, and the training set for a model that
    # measures accuracy (a loss model records the test loss alone), in chunks, padding included
    first_epoch_steps: int  # steps in the first epoch
    dtype: str  # the parameters' floating-point dtype, in which the device's rate is measured
    devices: int  # devices a batch and a chunk are split over

    @property
    def first_epoch_flops(self):
        """FLOPs of the first epoch on each device: its steps and one evaluation."""
        return (self.first_epoch_steps * self.step.flops + self.evaluation_flops) / self.devices

    @property
    def seconds_per_step(self):
        """At least how long one training step takes (measures the device's rate)."""
        return self.step.flops / self.devices / device_flops_per_second(self.dtype)

    @property
    def seconds_per_evaluation(self):
        """At least how long one evaluation takes (measures the device's rate)."""
        return self.evaluation_flops / self.devices / device_flops_per_second(self.dtype)

    @property
    def seconds_first_epoch(self):
        """At least how long the first epoch, its steps and its evaluation, takes."""
        return self.first_epoch_flops / device_flops_per_second(self.dtype)

    @property
    def slow_step(self):
        """True when one step is estimated at ``SLOW_STEP_SECONDS`` (50 ms) or more: worth reporting
        step by step."""
        return self._at_least(self.step.flops / self.devices, SLOW_STEP_SECONDS)

    def first_epoch_longer_than(self, seconds):
        """True when the first epoch is estimated to take ``seconds`` or more."""
        return self._at_least(self.first_epoch_flops, seconds)

    def _at_least(self, flops, seconds):
        # FLOPs that even the slowest rate does in less than `seconds` need no measurement.
        slowest = _SLOWEST_RATE.get(jax.devices()[0].platform, _SLOWEST_RATE[None])
        return flops / slowest >= seconds and flops / device_flops_per_second(self.dtype) >= seconds

    def line(self):
        """The estimate in one line: FLOPs and seconds of a step, of an evaluation and of the first epoch."""
        rate = device_flops_per_second(self.dtype)
        return (f"estimated cost: {_si(self.step.flops)}FLOP a step, {_si(self.evaluation_flops)}FLOP an "
                f"evaluation; at the {_si(rate)}FLOP/s of a matrix product in {self.dtype} on this "
                f"{jax.devices()[0].platform} device, at least {_duration(self.seconds_per_step)} a step, "
                f"{_duration(self.seconds_per_evaluation)} an evaluation, {_duration(self.seconds_first_epoch)} "
                f"the first epoch ({self.first_epoch_steps} steps and an evaluation); a rough, optimistic figure")


SLOW_STEP_SECONDS = 0.05
# FLOP/s below any device of a kind's rate on a matrix product: FLOPs that take less than a
# threshold at this rate are below it without measuring.
_SLOWEST_RATE = {"cpu": 2e9, None: 1e11}


def _si(n):
    """``n`` with an SI prefix and three digits: ``"368 G"``, ``"6.07 T"``."""
    for prefix in ("", "k", "M", "G", "T", "P"):
        if abs(n) < 1000 or prefix == "P":
            return f"{n:.3g} {prefix}"
        n /= 1000


def _duration(seconds):
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def estimate_cost(model, data, config, devices=1, *, shapes=None):
    """The ``Cost`` of training ``model`` on ``data`` with ``config``, from shapes alone.

    Traces (never runs or compiles) one training step, the gradient of the loss and the
    optimiser's update, on a batch of ``config.batch_size`` examples, and the
    evaluation's forward (the model's ``Metric`` of each example) on one and on two examples,
    whose difference gives the values and FLOPs of each further example. ``devices``: how many
    devices share every batch and chunk (a mesh's size). ``shapes``: those of
    ``init_state(model, config)``, if the caller has them already. Tens of milliseconds for the
    book's networks; the same arguments (by their shapes) are traced once.
    """
    (x_train, t_train), (x_test, t_test) = split_data(data)
    described = tuple((len(a), np.shape(a)[1:], np.asarray(a[:1]).dtype)
                      for a in (x_train, t_train, x_test, t_test))
    key = (model, config, devices, described)
    if key not in _ESTIMATES:
        if len(_ESTIMATES) >= 8:
            _ESTIMATES.pop(next(iter(_ESTIMATES)))  # the oldest
        _ESTIMATES[key] = _estimate(model, config, devices, described, shapes)
    return _ESTIMATES[key]


_ESTIMATES = {}  # the last few estimates, by model, config, devices and the data's shapes


def _estimate(model, config, devices, described, shapes):
    if shapes is None:
        shapes = jax.eval_shape(lambda: init_state(model, config))
    (n_train, x_shape, x_dtype), (_, t_shape, t_dtype), (n_test, *_), _ = described

    def batch(n):
        return jax.ShapeDtypeStruct((n, *x_shape), x_dtype), jax.ShapeDtypeStruct((n, *t_shape), t_dtype)

    step = computed_values(jax.make_jaxpr(_step(model, config))(
        shapes.params, shapes.model_state, shapes.opt_state, *batch(config.batch_size)))
    per_example = model.measure().per_example
    one, two = (computed_values(jax.make_jaxpr(functools.partial(per_example, model))(
        shapes.params, shapes.model_state, *batch(n))) for n in (1, 2))
    each = ComputedValues(max(two.bytes - one.bytes, 1), 0, 0, max(two.flops - one.flops, 0.0))
    chunk_size = eval_chunk_size(each.bytes)

    def at(n):
        # One chunk of n examples, along the line through one example and two: exact for the bytes
        # and FLOPs (a part that does not grow with n, and one that grows in proportion to it); at
        # most the largest values (the largest of several lines is convex: above its chord).
        sizes = (round(a + (n - 1) * (b - a)) for a, b in zip(one[:3], two[:3]))
        return ComputedValues(*sizes, one.flops + (n - 1) * each.flops)

    # The chunks of each set evaluated (the test set, and the training set for a model that measures
    # accuracy), as ``eval_chunks`` makes them; a chunk holds at most ``chunk_size`` examples.
    evaluated = (n_train, n_test) if model.measures_accuracy() else (n_test,)
    sets = [chunking(n, chunk_size, devices) for n in evaluated]
    largest_chunk = max(size for _, size in sets)
    evaluation_flops = sum(n_chunks * at(size).flops for n_chunks, size in sets)
    return Cost(step, chunk_size, largest_chunk, at(largest_chunk), evaluation_flops,
                min(config.iters_num, config.epoch_length(n_train)), _float_dtype(shapes.params), devices)


def _step(model, config):
    """One training step as the epochs program runs it: the loss's gradient, the optimiser's update."""
    optimizer = config.make_optimizer()

    def step(params, model_state, opt_state, x, t):
        (loss, model_state), grads = jax.value_and_grad(
            lambda p: model.loss(p, model_state, x, t, key=jax.random.key(0), train=True), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, model_state, loss
    return step


def _float_dtype(params):
    """The dtype of most of the parameters' floating-point values (float32 when there are none)."""
    sizes = {}
    for leaf in jax.tree_util.tree_leaves(params):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            sizes[str(leaf.dtype)] = sizes.get(str(leaf.dtype), 0) + math.prod(leaf.shape)
    return max(sizes, key=sizes.get) if sizes else "float32"


@functools.cache
def device_flops_per_second(dtype="float32"):
    """FLOPs per second the default device reaches on a matrix product in ``dtype`` (512 x 512 on a
    CPU, 4096 x 4096 on an accelerator), the best of five timed calls after one that compiles it:
    measured once per process, in about a tenth of a second."""
    n = 512 if jax.devices()[0].platform == "cpu" else 4096
    a = jnp.full((n, n), 1.0 / n, dtype)
    product = jax.jit(jnp.matmul)
    product(a, a).block_until_ready()
    best = math.inf
    for _ in range(5):
        began = time.perf_counter()
        product(a, a).block_until_ready()
        best = min(best, time.perf_counter() - began)
    return 2 * n ** 3 / max(best, 1e-9)
