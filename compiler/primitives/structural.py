"""Primitives that move data without arithmetic: broadcasting, reshaping, slicing, gathering, padding."""
from __future__ import annotations

import numpy as np

from ..ir.core import Primitive, ShapedArray, dtype as to_dtype
from ..ir.errors import ShapeError
from ._lazy import cnp
from ..transforms.batching import (Decline, batched_at_front, move_to_front, shift,
                                   unary_axes_rule)
from .derivatives import aval, linear_rules, zero_derivative_rules, zeros_like_aval


def _ints(name: str, what: str, value, length: int | None = None) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ShapeError(f"{name}: {what} must be a tuple of ints, got {value!r}")
    if length is not None and len(value) != length:
        raise ShapeError(f"{name}: {what} needs {length} entries, got {len(value)}: {value}")
    return value


def _axes(name: str, value, ndim: int, unique: bool = True) -> tuple[int, ...]:
    axes = _ints(name, "axes", value)
    for a in axes:
        if not 0 <= a < ndim:
            raise ShapeError(f"{name}: axis {a} out of range for rank {ndim}")
    if unique and len(set(axes)) != len(axes):
        raise ShapeError(f"{name}: repeated axis in {axes}")
    return axes


def declare(name: str, rule, multiple_results: bool = False) -> Primitive:
    prim = Primitive(name, multiple_results=multiple_results)
    prim.shape_rule = rule
    return prim


def _broadcast_in_dim(x: ShapedArray, *, shape, broadcast_dimensions) -> ShapedArray:
    shape = _ints("broadcast_in_dim", "shape", shape)
    dims = _ints("broadcast_in_dim", "broadcast_dimensions", broadcast_dimensions, x.ndim)
    if any(d < 0 for d in shape):
        raise ShapeError(f"broadcast_in_dim: negative size in shape {shape}")
    if list(dims) != sorted(set(dims)) or any(not 0 <= d < len(shape) for d in dims):
        raise ShapeError(f"broadcast_in_dim: broadcast_dimensions {dims} must be increasing and "
                         f"within rank {len(shape)}")
    for i, d in enumerate(dims):
        if x.shape[i] not in (1, shape[d]):
            raise ShapeError(f"broadcast_in_dim: operand dimension {i} of size {x.shape[i]} cannot "
                             f"broadcast to size {shape[d]} (shape {x.shape} -> {shape})")
    return ShapedArray(shape, x.dtype, x.weak_type)


def _reshape(x: ShapedArray, *, new_sizes) -> ShapedArray:
    new_sizes = _ints("reshape", "new_sizes", new_sizes)
    if any(d < 0 for d in new_sizes) or ShapedArray(new_sizes, x.dtype).size != x.size:
        raise ShapeError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to {new_sizes}")
    return ShapedArray(new_sizes, x.dtype, x.weak_type)


def _transpose(x: ShapedArray, *, permutation) -> ShapedArray:
    perm = _axes("transpose", permutation, x.ndim)
    if len(perm) != x.ndim:
        raise ShapeError(f"transpose: permutation {perm} is not a permutation of {x.ndim} axes")
    return ShapedArray(tuple(x.shape[p] for p in perm), x.dtype, x.weak_type)


def _squeeze(x: ShapedArray, *, dimensions) -> ShapedArray:
    dims = _axes("squeeze", dimensions, x.ndim)
    for d in dims:
        if x.shape[d] != 1:
            raise ShapeError(f"squeeze: dimension {d} of shape {x.shape} has size {x.shape[d]}, not 1")
    return ShapedArray(tuple(s for i, s in enumerate(x.shape) if i not in dims), x.dtype, x.weak_type)


def _expand_dims(x: ShapedArray, *, dimensions) -> ShapedArray:
    dims = _axes("expand_dims", dimensions, x.ndim + len(dimensions) if isinstance(dimensions, tuple) else 0)
    shape = list(x.shape)
    for d in sorted(dims):
        shape.insert(d, 1)
    return ShapedArray(tuple(shape), x.dtype, x.weak_type)


def _rev(x: ShapedArray, *, dimensions) -> ShapedArray:
    _axes("rev", dimensions, x.ndim)
    return x


