"""compiler.numpy (cnp) under tj.jit(backend="numpy") against numpy itself, and plain numpy on tracers.

Every comparison is with numpy computing the same thing on the same inputs. Where our dtypes differ
from numpy's on purpose they follow JAX (documented at each place):
- true division of integers, mean of integers and transcendental functions of integers give the
  default float f32 (numpy: f64);
- sum/prod of bool and of integers narrower than 32 bits accumulate in i32/u32 (numpy: i64/u64);
- argmax returns i32 (numpy: i64); zeros/ones/eye default to f32 and integer arange to i32;
- a Python float combined with an integer array gives f32 (numpy: f64).
"""
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import compiler as tj
import compiler.numpy as cnp

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")   # no warning escapes our code
SETTINGS = settings(max_examples=20, deadline=None)


def jit(f, **kw):
    return tj.jit(f, backend="numpy", **kw)


def quiet(f, *args, **kwargs):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)          # numpy's "Mean of empty slice"
        return f(*args, **kwargs)


def assert_close(got, want, dtype=None, rtol=1e-6, atol=0.0):
    """Values (NaN where numpy has NaN, inf where it has inf) and dtype (numpy's unless given)."""
    want = np.asarray(want)
    got = np.asarray(got)
    assert got.dtype == (np.dtype(dtype) if dtype is not None else want.dtype), (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    if got.dtype.kind in "fc" or got.dtype in (np.dtype(ml_dtypes.bfloat16),):
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)
    else:
        np.testing.assert_array_equal(got, want)


small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
nonempty_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def floats(dt=np.float64, lo=-10.0, hi=10.0):
    return st.floats(lo, hi, width=np.dtype(dt).itemsize * 8)


def arrays(dt, shape, **kw):
    dt = np.dtype(dt)
    if "elements" not in kw:
        if dt.kind == "f":
            kw["elements"] = floats(dt)
        elif dt.kind in "iu":
            kw["elements"] = st.integers(0 if dt.kind == "u" else -20, 20)
    return hnp.arrays(dt, shape, **kw)


# ----------------------------------------------------------------------------------------------
# Binary arithmetic and comparisons, with broadcasting
# ----------------------------------------------------------------------------------------------

ARITH = ["add", "subtract", "multiply", "maximum", "minimum", "floor_divide", "remainder"]
COMPARE = ["equal", "not_equal", "less", "less_equal", "greater", "greater_equal"]


@pytest.mark.parametrize("name", ARITH + COMPARE)
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int32, np.int8, np.uint8])
@given(data=st.data())
@SETTINGS
def test_binary_broadcasting(name, dt, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    x = data.draw(arrays(dt, shapes.input_shapes[0]))
    y = data.draw(arrays(dt, shapes.input_shapes[1]))
    got = jit(getattr(cnp, name))(x, y)
    want = quiet(getattr(np, name), x, y)
    assert_close(got, want)


@pytest.mark.parametrize("name", ["add", "subtract", "multiply", "divide", "floor_divide", "remainder",
                                  "maximum", "minimum", "less", "equal"])
def test_binary_special_float_values(name):
    vals = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.1, 2.5, -7.0], np.float64)
    x, y = np.meshgrid(vals, vals)
    for dt in (np.float64, np.float32):
        got = jit(getattr(cnp, name))(x.astype(dt), y.astype(dt))
        assert_close(got, quiet(getattr(np, name), x.astype(dt), y.astype(dt)))


@given(hnp.arrays(np.float64, st.integers(1, 20), elements=floats(lo=-100, hi=100)),
       hnp.arrays(np.float64, st.integers(1, 20), elements=st.sampled_from([0.1, 0.3, -0.1, 0.7, 2.0, -3.0, 1e-3])))
