"""The numpy backend and the reference semantics of every primitive: a table primitive -> numpy code.

``eval_jaxpr`` walks the equations in order; sub-jaxprs (cond, while, scan, checkpoint) are
evaluated by the same function. Every result is cast to the type the equation declares, so the
interpreter's dtypes are exactly the IR's.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import ml_dtypes
import numpy as np

from compiler.ir.core import ClosedJaxpr, Jaxpr, Literal, Primitive, dtype as to_dtype

IMPLS: dict[str, Callable[..., Any]] = {}


def impl(name: str):
    def register(fn):
        IMPLS[name] = fn
        return fn
    return register


def _errstate(fn):
    """Run numpy quietly: overflow, 0/0 and x/0 give inf/nan (or wrap for integers) as numpy defines."""
    def wrapped(*args, **params):
        with np.errstate(all="ignore"):
            return fn(*args, **params)
    return wrapped


# ---- dtype kinds (ml_dtypes' types have numpy kind 'V', so ask by type) -------------------------
_ML_FLOATS = {np.dtype(t) for t in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2)}
_ML_INTS = {np.dtype(t) for t in (ml_dtypes.int4, ml_dtypes.uint4)}


def _is_float(dt) -> bool:
    dt = np.dtype(dt)
    return dt.kind == "f" or dt in _ML_FLOATS


def _is_int(dt) -> bool:
    dt = np.dtype(dt)
    return dt.kind in "iu" or dt in _ML_INTS


# ---- elementwise ------------------------------------------------------------------------------
_erf = np.vectorize(math.erf, otypes=[np.float64])


def _int_div(x, y):
    zero = y == 0
    q = np.floor_divide(x, np.where(zero, 1, y))
    return np.where(zero, 0, q)


def _int_rem(x, y):
    zero = y == 0
    return np.where(zero, 0, np.remainder(x, np.where(zero, 1, y)))


def _shift(op, x, y):
    """Shifts on the unsigned bit pattern (so right shifts are logical); out-of-range counts give 0."""
    unsigned = np.dtype(f"u{x.dtype.itemsize}")
    ok = (y >= 0) & (y < 8 * x.dtype.itemsize)
    shifted = op(np.asarray(x).view(unsigned), np.where(ok, y, 0).astype(unsigned))
    return np.asarray(np.where(ok, shifted, 0)).astype(unsigned).view(x.dtype)


def _floaty(fn):
    """Float math on ml_dtypes types (bf16, f8) runs in float32 and rounds back."""
    def run(x):
        if x.dtype.kind == "b" or _is_int(x.dtype) or x.dtype.type in (np.float16, np.float32, np.float64):
            return fn(x)
        return fn(x.astype(np.float32)).astype(x.dtype)
    return run


_UNARY = {
    "neg": np.negative, "sign": np.sign, "abs": np.abs, "exp": np.exp, "log": np.log,
    "log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh, "sin": np.sin, "cos": np.cos,
    "sqrt": np.sqrt, "floor": np.floor, "ceil": np.ceil, "round": np.round,
    "is_finite": np.isfinite, "stop_gradient": lambda x: x,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "logistic": lambda x: np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))),
                                   np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x)))),
    "erf": lambda x: _erf(x).astype(x.dtype),
    "not": lambda x: np.logical_not(x) if x.dtype == np.bool_ else np.invert(x),
}
for _name, _fn in _UNARY.items():
    IMPLS[_name] = _errstate(_floaty(_fn))

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "pow": np.power,
    "max": np.maximum, "min": np.minimum, "and": np.bitwise_and, "or": np.bitwise_or,
    "xor": np.bitwise_xor, "shift_left": lambda x, y: _shift(np.left_shift, x, y),
    "shift_right_logical": lambda x, y: _shift(np.right_shift, x, y), "eq": np.equal, "ne": np.not_equal,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "div": lambda x, y: _int_div(x, y) if _is_int(x.dtype) else np.true_divide(x, y),
    "rem": lambda x, y: _int_rem(x, y) if _is_int(x.dtype) else np.fmod(x, y),
}
for _name, _fn in _BINARY.items():
    IMPLS[_name] = _errstate(_fn)


@impl("integer_pow")
@_errstate
def _integer_pow(x, *, y):
    if y < 0:
        return 1 / np.power(x, -y)
    return np.power(x, y) if _is_int(x.dtype) else x ** y


@impl("convert_element_type")
@_errstate
def _convert(x, *, new_dtype):
    target = to_dtype(new_dtype).np
    if _is_float(x.dtype) and _is_int(target):
        # float -> int: numpy leaves out-of-range and NaN values undefined; define them by clamping
        # (NaN -> 0, +-inf -> the limits) so that every backend agrees. The limits of 64-bit types are
        # not exact in float64 (2**63 - 1 rounds up to 2**63), so compare first and convert only the
        # values strictly inside the range.
        info = ml_dtypes.iinfo(target)
        xf = np.nan_to_num(np.trunc(x.astype(np.float64)), nan=0.0, posinf=np.inf, neginf=-np.inf)
        hi, lo = xf >= float(info.max), xf <= float(info.min)
        inside = np.where(hi | lo, 0.0, xf).astype(target)
        return np.where(hi, np.asarray(info.max, target), np.where(lo, np.asarray(info.min, target), inside))
    return x.astype(target)


@impl("select_n")
def _select_n(which, *cases):
    if which.dtype == np.bool_:
        which = which.astype(np.int32)
    return np.choose(np.clip(which, 0, len(cases) - 1), np.broadcast_arrays(*cases))


# ---- structural -------------------------------------------------------------------------------
@impl("broadcast_in_dim")
def _broadcast_in_dim(x, *, shape, broadcast_dimensions):
    expanded = [1] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        expanded[d] = x.shape[i]
    return np.broadcast_to(x.reshape(expanded), shape)


impl("reshape")(lambda x, *, new_sizes: x.reshape(new_sizes))
impl("transpose")(lambda x, *, permutation: np.transpose(x, permutation))
impl("squeeze")(lambda x, *, dimensions: np.squeeze(x, tuple(dimensions)))
impl("expand_dims")(lambda x, *, dimensions: np.expand_dims(x, tuple(dimensions)))
impl("rev")(lambda x, *, dimensions: np.flip(x, tuple(dimensions)) if dimensions else x)
impl("concatenate")(lambda *xs, dimension: np.concatenate(xs, axis=dimension))


@impl("slice")
def _slice(x, *, start_indices, limit_indices, strides=None):
    strides = strides or (1,) * x.ndim
    return x[tuple(slice(lo, hi, st) for lo, hi, st in zip(start_indices, limit_indices, strides))]


def _clamped_starts(shape, starts, sizes):
    return tuple(int(np.clip(int(s), 0, n - k)) for s, n, k in zip(starts, shape, sizes))


@impl("dynamic_slice")
def _dynamic_slice(x, *starts, slice_sizes):
    starts = _clamped_starts(x.shape, starts, slice_sizes)
    return x[tuple(slice(s, s + k) for s, k in zip(starts, slice_sizes))]


@impl("dynamic_update_slice")
def _dynamic_update_slice(x, update, *starts):
    starts = _clamped_starts(x.shape, starts, update.shape)
    out = np.array(x)            # a writable copy, also of a numpy scalar
    out[tuple(slice(s, s + k) for s, k in zip(starts, update.shape))] = update
    return out


def _clamp_indices(indices, n):
    return np.clip(indices, 0, max(n - 1, 0))


@impl("gather")
def _gather(x, indices, *, axis):
    return np.take(x, _clamp_indices(indices, x.shape[axis]), axis=axis)


@impl("scatter_add")
def _scatter_add(x, indices, updates, *, axis):
    out = np.moveaxis(x.copy(), axis, 0)
    idx = _clamp_indices(indices, x.shape[axis]).reshape(-1)
    upd = np.moveaxis(updates, list(range(axis, axis + indices.ndim)), list(range(indices.ndim)))
    np.add.at(out, idx, upd.reshape((idx.size,) + out.shape[1:]))
    return np.moveaxis(out, 0, axis)


@impl("pad")
def _pad(x, padding_value, *, padding_config):
    # interior padding first (spread the elements out), then low/high (negative means crop)
    for d, (_, _, interior) in enumerate(padding_config):
        if interior and x.shape[d] > 1:
            n = x.shape[d]
            shape = list(x.shape)
            shape[d] = n + (n - 1) * interior
            spread = np.full(shape, padding_value, x.dtype)
            idx = [slice(None)] * x.ndim
            idx[d] = slice(None, None, interior + 1)
            spread[tuple(idx)] = x
            x = spread
    for d, (lo, hi, _) in enumerate(padding_config):
        widths = [(0, 0)] * x.ndim
        widths[d] = (max(lo, 0), max(hi, 0))
        x = np.pad(x, widths, constant_values=padding_value)
        idx = [slice(None)] * x.ndim
        idx[d] = slice(max(-lo, 0), x.shape[d] - max(-hi, 0))
        x = x[tuple(idx)]
    return x


@impl("iota")
def _iota(*, dtype, shape, dimension):
    expanded = [1] * len(shape)
    expanded[dimension] = shape[dimension]
    return np.broadcast_to(np.arange(shape[dimension], dtype=to_dtype(dtype).np).reshape(expanded), shape)


# ---- reductions -------------------------------------------------------------------------------
def _acc(dt):
    """The accumulator of sums and products: float32 for ml_dtypes' floats (bf16, f8), as XLA does."""
    return np.dtype(np.float32) if np.dtype(dt) in _ML_FLOATS else np.dtype(dt)