def _concatenate(*xs: ShapedArray, dimension) -> ShapedArray:
    if not xs:
        raise ShapeError("concatenate needs at least one operand")
    first = xs[0]
    if not isinstance(dimension, int) or not 0 <= dimension < first.ndim:
        raise ShapeError(f"concatenate: dimension {dimension!r} out of range for rank {first.ndim}")
    for x in xs[1:]:
        if x.dtype != first.dtype:
            raise ShapeError(f"concatenate: dtypes differ: {first.dtype.name} and {x.dtype.name}")
        if x.ndim != first.ndim or any(a != b for i, (a, b) in enumerate(zip(x.shape, first.shape))
                                       if i != dimension):
            raise ShapeError(f"concatenate: shapes {first.shape} and {x.shape} differ outside "
                             f"dimension {dimension}")
    shape = list(first.shape)
    shape[dimension] = sum(x.shape[dimension] for x in xs)
    return ShapedArray(tuple(shape), first.dtype, all(x.weak_type for x in xs))


def _slice(x: ShapedArray, *, start_indices, limit_indices, strides=None) -> ShapedArray:
    start = _ints("slice", "start_indices", start_indices, x.ndim)
    limit = _ints("slice", "limit_indices", limit_indices, x.ndim)
    strides = (1,) * x.ndim if strides is None else _ints("slice", "strides", strides, x.ndim)
    shape = []
    for d, (lo, hi, st, n) in enumerate(zip(start, limit, strides, x.shape)):
        if not (0 <= lo <= hi <= n) or st < 1:
            raise ShapeError(f"slice: dimension {d} of size {n} cannot take start {lo}, limit {hi}, "
                             f"stride {st}")
        shape.append((hi - lo + st - 1) // st)
    return ShapedArray(tuple(shape), x.dtype, x.weak_type)


def _check_starts(name: str, x: ShapedArray, starts) -> None:
    if len(starts) != x.ndim:
        raise ShapeError(f"{name}: needs {x.ndim} start indices for shape {x.shape}, got {len(starts)}")
    for s in starts:
        if s.shape != () or not s.dtype.is_int:
            raise ShapeError(f"{name}: start indices must be integer scalars, got {s}")


def _dynamic_slice(x: ShapedArray, *starts: ShapedArray, slice_sizes) -> ShapedArray:
    """Starts are clamped so that the slice stays in bounds (as in XLA)."""
    _check_starts("dynamic_slice", x, starts)
    sizes = _ints("dynamic_slice", "slice_sizes", slice_sizes, x.ndim)
    if any(not 0 <= s <= n for s, n in zip(sizes, x.shape)):
        raise ShapeError(f"dynamic_slice: slice_sizes {sizes} do not fit in shape {x.shape}")
    return ShapedArray(sizes, x.dtype, x.weak_type)


def _dynamic_update_slice(x: ShapedArray, update: ShapedArray, *starts: ShapedArray) -> ShapedArray:
    _check_starts("dynamic_update_slice", x, starts)
    if update.dtype != x.dtype or update.ndim != x.ndim or any(u > n for u, n in zip(update.shape, x.shape)):
        raise ShapeError(f"dynamic_update_slice: update {update} does not fit in operand {x}")
    return x


def _gather(x: ShapedArray, indices: ShapedArray, *, axis) -> ShapedArray:
    """numpy.take(x, indices, axis) with indices clamped into range (no out-of-bounds reads)."""
    if not isinstance(axis, int) or not 0 <= axis < x.ndim:
        raise ShapeError(f"gather: axis {axis!r} out of range for operand {x}")
    if not indices.dtype.is_int:
        raise ShapeError(f"gather: indices must be integers, got {indices.dtype.name}")
    if x.shape[axis] == 0 and indices.size > 0:
        raise ShapeError(f"gather: cannot take elements along an empty axis {axis} of {x.shape}")
    return ShapedArray(x.shape[:axis] + indices.shape + x.shape[axis + 1:], x.dtype, x.weak_type)


def _scatter_add(x: ShapedArray, indices: ShapedArray, updates: ShapedArray, *, axis) -> ShapedArray:
    """The transpose of gather: ``numpy.add.at`` along ``axis`` with clamped indices."""
    expected = _gather(x, indices, axis=axis)
    if not updates.same_type(expected):
        raise ShapeError(f"scatter_add: updates must be {expected}, got {updates}")
    return x


def _pad(x: ShapedArray, padding_value: ShapedArray, *, padding_config) -> ShapedArray:
    """padding_config: one (low, high, interior) per dimension; low/high may be negative (crop)."""
    if padding_value.shape != () or padding_value.dtype != x.dtype:
        raise ShapeError(f"pad: padding value must be a {x.dtype.name} scalar, got {padding_value}")
    if not isinstance(padding_config, tuple) or len(padding_config) != x.ndim:
        raise ShapeError(f"pad: padding_config needs one (low, high, interior) per dimension of {x.shape}")
    shape = []
    for d, (cfg, n) in enumerate(zip(padding_config, x.shape)):
        lo, hi, interior = _ints("pad", "each padding entry", cfg, 3)
        size = lo + hi + n + max(n - 1, 0) * interior
        if interior < 0 or size < 0:
            raise ShapeError(f"pad: dimension {d} of size {n} cannot take padding {cfg}")
        shape.append(size)
    return ShapedArray(tuple(shape), x.dtype, x.weak_type)


def _iota(*, dtype, shape, dimension) -> ShapedArray:
    shape = _ints("iota", "shape", shape)
    if not 0 <= dimension < len(shape):
        raise ShapeError(f"iota: dimension {dimension} out of range for shape {shape}")
    return ShapedArray(shape, to_dtype(dtype))


broadcast_in_dim = declare("broadcast_in_dim", _broadcast_in_dim)
reshape = declare("reshape", _reshape)
transpose = declare("transpose", _transpose)
squeeze = declare("squeeze", _squeeze)
expand_dims = declare("expand_dims", _expand_dims)
rev = declare("rev", _rev)
concatenate = declare("concatenate", _concatenate)
slice_ = declare("slice", _slice)
dynamic_slice = declare("dynamic_slice", _dynamic_slice)
dynamic_update_slice = declare("dynamic_update_slice", _dynamic_update_slice)
gather = declare("gather", _gather)
scatter_add = declare("scatter_add", _scatter_add)
pad = declare("pad", _pad)
iota = declare("iota", _iota)


# ---- derivatives: all of these are linear; each states its transpose ---------------------------

def sum_to_shape(ct, shape, broadcast_dimensions):
    """The transpose of broadcast_in_dim: sum over the axes that broadcasting created or stretched."""
    out_shape = aval(ct).shape
    summed = tuple(d for d in range(len(out_shape)) if d not in broadcast_dimensions) + tuple(
        d for i, d in enumerate(broadcast_dimensions) if shape[i] == 1 and out_shape[d] != 1)
    if summed:
        ct = cnp.sum(ct, axis=summed, dtype=aval(ct).dtype)
    return cnp.reshape(ct, shape)


def _reshape_back(ct, x, **_):
    return [cnp.reshape(ct, aval(x).shape)]


def _concatenate_T(ct, *xs, dimension):
    outs, start = [], 0
    for x in xs:
        n = aval(x).shape[dimension]
        idx = [slice(None)] * len(aval(x).shape)
        idx[dimension] = slice(start, start + n)
        outs.append(cnp.getitem(ct, tuple(idx)))
        start += n
    return outs


def _slice_T(ct, x, *, start_indices, limit_indices, strides=None):
    shape = aval(x).shape
    strides = strides or (1,) * len(shape)
    out_shape = aval(ct).shape
    if any(n == 0 for n in out_shape):
        return [zeros_like_aval(aval(x))]
    config = tuple((lo, n - (lo + (m - 1) * st + 1), st - 1)
                   for lo, n, m, st in zip(start_indices, shape, out_shape, strides))
    return [pad.bind(ct, np.zeros((), aval(ct).dtype.np), padding_config=config)]


def _pad_T(ct, x, padding_value, *, padding_config):
    undone = pad.bind(ct, np.zeros((), aval(ct).dtype.np),
                      padding_config=tuple((-lo, -hi, 0) for lo, hi, _ in padding_config))
    ct_x = slice_.bind(undone, start_indices=(0,) * len(padding_config),
                       limit_indices=aval(undone).shape,
                       strides=tuple(interior + 1 for _, _, interior in padding_config))
    ct_value = cnp.subtract(cnp.sum(ct), cnp.sum(ct_x))
    return [ct_x, ct_value]


linear_rules(broadcast_in_dim, lambda ct, x, *, shape, broadcast_dimensions: [
    sum_to_shape(ct, aval(x).shape, broadcast_dimensions)])
linear_rules(reshape, _reshape_back)
linear_rules(squeeze, _reshape_back)
linear_rules(expand_dims, _reshape_back)
linear_rules(transpose, lambda ct, x, *, permutation: [
    cnp.transpose(ct, tuple(int(i) for i in np.argsort(permutation)))])
linear_rules(rev, lambda ct, x, *, dimensions: [rev.bind(ct, dimensions=dimensions)])
linear_rules(concatenate, _concatenate_T, linear_args=None)
linear_rules(slice_, _slice_T)
linear_rules(pad, _pad_T, linear_args=(0, 1))
linear_rules(dynamic_slice, lambda ct, x, *starts, slice_sizes: [
    dynamic_update_slice.bind(zeros_like_aval(aval(x)), ct, *starts)])
linear_rules(dynamic_update_slice, lambda ct, x, update, *starts: [
    dynamic_update_slice.bind(ct, zeros_like_aval(aval(update)), *starts),
    dynamic_slice.bind(ct, *starts, slice_sizes=aval(update).shape)], linear_args=(0, 1))
linear_rules(gather, lambda ct, x, indices, *, axis: [
    scatter_add.bind(zeros_like_aval(aval(x)), indices, ct, axis=axis)])
linear_rules(scatter_add, lambda ct, x, indices, updates, *, axis: [
    ct, gather.bind(ct, indices, axis=axis)], linear_args=(0, 2))
zero_derivative_rules(iota)


# ---- batching: the batch axis goes first and the params shift past it ------------------------

unary_axes_rule(transpose, lambda p, nd: dict(permutation=(0,) + shift(p["permutation"])))
for _prim in (squeeze, expand_dims, rev):
    unary_axes_rule(_prim, lambda p, nd: dict(dimensions=shift(p["dimensions"])))


def _with_batch_size(rule):
    """Rules whose params need the batch size (the new leading dimension)."""
    def wrapped(vals, dims, size, **params):
        x = move_to_front(vals[0], dims[0])
        return rule(x, size, **params), 0
    return wrapped


broadcast_in_dim.batch_rule = _with_batch_size(lambda x, size, *, shape, broadcast_dimensions: broadcast_in_dim.bind(
    x, shape=(size,) + tuple(shape), broadcast_dimensions=(0,) + shift(broadcast_dimensions)))
reshape.batch_rule = _with_batch_size(lambda x, size, *, new_sizes: reshape.bind(
    x, new_sizes=(size,) + tuple(new_sizes)))
slice_.batch_rule = _with_batch_size(lambda x, size, *, start_indices, limit_indices, strides=None: slice_.bind(
    x, start_indices=(0,) + tuple(start_indices), limit_indices=(size,) + tuple(limit_indices),
    strides=(1,) + tuple(strides or (1,) * len(start_indices))))


def _concatenate_batch(vals, dims, size, *, dimension):
    return concatenate.bind(*[batched_at_front(v, d, size) for v, d in zip(vals, dims)],
                            dimension=dimension + 1), 0


def _pad_batch(vals, dims, size, *, padding_config):
    if dims[1] is not None:
        raise Decline
    x = move_to_front(vals[0], dims[0])
    return pad.bind(x, vals[1], padding_config=((0, 0, 0),) + tuple(padding_config)), 0


def _dynamic_slice_batch(vals, dims, size, *, slice_sizes):
    if any(d is not None for d in dims[1:]):
        raise Decline                                   # batched start indices: mapped sequentially
    x = move_to_front(vals[0], dims[0])
    return dynamic_slice.bind(x, np.int32(0), *vals[1:], slice_sizes=(size,) + tuple(slice_sizes)), 0


def _dynamic_update_slice_batch(vals, dims, size):
    if any(d is not None for d in dims[2:]):
        raise Decline
    x, update = (batched_at_front(v, d, size) for v, d in zip(vals[:2], dims[:2]))
    return dynamic_update_slice.bind(x, update, np.int32(0), *vals[2:]), 0


def _gather_batch(vals, dims, size, *, axis):
    (x, idx), (dx, di) = vals, dims
    if di is None:
        return gather.bind(move_to_front(x, dx), idx, axis=axis + 1), 0
    if dx is None:
        return gather.bind(x, idx, axis=axis), axis + di
    raise Decline


def _scatter_add_batch(vals, dims, size, *, axis):
    if dims[1] is not None:
        raise Decline
    x, updates = batched_at_front(vals[0], dims[0], size), batched_at_front(vals[2], dims[2], size)
    return scatter_add.bind(x, vals[1], updates, axis=axis + 1), 0


concatenate.batch_rule = _concatenate_batch
pad.batch_rule = _pad_batch
dynamic_slice.batch_rule = _dynamic_slice_batch
dynamic_update_slice.batch_rule = _dynamic_update_slice_batch
gather.batch_rule = _gather_batch
scatter_add.batch_rule = _scatter_add_batch