@SETTINGS
def test_floor_divide_and_remainder_follow_numpy_exactly(x, y):
    """numpy's // for floats is not floor(x / y): 1.0 // 0.1 == 9.0 (x - x % y is what it divides)."""
    n = min(len(x), len(y))
    x, y = x[:n], y[:n]
    got_q, got_r = jit(lambda a, b: (a // b, a % b))(x, y)
    np.testing.assert_array_equal(got_q, np.floor_divide(x, y))
    np.testing.assert_array_equal(got_r, np.remainder(x, y))
    assert jit(lambda a: a // 0.1)(np.array([1.0])).tolist() == [9.0]


def test_integer_division_by_zero_gives_zero():
    x = np.array([7, -7, 0, 127, -128], np.int8)
    z = np.zeros(5, np.int8)
    got_q, got_r = jit(lambda a, b: (a // b, a % b))(x, z)
    assert_close(got_q, np.zeros(5, np.int8))
    assert_close(got_r, np.zeros(5, np.int8))
    got_q, got_r = jit(lambda a, b: (cnp.floor_divide(a, b), cnp.remainder(a, b)))(np.array([7, -7], np.int32),
                                                                                 np.array([-2, 2], np.int32))
    assert_close(got_q, np.array([-4, -4], np.int32))
    assert_close(got_r, np.array([-1, 1], np.int32))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@given(data=st.data())
@SETTINGS
def test_divide_and_power_float(dt, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    x = data.draw(arrays(dt, shapes.input_shapes[0], elements=floats(dt, 0.125, 8)))
    y = data.draw(arrays(dt, shapes.input_shapes[1], elements=floats(dt, -3, 3)))
    assert_close(jit(cnp.divide)(x, y), quiet(np.divide, x, y))
    assert_close(jit(cnp.power)(x, y), np.power(x, y), rtol=1e-5)
    k = data.draw(st.integers(-3, 4))
    assert_close(jit(lambda a: cnp.power(a, k))(x), np.power(x, float(k)).astype(dt), rtol=1e-6)
    assert_close(jit(lambda a: a ** k)(x), np.power(x, float(k)).astype(dt), rtol=1e-6)


@given(data=st.data())
@SETTINGS
def test_integer_power(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=4))
    dt = data.draw(st.sampled_from([np.int8, np.int32, np.int64, np.uint8]))
    x = data.draw(arrays(dt, shapes.input_shapes[0], elements=st.integers(0 if dt == np.uint8 else -9, 9)))
    y = data.draw(arrays(dt, shapes.input_shapes[1], elements=st.integers(0, 12)))
    assert_close(jit(cnp.power)(x, y), np.power(x, y))             # wraps around like numpy
    assert_close(jit(lambda a: a ** 3)(x), x ** 3)
    assert_close(jit(lambda b: 2 ** b)(y), 2 ** y)


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int32])
@given(data=st.data())
@SETTINGS
def test_true_divide(dt, data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=4))
    x = data.draw(arrays(dt, shapes.input_shapes[0]))
    y = data.draw(arrays(dt, shapes.input_shapes[1]))
    want = quiet(np.divide, x, y)
    # integers divide into the default float f32, as in JAX (numpy: f64)
    assert_close(jit(lambda a, b: a / b)(x, y), want.astype(np.float32) if dt == np.int32 else want,
                 rtol=1e-6)


@given(data=st.data())
@SETTINGS
def test_heaviside_where_clip(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=4))
    el = st.sampled_from([-2.0, -0.0, 0.0, 0.5, 3.0, np.nan, np.inf, -np.inf])
    x = data.draw(arrays(np.float64, shapes.input_shapes[0], elements=el))
    h = data.draw(arrays(np.float64, shapes.input_shapes[1], elements=el))
    c = data.draw(hnp.arrays(np.bool_, shapes.input_shapes[2]))
    assert_close(jit(cnp.heaviside)(x, h), np.heaviside(x, h))
    assert_close(jit(lambda x: cnp.heaviside(x, 0.5))(x), np.heaviside(x, 0.5))
    assert_close(jit(cnp.where)(c, x, h), np.where(c, x, h))
    assert_close(jit(lambda c, x: cnp.where(c, x, 0.0))(c, x), np.where(c, x, 0.0))
    lo = data.draw(st.floats(-3, 0))
    hi = data.draw(st.floats(0, 3))
    assert_close(jit(lambda x: cnp.clip(x, lo, hi))(x), np.clip(x, lo, hi))
    assert_close(jit(cnp.clip)(x, h, np.float64(1.0)), np.clip(x, h, 1.0))
    assert_close(jit(lambda x: cnp.clip(x, None, hi))(x), np.clip(x, None, hi))
    xi = data.draw(arrays(np.int8, shapes.input_shapes[0]))
    assert_close(jit(lambda x: cnp.clip(x, -3, 5))(xi), np.clip(xi, -3, 5))


def test_where_with_integer_condition_and_bool_arithmetic():
    c = np.array([0, 2, -1], np.int32)
    x, y = np.array([1.0, 2.0, 3.0]), np.array([-1.0, -2.0, -3.0])
    assert_close(jit(cnp.where)(c, x, y), np.where(c, x, y))
    a, b = np.array([True, True, False]), np.array([True, False, False])
    for name in ("add", "multiply", "maximum", "minimum", "logical_and", "logical_or", "logical_xor",
                 "equal", "not_equal", "greater"):
        assert_close(jit(getattr(cnp, name))(a, b), getattr(np, name)(a, b))
    x8 = np.array([-128, 0, 127], np.int8)
    assert_close(jit(lambda x: (x + np.int8(1), -x, x * x))(x8)[0], x8 + np.int8(1))
    assert_close(jit(lambda x: x * x)(x8), x8 * x8)


@pytest.mark.parametrize("dt", [np.int8, np.int32, np.int64, np.uint8, np.uint32])
@given(data=st.data())
@SETTINGS
def test_shifts(dt, data):
    """<< and >> as numpy: arithmetic >> for signed types; counts past the width give 0 (or -1)."""
    bits = 8 * np.dtype(dt).itemsize
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=4))
    x = data.draw(hnp.arrays(dt, shapes.input_shapes[0]))
    y = data.draw(hnp.arrays(dt, shapes.input_shapes[1], elements=st.integers(0, bits + 2)))
    got = jit(lambda a, b: (a << b, a >> b, cnp.left_shift(a, b), np.right_shift(a, b)))(x, y)
    for g, w in zip(got, (x << y, x >> y, x << y, x >> y)):
        assert_close(g, w)
    k = data.draw(st.integers(0, bits - 1))
    assert_close(jit(lambda a: a >> k)(x), x >> k)


