"""Trace-time input checks shared by the layers.

Every check looks at shapes and dtypes only, so it fires while JAX traces the
function (under ``jit`` too) and names the offending shapes, instead of letting
XLA fail later with an opaque message.
"""

import jax
import jax.numpy as jnp
import numpy as np


def as_float_array(fn, name, x):
    """Returns ``x`` as a JAX array; ``TypeError`` unless it is real floating point.

    Nested Python lists are accepted, as ``jnp.asarray`` reads them."""
    if isinstance(x, (list, tuple)):
        x = jnp.asarray(x)
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{fn}: {name} must be a real floating-point array, got dtype "
            f"{np.dtype(dtype).name} with shape {jnp.shape(x)}; gradients are "
            f"defined for real numbers only (write 2.0 rather than 2, or cast "
            f"with .astype(jnp.float32))")
    return jnp.asarray(x)


def require_ndim(fn, name, x, ndim, layout):
    """``ValueError`` unless ``x.ndim == ndim``; ``layout`` names the axes, e.g. ``"(N, C)"``."""
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have shape {layout}, got shape {x.shape}")


def require_broadcastable(fn, x, y):
    """``ValueError`` naming both shapes unless ``x`` and ``y`` broadcast together."""
    try:
        jnp.broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ValueError(
            f"{fn}: x of shape {x.shape} and y of shape {y.shape} do not "
            f"broadcast together") from None


def _varying(a):
    """The manual mesh axes (inside ``shard_map``) over which ``a`` varies; empty outside."""
    aval = jax.typeof(a)
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None:
        return frozenset(mat.varying)
    return frozenset(getattr(aval, "vma", ()))  # older JAX


def like_inputs(cotangents, inputs):
    """Each cotangent typed like its primal input under ``shard_map``, as autodiff types them.

    A parameter replicated over a manual axis (invariant) whose cotangent comes out varying,
    ``dW = x.T @ dout`` on a split batch, gets that cotangent summed over the axis: the
    transpose of the implicit broadcast of the parameter to every shard, which is what JAX's
    own rules insert. An input varying where its cotangent is not gets the cotangent cast to
    varying. Outside ``shard_map`` nothing varies and the cotangents pass unchanged.

    Under explicit sharding each cotangent is resharded to its input's sharding (replicated for an
    input that has none), as JAX requires: ``db = sum(dout)`` of a column-split ``dout`` is split
    where ``b`` may be whole.
    """
    out = []
    for ct, x in zip(cotangents, inputs):
        if ct is not None and x is not None and sharding_like(ct) is not None:
            target = sharding_like(x) or replicated(ct)
            if tuple(jax.typeof(ct).sharding.spec) != tuple(target.spec):
                ct = jax.sharding.reshard(ct, target.spec)
        if ct is not None and x is not None:
            extra, missing = _varying(ct) - _varying(x), _varying(x) - _varying(ct)
            if extra:
                ct = jax.lax.psum(ct, tuple(sorted(extra)))
            if missing:
                ct = jax.lax.pcast(ct, tuple(sorted(missing)), to="varying")
        out.append(ct)
    return tuple(out)


def sharding_like(a):
    """``a``'s sharding where it is part of the type (a mesh with explicit axes), else None: the
    ``out_sharding`` that makes a contraction over a batch-sharded axis give a cotangent sharded
    like its parameter."""
    sharding = getattr(jax.typeof(a), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if mesh is None or not getattr(mesh, "axis_names", ()):
        return None
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    if not any(t == explicit for t in getattr(mesh, "axis_types", ())):
        return None
    return sharding


def batch_sharded(x, ndim):
    """Under explicit sharding, the sharding of an ``ndim``-axis array whose leading (batch) axis is
    split as ``x``'s is and whose other axes are whole: the ``out_sharding`` of a reshape that
    merges or splits the batch axis (im2col's rows). None otherwise."""
    sharding = sharding_like(x)
    if sharding is None:
        return None
    spec = tuple(sharding.spec)
    return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(spec[0] if spec else None,
                                                                                 *[None] * (ndim - 1)))


def replicated(x):
    """Under explicit sharding, a replicated sharding on ``x``'s mesh (a parameter's gradient
    summed over the split batch); None otherwise."""
    sharding = sharding_like(x)
    return None if sharding is None else jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())


def contraction_sharding(wanted, *operands):
    """The ``out_sharding`` of a contraction under explicit sharding: ``wanted`` (the sharding the
    result should have, e.g. its parameter's), or, where that is not explicit but an operand is, a
    replicated sharding on the operand's mesh (a NumPy or unsharded parameter meets a sharded batch).
    None when nothing is explicitly sharded."""
    if wanted is not None:
        return wanted
    for a in operands:
        mesh_sharding = replicated(a)
        if mesh_sharding is not None:
            return mesh_sharding
    return None