impl("reduce_sum")(_errstate(lambda x, *, axes: np.sum(x, axis=tuple(axes), dtype=_acc(x.dtype))))
impl("reduce_prod")(_errstate(lambda x, *, axes: np.prod(x, axis=tuple(axes), dtype=_acc(x.dtype))))
impl("reduce_max")(_errstate(lambda x, *, axes: np.max(x, axis=tuple(axes))))
impl("reduce_min")(_errstate(lambda x, *, axes: np.min(x, axis=tuple(axes))))
impl("argmax")(_errstate(lambda x, *, axes, index_dtype: np.argmax(x, axis=axes[0]).astype(
    to_dtype(index_dtype).np)))


@impl("cumsum")
@_errstate
def _cumsum(x, *, axis, reverse=False):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis, dtype=_acc(x.dtype)), axis)
    return np.cumsum(x, axis=axis, dtype=_acc(x.dtype))


def _windows(x, window_dimensions, window_strides, padding, fill):
    x = np.pad(x, padding, constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(x, window_dimensions)
    return view[tuple(slice(None, None, s) for s in window_strides)]


@impl("reduce_window_max")
@_errstate
def _reduce_window_max(x, *, window_dimensions, window_strides, padding):
    fill = -np.inf if _is_float(x.dtype) else ml_dtypes.iinfo(x.dtype).min
    w = _windows(x, window_dimensions, window_strides, padding, fill)
    return w.max(axis=tuple(range(x.ndim, 2 * x.ndim)))


@impl("reduce_window_sum")
@_errstate
def _reduce_window_sum(x, *, window_dimensions, window_strides, padding):
    w = _windows(x, window_dimensions, window_strides, padding, 0)
    return w.sum(axis=tuple(range(x.ndim, 2 * x.ndim)), dtype=_acc(x.dtype))


# ---- contractions -----------------------------------------------------------------------------
@impl("dot_general")
@_errstate
def _dot_general(a, b, *, dimension_numbers, preferred_element_type=None):
    (ca, cb), (ba, bb) = dimension_numbers
    out_dtype = a.dtype if preferred_element_type is None else to_dtype(preferred_element_type).np
    if _is_int(out_dtype) or _is_int(a.dtype):
        a, b = a.astype(np.int64), b.astype(np.int64)
    elif a.dtype.type not in (np.float32, np.float64):
        a, b = a.astype(np.float32), b.astype(np.float32)
    free_a = [i for i in range(a.ndim) if i not in ca and i not in ba]
    free_b = [i for i in range(b.ndim) if i not in cb and i not in bb]
    # move to (batch, free, contract) / (batch, contract, free) and use matmul (BLAS)
    at = np.transpose(a, list(ba) + free_a + list(ca))
    bt = np.transpose(b, list(bb) + list(cb) + free_b)
    nb = [a.shape[i] for i in ba]
    fa, fb = [a.shape[i] for i in free_a], [b.shape[i] for i in free_b]
    k = int(np.prod([a.shape[i] for i in ca], dtype=np.int64))
    out = np.matmul(at.reshape(nb + [int(np.prod(fa, dtype=np.int64)), k]),
                    bt.reshape(nb + [k, int(np.prod(fb, dtype=np.int64))]))
    return out.reshape(nb + fa + fb).astype(out_dtype)


@impl("sparse_dot")
@_errstate
def _sparse_dot(x, *w, format, dense_shape, transpose=False):
    """The reference: multiply by the dense weight the compressed operands stand for."""
    from compiler.primitives.sparse import to_dense
    acc = np.float64 if x.dtype == np.float64 else np.float32
    dense = to_dense(format, dense_shape, *w).astype(acc)
    return np.matmul(x.astype(acc), dense.T if transpose else dense).astype(x.dtype)


@impl("conv_general_dilated")
@_errstate
def _conv(x, w, *, window_strides, padding, lhs_dilation, rhs_dilation, feature_group_count,
          preferred_element_type=None):
    """Integers multiply exactly in int64 and wrap to the result type (int8 x int8 -> int32 as the
    dot does); floats accumulate in f32 (f64 for f64)."""
    out_dtype = x.dtype if preferred_element_type is None else to_dtype(preferred_element_type).np
    nsp = x.ndim - 2
    if any(d != 1 for d in lhs_dilation):       # dilate the input by inserting zeros
        x = _pad(x, np.zeros((), x.dtype), padding_config=((0, 0, 0), (0, 0, 0)) +
                 tuple((0, 0, d - 1) for d in lhs_dilation))
    if any(d != 1 for d in rhs_dilation):
        w = _pad(w, np.zeros((), w.dtype), padding_config=((0, 0, 0), (0, 0, 0)) +
                 tuple((0, 0, d - 1) for d in rhs_dilation))
    x = _pad(x, np.zeros((), x.dtype), padding_config=((0, 0, 0), (0, 0, 0)) +
             tuple((lo, hi, 0) for lo, hi in padding))
    g = feature_group_count
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    ksp = w.shape[2:]
    # im2col: windows (N, C, out..., k...) then one contraction per group
    view = np.lib.stride_tricks.sliding_window_view(x, ksp, axis=tuple(range(2, 2 + nsp)))
    view = view[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in window_strides)]
    out_sp = view.shape[2:2 + nsp]
    view = view.reshape((n, g, cg) + out_sp + ksp)
    wg = w.reshape((g, o // g, cg) + ksp)
    acc = np.float64 if x.dtype == np.float64 else (np.int64 if _is_int(x.dtype) else np.float32)
    spatial = "".join(chr(ord("h") + i) for i in range(nsp))
    kernel = "".join(chr(ord("p") + i) for i in range(nsp))
    out = np.einsum(f"ngc{spatial}{kernel},goc{kernel}->ngo{spatial}", view.astype(acc), wg.astype(acc),
                    optimize=True)
    return out.reshape((n, o) + out_sp).astype(out_dtype)


# ---- control flow -----------------------------------------------------------------------------
@impl("cond")
def _cond(index, *ops, branches):
    i = int(np.clip(int(index), 0, len(branches) - 1))
    return eval_jaxpr_body(branches[i], [], ops)


@impl("while")
def _while(*ops, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    cconsts, bconsts = ops[:cond_nconsts], ops[cond_nconsts:cond_nconsts + body_nconsts]
    carry = list(ops[cond_nconsts + body_nconsts:])
    while bool(eval_jaxpr_body(cond_jaxpr, [], [*cconsts, *carry])[0]):
        carry = eval_jaxpr_body(body_jaxpr, [], [*bconsts, *carry])
    return carry


@impl("scan")
def _scan(*ops, jaxpr, num_consts, num_carry, length, reverse):
    consts, carry = list(ops[:num_consts]), list(ops[num_consts:num_consts + num_carry])
    xs = ops[num_consts + num_carry:]
    y_avals = jaxpr.out_avals[num_carry:]
    ys = [np.empty((length,) + a.shape, a.dtype.np) for a in y_avals]
    for i in (reversed(range(length)) if reverse else range(length)):
        outs = eval_jaxpr_body(jaxpr, [], [*consts, *carry, *(x[i] for x in xs)])
        carry = outs[:num_carry]
        for y, out in zip(ys, outs[num_carry:]):
            y[i] = out
    return carry + ys


impl("checkpoint")(lambda *ops, jaxpr, policy=None: eval_jaxpr_body(jaxpr, [], ops))


# ---- the interpreter --------------------------------------------------------------------------
def apply_primitive(prim: Primitive, args: Sequence[np.ndarray], params: dict) -> list[np.ndarray]:
    """Evaluate one primitive on numpy values; results have exactly the types the shape rule says."""
    out_avals = prim.abstract_eval([_aval(a) for a in args], params)
    out = IMPLS[prim.name](*args, **params)
    outs = out if prim.multiple_results else [out]
    return [np.asarray(o).astype(a.dtype.np, copy=False).reshape(a.shape) for o, a in zip(outs, out_avals)]


def _aval(x):
    from compiler.ir.core import ShapedArray
    return ShapedArray(tuple(x.shape), to_dtype(x.dtype))


def _last_uses(jaxpr: Jaxpr) -> list[list]:
    """For each equation, the variables read for the last time there (outputs excepted)."""
    keep = {a for a in jaxpr.outvars if not isinstance(a, Literal)}
    last: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for a in eqn.inputs:
            if not isinstance(a, Literal):
                last[a] = i
    dying: list[list] = [[] for _ in jaxpr.eqns]
    for v, i in last.items():
        if v not in keep:
            dying[i].append(v)
    return dying


def eval_jaxpr_body(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[np.ndarray]:
    """Evaluate equation by equation, dropping each value after its last use, so the memory in use
    follows the program's liveness (what compiler.passes.memory_profile computes)."""
    env: dict = {}

    def read(a):
        return a.value if isinstance(a, Literal) else env[a]

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = np.asarray(x)
    for v, x in zip(jaxpr.invars, args):
        env[v] = np.asarray(x)
    for eqn, dying in zip(jaxpr.eqns, _last_uses(jaxpr)):
        ins = [np.asarray(read(a)) for a in eqn.inputs]
        out = IMPLS[eqn.primitive.name](*ins, **eqn.params)
        del ins
        outs = out if eqn.primitive.multiple_results else [out]
        for v, o in zip(eqn.outvars, outs):
            env[v] = np.asarray(o).astype(v.aval.dtype.np, copy=False).reshape(v.aval.shape)
        del out, outs
        for v in dying:
            env.pop(v, None)
    return [np.asarray(read(a)) for a in jaxpr.outvars]


def eval_jaxpr(closed: ClosedJaxpr, *args: Any) -> list[np.ndarray]:
    """Run a ClosedJaxpr on flat numpy inputs; returns the list of flat outputs."""
    jaxpr = closed.jaxpr
    if closed.consts is None and jaxpr.constvars:
        raise TypeError(f"this jaxpr has {len(jaxpr.constvars)} constvars but no values for them "
                        f"(parse(text, consts=[...]) supplies them)")
    from .abi import check_args
    flat = check_args(jaxpr.in_avals, args)
    return eval_jaxpr_body(jaxpr, closed.consts or [], flat)