def test_argmin_and_mean_low_precision():
    u = np.array([[3, 0, 255], [0, 7, 1]], np.uint8)
    i8 = np.array([-128, 127, -128, 0], np.int8)
    assert_close(jit(lambda v: cnp.argmin(v, axis=1))(u), np.argmin(u, axis=1).astype(np.int32))
    assert_close(jit(cnp.argmin)(i8), np.argmin(i8).astype(np.int32))
    h = np.linspace(-3, 7, 40).astype(np.float16).reshape(4, 10)
    assert_close(jit(lambda v: cnp.mean(v, axis=1))(h), np.mean(h, axis=1), rtol=0)   # accumulates in f32


# ----------------------------------------------------------------------------------------------
# Unary math
# ----------------------------------------------------------------------------------------------

UNARY = {"exp": (-10, 10), "log": (2 ** -8, 100), "log1p": (-0.75, 100), "expm1": (-10, 10), "sqrt": (0, 100),
         "sin": (-10, 10), "cos": (-10, 10), "tanh": (-10, 10), "abs": (-10, 10), "sign": (-10, 10),
         "negative": (-10, 10)}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16])
@given(data=st.data())
@SETTINGS
def test_unary_math(name, dt, data):
    lo, hi = UNARY[name]
    x = data.draw(arrays(dt, small_shapes, elements=floats(dt, lo, hi)))
    rtol = {np.float16: 1e-3, np.float32: 2e-6, np.float64: 1e-13}[dt]
    assert_close(jit(getattr(cnp, name))(x), getattr(np, name)(x), rtol=rtol, atol=rtol)
    assert_close(jit(lambda v: getattr(np, name)(v))(x), getattr(np, name)(x), rtol=rtol, atol=rtol)


def test_unary_special_values_and_integer_inputs():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1.0], np.float32)
    for name in UNARY:
        assert_close(jit(getattr(cnp, name))(x), quiet(getattr(np, name), x), rtol=1e-6)
    xi = np.array([-3, 0, 5], np.int32)
    for name in ("abs", "sign", "negative"):
        assert_close(jit(getattr(cnp, name))(xi), getattr(np, name)(xi))
    for name in ("exp", "sqrt", "sin", "tanh"):       # integer inputs: the default float f32 (numpy: f64)
        assert_close(jit(getattr(cnp, name))(xi), quiet(getattr(np, name), xi).astype(np.float32), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------

def axis_args(ndim):
    """None, an int (possibly negative), or a tuple of distinct axes."""
    if ndim == 0:
        return st.sampled_from([None, ()])
    ints = st.integers(-ndim, ndim - 1)
    return st.one_of(st.none(), ints, st.lists(ints, max_size=ndim, unique_by=lambda a: a % ndim).map(tuple))


@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "prod"])
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int32, np.int8, np.bool_])
@given(data=st.data())
@SETTINGS
def test_reductions(name, dt, data):
    if dt == np.bool_ and name in ("mean", "prod"):
        dt = np.int32
    x = data.draw(arrays(dt, small_shapes, **({"elements": st.integers(-3, 3)} if dt == np.int8 else {})))
    axis = data.draw(axis_args(x.ndim))
    keepdims = data.draw(st.booleans())
    if name in ("max", "min"):
        axes = range(x.ndim) if axis is None else ([axis] if isinstance(axis, int) else axis)
        assume(all(x.shape[a] > 0 for a in axes))
    want = quiet(getattr(np, name), x, axis=axis, keepdims=keepdims)
    dtype = None
    if name in ("sum", "prod") and dt in (np.int8, np.bool_, np.int32):
        dtype = np.int32                    # integers accumulate in (at least) i32, as in JAX (numpy: i64)
    if name == "mean" and dt in (np.int32, np.int8):
        dtype = np.float32                  # mean of integers: the default float (numpy: f64)
    got = jit(lambda v: getattr(cnp, name)(v, axis=axis, keepdims=keepdims))(x)
    assert_close(got, want.astype(dtype) if dtype else want, dtype=dtype, rtol=1e-5, atol=1e-6)
    got = jit(lambda v: getattr(np, name)(v, axis=axis, keepdims=keepdims))(x)     # numpy dispatch
    assert_close(got, want.astype(dtype) if dtype else want, dtype=dtype, rtol=1e-5, atol=1e-6)


