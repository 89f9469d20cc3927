"""Contractions: dot_general (matmul with batch dimensions) and conv_general_dilated (NCHW / OIHW).

Both take ``preferred_element_type``: the result type when it is not the operands' (int8 x int8 ->
int32 for quantized layers). Integer operands are multiplied exactly and the sum wraps to the result
type, as the interpreter defines; they have no derivatives."""
from __future__ import annotations

import numpy as np

from ..ir.core import ShapedArray, dtype as to_dtype
from ..ir.errors import ShapeError
from ._lazy import cnp
from .derivatives import add_all, aval, is_float
from ..transforms.batching import Decline, move_to_front, shift
from .structural import _axes, _ints, declare


def _dot_general(a: ShapedArray, b: ShapedArray, *, dimension_numbers,
                 preferred_element_type=None) -> ShapedArray:
    """Output axes: batch dims, then a's free dims, then b's free dims (as lax.dot_general)."""
    try:
        (ca, cb), (ba, bb) = dimension_numbers
    except (TypeError, ValueError):
        raise ShapeError(f"dot_general: dimension_numbers must be ((lhs_contract, rhs_contract), "
                         f"(lhs_batch, rhs_batch)), got {dimension_numbers!r}") from None
    ca, ba = _axes("dot_general", ca, a.ndim), _axes("dot_general", ba, a.ndim)
    cb, bb = _axes("dot_general", cb, b.ndim), _axes("dot_general", bb, b.ndim)
    if len(ca) != len(cb) or len(ba) != len(bb) or set(ca) & set(ba) or set(cb) & set(bb):
        raise ShapeError(f"dot_general: inconsistent dimension_numbers {dimension_numbers}")
    for i, j in zip(ca, cb):
        if a.shape[i] != b.shape[j]:
            raise ShapeError(f"dot_general: contracting dimension {i} of lhs {a.shape} (size {a.shape[i]}) "
                             f"does not match dimension {j} of rhs {b.shape} (size {b.shape[j]})")
    for i, j in zip(ba, bb):
        if a.shape[i] != b.shape[j]:
            raise ShapeError(f"dot_general: batch dimension {i} of lhs {a.shape} does not match "
                             f"dimension {j} of rhs {b.shape}")
    if a.dtype != b.dtype:
        raise ShapeError(f"dot_general expects operands of one dtype, got {a.dtype.name} and {b.dtype.name}")
    if a.dtype.kind == "b":
        raise ShapeError("dot_general of booleans: convert to a numeric type first")
    out_dtype = a.dtype if preferred_element_type is None else to_dtype(preferred_element_type)
    free_a = [s for i, s in enumerate(a.shape) if i not in ca and i not in ba]
    free_b = [s for i, s in enumerate(b.shape) if i not in cb and i not in bb]
    return ShapedArray(tuple([a.shape[i] for i in ba] + free_a + free_b), out_dtype)


dot_general = declare("dot_general", _dot_general)


def _dot_jvp(primals, tangents, **params):
    (x, y), (tx, ty) = primals, tangents
    out = dot_general.bind(x, y, **params)
    if not is_float(out):
        return out, None
    return out, add_all([dot_general.bind(tx, y, **params) if tx is not None else None,
                         dot_general.bind(x, ty, **params) if ty is not None else None])


def _dot_vjp(cts, primals, outs, *, dimension_numbers, preferred_element_type=None):
    """Each operand's cotangent is a dot_general of the output cotangent with the other operand,
    transposed back into the operand's axis order."""
    (x, y), ct = primals, cts[0]
    (ca, cb), (ba, bb) = dimension_numbers
    nx, ny, nb = len(aval(x).shape), len(aval(y).shape), len(ba)
    free_x = [i for i in range(nx) if i not in ca and i not in ba]
    free_y = [i for i in range(ny) if i not in cb and i not in bb]
    ct_batch = tuple(range(nb))
    ct_free_x = tuple(range(nb, nb + len(free_x)))
    ct_free_y = tuple(range(nb + len(free_x), nb + len(free_x) + len(free_y)))
    ct = cnp.astype(ct, aval(x).dtype)
    # ct . y over y's free axes -> (batch, free_x, y's contracting axes in increasing order)
    gx = dot_general.bind(ct, y, dimension_numbers=((ct_free_y, tuple(free_y)), (ct_batch, tuple(bb))))
    order_x = list(ba) + free_x + [ca[k] for k in np.argsort(cb)]
    # x . ct over x's free axes -> (batch, x's contracting axes in increasing order, free_y)
    gy = dot_general.bind(x, ct, dimension_numbers=((tuple(free_x), ct_free_x), (tuple(ba), ct_batch)))
    order_y = list(bb) + [cb[k] for k in np.argsort(ca)] + free_y
    return [cnp.transpose(gx, tuple(int(i) for i in np.argsort(order_x))) if is_float(x) else None,
            cnp.transpose(gy, tuple(int(i) for i in np.argsort(order_y))) if is_float(y) else None]


