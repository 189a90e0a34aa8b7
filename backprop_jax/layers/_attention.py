"""The sequel's attention (*Deep Learning from Scratch 2*, ch. 8): ``AttentionWeight``,
``WeightSum``, ``Attention`` and ``TimeAttention``, each backward the sequel's.

Shapes: batch N, encoder time T, hidden H; ``hs`` (N, T, H) are the encoder's
hidden states, ``h`` (N, H) one decoder state.
"""

import jax
import jax.numpy as jnp

from backprop_jax.layers._checks import as_float_array, like_inputs, require_ndim


def _check(fn, hs, other, other_name, other_shape):
    hs, other = as_float_array(fn, "hs", hs), as_float_array(fn, other_name, other)
    require_ndim(fn, "hs", hs, 3, "(N, T, H)")
    want = other_shape(hs.shape)
    if other.shape != want:
        raise ValueError(f"{fn}: {other_name} must have shape {want} for hs of shape {hs.shape}, got {other.shape}")
    return hs, other


@jax.custom_vjp
def weight_sum(hs, a):
    """The sequel's ``WeightSum`` (sec. 8.1.3): the context ``c = sum(hs * a[:, :, None], axis=1)``.

    Args: hs (N, T, H), a (N, T) weights. Returns c (N, H).
    Backward: ``dt = dc`` repeated over T, ``dhs = dt * ar``, ``da = sum(dt * hs, axis=2)``.
    """
    return _weight_sum_fwd(hs, a)[0]


def _weight_sum_fwd(hs, a):
    hs, a = _check("weight_sum", hs, a, "a", lambda s: s[:2])
    ar = a[:, :, None]
    return jnp.sum(hs * ar, axis=1), (hs, ar)


def _weight_sum_bwd(res, dc):
    hs, ar = res
    dt = jnp.repeat(dc[:, None, :], hs.shape[1], axis=1)
    dar = dt * hs
    dhs = dt * ar
    da = jnp.sum(dar, axis=2)
    return like_inputs((dhs, da), (hs, ar[:, :, 0]))


weight_sum.defvjp(_weight_sum_fwd, _weight_sum_bwd)


@jax.custom_vjp
def attention_weight(hs, h):
    """The sequel's ``AttentionWeight`` (sec. 8.1.4): ``a = softmax(sum(hs * h[:, None, :], axis=2))``.

    Args: hs (N, T, H), h (N, H). Returns a (N, T), rows summing to 1.
    Backward: the softmax's ``ds = a * da - a * sum(a * da)``, then ``dt = ds`` repeated over H,
    ``dhs = dt * hr``, ``dh = sum(dt * hs, axis=1)``.
    """
    return _attention_weight_fwd(hs, h)[0]


def _attention_weight_fwd(hs, h):
    hs, h = _check("attention_weight", hs, h, "h", lambda s: (s[0], s[2]))
    hr = h[:, None, :]
    s = jnp.sum(hs * hr, axis=2)
    a = jax.nn.softmax(s, axis=1)
    return a, (hs, hr, a)


def _attention_weight_bwd(res, da):
    hs, hr, a = res
    dx = a * da
    ds = dx - a * jnp.sum(dx, axis=1, keepdims=True)  # the sequel's Softmax.backward
    dt = jnp.repeat(ds[:, :, None], hs.shape[2], axis=2)
    dhs = dt * hr
    dhr = dt * hs
    dh = jnp.sum(dhr, axis=1)
    return like_inputs((dhs, dh), (hs, hr[:, 0, :]))


attention_weight.defvjp(_attention_weight_fwd, _attention_weight_bwd)


def attention(hs, h):
    """The sequel's ``Attention`` (sec. 8.1.5): ``weight_sum(hs, attention_weight(hs, h))``.

    Args: hs (N, T, H), h (N, H). Returns the context (N, H). Its gradient is the two hand rules
    chained, as the sequel's backward (``dhs = dhs0 + dhs1``).
    """
    return weight_sum(hs, attention_weight(hs, h))


def time_attention(hs_enc, hs_dec):
    """The sequel's ``TimeAttention`` (sec. 8.1.6): ``attention(hs_enc, hs_dec[:, t])`` for every
    decoder step t.

    Args: hs_enc (N, T_enc, H), hs_dec (N, T_dec, H). Returns (N, T_dec, H). Under ``vmap`` over
    the decoder steps the encoder states' cotangents add up over t, as the sequel's
    ``dhs_enc += dhs``.
    """
    hs_dec = as_float_array("time_attention", "hs_dec", hs_dec)
    require_ndim("time_attention", "hs_dec", hs_dec, 3, "(N, T, H)")
    return jax.vmap(attention, in_axes=(None, 1), out_axes=1)(hs_enc, hs_dec)


def attention_weights(hs_enc, hs_dec):
    """The weights ``a`` (N, T_dec, T_enc) that ``time_attention`` used: what the sequel's
    ``visualize_attention.py`` draws."""
    return jax.vmap(attention_weight, in_axes=(None, 1), out_axes=1)(hs_enc, hs_dec)