def test_reductions_with_nan_and_empty():
    x = np.array([[1.0, np.nan], [np.inf, -1.0]])
    for name in ("sum", "mean", "max", "min", "prod"):
        for axis in (None, 0, 1):
            assert_close(jit(lambda v: getattr(cnp, name)(v, axis=axis))(x), getattr(np, name)(x, axis=axis))
    e = np.zeros((0, 3))
    assert_close(jit(lambda v: cnp.sum(v, axis=0))(e), np.sum(e, axis=0))
    assert_close(jit(lambda v: cnp.prod(v, axis=0))(e), np.prod(e, axis=0))
    assert_close(jit(lambda v: cnp.max(v, axis=1))(e), np.max(e, axis=1))
    assert_close(jit(lambda v: cnp.sum(v, dtype=np.float32))(x), np.sum(x, dtype=np.float32))
    with pytest.raises(Exception):
        jit(lambda v: cnp.max(v, axis=0))(e)                       # no identity (numpy: ValueError)


@given(data=st.data())
@SETTINGS
def test_argmax(data):
    dt = data.draw(st.sampled_from([np.float32, np.float64, np.int8, np.bool_]))
    el = st.sampled_from([0.0, 1.0, -1.0, 2.0, np.nan]) if dt != np.int8 and dt != np.bool_ else None
    x = data.draw(arrays(dt, nonempty_shapes, elements=el))
    axis = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    keepdims = data.draw(st.booleans())
    want = np.argmax(x, axis=axis, keepdims=keepdims)
    assert_close(jit(lambda v: cnp.argmax(v, axis=axis, keepdims=keepdims))(x), want.astype(np.int32),
                 dtype=np.int32)                       # index type i32 as in JAX (numpy: i64)
    assert_close(jit(lambda v: np.argmax(v, axis=axis))(x), np.argmax(x, axis=axis).astype(np.int32),
                 dtype=np.int32)


# ----------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------

@given(arrays(np.float32, small_shapes), st.data())
@SETTINGS
def test_reshape_transpose_swapaxes_moveaxis(x, data):
    shape = list(x.shape)
    new = data.draw(st.permutations(shape)) if shape else []
    if new and data.draw(st.booleans()) and x.size > 0:
        new[data.draw(st.integers(0, len(new) - 1))] = -1
    assert_close(jit(lambda v: cnp.reshape(v, tuple(new)))(x), np.reshape(x, tuple(new)))
    assert_close(jit(lambda v: v.reshape(tuple(new)))(x), x.reshape(tuple(new)))
    assert_close(jit(lambda v: np.reshape(v, tuple(new)))(x), np.reshape(x, tuple(new)))
    assert_close(jit(cnp.transpose)(x), np.transpose(x))
    nd = x.ndim
    perm = data.draw(st.permutations(range(nd)))
    assert_close(jit(lambda v: cnp.transpose(v, perm))(x), np.transpose(x, perm))
    assert_close(jit(lambda v: v.transpose(perm))(x), x.transpose(perm))
    assert_close(jit(lambda v: v.T)(x), x.T)
    if nd:
        a, b = data.draw(st.integers(-nd, nd - 1)), data.draw(st.integers(-nd, nd - 1))
        assert_close(jit(lambda v: cnp.swapaxes(v, a, b))(x), np.swapaxes(x, a, b))
        assert_close(jit(lambda v: cnp.moveaxis(v, a, b))(x), np.moveaxis(x, a, b))
        k = data.draw(st.integers(0, nd))
        src = data.draw(st.lists(st.integers(0, nd - 1), min_size=k, max_size=k, unique=True))
        dst = data.draw(st.lists(st.integers(-nd, nd - 1), min_size=k, max_size=k, unique_by=lambda d: d % nd))
        assert_close(jit(lambda v: cnp.moveaxis(v, src, dst))(x), np.moveaxis(x, src, dst))
        assert_close(jit(lambda v: np.moveaxis(v, src, dst))(x), np.moveaxis(x, src, dst))


