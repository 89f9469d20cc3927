"""compiler.numpy (cnp): numpy's names and semantics, built only from primitives.

Works on tracers (recording into the current trace) and on plain arrays (evaluating eagerly with
the numpy interpreter). Broadcasting and dtype promotion (numpy's rules, Python scalars weakly
typed) are resolved here, so the primitives below only ever see operands of one dtype.
Operators, methods, ``np.*`` functions and ufuncs on tracers are attached at the end of this module.
"""
from __future__ import annotations

import builtins
from typing import Any

import numpy as np

from .ir.core import (DEFAULT_FLOAT, DEFAULT_INT, DType, ShapedArray, bool_, dtype as to_dtype, i32,
                      promote, u32)
from .primitives import elementwise as _e, linalg as _l, reductions as _r, structural as _s
from .tracing import Tracer, aval_of, shape_error

ndarray = np.ndarray
float64, float32, float16, int64, int32, int8, uint8 = (np.float64, np.float32, np.float16, np.int64,
                                                        np.int32, np.int8, np.uint8)
bool_type = np.bool_
pi, e, inf, nan, newaxis = np.pi, np.e, np.inf, np.nan, None


# ----------------------------------------------------------------------------------------------
# Conversion, promotion, broadcasting
# ----------------------------------------------------------------------------------------------

def _is_python_scalar(x) -> bool:
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def asarray(x: Any, dtype=None):
    """A tracer, or a numpy array of a supported dtype (lists and scalars are converted)."""
    if isinstance(x, Tracer):
        return x if dtype is None else astype(x, dtype)
    if _is_python_scalar(x) and dtype is None:
        aval = aval_of(x)
        return np.asarray(x, aval.dtype.np)
    if isinstance(x, (list, tuple)) and builtins.any(isinstance(v, Tracer) for v in _flat_items(x)):
        return stack([asarray(v) for v in x])
    arr = np.asarray(x) if dtype is None else np.asarray(x, dtype=to_dtype(dtype).np)
    if arr.dtype == np.float64 and not isinstance(x, (np.ndarray, np.generic)) and dtype is None:
        arr = arr.astype(DEFAULT_FLOAT.np)          # nested Python floats: default float, as in JAX
    elif arr.dtype == np.int64 and not isinstance(x, (np.ndarray, np.generic)) and dtype is None:
        arr = arr.astype(DEFAULT_INT.np)
    to_dtype(arr.dtype)                             # a clear error for unsupported dtypes
    return arr


array = asarray


def _flat_items(xs):
    for v in xs:
        if isinstance(v, (list, tuple)):
            yield from _flat_items(v)
        else:
            yield v


def _operand(x):
    """Python scalars stay scalars (weakly typed); anything else becomes an array or tracer."""
    return x if _is_python_scalar(x) else asarray(x)


def _result_aval(*xs) -> ShapedArray:
    avals = [aval_of(_operand(x)) for x in xs]
    out = avals[0]
    for a in avals[1:]:
        out = ShapedArray((), *promote(out, a))
    return out


def result_type(*xs) -> DType:
    return _result_aval(*xs).dtype


_PYTHON_TYPE_OF_DEFAULT = {DEFAULT_FLOAT: float, DEFAULT_INT: int, bool_: bool}


def _cast(x, d: DType, weak: bool = False):
    """x as dtype d. Python scalars become literals: weakly typed ones when the result is weak."""
    if _is_python_scalar(x):
        if weak and d in _PYTHON_TYPE_OF_DEFAULT:
            return _PYTHON_TYPE_OF_DEFAULT[d](x)
        return np.asarray(x, d.np)[()]
    if aval_of(x).dtype == d:
        return x
    return _e.convert_element_type.bind(x, new_dtype=d)


def astype(x, dtype, copy=True, device=None):
    d = to_dtype(dtype)
    x = _operand(x)
    if _is_python_scalar(x):
        return np.asarray(x, d.np)
    return x if aval_of(x).dtype == d and not aval_of(x).weak_type else _e.convert_element_type.bind(
        x, new_dtype=d)


def _promote(*xs, to_float: bool = False, to_bool: bool = False):
    xs = [_operand(x) for x in xs]
    out = _result_aval(*xs)
    d, weak = (bool_, False) if to_bool else (out.dtype, out.weak_type)
    if to_float and not d.is_float:
        d = DEFAULT_FLOAT
    return [_cast(x, d, weak) for x in xs]


def _shape(x) -> tuple[int, ...]:
    return () if _is_python_scalar(x) else aval_of(x).shape


def broadcast_shapes(*shapes) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise shape_error(f"shapes {' and '.join(map(str, shapes))} cannot be broadcast together") from None


def broadcast_to(x, shape):
    x = _operand(x)
    shape = tuple(int(s) for s in shape)
    xs = _shape(x)
    if xs == shape:
        return x
    if len(xs) > len(shape) or broadcast_shapes(xs, shape) != shape:
        raise shape_error(f"cannot broadcast shape {xs} to {shape}")
    if _is_python_scalar(x):
        x = asarray(x)
    return _s.broadcast_in_dim.bind(x, shape=shape, broadcast_dimensions=tuple(
        range(len(shape) - len(xs), len(shape))))


def _broadcast_operands(*xs):
    """numpy broadcasting; rank-0 operands stay scalar (binary primitives take them as they are)."""
    shape = broadcast_shapes(*[_shape(x) for x in xs])
    return [x if _shape(x) in ((), shape) else broadcast_to(x, shape) for x in xs]


def _same_type_operands(xs):
    """The common case without the general promotion and broadcasting machinery (a quarter of
    tracing time): tracers of one strongly typed float type, and Python numbers, which become
    literals of that type exactly as _promote would make them (to_float changes nothing for them).
    None for anything else."""
    aval = None
    for x in xs:
        if type(x) is Tracer:
            a = x.ir_var.aval
            if aval is None:
                aval = a
            elif a is not aval and a != aval:
                return None
    if aval is None or aval.weak_type or not aval.dtype.is_float:
        return None
    out = []
    for x in xs:
        if type(x) is Tracer:
            out.append(x)
        elif type(x) is float or type(x) is int:
            out.append(np.asarray(x, aval.dtype.np)[()])
        else:
            return None
    return out


