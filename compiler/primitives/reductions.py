"""Reductions over axes, argmax, cumulative sums, and windowed reductions (pooling)."""
from __future__ import annotations

import numpy as np

from ..ir.core import ShapedArray, bool_, dtype as to_dtype
from ..ir.errors import ShapeError
from ._lazy import cnp
from .derivatives import add_all, aval, is_float, linear_rules, zero_derivative_rules
from ..transforms.batching import shift, unary_axes_rule
from .structural import _axes, _ints, broadcast_in_dim, declare


def _reduce(name: str, kinds: str):
    def rule(x: ShapedArray, *, axes) -> ShapedArray:
        axes_ = _axes(name, axes, x.ndim)
        if x.dtype.kind not in kinds:
            raise ShapeError(f"{name} cannot reduce {x.dtype.name} values")
        if name in ("reduce_max", "reduce_min") and any(x.shape[a] == 0 for a in axes_):
            raise ShapeError(f"{name}: zero-size axis in {x.shape} has no identity")
        return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i not in axes_), x.dtype, x.weak_type)
    return declare(name, rule)


reduce_sum = _reduce("reduce_sum", "fiu")
reduce_prod = _reduce("reduce_prod", "fiu")
reduce_max = _reduce("reduce_max", "fiub")
reduce_min = _reduce("reduce_min", "fiub")


def _argmax(x: ShapedArray, *, axes, index_dtype) -> ShapedArray:
    axes_ = _axes("argmax", axes, x.ndim)
    if len(axes_) != 1:
        raise ShapeError(f"argmax reduces exactly one axis, got {axes_}")
    if x.shape[axes_[0]] == 0:
        raise ShapeError(f"argmax of an empty axis {axes_[0]} of {x.shape}")
    idx = to_dtype(index_dtype)
    if not idx.is_int:
        raise ShapeError(f"argmax: index_dtype must be an integer type, got {idx.name}")
    return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i != axes_[0]), idx)


argmax = declare("argmax", _argmax)


def _cumsum(x: ShapedArray, *, axis, reverse=False) -> ShapedArray:
    _axes("cumsum", (axis,), x.ndim)
    if x.dtype == bool_:
        raise ShapeError("cumsum of booleans: convert to an integer type first")
    return x


cumsum = declare("cumsum", _cumsum)