@given(arrays(np.int32, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3)), st.data())
@SETTINGS
def test_expand_dims_squeeze_broadcast_to(x, data):
    out_nd = x.ndim + data.draw(st.integers(1, 2))
    axes = data.draw(st.lists(st.integers(-out_nd, out_nd - 1), min_size=out_nd - x.ndim,
                              max_size=out_nd - x.ndim, unique_by=lambda a: a % out_nd))
    arg = axes[0] if len(axes) == 1 and data.draw(st.booleans()) else tuple(axes)
    e = np.expand_dims(x, arg)
    assert_close(jit(lambda v: cnp.expand_dims(v, arg))(x), e)
    assert_close(jit(lambda v: cnp.squeeze(v))(e), np.squeeze(e))
    ones = [i for i, s in enumerate(e.shape) if s == 1]
    sq = tuple(data.draw(st.lists(st.sampled_from(ones), unique=True))) if ones else ()
    assert_close(jit(lambda v: cnp.squeeze(v, sq))(e), np.squeeze(e, sq))
    assert_close(jit(lambda v: np.squeeze(v, sq))(e), np.squeeze(e, sq))
    target = data.draw(hnp.broadcastable_shapes(x.shape, max_dims=4, max_side=3).map(
        lambda s: np.broadcast_shapes(s, x.shape)))
    assert_close(jit(lambda v: cnp.broadcast_to(v, target))(x), np.broadcast_to(x, target))
    assert_close(jit(lambda v: np.broadcast_to(v, target))(x), np.broadcast_to(x, target))


def test_bad_shapes_raise():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(tj.ShapeError):
        jit(lambda v: cnp.reshape(v, (4, 2)))(x)
    with pytest.raises(tj.ShapeError):
        jit(lambda v: cnp.broadcast_to(v, (3, 3)))(x)
    with pytest.raises(tj.ShapeError):
        jit(lambda v: v + np.ones(4, np.float32))(x)
    with pytest.raises(tj.ShapeError):
        jit(lambda v: cnp.squeeze(v, 0))(x)
    with pytest.raises(tj.ShapeError):
        jit(lambda v: v @ v)(x)


@given(st.data())
@SETTINGS
def test_concatenate_and_stack(data):
    nd = data.draw(st.integers(1, 3))
    base = data.draw(st.lists(st.integers(0, 3), min_size=nd, max_size=nd))
    axis = data.draw(st.integers(-nd, nd - 1))
    n = data.draw(st.integers(1, 3))
    dts = data.draw(st.lists(st.sampled_from([np.float32, np.float64, np.int32]), min_size=n, max_size=n))
    xs = []
    for dt in dts:
        shape = list(base)
        shape[axis] = data.draw(st.integers(0, 3))
        xs.append(data.draw(arrays(dt, tuple(shape))))
    assert_close(jit(lambda *v: cnp.concatenate(v, axis=axis))(*xs), np.concatenate(xs, axis=axis))
    assert_close(jit(lambda *v: np.concatenate(v, axis=axis))(*xs), np.concatenate(xs, axis=axis))
    assert_close(jit(lambda *v: cnp.concatenate(v, axis=None))(*xs), np.concatenate(xs, axis=None))
    same = [data.draw(arrays(dt, tuple(base))) for dt in dts]
    sax = data.draw(st.integers(-nd - 1, nd))
    assert_close(jit(lambda *v: cnp.stack(v, axis=sax))(*same), np.stack(same, axis=sax))
    assert_close(jit(lambda *v: np.stack(v, axis=sax))(*same), np.stack(same, axis=sax))


# ----------------------------------------------------------------------------------------------
# Contractions
# ----------------------------------------------------------------------------------------------