dot_general.jvp_rule, dot_general.vjp_rule = _dot_jvp, _dot_vjp


def _conv(x: ShapedArray, w: ShapedArray, *, window_strides, padding, lhs_dilation, rhs_dilation,
          feature_group_count, preferred_element_type=None) -> ShapedArray:
    """Cross-correlation like torch: x is (N, C, *spatial), w is (O, C/groups, *kernel); the result
    has ``preferred_element_type`` (an integer type for integer operands, a float for floats)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ShapeError(f"conv_general_dilated expects x (N, C, spatial...) and w (O, I, kernel...) of "
                         f"equal rank >= 3, got {x.shape} and {w.shape}")
    if x.dtype != w.dtype:
        raise ShapeError(f"conv_general_dilated expects one dtype, got {x.dtype.name} and {w.dtype.name}")
    out_dtype = _conv_result_dtype(x.dtype, preferred_element_type)
    nsp = x.ndim - 2
    strides = _ints("conv_general_dilated", "window_strides", window_strides, nsp)
    ldil = _ints("conv_general_dilated", "lhs_dilation", lhs_dilation, nsp)
    rdil = _ints("conv_general_dilated", "rhs_dilation", rhs_dilation, nsp)
    g = feature_group_count
    if not isinstance(g, int) or g < 1 or x.shape[1] % g or w.shape[0] % g or x.shape[1] // g != w.shape[1]:
        raise ShapeError(f"conv_general_dilated: input channels {x.shape[1]} with {g} groups need weight "
                         f"shape (O, {x.shape[1] // g if isinstance(g, int) and g else '?'}, ...) with O "
                         f"divisible by groups, got {w.shape}")
    if not isinstance(padding, tuple) or len(padding) != nsp:
        raise ShapeError(f"conv_general_dilated: padding needs one (low, high) pair per spatial dimension "
                         f"({nsp}), got {padding!r}")
    out = [x.shape[0], w.shape[0]]
    for d in range(nsp):
        lo, hi = _ints("conv_general_dilated", "each padding pair", padding[d], 2)
        if strides[d] < 1 or ldil[d] < 1 or rdil[d] < 1:
            raise ShapeError("conv_general_dilated: strides and dilations must be >= 1")
        n = (x.shape[2 + d] - 1) * ldil[d] + 1 if x.shape[2 + d] else 0
        k = (w.shape[2 + d] - 1) * rdil[d] + 1
        span = n + lo + hi - k
        if span < 0:
            raise ShapeError(f"conv_general_dilated: kernel {w.shape[2:]} larger than padded input "
                             f"{x.shape[2:]} in spatial dimension {d}")
        out.append(span // strides[d] + 1)
    return ShapedArray(tuple(out), out_dtype)


def _conv_result_dtype(d, preferred):
    if d.kind == "b":
        raise ShapeError("conv_general_dilated of booleans: convert to a numeric type first")
    if preferred is None:
        return d
    try:
        out = to_dtype(preferred)
    except (TypeError, ValueError, KeyError):
        raise ShapeError(f"conv_general_dilated: preferred_element_type must be a dtype, got {preferred!r}") from None
    if out.is_float != d.is_float or out.kind == "b":
        raise ShapeError(f"conv_general_dilated: preferred_element_type {out.name} does not suit "
                         f"{d.name} operands (integer operands need an integer result type, floats a float)")
    return out


conv_general_dilated = declare("conv_general_dilated", _conv)


def _dilated(n: int, d: int) -> int:
    return 0 if n == 0 else (n - 1) * d + 1


def _no_integer_derivative(x, w, kind: str) -> None:
    if not (is_float(x) and is_float(w)):
        raise TypeError(f"conv_general_dilated: no {kind} for integer operands ({aval(x).dtype.name} x "
                        f"{aval(w).dtype.name}); differentiate the float program (quantize after AD)")


def _conv_jvp(primals, tangents, **params):
    (x, w), (tx, tw) = primals, tangents
    _no_integer_derivative(x, w, "JVP")
    out = conv_general_dilated.bind(x, w, **params)
    return out, add_all([conv_general_dilated.bind(tx, w, **params) if tx is not None else None,
                         conv_general_dilated.bind(x, tw, **params) if tw is not None else None])


def _conv_vjp(cts, primals, outs, *, window_strides, padding, lhs_dilation, rhs_dilation,
              feature_group_count, preferred_element_type=None):
    """Both cotangents are convolutions again (as in XLA): the input's uses the flipped kernel with
    strides and input dilation swapped; the kernel's correlates the input with the cotangent."""
    (x, w), ct = primals, cts[0]
    _no_integer_derivative(x, w, "VJP")
    ct = cnp.astype(ct, aval(x).dtype)
    g = feature_group_count
    n, c = aval(x).shape[:2]
    o = aval(w).shape[0]
    in_sp, k_sp, out_sp = aval(x).shape[2:], aval(w).shape[2:], aval(ct).shape[2:]
    nsp = len(in_sp)
    spatial = tuple(range(2, 2 + nsp))
    lhs_dil = [_dilated(a, d) for a, d in zip(in_sp, lhs_dilation)]
    rhs_dil = [_dilated(a, d) for a, d in zip(k_sp, rhs_dilation)]
    out_dil = [_dilated(a, d) for a, d in zip(out_sp, window_strides)]

    # d x: kernel (O, C/g, k) -> (C, O/g, k), flipped
    wt = cnp.reshape(w, (g, o // g, c // g) + k_sp)
    wt = cnp.reshape(cnp.transpose(wt, (0, 2, 1) + tuple(range(3, 3 + nsp))), (c, o // g) + k_sp)
    wt = cnp.flip(wt, spatial)
    before = [rd - lo - 1 for rd, (lo, _) in zip(rhs_dil, padding)]
    after = [ld + rd - 1 - od - b for ld, rd, od, b in zip(lhs_dil, rhs_dil, out_dil, before)]
    dx = conv_general_dilated.bind(ct, wt, window_strides=tuple(lhs_dilation),
                                   padding=tuple(zip(before, after)), lhs_dilation=tuple(window_strides),
                                   rhs_dilation=tuple(rhs_dilation), feature_group_count=g)

    # d w: input as (C/g, g*N, spatial) correlated with the cotangent as (O, N, out)
    xt = cnp.reshape(x, (n, g, c // g) + in_sp)
    xt = cnp.reshape(cnp.transpose(xt, (2, 1, 0) + tuple(range(3, 3 + nsp))), (c // g, g * n) + in_sp)
    ctt = cnp.transpose(ct, (1, 0) + spatial)
    hi = [od - ld + rd - lo - 1 for od, ld, rd, (lo, _) in zip(out_dil, lhs_dil, rhs_dil, padding)]
    dw = conv_general_dilated.bind(xt, ctt, window_strides=tuple(rhs_dilation),
                                   padding=tuple((lo, h) for (lo, _), h in zip(padding, hi)),
                                   lhs_dilation=tuple(lhs_dilation), rhs_dilation=tuple(window_strides),
                                   feature_group_count=g)
    dw = cnp.transpose(dw, (1, 0) + spatial)
    return [dx if is_float(x) else None, dw if is_float(w) else None]


conv_general_dilated.jvp_rule, conv_general_dilated.vjp_rule = _conv_jvp, _conv_vjp


# ---- batching ---------------------------------------------------------------------------------

def _dot_batch(vals, dims, size, *, dimension_numbers, preferred_element_type=None):
    """Both batched: one more batch dimension. One batched: its batch axis is a free dimension."""
    (x, y), (dx, dy) = vals, dims
    (ca, cb), (ba, bb) = dimension_numbers
    extra = {} if preferred_element_type is None else {"preferred_element_type": preferred_element_type}
    x, y = move_to_front(x, dx), move_to_front(y, dy)
    if dx is not None and dy is not None:
        dn = ((shift(ca), shift(cb)), ((0,) + shift(ba), (0,) + shift(bb)))
        return dot_general.bind(x, y, dimension_numbers=dn, **extra), 0
    if dx is not None:
        dn = ((shift(ca), cb), (shift(ba), bb))
        return dot_general.bind(x, y, dimension_numbers=dn, **extra), len(ba)
    dn = ((ca, shift(cb)), (ba, shift(bb)))
    free_x = len(aval(x).shape) - len(ca) - len(ba)
    return dot_general.bind(x, y, dimension_numbers=dn, **extra), len(ba) + free_x


def _conv_batch(vals, dims, size, **params):
    """A batched input folds into the convolution's own batch dimension N."""
    (x, w), (dx, dw) = vals, dims
    if dw is not None:
        raise Decline
    x = move_to_front(x, dx)
    shape = aval(x).shape
    out = conv_general_dilated.bind(cnp.reshape(x, (size * shape[1],) + shape[2:]), w, **params)
    return cnp.reshape(out, (size, shape[1]) + aval(out).shape[1:]), 0


dot_general.batch_rule = _dot_batch
conv_general_dilated.batch_rule = _conv_batch