def _elementwise(prim, *xs, to_float: bool = False, to_bool: bool = False):
    fast = None if to_bool else _same_type_operands(xs)
    if fast is not None:
        return prim.bind(*fast)
    xs = _broadcast_operands(*_promote(*xs, to_float=to_float, to_bool=to_bool))
    if builtins.all(_is_python_scalar(x) or isinstance(x, np.generic) for x in xs):
        xs = [np.asarray(x) for x in xs]
    return prim.bind(*xs)


def _unary(prim, to_float: bool = False):
    def fn(x):
        if type(x) is Tracer and x.ir_var.aval.dtype.is_float:      # the common case
            return prim.bind(x)
        x = _operand(x)
        if to_float and not aval_of(x).dtype.is_float:
            x = astype(x, DEFAULT_FLOAT)
        elif _is_python_scalar(x):
            x = asarray(x)
        return prim.bind(x)
    fn.__name__ = prim.name
    return fn


# ----------------------------------------------------------------------------------------------
# Elementwise math
# ----------------------------------------------------------------------------------------------
exp, log, log1p, expm1 = (_unary(p, True) for p in (_e.exp, _e.log, _e.log1p, _e.expm1))
sqrt, sin, cos, tanh = (_unary(p, True) for p in (_e.sqrt, _e.sin, _e.cos, _e.tanh))
floor, ceil, isfinite = (_unary(p, True) for p in (_e.floor, _e.ceil, _e.is_finite))
negative, abs, sign = (_unary(p) for p in (_e.neg, _e.abs_, _e.sign))
absolute = abs
rint = _unary(_e.round_, True)


def round(x, decimals: int = 0):
    if decimals == 0:
        return rint(x)
    scale = 10.0 ** decimals
    return rint(multiply(x, scale)) / scale


around = round


def positive(x):
    return _operand(x)


def tan(x):
    return divide(sin(x), cos(x))


def square(x):
    return power(x, 2)


def reciprocal(x):
    return divide(1, x) if aval_of(_operand(x)).dtype.is_float else floor_divide(1, x)


def _is_bool_op(x, y) -> bool:
    return result_type(x, y) == bool_


def add(x, y):
    if _is_bool_op(x, y):                     # numpy: + of booleans is `or`
        return logical_or(x, y)
    return _elementwise(_e.add, x, y)


def subtract(x, y):
    return _elementwise(_e.sub, x, y)


def multiply(x, y):
    if _is_bool_op(x, y):                     # numpy: * of booleans is `and`
        return logical_and(x, y)
    return _elementwise(_e.mul, x, y)


def divide(x, y):
    return _elementwise(_e.div, x, y, to_float=True)


true_divide = divide


def _float_mod(x, y):
    """numpy's float remainder (npy_divmod): C fmod moved to the sign of the divisor; a zero
    remainder takes the divisor's sign. Returns (x, y, fmod, fixed, remainder) for floor_divide."""
    x, y = _promote(x, y)
    d = result_type(x, y)
    r = _elementwise(_e.rem, x, y)
    fix = logical_and(not_equal(r, 0), not_equal(less(y, 0), less(r, 0)))
    m = where(fix, add(r, y), r)
    m = where(equal(m, 0), where(less(y, 0), _cast(-0.0, d), _cast(0.0, d)), m)
    return x, y, r, fix, m


def floor_divide(x, y):
    """numpy's //. Integers: floor division, x // 0 == 0. Floats: numpy's exact algorithm
    ((x - fmod(x, y)) / y, corrected), not floor(x / y): 1.0 // 0.1 == 9.0 as in numpy."""
    if not result_type(x, y).is_float:
        if _is_bool_op(x, y):
            x, y = astype(x, i32), astype(y, i32)      # numpy: bool // bool gives int8; ours i32
        return _elementwise(_e.div, x, y)
    x, y, r, fix, _ = _float_mod(x, y)
    d = result_type(x, y)
    div = divide(subtract(x, r), y)
    div = where(fix, subtract(div, _cast(1, d)), div)
    q = floor(div)
    q = where(greater(subtract(div, q), _cast(0.5, d)), add(q, _cast(1, d)), q)
    q = where(equal(div, 0), multiply(divide(x, y), _cast(0, d)), q)    # a signed zero, as numpy
    return where(equal(y, 0), divide(x, y), q)


def remainder(x, y):
    """numpy's %: integers take the sign of the divisor (x % 0 == 0); floats as numpy's npy_divmod."""
    if not result_type(x, y).is_float:
        if _is_bool_op(x, y):
            x, y = astype(x, i32), astype(y, i32)
        return _elementwise(_e.rem, x, y)
    return _float_mod(x, y)[4]


mod = remainder


def divmod(x, y):
    return floor_divide(x, y), remainder(x, y)


def fmod(x, y):
    return _elementwise(_e.rem, x, y)


def power(x, y):
    if isinstance(y, (int, np.integer)) and not isinstance(y, bool):
        x = _operand(x)
        if _is_python_scalar(x):
            x = asarray(x)
        if aval_of(x).dtype.is_int and y < 0:
            raise ValueError("Integers to negative integer powers are not allowed.")
        return _e.integer_pow.bind(x, y=int(y))
    if not result_type(x, y).is_float:
        return _integer_power(x, y)
    return _elementwise(_e.pow_, x, y)


def _integer_power(x, y):
    """Integer ** integer arrays by repeated squaring over the exponent's bits (wrapping like numpy).
    numpy raises for negative exponents; here they give the truncated 1 / x**-y (0 unless |x| == 1)."""
    if _is_bool_op(x, y):
        x, y = astype(x, i32), astype(y, i32)
    x, y = _broadcast_operands(*_promote(x, y))
    d = result_type(x, y)
    shape = broadcast_shapes(_shape(x), _shape(y))
    one = _cast(1, d)
    negative_exp = less(y, 0) if d.kind != "u" else None
    e = where(negative_exp, negative(y), y) if negative_exp is not None else y
    result, base = full(shape, 1, d), x
    for bit in range(8 * d.itemsize):
        odd = not_equal(bitwise_and(e, one), _cast(0, d))
        result = where(odd, multiply(result, base), result)
        if bit < 8 * d.itemsize - 1:
            base = multiply(base, base)
            e = floor_divide(e, _cast(2, d))
    if negative_exp is not None:
        unit = logical_or(equal(x, one), equal(x, _cast(-1, d)))
        result = where(logical_and(negative_exp, logical_not(unit)), _cast(0, d), result)
    return result