@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(0, 4)) for _ in range(3))
    kind = draw(st.sampled_from(["vv", "mv", "vm", "mm", "batched"]))
    if kind == "vv":
        return (k,), (k,)
    if kind == "mv":
        return draw(st.lists(st.integers(1, 3), max_size=2)).__add__([n, k]), [k]
    if kind == "vm":
        return [k], draw(st.lists(st.integers(1, 3), max_size=2)).__add__([k, m])
    if kind == "mm":
        return [n, k], [k, m]
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    a, b = batch.input_shapes
    return list(a) + [n, k], list(b) + [k, m]


@given(matmul_shapes(), st.sampled_from([np.float64, np.float32, np.int32]), st.data())
@SETTINGS
def test_matmul_and_dot(shapes, dt, data):
    a = data.draw(arrays(dt, tuple(shapes[0])))
    b = data.draw(arrays(dt, tuple(shapes[1])))
    want = np.matmul(a, b)
    assert_close(jit(cnp.matmul)(a, b), want, rtol=1e-5, atol=1e-5)
    assert_close(jit(lambda x, y: x @ y)(a, b), want, rtol=1e-5, atol=1e-5)
    assert_close(jit(lambda x, y: np.matmul(x, y))(a, b), want, rtol=1e-5, atol=1e-5)
    assert_close(jit(lambda x: x @ b)(a), want, rtol=1e-5, atol=1e-5)        # numpy array on the right
    assert_close(jit(lambda y: a @ y)(b), want, rtol=1e-5, atol=1e-5)        # numpy array on the left
    if a.ndim <= 2 and b.ndim <= 2:
        assert_close(jit(cnp.dot)(a, b), np.dot(a, b), rtol=1e-5, atol=1e-5)


@given(st.data())
@SETTINGS
def test_dot_nd_and_mixed_dtypes(data):
    a = data.draw(arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=3)))
    k = a.shape[-1] if a.ndim else 2
    b_shape = tuple(data.draw(st.lists(st.integers(1, 3), max_size=2))) + (k, data.draw(st.integers(1, 3)))
    b = data.draw(arrays(np.float32, b_shape if a.ndim else data.draw(small_shapes)))
    assert_close(jit(cnp.dot)(a, b), np.dot(a, b), rtol=1e-6)
    assert_close(jit(lambda x, y: np.dot(x, y))(a, b), np.dot(a, b), rtol=1e-6)
    assert_close(jit(lambda x, y: x.dot(y))(a, b), a.dot(b), rtol=1e-6)


def test_matmul_bool_and_int8():
    a = np.array([[True, False], [False, False]])
    b = np.array([[True, True], [False, True]])
    assert_close(jit(cnp.matmul)(a, b), a @ b)
    x = np.full((2, 3), 100, np.int8)
    assert_close(jit(cnp.matmul)(x, x.T.copy()), x @ x.T)          # wraps in int8 like numpy


@st.composite
def einsum_case(draw, n_ops):
    letters = "abcdef"
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    terms = []
    for _ in range(n_ops):
        nd = draw(st.integers(0, 3))
        repeats = draw(st.integers(0, 4)) == 0                 # sometimes a diagonal: 'ii', 'iji'
        terms.append("".join(draw(st.lists(st.sampled_from(letters), min_size=nd, max_size=nd, unique=not repeats))))
    used = sorted(set("".join(terms)))
    explicit = draw(st.booleans())
    if explicit:
        out = "".join(draw(st.permutations(draw(st.lists(st.sampled_from(used), unique=True))))) if used else ""
        spec = ",".join(terms) + "->" + out
    else:
        spec = ",".join(terms)
    ops = [draw(arrays(np.float64, tuple(sizes[c] for c in t), elements=st.integers(-3, 3).map(float)))
           for t in terms]
    return spec, ops


@pytest.mark.parametrize("n_ops", [2, 3])
@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_einsum(n_ops, data):
    spec, ops = data.draw(einsum_case(n_ops))
    want = np.einsum(spec, *ops)
    assert_close(jit(lambda *v: cnp.einsum(spec, *v))(*ops), want)
    assert_close(jit(lambda *v: np.einsum(spec, *v))(*ops), want)


def test_einsum_common_forms():
    a, b, c = np.arange(6.0).reshape(2, 3), np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
    for spec, ops in [("ij,jk->ik", (a, b)), ("ij,jk", (a, b)), ("ij,ij->i", (a, a)), ("ij,kj->ik", (a, a)),
                      ("i,j->ij", (a[0], b[0])), ("ij,jk,kl->il", (a, b, c)), ("bij,bjk->bik", (a[None], b[None])),
                      ("ij->ji", (a,)), ("ij->", (a,)), ("ii", (b[:, :3],)), ("ii->i", (b[:, :3],)),
                      ("ij,jj->i", (a, b[:, :3]))]:
        assert_close(jit(lambda *v: cnp.einsum(spec, *v))(*ops), np.einsum(spec, *ops))