def _window_shape(name: str, x: ShapedArray, window_dimensions, window_strides, padding) -> tuple[int, ...]:
    dims = _ints(name, "window_dimensions", window_dimensions, x.ndim)
    strides = _ints(name, "window_strides", window_strides, x.ndim)
    if not isinstance(padding, tuple) or len(padding) != x.ndim:
        raise ShapeError(f"{name}: padding needs one (low, high) pair per dimension of {x.shape}")
    out = []
    for d, (n, k, s, pads) in enumerate(zip(x.shape, dims, strides, padding)):
        lo, hi = _ints(name, "each padding pair", pads, 2)
        if k < 1 or s < 1 or lo < 0 or hi < 0 or n + lo + hi < k:
            raise ShapeError(f"{name}: dimension {d} of size {n} cannot take window {k}, stride {s}, "
                             f"padding {pads}")
        out.append((n + lo + hi - k) // s + 1)
    return tuple(out)


def _reduce_window(name: str):
    def rule(x: ShapedArray, *, window_dimensions, window_strides, padding) -> ShapedArray:
        if x.dtype.kind not in "fiu":
            raise ShapeError(f"{name} expects numeric operands, got {x.dtype.name}")
        return ShapedArray(_window_shape(name, x, window_dimensions, window_strides, padding), x.dtype)
    return declare(name, rule)


reduce_window_max = _reduce_window("reduce_window_max")   # padding counts as -inf
reduce_window_sum = _reduce_window("reduce_window_sum")   # padding counts as 0


# ---- derivatives ------------------------------------------------------------------------------

def _expand_back(r, x, axes):
    """Broadcast a reduced value back to the operand's shape."""
    shape = aval(x).shape
    kept = tuple(d for d in range(len(shape)) if d not in axes)
    return broadcast_in_dim.bind(r, shape=shape, broadcast_dimensions=kept)


linear_rules(reduce_sum, lambda ct, x, *, axes: [_expand_back(ct, x, axes)])
linear_rules(cumsum, lambda ct, x, *, axis, reverse=False: [cumsum.bind(ct, axis=axis, reverse=not reverse)])
zero_derivative_rules(argmax)


def _extremum_rules(prim):
    """d max: the tangent of the selected element; ties share it equally (as JAX and torch.amax)."""
    def weights(x, out, axes):
        hit = cnp.astype(cnp.equal(x, _expand_back(out, x, axes)), aval(x).dtype)
        return cnp.divide(hit, _expand_back(cnp.sum(hit, axis=axes), x, axes))

    def jvp(primals, tangents, *, axes):
        (x,), (t,) = primals, tangents
        out = prim.bind(x, axes=axes)
        if t is None or not is_float(x):
            return out, None
        return out, cnp.sum(cnp.multiply(t, weights(x, out, axes)), axis=axes)

    def vjp(cts, primals, outs, *, axes):
        (x,) = primals
        if not is_float(x):
            return [None]
        return [cnp.multiply(_expand_back(cts[0], x, axes), weights(x, outs[0], axes))]

    prim.jvp_rule, prim.vjp_rule = jvp, vjp


_extremum_rules(reduce_max)
_extremum_rules(reduce_min)


def _product_of_others(x, axes):
    """For each element, the product of the other elements in its reduction group (exact at zeros)."""
    shape = aval(x).shape
    kept = [d for d in range(len(shape)) if d not in axes]
    n = int(np.prod([shape[d] for d in axes], dtype=np.int64))
    grouped = cnp.reshape(cnp.transpose(x, kept + list(axes)), [shape[d] for d in kept] + [n])
    spread = cnp.broadcast_to(cnp.expand_dims(grouped, -2), [shape[d] for d in kept] + [n, n])
    others = cnp.prod(cnp.where(np.eye(n, dtype=bool), cnp.ones((), aval(x).dtype), spread), axis=-1)
    unflat = cnp.reshape(others, [shape[d] for d in kept] + [shape[d] for d in axes])
    return cnp.transpose(unflat, np.argsort(kept + list(axes)))


def _prod_jvp(primals, tangents, *, axes):
    (x,), (t,) = primals, tangents
    out = reduce_prod.bind(x, axes=axes)
    if t is None or not is_float(x):
        return out, None
    return out, cnp.sum(cnp.multiply(t, _product_of_others(x, axes)), axis=axes)


def _prod_vjp(cts, primals, outs, *, axes):
    (x,) = primals
    return [cnp.multiply(_expand_back(cts[0], x, axes), _product_of_others(x, axes)) if is_float(x) else None]


reduce_prod.jvp_rule, reduce_prod.vjp_rule = _prod_jvp, _prod_vjp


def _window_offsets(window_dimensions):
    return list(np.ndindex(*window_dimensions))


def _window_slices(xp, offset, window_strides, out_shape):
    """The element at ``offset`` inside every window of the padded operand: one strided slice."""
    from .structural import slice_
    start = tuple(offset)
    limit = tuple(o + (m - 1) * s + 1 for o, m, s in zip(offset, out_shape, window_strides))
    return slice_.bind(xp, start_indices=start, limit_indices=limit, strides=tuple(window_strides))


def _pad_with(x, value, padding):
    from .structural import pad
    return pad.bind(x, np.asarray(value, aval(x).dtype.np)[()],
                    padding_config=tuple((lo, hi, 0) for lo, hi in padding))


def _reduce_window_sum_T(ct, x, *, window_dimensions, window_strides, padding):
    """Spread each window's cotangent back over the window: dilate the cotangent by the strides,
    pad it, and sum windows of ones (a full correlation)."""
    from .structural import pad
    in_shape, out_shape = aval(x).shape, aval(ct).shape
    config = []
    for n, k, s, (lo, _), m in zip(in_shape, window_dimensions, window_strides, padding, out_shape):
        before = k - lo - 1
        after = n + k - 1 - ((m - 1) * s + 1) - before
        config.append((before, after, s - 1))
    spread = pad.bind(ct, np.zeros((), aval(ct).dtype.np), padding_config=tuple(config))
    return [reduce_window_sum.bind(spread, window_dimensions=tuple(window_dimensions),
                                   window_strides=(1,) * len(in_shape),
                                   padding=((0, 0),) * len(in_shape))]


linear_rules(reduce_window_sum, _reduce_window_sum_T)


def _argmax_masks(x, window_dimensions, window_strides, padding, out):
    """For each window offset, a 0/1 mask of the windows whose (first) maximum sits there."""
    low = -np.inf if aval(x).dtype.is_float else np.iinfo(aval(x).dtype.np).min
    xp = _pad_with(x, low, padding)
    masks, taken = [], None
    for offset in _window_offsets(window_dimensions):
        hit = cnp.equal(_window_slices(xp, offset, window_strides, aval(out).shape), out)
        if taken is not None:
            hit = cnp.logical_and(hit, cnp.logical_not(taken))
        taken = hit if taken is None else cnp.logical_or(taken, hit)
        masks.append(cnp.astype(hit, aval(x).dtype))
    return masks


def _reduce_window_max_jvp(primals, tangents, *, window_dimensions, window_strides, padding):
    (x,), (t,) = primals, tangents
    out = reduce_window_max.bind(x, window_dimensions=window_dimensions, window_strides=window_strides,
                                 padding=padding)
    if t is None or not is_float(x):
        return out, None
    tp = _pad_with(t, 0, padding)
    masks = _argmax_masks(x, window_dimensions, window_strides, padding, out)
    return out, add_all([cnp.multiply(m, _window_slices(tp, off, window_strides, aval(out).shape))
                         for m, off in zip(masks, _window_offsets(window_dimensions))])


def _reduce_window_max_vjp(cts, primals, outs, *, window_dimensions, window_strides, padding):
    """The cotangent of each window goes to its (first) maximum, as in max pooling's backward."""
    from .structural import pad, slice_
    (x,), ct = primals, cts[0]
    if not is_float(x):
        return [None]
    masks = _argmax_masks(x, window_dimensions, window_strides, padding, outs[0])
    padded_shape = [n + lo + hi for n, (lo, hi) in zip(aval(x).shape, padding)]
    parts = []
    for m, off in zip(masks, _window_offsets(window_dimensions)):
        picked = cnp.multiply(m, ct)
        # transpose of the strided slice at this offset: place back into the padded operand's shape
        config = tuple((o, p - (o + (k - 1) * s + 1), s - 1)
                       for o, p, k, s in zip(off, padded_shape, aval(ct).shape, window_strides))
        parts.append(pad.bind(picked, np.zeros((), aval(ct).dtype.np), padding_config=config))
    total = add_all(parts)
    crop = slice_.bind(total, start_indices=tuple(lo for lo, _ in padding),
                       limit_indices=tuple(lo + n for (lo, _), n in zip(padding, aval(x).shape)),
                       strides=(1,) * len(padding))
    return [crop]


reduce_window_max.jvp_rule, reduce_window_max.vjp_rule = _reduce_window_max_jvp, _reduce_window_max_vjp


# ---- batching ---------------------------------------------------------------------------------
for _prim in (reduce_sum, reduce_prod, reduce_max, reduce_min):
    unary_axes_rule(_prim, lambda p, nd: dict(axes=shift(p["axes"])))
unary_axes_rule(argmax, lambda p, nd: dict(axes=shift(p["axes"]), index_dtype=p["index_dtype"]))
unary_axes_rule(cumsum, lambda p, nd: dict(axis=p["axis"] + 1, reverse=p.get("reverse", False)))
for _prim in (reduce_window_max, reduce_window_sum):
    unary_axes_rule(_prim, lambda p, nd: dict(
        window_dimensions=(1,) + tuple(p["window_dimensions"]),
        window_strides=(1,) + tuple(p["window_strides"]), padding=((0, 0),) + tuple(p["padding"])))