def maximum(x, y):
    if _is_bool_op(x, y):
        return logical_or(x, y)
    return _elementwise(_e.max_, x, y)


def minimum(x, y):
    if _is_bool_op(x, y):
        return logical_and(x, y)
    return _elementwise(_e.min_, x, y)


def equal(x, y):
    return _elementwise(_e.eq, x, y)


def not_equal(x, y):
    return _elementwise(_e.ne, x, y)


def _ordered(prim, x, y):
    if _is_bool_op(x, y):                     # False < True, as numpy orders booleans
        x, y = astype(x, np.uint8), astype(y, np.uint8)
    return _elementwise(prim, x, y)


def less(x, y):
    return _ordered(_e.lt, x, y)


def less_equal(x, y):
    return _ordered(_e.le, x, y)


def greater(x, y):
    return _ordered(_e.gt, x, y)


def greater_equal(x, y):
    return _ordered(_e.ge, x, y)


def logical_and(x, y):
    return _elementwise(_e.and_, x, y, to_bool=True)


def logical_or(x, y):
    return _elementwise(_e.or_, x, y, to_bool=True)


def logical_xor(x, y):
    return _elementwise(_e.xor, x, y, to_bool=True)


def logical_not(x):
    return _e.not_.bind(astype(x, bool_))


def bitwise_and(x, y):
    return _elementwise(_e.and_, x, y)


def bitwise_or(x, y):
    return _elementwise(_e.or_, x, y)


def bitwise_xor(x, y):
    return _elementwise(_e.xor, x, y)


def invert(x):
    return _unary(_e.not_)(x)


bitwise_not = invert


def left_shift(x, y):
    return _elementwise(_e.shift_left, x, y)


def right_shift(x, y):
    """numpy's >>: logical for unsigned integers, arithmetic for signed (~(~x >> y) for negative x),
    so counts outside [0, bits) give 0 or -1 as in numpy."""
    if result_type(x, y).kind == "u":
        return _elementwise(_e.shift_right_logical, x, y)
    x, y = _promote(x, y)
    return where(less(x, 0), invert(_elementwise(_e.shift_right_logical, invert(x), y)),
                 _elementwise(_e.shift_right_logical, x, y))


def isnan(x):
    return not_equal(x, x)


def isinf(x):
    return logical_and(logical_not(isfinite(x)), logical_not(isnan(x)))


def where(condition, x=None, y=None):
    """Elementwise select (the three-argument form; the one-argument form has a data-dependent shape)."""
    if x is None or y is None:
        raise TypeError("where(condition) with one argument has a data-dependent shape; pass x and y")
    x, y = _promote(x, y)
    cond = astype(condition, bool_) if aval_of(_operand(condition)).dtype != bool_ else _operand(condition)
    shape = broadcast_shapes(_shape(cond), _shape(x), _shape(y))
    x, y = (broadcast_to(asarray(v) if not isinstance(v, Tracer) else v, shape) for v in (x, y))
    cond = cond if _shape(cond) == () else broadcast_to(cond, shape)
    return _e.select_n.bind(cond, y, x)


def clip(x, a_min=None, a_max=None, *, min=None, max=None):
    a_min = min if a_min is None else a_min          # numpy >= 2.1 also spells them min= / max=
    a_max = max if a_max is None else a_max
    # selects rather than max/min: at a bound the gradient passes through, as torch.clamp's does;
    # a NaN bound gives NaN, as np.clip's does
    def outside(beyond, bound):
        if not isinstance(bound, Tracer) and not np.isnan(np.asarray(bound, dtype=float)).any():
            return beyond                              # a known bound without NaN: no NaN test
        return logical_or(beyond, isnan(bound))

    if a_min is not None:
        x = where(outside(less(x, a_min), a_min), a_min, x)
    if a_max is not None:
        x = where(outside(greater(x, a_max), a_max), a_max, x)
    return x


def heaviside(x1, x2):
    """0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0, NaN where x1 is NaN."""
    zero = zeros_like(x1)
    out = where(less(x1, 0), zero, where(greater(x1, 0), add(zero, 1), add(zero, x2)))
    return where(isnan(x1), add(x1, zero), out) if aval_of(_operand(x1)).dtype.is_float else out


def logaddexp(x, y):
    m = maximum(x, y)
    return add(m, log1p(exp(negative(abs(subtract(x, y))))))


# ----------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------

def _norm_axes(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim) if hasattr(np, "exceptions") else ValueError(
                f"axis {a} is out of bounds for array of dimension {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate value in 'axis': {axis}")
    return tuple(out)


def _keep(x, axes, out):
    shape = [1 if i in axes else s for i, s in enumerate(_shape(x))]
    return reshape(out, shape)


def _reduce(prim, x, axis, keepdims, dtype=None):
    x = asarray(x)
    if dtype is not None:
        x = astype(x, dtype)
    axes = _norm_axes(axis, len(_shape(x)))
    out = prim.bind(x, axes=axes)
    return _keep(x, axes, out) if keepdims else out


def _sum_dtype(d: DType) -> DType:
    if d == bool_ or (d.is_int and d.itemsize < 4):
        return u32 if d.kind == "u" else i32
    return d


def sum(a, axis=None, dtype=None, keepdims=False):
    a = asarray(a)
    return _reduce(_r.reduce_sum, a, axis, keepdims, dtype or _sum_dtype(aval_of(a).dtype))


def prod(a, axis=None, dtype=None, keepdims=False):
    a = asarray(a)
    return _reduce(_r.reduce_prod, a, axis, keepdims, dtype or _sum_dtype(aval_of(a).dtype))


def max(a, axis=None, keepdims=False):
    return _reduce(_r.reduce_max, a, axis, keepdims)


def min(a, axis=None, keepdims=False):
    return _reduce(_r.reduce_min, a, axis, keepdims)


amax, amin = max, min


def any(a, axis=None, keepdims=False):
    return _reduce(_r.reduce_max, astype(a, bool_), axis, keepdims)


def all(a, axis=None, keepdims=False):
    return _reduce(_r.reduce_min, astype(a, bool_), axis, keepdims)