# ----------------------------------------------------------------------------------------------
# Creation and dtype conversion
# ----------------------------------------------------------------------------------------------

@given(st.lists(st.integers(0, 3), max_size=3).map(tuple), st.sampled_from([None, np.float64, np.int8, np.bool_]))
@SETTINGS
def test_creation(shape, dt):
    default = np.float32 if dt is None else dt       # default float f32 (numpy: f64)
    assert_close(jit(lambda: cnp.zeros(shape, dt))(), np.zeros(shape, default))
    assert_close(jit(lambda: cnp.ones(shape, dt))(), np.ones(shape, default))
    assert_close(jit(lambda: cnp.full(shape, 3, dt))(), np.full(shape, 3, dt or np.int32))
    assert_close(jit(lambda: cnp.full(shape, 2.5))(), np.full(shape, 2.5, np.float32))
    assert_close(jit(lambda: cnp.full(shape, np.float64(2.5)))(), np.full(shape, 2.5))
    x = np.arange(int(np.prod(shape)), dtype=np.int16).reshape(shape)
    assert_close(jit(lambda v: cnp.zeros_like(v))(x), np.zeros_like(x))
    assert_close(jit(lambda v: cnp.ones_like(v, dtype=dt))(x), np.ones_like(x, dtype=dt))
    assert_close(jit(lambda v: np.zeros_like(v))(x), np.zeros_like(x))
    assert_close(jit(lambda v: np.ones_like(v))(x), np.ones_like(x))


@pytest.mark.parametrize("args", [(5,), (0,), (2, 7), (7, 2), (1, 10, 3), (10, 1, -3), (-5, 5, 2), (0.0, 1.0, 0.1),
                                  (1.5, -2.0, -0.25), (3.0,), (0, 5, 0.5)])
