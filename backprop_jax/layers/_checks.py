"""Trace-time input checks shared by the layers.

Every check looks at shapes and dtypes only, so it fires while JAX traces the
function (under ``jit`` too) and names the offending shapes, instead of letting
XLA fail later with an opaque message.
"""

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