def mean(a, axis=None, dtype=None, keepdims=False):
    a = asarray(a)
    if not aval_of(a).dtype.is_float:
        a = astype(a, dtype or DEFAULT_FLOAT)
    axes = _norm_axes(axis, len(_shape(a)))
    count = int(np.prod([_shape(a)[i] for i in axes], dtype=np.int64))
    d = aval_of(a).dtype if dtype is None else to_dtype(dtype)
    if d.is_float and d.itemsize < 4:          # f16/bf16: accumulate in f32 as numpy (and JAX) do
        return astype(divide(sum(a, axes, np.float32, keepdims), count), d)
    return divide(sum(a, axes, dtype, keepdims), count)


def var(a, axis=None, ddof: int = 0, keepdims=False):
    a = asarray(a)
    axes = _norm_axes(axis, len(_shape(a)))
    centered = subtract(a, mean(a, axes, keepdims=True))
    count = int(np.prod([_shape(a)[i] for i in axes], dtype=np.int64))
    return divide(sum(multiply(centered, centered), axes, keepdims=keepdims), count - ddof)


def std(a, axis=None, ddof: int = 0, keepdims=False):
    return sqrt(var(a, axis, ddof, keepdims))


def argmax(a, axis=None, keepdims=False):
    a = asarray(a)
    if axis is None:
        out = argmax(ravel(a), 0)
        return reshape(out, (1,) * len(_shape(a))) if keepdims else out
    (ax,) = _norm_axes(axis, len(_shape(a)))
    out = _r.argmax.bind(a, axes=(ax,), index_dtype=DEFAULT_INT)
    return _keep(a, (ax,), out) if keepdims else out


def argmin(a, axis=None, keepdims=False):
    a = asarray(a)
    d = aval_of(a).dtype
    # an order-reversing map without overflow: not for bools, ~x (== -x - 1, or max - x) for integers
    flipped = logical_not(a) if d == bool_ else invert(a) if d.is_int else negative(a)
    return argmax(flipped, axis, keepdims)


def cumsum(a, axis=None, dtype=None):
    a = asarray(a)
    if axis is None:
        a, axis = ravel(a), 0
    a = astype(a, dtype or _sum_dtype(aval_of(a).dtype))
    (ax,) = _norm_axes(axis, len(_shape(a)))
    return _r.cumsum.bind(a, axis=ax, reverse=False)


# ----------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------