def test_arange(args):
    want = np.arange(*args)
    is_int = all(isinstance(a, int) for a in args)
    got = jit(lambda: cnp.arange(*args))()
    assert_close(got, want.astype(np.int32 if is_int else np.float32), rtol=1e-6, atol=1e-6)
    assert_close(jit(lambda: cnp.arange(*args, dtype=np.float64))(), np.arange(*args, dtype=np.float64),
                 rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,m,k", [(3, None, 0), (3, 4, 1), (4, 2, -1), (2, 3, 5), (0, 2, 0), (3, 3, -3)])
def test_eye(n, m, k):
    assert_close(jit(lambda: cnp.eye(n, m, k))(), np.eye(n, m, k, dtype=np.float32))
    assert_close(jit(lambda: cnp.eye(n, m, k, dtype=np.int8))(), np.eye(n, m, k, dtype=np.int8))


@given(arrays(np.float32, small_shapes, elements=floats(np.float32, -100, 100)),
       st.sampled_from([np.float64, np.float16, np.int32, np.int8, np.uint8, np.bool_, np.float32,
                        ml_dtypes.bfloat16]))
@SETTINGS
def test_astype(x, dt):
    if np.dtype(dt).kind in "iu":
        x = np.clip(x, np.iinfo(dt).min, np.iinfo(dt).max)       # in range: numpy's cast is defined
    want = x.astype(dt)
    assert_close(jit(lambda v: cnp.astype(v, dt))(x), want)
    assert_close(jit(lambda v: v.astype(dt))(x), want)


# ----------------------------------------------------------------------------------------------
# Plain numpy on tracers: the same function run eagerly by numpy and through tj.jit
# ----------------------------------------------------------------------------------------------

W = np.linspace(-1, 1, 6).reshape(3, 2)

NUMPY_PROGRAMS = {
    "exp_sin": lambda x: np.exp(x) + np.sin(x) * 2,
    "matmul_op": lambda x: x @ W,
    "matmul_fn": lambda x: np.matmul(x, W),
    "dot": lambda x: np.dot(x, W),
    "einsum": lambda x: np.einsum("ij,jk->ik", x, W),
    "sum_axis0_method": lambda x: x.sum(axis=0),
    "transpose_T": lambda x: x.T,
    "np_sum": lambda x: np.sum(x),
    "np_mean": lambda x: np.mean(x, axis=1, keepdims=True),
    "method_mean_max_min": lambda x: (x.mean(), x.max(axis=1), x.min(), x.prod(axis=0)),
    "np_where": lambda x: np.where(x > 0, x, -x * 0.5),
    "relu": lambda x: np.maximum(x, 0),
    "operators": lambda x: (x + 1, 1 - x, 2 * x, x / 4, 3 / (x + 10), x ** 2, -x, +x, abs(x)),
    "floor_mod": lambda x: (x // 0.3, x % 0.3, x // -2, x % -2),
    "comparisons": lambda x: (x < 0.5, x <= 0.5, x > 0.5, x >= 0.5, x == x, x != 0.5),
    "np_minmax": lambda x: (np.max(x), np.min(x, axis=0), np.amax(x, axis=1)),
    "reshape_method": lambda x: x.reshape(2, -1).reshape((4, 3)),
    "np_transpose": lambda x: np.transpose(x, (1, 0)),
    "concat_stack": lambda x: (np.concatenate([x, x * 2], axis=1), np.stack([x, x], axis=-1)),
    "clip": lambda x: np.clip(x, -0.5, 0.5),
    "tanh_log1p": lambda x: np.tanh(x) + np.log1p(np.abs(x)) - np.expm1(x * 0.1),
    "sqrt_abs": lambda x: np.sqrt(np.abs(x)),
    "getitem": lambda x: (x[1:3], x[::-1, 0], x[:, None, 1], x[..., -1]),
    "astype": lambda x: x.astype(np.float32),
    "expand_squeeze": lambda x: (np.expand_dims(x, 0), np.squeeze(x[None, :, :1])),
    "swap_move": lambda x: (np.swapaxes(x, 0, 1), np.moveaxis(x[None], 0, -1)),
    "broadcast_to": lambda x: np.broadcast_to(x[:, :1], (4, 3)),
    "like": lambda x: (np.zeros_like(x), np.ones_like(x), np.full_like(x, 7.0)),
    "argmax": lambda x: (np.argmax(x, axis=0), np.argmax(x), x.argmax(axis=1)),
    "power": lambda x: (np.power(np.abs(x) + 1, 1.5), np.square(x)),
    "heaviside_sign": lambda x: (np.heaviside(x, 0.5), np.sign(x)),
    "cos_exp_chain": lambda x: np.cos(np.exp(-x * x)).sum(axis=-1),
    "array_left": lambda x: np.ones((4, 3)) + x * np.arange(3.0),
    "ufunc_reduce": lambda x: (np.add.reduce(x, axis=0), np.maximum.reduce(x, axis=1)),
    "numpy2_keywords": lambda x: (np.reshape(x, shape=(3, 4)), np.clip(x, min=-1, max=1), np.astype(x, np.float32),
                                  np.einsum("ij,jk->ik", x, W, optimize=True), np.sum(x, axis=0, out=None),
                                  np.concatenate([x, x], axis=0, dtype=np.float32)),
    "ufunc_dtype": lambda x: (np.add(x, 1, dtype=np.float32), np.multiply(x, x, dtype=np.float16)),
    "divmod": lambda x: divmod(x, 0.7) + np.divmod(x, -1.5) + divmod(2.5, x[0, 0] + 5),
    "mixed_precision": lambda x: x.astype(np.float32) * np.float64(0.1) + x.astype(np.float16),
}


@pytest.mark.parametrize("name", sorted(NUMPY_PROGRAMS))
@given(x=hnp.arrays(np.float64, (4, 3), elements=floats(lo=-3, hi=3)))
@settings(max_examples=10, deadline=None)
def test_plain_numpy_on_tracers(name, x):
    fn = NUMPY_PROGRAMS[name]
    want = fn(x)
    got = jit(fn)(x)
    if name == "argmax":          # indices are i32 under jit (numpy: i64), as in JAX
        want = tuple(w.astype(np.int32) for w in want)
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want)
        for g, w in zip(got, want):
            assert_close(g, w, rtol=1e-12, atol=1e-12)
    else:
        assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_numpy_functions_reject_what_they_cannot_trace():
    x = np.ones(3)
    with pytest.raises(TypeError):
        jit(lambda v: np.add(v, v, out=v))(x)
    with pytest.raises(TypeError):
        jit(lambda v: np.add(v, v, where=v > 0))(x)
    with pytest.raises(TypeError):
        jit(lambda v: np.sum(v, out=np.zeros(())))(x)
    with pytest.raises(TypeError):
        jit(lambda v: np.fft.fft(v))(x)
    with pytest.raises(tj.ConcretizationError):
        jit(lambda v: np.asarray(v))(x)