def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    if order != "C":
        raise NotImplementedError("only C order reshapes are supported")
    newshape = shape if shape is not None else newshape        # numpy 2 names it shape=
    if newshape is None:
        raise TypeError("reshape() needs a shape")
    a = asarray(a)
    newshape = (newshape,) if isinstance(newshape, (int, np.integer)) else tuple(int(s) for s in newshape)
    size = aval_of(a).size
    if newshape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension (-1)")
    if -1 in newshape:
        known = int(np.prod([s for s in newshape if s != -1], dtype=np.int64))
        if known == 0 or size % known:
            raise shape_error(f"cannot reshape array of size {size} into shape {newshape}")
        newshape = tuple(size // known if s == -1 else s for s in newshape)
    if newshape == _shape(a):
        return a
    return _s.reshape.bind(a, new_sizes=newshape)


def ravel(a):
    return reshape(a, (-1,))


def transpose(a, axes=None):
    a = asarray(a)
    nd = len(_shape(a))
    perm = tuple(reversed(range(nd))) if axes is None else tuple(int(x) % nd for x in axes)
    if perm == tuple(range(nd)):
        return a
    return _s.transpose.bind(a, permutation=perm)


def swapaxes(a, axis1, axis2):
    a = asarray(a)
    nd = len(_shape(a))
    perm = list(range(nd))
    i, j = _norm_axes(axis1, nd)[0], _norm_axes(axis2, nd)[0]
    perm[i], perm[j] = perm[j], perm[i]
    return transpose(a, perm)


def moveaxis(a, source, destination):
    a = asarray(a)
    nd = len(_shape(a))
    src = _norm_axes(source, nd)
    dst = _norm_axes(destination, nd) if not isinstance(destination, (int, np.integer)) else \
        _norm_axes(destination, nd)
    if len(src) != len(dst):
        raise ValueError("source and destination must have the same number of axes")
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


def expand_dims(a, axis):
    a = asarray(a)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    nd = len(_shape(a)) + len(axes)
    return _s.expand_dims.bind(a, dimensions=tuple(sorted(_norm_axes(axes, nd))))


def squeeze(a, axis=None):
    a = asarray(a)
    shape = _shape(a)
    axes = tuple(i for i, s in enumerate(shape) if s == 1) if axis is None else _norm_axes(axis, len(shape))
    if not axes:
        return a
    return _s.squeeze.bind(a, dimensions=axes)


def flip(a, axis=None):
    a = asarray(a)
    return _s.rev.bind(a, dimensions=_norm_axes(axis, len(_shape(a))))


def concatenate(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    _no_out(out, "concatenate")
    arrays = [asarray(x) if dtype is None else astype(x, dtype) for x in arrays]
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    if axis is None:
        arrays, axis = [ravel(x) for x in arrays], 0
    arrays = _promote(*arrays)
    (ax,) = _norm_axes(axis, len(_shape(arrays[0])))
    if len(arrays) == 1:
        return arrays[0]
    return _s.concatenate.bind(*arrays, dimension=ax)


def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    _no_out(out, "stack")
    arrays = [asarray(x) if dtype is None else astype(x, dtype) for x in arrays]
    if not arrays:
        raise ValueError("need at least one array to stack")
    shapes = {_shape(x) for x in arrays}
    if len(shapes) != 1:
        raise shape_error(f"all input arrays must have the same shape, got {sorted(shapes)}")
    (ax,) = _norm_axes(axis, len(_shape(arrays[0])) + 1)
    return concatenate([expand_dims(x, ax) for x in arrays], ax)


def pad(a, pad_width, constant_values=0):
    a = asarray(a)
    nd = len(_shape(a))
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (nd, 2))
    return _s.pad.bind(a, _cast(constant_values, aval_of(a).dtype) if _is_python_scalar(constant_values)
                       else astype(constant_values, aval_of(a).dtype),
                       padding_config=tuple((int(lo), int(hi), 0) for lo, hi in widths))


def take(a, indices, axis=None):
    a = asarray(a)
    if axis is None:
        a, axis = ravel(a), 0
    (ax,) = _norm_axes(axis, len(_shape(a)))
    idx = _wrap_negative(asarray(indices), _shape(a)[ax])
    return _s.gather.bind(a, idx, axis=ax)


# ----------------------------------------------------------------------------------------------
# Linear algebra
# ----------------------------------------------------------------------------------------------

def _dot_general(a, b, contract, batch):
    if aval_of(a).dtype == bool_:             # numpy: a boolean matmul is an or of ands
        out = _l.dot_general.bind(astype(a, i32), astype(b, i32), dimension_numbers=(contract, batch))
        return not_equal(out, np.int32(0))
    return _l.dot_general.bind(a, b, dimension_numbers=(contract, batch))


def matmul(a, b):
    a, b = _promote(asarray(a), asarray(b))
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        raise shape_error("matmul: operands must be at least 1-d (use * for scalars)")
    if len(sa) == 1 and len(sb) == 1:
        return _dot_general(a, b, ((0,), (0,)), ((), ()))
    if len(sb) == 1:
        return _dot_general(a, b, ((len(sa) - 1,), (0,)), ((), ()))
    if len(sa) == 1 and len(sb) == 2:
        return _dot_general(a, b, ((0,), (0,)), ((), ()))
    if len(sa) == 1:
        return squeeze(matmul(expand_dims(a, 0), b), -2)
    if len(sa) == 2 and len(sb) == 2:
        if sa[1] != sb[0]:
            raise shape_error(f"matmul: contracting dimensions differ: {sa} @ {sb}")
        return _dot_general(a, b, ((1,), (0,)), ((), ()))
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    a = broadcast_to(a, batch + sa[-2:])
    b = broadcast_to(b, batch + sb[-2:])
    nb = len(batch)
    return _dot_general(a, b, ((nb + 1,), (nb,)), (tuple(range(nb)), tuple(range(nb))))


def dot(a, b):
    a, b = asarray(a), asarray(b)
    if not _shape(a) or not _shape(b):
        return multiply(a, b)
    if len(_shape(b)) <= 2:
        return matmul(a, b)
    a, b = _promote(a, b)
    return _dot_general(a, b, ((len(_shape(a)) - 1,), (len(_shape(b)) - 2,)), ((), ()))


def vdot(a, b):
    return dot(ravel(a), ravel(b))


def inner(a, b):
    a, b = _promote(asarray(a), asarray(b))
    return _dot_general(a, b, ((len(_shape(a)) - 1,), (len(_shape(b)) - 1,)), ((), ()))


def outer(a, b):
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def tensordot(a, b, axes=2):
    a, b = _promote(asarray(a), asarray(b))
    if isinstance(axes, int):
        ca = tuple(range(len(_shape(a)) - axes, len(_shape(a))))
        cb = tuple(range(axes))
    else:
        ca, cb = ((x,) if isinstance(x, int) else tuple(x) for x in axes)
        ca, cb = _norm_axes(ca, len(_shape(a))), _norm_axes(cb, len(_shape(b)))
    return _dot_general(a, b, (ca, cb), ((), ()))


def einsum(subscripts: str, *operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    """einsum with explicit or implicit output; operands are contracted pairwise, left to right."""
    _no_out(out, "einsum")
    if dtype is not None:
        operands = tuple(astype(o, dtype) for o in operands)
    subscripts = subscripts.replace(" ", "")
    if "..." in subscripts:
        raise NotImplementedError("einsum with '...' is not supported; spell out the axes")
    if "->" in subscripts:
        lhs, out = subscripts.split("->")
    else:
        lhs = subscripts
        letters = lhs.replace(",", "")
        out = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {len(terms)} terms in {subscripts!r} but {len(operands)} operands")
    ops = [asarray(o) for o in operands]
    for t, o in zip(terms, ops):
        if len(t) != len(_shape(o)):
            raise shape_error(f"einsum: term {t!r} has {len(t)} axes, operand has shape {_shape(o)}")
    ops = _promote(*ops)
    terms, ops = map(list, zip(*[_einsum_diagonal_free(t, o) for t, o in zip(terms, ops)]))
    term, acc = terms[0], ops[0]
    for i in range(1, len(ops)):
        rest = "".join(terms[i + 1:]) + out
        term, acc = _einsum_pair(term, acc, terms[i], ops[i], rest)
    # sum axes not in the output, then order them as requested
    drop = tuple(i for i, c in enumerate(term) if c not in out)
    if drop:
        acc = sum(acc, drop, dtype=aval_of(acc).dtype)
        term = "".join(c for c in term if c in out)
    return transpose(acc, [term.index(c) for c in out])


def _einsum_diagonal_free(term: str, x):
    """A letter repeated within one operand ('ii', 'iji') takes the diagonal: (term, x) without repeats."""
    while len(set(term)) != len(term):
        c = next(c for c in term if term.count(c) > 1)
        p, q = term.index(c), term.index(c, term.index(c) + 1)
        n = _shape(x)[p]
        if _shape(x)[q] != n:
            raise shape_error(f"einsum: index {c!r} has sizes {n} and {_shape(x)[q]} in term {term!r}")
        d = aval_of(x).dtype
        mask = np.eye(n, dtype=bool).reshape([n if k in (p, q) else 1 for k in range(len(term))])
        x = sum(where(mask, x, _cast(0, d)), axis=q, dtype=d)
        term = term[:q] + term[q + 1:]
    return term, x


def _einsum_pair(ta: str, a, tb: str, b, keep: str):
    """Contract two operands: shared letters needed later are batch dims, others are summed."""
    shared = [c for c in ta if c in tb]
    batch = [c for c in shared if c in keep]
    contract = [c for c in shared if c not in keep]
    for c in shared:
        if _shape(a)[ta.index(c)] != _shape(b)[tb.index(c)]:
            raise shape_error(f"einsum: index {c!r} has size {_shape(a)[ta.index(c)]} in one operand and "
                             f"{_shape(b)[tb.index(c)]} in another")
    out = _dot_general(a, b, (tuple(ta.index(c) for c in contract), tuple(tb.index(c) for c in contract)),
                       (tuple(ta.index(c) for c in batch), tuple(tb.index(c) for c in batch)))
    term = "".join(batch) + "".join(c for c in ta if c not in shared) + "".join(c for c in tb if c not in shared)
    return term, out


# ----------------------------------------------------------------------------------------------
# Creation
# ----------------------------------------------------------------------------------------------

def _shape_arg(shape) -> tuple[int, ...]:
    return (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)


def full(shape, fill_value, dtype=None):
    shape = _shape_arg(shape)
    d = to_dtype(dtype) if dtype is not None else aval_of(_operand(fill_value)).dtype
    value = astype(fill_value, d) if not _is_python_scalar(fill_value) else np.asarray(fill_value, d.np)
    return broadcast_to(value, shape) if shape != () else value


def zeros(shape, dtype=None):
    return full(shape, 0, dtype or DEFAULT_FLOAT)


def ones(shape, dtype=None):
    return full(shape, 1, dtype or DEFAULT_FLOAT)


def empty(shape, dtype=None):
    return zeros(shape, dtype)


def full_like(a, fill_value, dtype=None, shape=None):
    aval = aval_of(_operand(a))
    return full(aval.shape if shape is None else shape, fill_value, dtype or aval.dtype)


def zeros_like(a, dtype=None, shape=None):
    return full_like(a, 0, dtype, shape)


def ones_like(a, dtype=None, shape=None):
    return full_like(a, 1, dtype, shape)


def arange(start, stop=None, step=None, dtype=None):
    if stop is None:
        start, stop = 0, start
    step = 1 if step is None else step
    for v in (start, stop, step):
        if isinstance(v, Tracer):
            raise TypeError("arange needs concrete (Python) bounds: its length decides the shape")
    n = builtins.max(int(np.ceil((stop - start) / step)), 0)
    is_int = builtins.all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
    d = to_dtype(dtype) if dtype is not None else (DEFAULT_INT if is_int else DEFAULT_FLOAT)
    out = _s.iota.bind(dtype=d, shape=(n,), dimension=0)
    if step != 1:
        out = multiply(out, _cast(step, d))
    if start != 0:
        out = add(out, _cast(start, d))
    return out


def linspace(start, stop, num=50, endpoint=True, dtype=None):
    d = to_dtype(dtype) if dtype is not None else DEFAULT_FLOAT
    div = (num - 1) if endpoint else num
    step = (stop - start) / div if div > 0 else 0.0
    return add(multiply(arange(num, dtype=d), _cast(step, d)), _cast(start, d))


def eye(N, M=None, k=0, dtype=None):
    M = N if M is None else M
    d = to_dtype(dtype) if dtype is not None else DEFAULT_FLOAT
    rows = _s.iota.bind(dtype=i32, shape=(N, M), dimension=0)
    cols = _s.iota.bind(dtype=i32, shape=(N, M), dimension=1)
    return astype(equal(add(rows, k), cols), d)


def shape(a):
    return _shape(_operand(a))


def ndim(a):
    return len(_shape(_operand(a)))


def size(a):
    return int(np.prod(_shape(_operand(a)), dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# Indexing: x[ints, slices, None, ..., integer arrays, boolean masks]
# ----------------------------------------------------------------------------------------------

def _wrap_negative(idx, n: int):
    """numpy's negative indices count from the end. Known indices out of range raise IndexError;
    traced ones cannot be checked and are clamped into range (as in JAX), axis by axis."""
    if isinstance(idx, Tracer):
        if not aval_of(idx).dtype.is_int:
            raise IndexError(f"arrays used as indices must be of integer type, got {aval_of(idx).dtype}")
        idx = astype(idx, i32 if n < 2**31 else np.int64)
        idx = where(less(idx, 0), add(idx, n), idx)
        return clip(idx, 0, builtins.max(n - 1, 0))
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise IndexError(f"arrays used as indices must be of integer (or boolean) type, got {idx.dtype}")
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for axis with size {n}")
    return np.where(idx < 0, idx.astype(np.int64) + n, idx).astype(np.int32 if n < 2**31 else np.int64)


def _is_array_index(i) -> bool:
    return isinstance(i, np.ndarray) or (isinstance(i, Tracer) and aval_of(i).shape != ())


class _NewBoolAxis:
    """A boolean scalar index: a new axis of length 1, kept (True) or emptied (False), as numpy."""
    def __init__(self, keep: bool):
        self.keep = keep


def _normalize_index(x, index) -> tuple:
    """Lists become arrays, boolean scalars _NewBoolAxis; the Ellipsis is expanded and trailing
    dimensions are filled with full slices; known boolean masks become their nonzero() arrays.
    Returns (the index with one entry per dimension of x after inserting the new axes, the new axes'
    positions, and the position of an Ellipsis that stands for no dimension, else None)."""
    items = []
    for i in index:
        if isinstance(i, list):
            i = asarray(i) if i else np.zeros(0, np.int32)
        if isinstance(i, (bool, np.bool_)) or (isinstance(i, np.ndarray) and i.dtype == bool and i.ndim == 0):
            items.append(_NewBoolAxis(bool(i)))
        elif isinstance(i, np.ndarray) and i.ndim == 0 and i.dtype.kind in "iu":
            items.append(int(i))                 # numpy treats a 0-d integer array as an integer
        elif isinstance(i, Tracer) and aval_of(i).dtype == bool_:
            raise IndexError("boolean mask indexing with a traced mask gives a data-dependent shape; "
                             "use cnp.where(mask, x, 0) instead")
        else:
            items.append(i)
    if builtins.sum(1 for i in items if i is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    shape = _shape(x)
    nd = len(shape)

    def width(i):
        if i is None or i is Ellipsis or isinstance(i, _NewBoolAxis):
            return 0
        return i.ndim if isinstance(i, np.ndarray) and i.dtype == bool else 1

    consumed = builtins.sum(width(i) for i in items)
    if consumed > nd:
        raise IndexError(f"too many indices for array: array is {nd}-dimensional, but {consumed} were indexed")
    empty_ellipsis = None                        # an Ellipsis that stands for no dimension at all
    if builtins.any(i is Ellipsis for i in items):
        pos = next(k for k, i in enumerate(items) if i is Ellipsis)
        fill = [slice(None)] * (nd - consumed)
        if not fill:
            fill = [_EMPTY_ELLIPSIS]
        items = items[:pos] + fill + items[pos + 1:]
    else:
        items = items + [slice(None)] * (nd - consumed)
    entries, new_axes, dim = [], [], 0
    for i in items:
        if i is _EMPTY_ELLIPSIS:
            empty_ellipsis = len(entries)
            continue
        if i is None or isinstance(i, _NewBoolAxis):
            new_axes.append(len(entries))
            entries.append(slice(None) if i is None else np.zeros(1 if i.keep else 0, np.int32))
        elif isinstance(i, np.ndarray) and i.dtype == bool:
            if i.shape != shape[dim:dim + i.ndim]:
                for k, (a, b) in enumerate(zip(i.shape, shape[dim:dim + i.ndim])):
                    if a != b:
                        raise IndexError(f"boolean index did not match indexed array along axis {dim + k}; "
                                         f"size of axis is {b} but size of corresponding boolean axis is {a}")
            entries.extend(np.nonzero(i))
            dim += i.ndim
        else:
            entries.append(i)
            dim += 1
    return tuple(entries), new_axes, empty_ellipsis


_EMPTY_ELLIPSIS = object()


def getitem(x, index):
    x = asarray(x)
    index, new_axes, gap = _normalize_index(x, index if isinstance(index, tuple) else (index,))
    if new_axes:                                 # None and boolean scalars: insert the axes first
        x = _s.expand_dims.bind(x, dimensions=tuple(new_axes))
    nd = len(_shape(x))
    advanced = builtins.any(_is_array_index(i) for i in index)

    shape = _shape(x)
    starts, limits, strides, flips = [], [], [], []
    squeeze_axes, dyn, adv = [], {}, {}
    axis = 0
    for i in index:
        n = shape[axis]
        if isinstance(i, slice):
            lo, hi, st = i.indices(n)
            if st > 0:
                count = builtins.max(0, (hi - lo + st - 1) // st)
                starts.append(lo), limits.append(lo + builtins.max(count - 1, 0) * st + (1 if count else 0))
                strides.append(st)
            else:
                count = builtins.max(0, (lo - hi - st - 1) // (-st))
                last = lo + (count - 1) * st if count else 0
                starts.append(last), limits.append(lo + 1 if count else 0), strides.append(-st)
                flips.append(axis)
        elif isinstance(i, (int, np.integer)) and not advanced:
            if not -n <= int(i) < n:
                raise IndexError(f"index {int(i)} is out of bounds for axis {axis} with size {n}")
            k = int(i) % n
            starts.append(k), limits.append(k + 1), strides.append(1)
            squeeze_axes.append(axis)
        elif isinstance(i, Tracer) and aval_of(i).shape == () and not advanced:
            if not aval_of(i).dtype.is_int:
                raise IndexError(f"only integers can be used as indices, got a traced {aval_of(i).dtype}")
            starts.append(0), limits.append(n), strides.append(1)
            dyn[axis] = _wrap_negative(i, n)
            squeeze_axes.append(axis)
        elif isinstance(i, (Tracer, np.ndarray, int, np.integer)):     # advanced (with the ints beside it)
            if isinstance(i, (int, np.integer)) and not -n <= int(i) < n:     # checked even if unused
                raise IndexError(f"index {int(i)} is out of bounds for axis {axis} with size {n}")
            starts.append(0), limits.append(n), strides.append(1)
            adv[axis] = i
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and integer or boolean "
                             f"arrays are valid indices, got {type(i).__name__}")
        axis += 1

    out = x
    if (tuple(starts), tuple(limits), tuple(strides)) != ((0,) * nd, shape, (1,) * nd):
        out = _s.slice_.bind(out, start_indices=tuple(starts), limit_indices=tuple(limits),
                             strides=tuple(strides))
    if flips:
        out = _s.rev.bind(out, dimensions=tuple(flips))
    if dyn:
        sizes = tuple(1 if a in dyn else s for a, s in enumerate(_shape(out)))
        zero = np.int32(0)
        starts_dyn = [astype(dyn[a], i32) if a in dyn else zero for a in range(nd)]
        out = _s.dynamic_slice.bind(out, *starts_dyn, slice_sizes=sizes)
    if squeeze_axes:
        out = _s.squeeze.bind(out, dimensions=tuple(squeeze_axes))
    if adv:
        out = _advanced_index(out, adv, gap)
    return out


def _advanced_index(x, adv: dict, gap: int | None = None):
    """Integer-array indices on the axes in ``adv``: one gather over their flattened product. Their
    result dimensions replace them where they stand if they are adjacent, else go first (numpy's rule;
    an Ellipsis between them separates them even when it stands for no dimension, at ``gap``)."""
    shape = _shape(x)
    axes = sorted(adv)
    raw = [adv[a] if isinstance(adv[a], Tracer) else np.asarray(adv[a]) for a in axes]
    try:
        bshape = tuple(np.broadcast_shapes(*[_shape(i) for i in raw]))
    except ValueError:
        raise IndexError(f"shape mismatch: indexing arrays could not be broadcast together with shapes "
                         f"{' '.join(str(_shape(i)) for i in raw)}") from None
    if 0 in bshape:        # nothing is selected: numpy checks no bounds then, and neither do we
        raw = [np.zeros(bshape, np.int32) if isinstance(i, np.ndarray) else i for i in raw]
    idx = [_wrap_negative(i, shape[a]) for i, a in zip(raw, axes)]
    idx = [i if _shape(i) == bshape else np.broadcast_to(i, bshape) if isinstance(i, np.ndarray)
           else broadcast_to(i, bshape) for i in idx]
    strides = [int(np.prod([shape[b] for b in axes if b > a], dtype=np.int64)) for a in axes]
    if builtins.all(isinstance(i, np.ndarray) for i in idx):       # known indices: fold them now
        flat = builtins.sum(i.astype(np.int64) * st for i, st in zip(idx, strides)).astype(np.int32)
    else:
        flat = None
        for i, st in zip(idx, strides):
            term = astype(i, i32) if st == 1 else multiply(astype(i, i32), st)
            flat = term if flat is None else add(flat, term)
    adjacent = axes == list(range(axes[0], axes[0] + len(axes))) and not (
        gap is not None and axes[0] < gap <= axes[-1])
    p = axes[0] if adjacent else 0
    rest = [a for a in range(len(shape)) if a not in axes]
    order = rest[:p] + axes + rest[p:]
    moved = transpose(x, order)
    merged = reshape(moved, tuple(shape[a] for a in rest[:p]) + (int(np.prod([shape[a] for a in axes],
                                                                               dtype=np.int64)),)
                     + tuple(shape[a] for a in rest[p:]))
    return _s.gather.bind(merged, flat, axis=p)


# ----------------------------------------------------------------------------------------------
# Tracer methods, operators, and numpy dispatch
# ----------------------------------------------------------------------------------------------

def _swap(fn):
    return lambda self, other: fn(other, self)


_OPERATORS = {
    "__add__": add, "__radd__": _swap(add), "__sub__": subtract, "__rsub__": _swap(subtract),
    "__mul__": multiply, "__rmul__": _swap(multiply), "__truediv__": divide,
    "__rtruediv__": _swap(divide), "__floordiv__": floor_divide, "__rfloordiv__": _swap(floor_divide),
    "__mod__": remainder, "__rmod__": _swap(remainder), "__divmod__": divmod,
    "__rdivmod__": _swap(divmod), "__pow__": power, "__rpow__": _swap(power),
    "__matmul__": matmul, "__rmatmul__": _swap(matmul), "__and__": bitwise_and,
    "__rand__": _swap(bitwise_and), "__or__": bitwise_or, "__ror__": _swap(bitwise_or),
    "__xor__": bitwise_xor, "__rxor__": _swap(bitwise_xor), "__lt__": less, "__le__": less_equal,
    "__gt__": greater, "__ge__": greater_equal, "__eq__": equal, "__ne__": not_equal,
    "__neg__": negative, "__pos__": positive, "__abs__": abs, "__invert__": invert,
    "__lshift__": left_shift, "__rlshift__": _swap(left_shift), "__rshift__": right_shift,
    "__rrshift__": _swap(right_shift), "__getitem__": getitem,
}
_METHODS = {
    "sum": sum, "mean": mean, "max": max, "min": min, "prod": prod, "argmax": argmax,
    "argmin": argmin, "any": any, "all": all, "var": var, "std": std, "cumsum": cumsum,
    "transpose": lambda self, *axes: transpose(self, axes[0] if len(axes) == 1 and not isinstance(
        axes[0], int) else (axes or None)),
    "reshape": lambda self, *shape, order="C": reshape(self, shape[0] if len(shape) == 1 and not isinstance(
        shape[0], int) else shape, order),
    "astype": astype, "squeeze": squeeze, "ravel": ravel, "flatten": ravel, "swapaxes": swapaxes,
    "dot": dot, "clip": clip, "round": round, "take": take,
}
for _name, _fn in _OPERATORS.items():
    setattr(Tracer, _name, _fn)
for _name, _fn in _METHODS.items():
    setattr(Tracer, _name, _fn)
Tracer.T = property(lambda self: transpose(self))
Tracer.mT = property(lambda self: swapaxes(self, -1, -2))

_UFUNCS = {
    "add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "true_divide": divide,
    "floor_divide": floor_divide, "remainder": remainder, "fmod": fmod, "power": power,
    "maximum": maximum, "minimum": minimum, "equal": equal, "not_equal": not_equal, "less": less,
    "less_equal": less_equal, "greater": greater, "greater_equal": greater_equal,
    "logical_and": logical_and, "logical_or": logical_or, "logical_xor": logical_xor,
    "logical_not": logical_not, "bitwise_and": bitwise_and, "bitwise_or": bitwise_or,
    "bitwise_xor": bitwise_xor, "invert": invert, "negative": negative, "positive": positive,
    "absolute": abs, "sign": sign, "exp": exp, "log": log, "log1p": log1p, "expm1": expm1,
    "sqrt": sqrt, "square": square, "reciprocal": reciprocal, "sin": sin, "cos": cos, "tan": tan,
    "tanh": tanh, "floor": floor, "ceil": ceil, "rint": rint, "isfinite": isfinite, "isnan": isnan,
    "isinf": isinf, "heaviside": heaviside, "matmul": matmul, "logaddexp": logaddexp, "divmod": divmod,
    "left_shift": left_shift, "right_shift": right_shift,
}
_REDUCE_UFUNCS = {"add": sum, "multiply": prod, "maximum": max, "minimum": min,
                  "logical_and": all, "logical_or": any}


def _no_out(out, name: str) -> None:
    if out is not None:
        raise TypeError(f"np.{name}(..., out=...) cannot write into a traced array (arrays are immutable "
                        f"while tracing); use the returned value")


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    out = kwargs.pop("out", None)
    if isinstance(out, tuple) and builtins.all(o is None for o in out):
        out = None
    _no_out(out, ufunc.__name__)
    if method == "__call__" and ufunc.__name__ in _UFUNCS:
        dtype = kwargs.pop("dtype", None)
        if kwargs.pop("where", True) is not True or kwargs.pop("casting", "same_kind") not in (
                "same_kind", "unsafe") or kwargs.pop("subok", True) is not True or kwargs.pop(
                "order", "K") not in ("K", "C", "A") or kwargs:
            raise TypeError(f"np.{ufunc.__name__}: arguments other than dtype= are not supported on "
                            f"traced arrays")
        if dtype is not None and to_dtype(dtype) != bool_:
            inputs = tuple(astype(i, dtype) for i in inputs)       # compute in the requested type
        return _UFUNCS[ufunc.__name__](*inputs)
    if method == "reduce" and ufunc.__name__ in _REDUCE_UFUNCS:
        return _REDUCE_UFUNCS[ufunc.__name__](*inputs, **{k: v for k, v in kwargs.items() if v is not None})
    raise TypeError(f"np.{ufunc.__name__}.{method} is not supported on traced arrays")


def _array_function(self, func, types, args, kwargs):
    fn = globals().get(func.__name__)
    if fn is None or not callable(fn) or func.__name__.startswith("_"):
        raise TypeError(f"np.{func.__name__} is not supported on traced arrays "
                        f"(compiler.numpy has no {func.__name__})")
    kwargs = dict(kwargs)
    _no_out(kwargs.pop("out", None), func.__name__)
    for k, default in (("subok", True), ("order", "K"), ("device", None)):   # numpy-only knobs
        if k in kwargs and kwargs[k] in (default, "C") and func.__name__ not in ("reshape",):
            kwargs.pop(k)
    return fn(*args, **kwargs)


Tracer.__array_ufunc__ = _array_ufunc
Tracer.__array_function__ = _array_function
