"""The numpy interpreter (runtime.eval_jaxpr) against numpy and hand-derived values, one primitive at a time.

Every primitive of the registry is exercised by a one-equation program (the primitive bound inside
tj.make_jaxpr), evaluated by runtime.eval_jaxpr and compared with an independent numpy (or pure
Python) computation of the same thing. ``test_every_primitive_is_tested`` fails when a primitive is
added without a test here.
"""
import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import compiler as tj
import runtime
from compiler.ir.core import PRIMITIVES

# no RuntimeWarning (overflow, divide by zero, invalid) may escape the interpreter
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

BF16 = np.dtype(ml_dtypes.bfloat16)
SETTINGS = settings(max_examples=25, deadline=None)


def one_eqn(name, *args, **params):
    """Evaluate primitive ``name`` on ``args`` through a one-equation jaxpr and the numpy interpreter."""
    prim = PRIMITIVES[name]
    closed = tj.make_jaxpr(lambda *a: prim.bind(*a, **params))(*args)
    assert [e.primitive.name for e in closed.eqns] == [name]
    outs = runtime.eval_jaxpr(closed, *args)
    assert len(outs) == len(closed.out_avals)
    for o, a in zip(outs, closed.out_avals):
        assert isinstance(o, np.ndarray)
        assert o.dtype == a.dtype.np and o.shape == a.shape, (o.dtype, o.shape, str(a))
    return outs if prim.multiple_results else outs[0]


def quiet(fn, *args):
    with np.errstate(all="ignore"):
        return fn(*args)


def assert_same(got, want):
    """Equal values and dtype (NaNs in the same places)."""
    want = np.asarray(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------
# Unary elementwise
# ----------------------------------------------------------------------------------------------

def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


# name -> reference in float64 (computed independently of the interpreter's formulation)
UNARY_FLOAT = {
    "neg": lambda x: -x,
    "sign": lambda x: np.where(np.isnan(x), np.nan, (x > 0).astype(float) - (x < 0)),
    "abs": lambda x: np.where(x < 0, -x, x),
    "exp": np.exp, "log": np.log, "log1p": np.log1p, "expm1": np.expm1, "tanh": np.tanh,
    "logistic": lambda x: 1 / (1 + np.exp(-x)),
    "sin": np.sin, "cos": np.cos, "sqrt": np.sqrt,
    "rsqrt": lambda x: 1 / np.sqrt(x),
    "erf": _erf,
    "floor": np.floor, "ceil": np.ceil,
    "round": lambda x: np.vectorize(lambda v: float(round(v)) if np.isfinite(v) else v, otypes=[float])(x),
    "stop_gradient": lambda x: x,
}
TRANSCENDENTAL = {"exp", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "sqrt", "rsqrt", "erf"}
DOMAIN = {"log": (2 ** -10, 64), "log1p": (-0.75, 64), "sqrt": (0, 64), "rsqrt": (2 ** -10, 64), "exp": (-10, 10),
          "expm1": (-10, 10)}
TOL = {np.float64: 1e-12, np.float32: 2e-6, np.float16: 2e-3}


@pytest.mark.parametrize("name", sorted(UNARY_FLOAT))
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16])
@given(data=st.data())
@SETTINGS
def test_unary_float_matches_float64_reference(name, dt, data):
    lo, hi = DOMAIN.get(name, (-20, 20))
    x = data.draw(hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                             elements=st.floats(lo, hi, width=np.dtype(dt).itemsize * 8)))
    got = one_eqn(name, x)
    assert got.dtype == x.dtype and got.shape == x.shape
    want = quiet(UNARY_FLOAT[name], x.astype(np.float64))
    if name in TRANSCENDENTAL:
        np.testing.assert_allclose(got.astype(np.float64), want, rtol=TOL[dt], atol=TOL[dt])
    else:                                # exact operations: correctly rounded
        assert_same(got, want.astype(dt))


@pytest.mark.parametrize("name", sorted(UNARY_FLOAT))
def test_unary_special_values(name):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-30], np.float32)
    got = one_eqn(name, x)
    want = quiet(UNARY_FLOAT[name], x.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-30)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_unary_hand_values():
    assert_same(one_eqn("logistic", np.array([0.0, np.inf, -np.inf, -1e4], np.float32)),
                np.array([0.5, 1.0, 0.0, 0.0], np.float32))
    assert_same(one_eqn("round", np.array([0.5, 1.5, 2.5, -0.5, -1.5], np.float32)),
                np.array([0.0, 2.0, 2.0, -0.0, -2.0], np.float32))          # half to even
    assert_same(one_eqn("rsqrt", np.array([4.0, 0.0, -1.0], np.float32)), np.array([0.5, np.inf, np.nan], np.float32))
    assert_same(one_eqn("log", np.array([0.0, -1.0, 1.0], np.float64)), np.array([-np.inf, np.nan, 0.0]))
    assert_same(one_eqn("erf", np.array([0.0, np.inf, -np.inf], np.float32)), np.array([0.0, 1.0, -1.0], np.float32))


def test_is_finite():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 3.0, -1e38], np.float32)
    assert_same(one_eqn("is_finite", x), np.array([False, False, False, True, True, True]))
    assert_same(one_eqn("is_finite", np.zeros((0, 2), np.float16)), np.zeros((0, 2), bool))


@pytest.mark.parametrize("dt", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32])
def test_unary_integer_wraps(dt):
    info = np.iinfo(dt)
    x = np.array([info.min, info.min + 1, -1 if info.min else 0, 0, 1, info.max], dt)
    py = [int(v) for v in x]
    wrap = lambda vs: np.array([v % 2 ** info.bits for v in vs], np.uint64).astype(dt)  # noqa: E731
    assert_same(one_eqn("neg", x), wrap([-v for v in py]))
    assert_same(one_eqn("abs", x), wrap([abs(v) for v in py]))                       # abs(min) == min
    assert_same(one_eqn("sign", x), np.array([(v > 0) - (v < 0) for v in py]).astype(dt))
    assert_same(one_eqn("not", x), wrap([~v for v in py]))
    assert_same(one_eqn("stop_gradient", x), x)


def test_bool_not():
    assert_same(one_eqn("not", np.array([True, False])), np.array([False, True]))
    assert_same(one_eqn("not", np.zeros((0,), bool)), np.zeros((0,), bool))


# ----------------------------------------------------------------------------------------------
# Binary elementwise
# ----------------------------------------------------------------------------------------------

# float reference in float64, rounded once to the operand type (for + - * / and fmod this equals the
# correctly rounded result in f32/f16, since float64 carries more than twice their precision)
BINARY_FLOAT = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "rem": np.fmod,                                    # C fmod for floats: sign of the dividend
    "max": lambda x, y: np.where(np.isnan(x) | np.isnan(y), np.nan, np.where(x > y, x, y)),
    "min": lambda x, y: np.where(np.isnan(x) | np.isnan(y), np.nan, np.where(x < y, x, y)),
    "pow": np.power,
}
COMPARE = {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
           "ge": np.greater_equal}


def _float_pair(dt, shapes=None):
    el = st.floats(-1e3, 1e3, width=np.dtype(dt).itemsize * 8)
    return st.tuples(*[hnp.arrays(dt, s, elements=el) for s in shapes])


@pytest.mark.parametrize("name", sorted(BINARY_FLOAT))
@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16])
@given(data=st.data())
@SETTINGS
def test_binary_float(name, dt, data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    kind = data.draw(st.sampled_from(["same", "scalar_left", "scalar_right"]))
    shapes = {"same": (shape, shape), "scalar_left": ((), shape), "scalar_right": (shape, ())}[kind]
    x, y = data.draw(_float_pair(dt, shapes))
    if name == "pow":
        x = np.abs(x)
        y = (y / 100).astype(dt)
    got = one_eqn(name, x, y)
    want = quiet(BINARY_FLOAT[name], x.astype(np.float64), y.astype(np.float64))
    if name == "pow":
        np.testing.assert_allclose(got.astype(np.float64), quiet(lambda: want.astype(dt)).astype(np.float64),
                                   rtol=4 * TOL[dt], atol=0)
        assert got.dtype == dt
    else:
        assert_same(got, quiet(lambda w: w.astype(dt), want))


@pytest.mark.parametrize("name,dt", [(n, d) for n in sorted(COMPARE)
                                     for d in [np.float32, np.int8, np.uint16, np.int64, np.bool_]
                                     if d is not np.bool_ or n in ("eq", "ne")])      # bools: eq/ne only
@given(data=st.data())
@SETTINGS
def test_comparisons(name, dt, data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    el = st.sampled_from([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan]) if dt is np.float32 else None
    x = data.draw(hnp.arrays(dt, shape, elements=el))
    y = data.draw(hnp.arrays(dt, shape, elements=el))
    got = one_eqn(name, x, y)
    with np.errstate(all="ignore"):
        pairs = [(a.item(), b.item()) for a, b in zip(x.ravel(), y.ravel())]
    op = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
          "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}[name]
    assert_same(got, np.array([op(a, b) for a, b in pairs], bool).reshape(shape))   # Python semantics


def test_nan_propagation_in_max_min():
    x = np.array([np.nan, 1.0, np.nan, -np.inf, np.inf], np.float32)
    y = np.array([1.0, np.nan, np.nan, np.nan, -np.inf], np.float32)
    assert_same(one_eqn("max", x, y), np.array([np.nan, np.nan, np.nan, np.nan, np.inf], np.float32))
    assert_same(one_eqn("min", x, y), np.array([np.nan, np.nan, np.nan, np.nan, -np.inf], np.float32))
    assert_same(one_eqn("add", np.float32(np.inf), np.array([-np.inf, 1.0], np.float32)),
                np.array([np.nan, np.inf], np.float32))
    assert_same(one_eqn("div", np.array([1.0, -1.0, 0.0], np.float32), np.zeros(3, np.float32)),
                np.array([np.inf, -np.inf, np.nan], np.float32))
    assert_same(one_eqn("rem", np.array([1.0, np.inf, 5.0], np.float32), np.array([0.0, 2.0, np.inf], np.float32)),
                np.array([np.nan, np.nan, 5.0], np.float32))


INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def _py_int_op(name, a, b):
    """Python-int semantics (unbounded), the independent truth; the result is then wrapped."""
    if name == "div":
        return 0 if b == 0 else a // b                 # floor division, x // 0 == 0 (our contract)
    if name == "rem":
        return 0 if b == 0 else a % b                  # sign of the divisor, x % 0 == 0
    return {"add": a + b, "sub": a - b, "mul": a * b, "max": max(a, b), "min": min(a, b),
            "and": a & b, "or": a | b, "xor": a ^ b}[name]


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "rem", "max", "min", "and", "or", "xor"])
@pytest.mark.parametrize("dt", INT_DTYPES)
@given(data=st.data())
@settings(max_examples=15, deadline=None)
def test_binary_int_wraps_like_numpy(name, dt, data):
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5))
    info = np.iinfo(dt)
    edge = st.sampled_from([info.min, info.max, 0, 1, -1 if info.min else 2, info.min + 1, info.max - 1])
    el = st.one_of(edge, st.integers(int(info.min), int(info.max)), st.integers(-3, 3).filter(
        lambda v: info.min <= v))
    x = data.draw(hnp.arrays(dt, shape, elements=el))
    y = data.draw(hnp.arrays(dt, shape, elements=el))
    got = one_eqn(name, x, y)
    want = [_py_int_op(name, int(a), int(b)) % 2 ** info.bits for a, b in zip(x.ravel(), y.ravel())]
    assert_same(got, np.array(want, np.uint64).astype(dt).reshape(shape))


def test_integer_division_by_zero_and_signs():
    x = np.array([7, -7, 7, -7, 0, 5, -5, -128], np.int8)
    y = np.array([2, 2, -2, -2, 0, 0, 0, -1], np.int8)
    assert_same(one_eqn("div", x, y), np.array([3, -4, -4, 3, 0, 0, 0, -128], np.int8))
    assert_same(one_eqn("rem", x, y), np.array([1, 1, -1, -1, 0, 0, 0, 0], np.int8))
    assert_same(one_eqn("div", np.int32(9), np.array([0, 3, -4], np.int32)), np.array([0, 3, -3], np.int32))
    assert_same(one_eqn("rem", np.array([3, 0], np.uint8), np.uint8(0)), np.array([0, 0], np.uint8))
    assert_same(one_eqn("add", np.array([127], np.int8), np.int8(1)), np.array([-128], np.int8))
    assert_same(one_eqn("sub", np.array([0], np.uint8), np.uint8(1)), np.array([255], np.uint8))
    assert_same(one_eqn("mul", np.array([2**31 - 1], np.int32), np.int32(2)), np.array([-2], np.int32))


@pytest.mark.parametrize("dt", INT_DTYPES)
@given(data=st.data())
@settings(max_examples=15, deadline=None)
def test_shifts_on_the_bit_pattern(dt, data):
    """shift_left / shift_right_logical act on the unsigned bit pattern; counts outside [0, bits) give 0."""
    bits = 8 * np.dtype(dt).itemsize
    shape = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4))
    x = data.draw(hnp.arrays(dt, shape))
    lo = -3 if np.dtype(dt).kind == "i" else 0
    y = data.draw(hnp.arrays(dt, shape, elements=st.integers(lo, min(bits + 3, np.iinfo(dt).max))))
    pattern = [int(v) % 2 ** bits for v in x.ravel()]              # two's complement bit pattern
    counts = [int(c) for c in y.ravel()]
    left = [(p << c) % 2 ** bits if 0 <= c < bits else 0 for p, c in zip(pattern, counts)]
    right = [p >> c if 0 <= c < bits else 0 for p, c in zip(pattern, counts)]
    back = lambda vs: np.array(vs, np.uint64).astype(dt).reshape(shape)     # noqa: E731  (wraps)
    assert_same(one_eqn("shift_left", x, y), back(left))
    assert_same(one_eqn("shift_right_logical", x, y), back(right))


def test_shift_hand_values():
    assert_same(one_eqn("shift_right_logical", np.array([-1, -128, 64], np.int8), np.int8(1)),
                np.array([127, 64, 32], np.int8))
    assert_same(one_eqn("shift_left", np.array([1, 3], np.int8), np.array([7, 8], np.int8)),
                np.array([-128, 0], np.int8))
    assert_same(one_eqn("shift_left", np.uint32(1), np.array([31, 32, 40], np.uint32)),
                np.array([2 ** 31, 0, 0], np.uint32))


def test_bool_binary_ops():
    x = np.array([True, True, False, False])
    y = np.array([True, False, True, False])
    assert_same(one_eqn("and", x, y), np.array([True, False, False, False]))
    assert_same(one_eqn("or", x, y), np.array([True, True, True, False]))
    assert_same(one_eqn("xor", x, y), np.array([False, True, True, False]))
    assert_same(one_eqn("eq", x, y), np.array([True, False, False, True]))
    assert_same(one_eqn("ne", x, np.bool_(True)), np.array([False, False, True, True]))


def test_empty_operands():
    e = np.zeros((0, 3), np.float32)
    for name in ("add", "mul", "max", "div", "pow", "lt"):
        out = one_eqn(name, e, e)
        assert out.shape == (0, 3)
    assert one_eqn("add", np.float32(1), e).shape == (0, 3)
    assert one_eqn("exp", e).shape == (0, 3)
    assert one_eqn("erf", e).shape == (0, 3)


def test_bf16_arithmetic():
    vals = np.array([1.0, 3.0, -0.1, 1e3, 7.5, np.inf], np.float32)
    x = vals.astype(BF16)
    y = np.array([0.3, 3.0, 2.0, -1e-2, 0.0, 1.0], np.float32).astype(BF16)
    for name, ref in [("add", np.add), ("mul", np.multiply), ("sub", np.subtract), ("div", np.divide)]:
        got = one_eqn(name, x, y)
        assert got.dtype == BF16
        want = quiet(ref, x.astype(np.float64), y.astype(np.float64)).astype(np.float32).astype(BF16)
        np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2 ** -8)
    got = one_eqn("exp", np.array([0.0, 1.0, -1.0], np.float32).astype(BF16))
    assert got.dtype == BF16
    np.testing.assert_allclose(got.astype(np.float32), np.exp([0.0, 1.0, -1.0]), rtol=2 ** -7)
    assert_same(one_eqn("lt", x, y), x.astype(np.float32) < y.astype(np.float32))
    ones = np.ones(1000, BF16)                     # bf16 sums accumulate in f32: 256 + 1 == 256 in bf16
    assert_same(one_eqn("reduce_sum", ones, axes=(0,)), np.asarray(1000.0, BF16))
    assert_same(one_eqn("cumsum", ones, axis=0)[-1:], np.array([1000.0], BF16))
    nan = np.array([1.0, np.nan], np.float32).astype(BF16)
    assert np.isnan(one_eqn("reduce_max", nan, axes=(0,)).astype(np.float32))
    assert one_eqn("argmax", nan, axes=(0,), index_dtype=np.dtype(np.int32)) == 1


def test_f16_arithmetic_rounds_once():
    x = np.array([1.0, 2049.0, 0.1, 6e4, -3.3], np.float16)
    y = np.array([2 ** -11, 1.0, 0.2, 6e4, 1.7], np.float16)
    for name, ref in [("add", np.add), ("mul", np.multiply), ("div", np.divide), ("sub", np.subtract)]:
        want = quiet(lambda: ref(x.astype(np.float64), y.astype(np.float64)).astype(np.float16))
        assert_same(one_eqn(name, x, y), want)
    assert one_eqn("add", x, y)[3] == np.inf                 # 6e4 + 6e4 overflows f16


# ----------------------------------------------------------------------------------------------
# integer_pow, convert_element_type, select_n
# ----------------------------------------------------------------------------------------------

@given(st.integers(-4, 6), hnp.arrays(np.float64, st.integers(0, 5), elements=st.floats(-3, 3)))
@SETTINGS
def test_integer_pow_float(y, x):
    got = one_eqn("integer_pow", x, y=y)
    want = np.ones_like(x)
    for _ in range(abs(y)):                      # repeated multiplication (or division for y < 0)
        want = quiet(lambda: want * x if y > 0 else want / x)
    np.testing.assert_allclose(got, want, rtol=1e-13)


def test_integer_pow_int_wraps():
    x = np.array([2, -3, 0, 1, 16], np.int8)
    assert_same(one_eqn("integer_pow", x, y=3), np.array([8, -27, 0, 1, 0], np.int8))     # 4096 wraps to 0
    assert_same(one_eqn("integer_pow", x, y=0), np.ones(5, np.int8))
    assert_same(one_eqn("integer_pow", np.float32(0.5), y=-2), np.float32(4.0))


def _clamped(v, dt):
    if math.isnan(v):
        return 0
    info = np.iinfo(dt)
    if v >= info.max:
        return int(info.max)
    if v <= info.min:
        return int(info.min)
    return int(v)                                        # truncation toward zero


@pytest.mark.parametrize("src", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("dst", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64])
def test_convert_float_to_int_clamps(src, dst):
    vals = [np.nan, np.inf, -np.inf, 1e30, -1e30, 2.7, -2.7, 0.5, -0.5, 0.0, 127.5, 128.0, -129.0, 255.9,
            256.0, 3e9, -3e9, 9.3e18, 2.0 ** 63, -2.0 ** 63, 1.9e19, 65504.0]
    x = quiet(lambda: np.array(vals, np.float64).astype(src))          # f16: large values become inf
    got = one_eqn("convert_element_type", x, new_dtype=np.dtype(dst))
    want = np.array([_clamped(float(v), dst) for v in x], dtype=object).astype(dst)
    assert_same(got, want)


def test_convert_bf16_to_int_clamps():
    x = np.array([np.nan, np.inf, -1e30, 300.0, -3.5, 7.9], np.float32).astype(BF16)
    assert_same(one_eqn("convert_element_type", x, new_dtype=np.dtype(np.int8)),
                np.array([0, 127, -128, 127, -3, 7], np.int8))


@given(hnp.arrays(np.float32, st.integers(0, 8), elements=st.floats(-1e5, 1e5, width=32)))
@SETTINGS
def test_convert_between_float_types_rounds_like_numpy(x):
    for dst in (np.float16, np.float64, BF16):
        got = one_eqn("convert_element_type", x, new_dtype=np.dtype(dst))
        assert_same(got, quiet(lambda: x.astype(dst)))
    assert_same(one_eqn("convert_element_type", x, new_dtype=np.dtype(bool)), x != 0)


def test_convert_int_and_bool():
    x = np.array([300, -1, 0, 2**31 - 1], np.int64)
    assert_same(one_eqn("convert_element_type", x, new_dtype=np.dtype(np.int8)),
                np.array([300 % 256, -1, 0, -1], np.int8))                 # wraps like numpy's astype
    assert_same(one_eqn("convert_element_type", x, new_dtype=np.dtype(np.float32)),
                np.array([300.0, -1.0, 0.0, 2.0 ** 31], np.float32))
    assert_same(one_eqn("convert_element_type", x, new_dtype=np.dtype(bool)), np.array([True, True, False, True]))
    assert_same(one_eqn("convert_element_type", np.array([True, False]), new_dtype=np.dtype(np.float16)),
                np.array([1.0, 0.0], np.float16))
    assert_same(one_eqn("convert_element_type", np.array([np.nan, -0.0, 0.5], np.float32),
                        new_dtype=np.dtype(bool)), np.array([True, False, True]))


def test_select_n():
    which = np.array([True, False, True])
    a, b = np.array([1.0, 2.0, 3.0], np.float32), np.array([10.0, 20.0, 30.0], np.float32)
    assert_same(one_eqn("select_n", which, a, b), np.array([10.0, 2.0, 30.0], np.float32))   # False -> case 0
    assert_same(one_eqn("select_n", np.bool_(False), a, b), a)
    idx = np.array([0, 2, 1, 2], np.int32)
    cases = [np.full(4, k, np.int16) for k in (5, 6, 7)]
    assert_same(one_eqn("select_n", idx, *cases), np.array([5, 7, 6, 7], np.int16))
    assert_same(one_eqn("select_n", np.zeros((0, 2), bool), np.zeros((0, 2)), np.ones((0, 2))), np.zeros((0, 2)))
    nan = np.array([np.nan, np.nan], np.float32)
    assert_same(one_eqn("select_n", np.array([False, True]), a[:2], nan), np.array([1.0, np.nan], np.float32))


# ----------------------------------------------------------------------------------------------
# Structural
# ----------------------------------------------------------------------------------------------

def test_broadcast_in_dim():
    x = np.arange(3, dtype=np.int32)
    out = one_eqn("broadcast_in_dim", x, shape=(2, 3, 4), broadcast_dimensions=(1,))
    assert_same(out, np.array([[[v] * 4 for v in range(3)]] * 2, np.int32))
    y = np.array([[1.0], [2.0]], np.float32)
    assert_same(one_eqn("broadcast_in_dim", y, shape=(2, 3), broadcast_dimensions=(0, 1)),
                np.array([[1.0] * 3, [2.0] * 3], np.float32))
    assert_same(one_eqn("broadcast_in_dim", np.float64(7), shape=(0, 2), broadcast_dimensions=()), np.zeros((0, 2)))


@given(hnp.arrays(np.int16, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)), st.randoms())
@SETTINGS
def test_reshape_transpose_rev_squeeze_expand(x, rnd):
    flat = x.ravel().tolist()
    assert_same(one_eqn("reshape", x, new_sizes=(x.size,)), np.array(flat, np.int16))
    perm = list(range(x.ndim))
    rnd.shuffle(perm)
    got = one_eqn("transpose", x, permutation=tuple(perm))
    for idx in np.ndindex(*got.shape):                      # out[i...] == x[i permuted back]
        src = [0] * x.ndim
        for k, p in enumerate(perm):
            src[p] = idx[k]
        assert got[idx] == x[tuple(src)]
    dims = tuple(d for d in range(x.ndim) if rnd.random() < 0.5)
    got = one_eqn("rev", x, dimensions=dims)
    for idx in np.ndindex(*x.shape):
        src = tuple(x.shape[d] - 1 - i if d in dims else i for d, i in enumerate(idx))
        assert got[idx] == x[src]
    ones = tuple(d for d in range(x.ndim) if x.shape[d] == 1)
    assert one_eqn("squeeze", x, dimensions=ones).shape == tuple(s for s in x.shape if s != 1)
    out = one_eqn("expand_dims", x, dimensions=(0, x.ndim + 1))
    assert out.shape == (1,) + x.shape + (1,)
    assert out.ravel().tolist() == flat


def test_concatenate():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.zeros((2, 0), np.float32)
    c = np.full((2, 1), -1, np.float32)
    assert_same(one_eqn("concatenate", a, b, c, dimension=1),
                np.array([[0, 1, 2, -1], [3, 4, 5, -1]], np.float32))
    assert_same(one_eqn("concatenate", a, a, dimension=0), np.array([[0, 1, 2], [3, 4, 5]] * 2, np.float32))


def test_slice():
    x = np.arange(10, dtype=np.int32)
    assert_same(one_eqn("slice", x, start_indices=(1,), limit_indices=(8,), strides=(3,)),
                np.array([1, 4, 7], np.int32))
    assert_same(one_eqn("slice", x, start_indices=(4,), limit_indices=(4,), strides=(1,)), np.zeros(0, np.int32))
    y = np.arange(12).reshape(3, 4)
    assert_same(one_eqn("slice", y, start_indices=(1, 0), limit_indices=(3, 4), strides=(1, 2)),
                np.array([[4, 6], [8, 10]]))


def test_dynamic_slice_clamps_starts():
    x = np.arange(10, dtype=np.float32)
    for start, want in [(0, [0, 1, 2]), (3, [3, 4, 5]), (8, [7, 8, 9]), (100, [7, 8, 9]), (-5, [0, 1, 2]),
                        (-1, [0, 1, 2])]:
        assert_same(one_eqn("dynamic_slice", x, np.int32(start), slice_sizes=(3,)), np.array(want, np.float32))
    y = np.arange(12).reshape(3, 4)
    assert_same(one_eqn("dynamic_slice", y, np.int32(2), np.int32(-7), slice_sizes=(2, 2)), np.array([[4, 5], [8, 9]]))
    assert_same(one_eqn("dynamic_slice", y, np.int64(9), np.int8(1), slice_sizes=(0, 3)), np.zeros((0, 3), y.dtype))


def test_dynamic_update_slice_clamps_starts():
    x = np.zeros(6, np.int32)
    u = np.array([1, 2], np.int32)
    for start, want in [(0, [1, 2, 0, 0, 0, 0]), (3, [0, 0, 0, 1, 2, 0]), (9, [0, 0, 0, 0, 1, 2]),
                        (-4, [1, 2, 0, 0, 0, 0])]:
        assert_same(one_eqn("dynamic_update_slice", x, u, np.int32(start)), np.array(want, np.int32))
    assert_same(x, np.zeros(6, np.int32))               # the operand is not modified in place


def test_gather_clamps_indices():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], np.float32)
    idx = np.array([[0, 2], [-1, 7]], np.int32)
    assert_same(one_eqn("gather", x, idx, axis=1),
                np.array([[[1, 3], [1, 3]], [[4, 6], [4, 6]]], np.float32))      # -1 -> 0, 7 -> 2
    assert_same(one_eqn("gather", x, np.array(1, np.int64), axis=0), np.array([4, 5, 6], np.float32))
    assert_same(one_eqn("gather", x, np.zeros((0,), np.int32), axis=0), np.zeros((0, 3), np.float32))


def test_scatter_add():
    x = np.zeros((2, 4), np.float32)
    idx = np.array([0, 3, 3, -2, 9], np.int32)                       # clamped like gather: -2 -> 0, 9 -> 3
    upd = np.arange(10, dtype=np.float32).reshape(2, 5)
    got = one_eqn("scatter_add", x, idx, upd, axis=1)
    want = np.zeros((2, 4), np.float32)
    for r in range(2):
        for k, i in enumerate([0, 3, 3, 0, 3]):
            want[r, i] += upd[r, k]
    assert_same(got, want)
    assert_same(x, np.zeros((2, 4), np.float32))


def test_pad_hand_computed():
    x = np.array([1, 2, 3], np.int32)
    pv = np.int32(0)
    assert_same(one_eqn("pad", x, pv, padding_config=((2, 1, 0),)), np.array([0, 0, 1, 2, 3, 0], np.int32))
    assert_same(one_eqn("pad", x, np.int32(9), padding_config=((0, 0, 2),)), np.array([1, 9, 9, 2, 9, 9, 3], np.int32))
    assert_same(one_eqn("pad", x, pv, padding_config=((-1, 0, 0),)), np.array([2, 3], np.int32))
    assert_same(one_eqn("pad", x, pv, padding_config=((-1, -1, 1),)), np.array([0, 2, 0], np.int32))
    assert_same(one_eqn("pad", x, pv, padding_config=((-2, 2, 1),)), np.array([2, 0, 3, 0, 0], np.int32))
    assert_same(one_eqn("pad", x, pv, padding_config=((1, -2, 1),)), np.array([0, 1, 0, 2], np.int32))
    assert_same(one_eqn("pad", x, pv, padding_config=((1, -4, 1),)), np.array([0, 1], np.int32))
    assert_same(one_eqn("pad", x, pv, padding_config=((-2, -1, 0),)), np.zeros(0, np.int32))
    y = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert_same(one_eqn("pad", y, np.float32(-1), padding_config=((1, 0, 1), (0, -1, 0))),
                np.array([[-1.0], [1.0], [-1.0], [3.0]], np.float32))
    assert_same(one_eqn("pad", np.zeros((0, 1), np.float32), np.float32(5), padding_config=((1, 1, 3), (0, 0, 0))),
                np.full((2, 1), 5.0, np.float32))


@given(st.integers(0, 5), st.integers(-3, 3), st.integers(-3, 3), st.integers(0, 2))
@SETTINGS
def test_pad_1d_against_python_lists(n, lo, hi, interior):
    size = lo + hi + n + max(n - 1, 0) * interior
    if size < 0:                                    # cropping more than there is: a type error
        with pytest.raises(tj.ShapeError):
            one_eqn("pad", np.zeros(n, np.int32), np.int32(0), padding_config=((lo, hi, interior),))
        return
    x = np.arange(1, n + 1, dtype=np.int32)
    spread = []
    for k, v in enumerate(x.tolist()):
        spread += [v] + ([0] * interior if k < n - 1 else [])
    full = [0] * max(lo, 0) + spread + [0] * max(hi, 0)       # pad, then crop (negative padding)
    full = full[max(-lo, 0):len(full) - max(-hi, 0)]
    got = one_eqn("pad", x, np.int32(0), padding_config=((lo, hi, interior),))
    assert got.tolist() == full[:size] and len(full) == size


def test_iota():
    assert_same(one_eqn("iota", dtype=np.dtype(np.int32), shape=(2, 3), dimension=1),
                np.array([[0, 1, 2], [0, 1, 2]], np.int32))
    assert_same(one_eqn("iota", dtype=np.dtype(np.float32), shape=(3, 1), dimension=0),
                np.array([[0.0], [1.0], [2.0]], np.float32))
    assert one_eqn("iota", dtype=np.dtype(np.int8), shape=(0,), dimension=0).shape == (0,)


# ----------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------

@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=4),
                  elements=st.floats(-100, 100)), st.data())
@SETTINGS
def test_reductions_float(x, data):
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, x.ndim - 1)))))
    kept = [d for d in range(x.ndim) if d not in axes]
    out_shape = tuple(x.shape[d] for d in kept)

    def groups():          # for each output position, the list of reduced elements (pure Python)
        out = {}
        for idx in np.ndindex(*x.shape):
            out.setdefault(tuple(idx[d] for d in kept), []).append(float(x[idx]))
        return out

    g = groups()
    s = one_eqn("reduce_sum", x, axes=axes)
    p = one_eqn("reduce_prod", x, axes=axes)
    assert s.shape == p.shape == out_shape
    for k in np.ndindex(*out_shape):
        np.testing.assert_allclose(s[k], math.fsum(g.get(k, [])), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(p[k], math.prod(g.get(k, [])), rtol=1e-12)
    if all(x.shape[a] > 0 for a in axes):
        mx, mn = one_eqn("reduce_max", x, axes=axes), one_eqn("reduce_min", x, axes=axes)
        for k in np.ndindex(*out_shape):
            assert mx[k] == max(g[k]) and mn[k] == min(g[k])


def test_reductions_edge_cases():
    e = np.zeros((2, 0, 3), np.float32)
    assert_same(one_eqn("reduce_sum", e, axes=(1,)), np.zeros((2, 3), np.float32))
    assert_same(one_eqn("reduce_prod", e, axes=(1,)), np.ones((2, 3), np.float32))
    assert one_eqn("reduce_max", e, axes=(0,)).shape == (0, 3)
    with pytest.raises(tj.ShapeError):
        tj.make_jaxpr(lambda a: PRIMITIVES["reduce_max"].bind(a, axes=(1,)))(e)
    x = np.array([[1.0, np.nan, 3.0], [-np.inf, 2.0, np.inf]], np.float32)
    assert_same(one_eqn("reduce_max", x, axes=(1,)), np.array([np.nan, np.inf], np.float32))
    assert_same(one_eqn("reduce_min", x, axes=(1,)), np.array([np.nan, -np.inf], np.float32))
    assert_same(one_eqn("reduce_sum", x, axes=(0, 1)), np.float32(np.nan))
    i8 = np.array([100, 100, 100], np.int8)
    assert_same(one_eqn("reduce_sum", i8, axes=(0,)), np.int8(300 - 256))          # wraps in its own type
    assert_same(one_eqn("reduce_prod", i8, axes=(0,)), np.int8(10 ** 6 % 256 - 256 if 10 ** 6 % 256 > 127
                                                                else 10 ** 6 % 256))
    b = np.array([[True, False], [False, False]])
    assert_same(one_eqn("reduce_max", b, axes=(1,)), np.array([True, False]))
    assert_same(one_eqn("reduce_min", b, axes=(0,)), np.array([False, False]))
    assert_same(one_eqn("reduce_sum", np.arange(5, dtype=np.uint8), axes=()), np.arange(5, dtype=np.uint8))


def test_argmax():
    x = np.array([[1.0, 5.0, 5.0], [np.nan, 2.0, np.nan], [-np.inf, -np.inf, -np.inf]], np.float32)
    assert_same(one_eqn("argmax", x, axes=(1,), index_dtype=np.dtype(np.int32)), np.array([1, 0, 0], np.int32))
    assert_same(one_eqn("argmax", x, axes=(0,), index_dtype=np.dtype(np.int64)), np.array([1, 0, 1]))
    assert_same(one_eqn("argmax", np.array([False, True, True]), axes=(0,), index_dtype=np.dtype(np.int8)),
                np.int8(1))
    assert one_eqn("argmax", np.zeros((0, 3)), axes=(1,), index_dtype=np.dtype(np.int32)).shape == (0,)


def test_cumsum():
    x = np.array([[1, 2, 3], [4, 5, 6]], np.int32)
    assert_same(one_eqn("cumsum", x, axis=1), np.array([[1, 3, 6], [4, 9, 15]], np.int32))
    assert_same(one_eqn("cumsum", x, axis=0, reverse=True), np.array([[5, 7, 9], [4, 5, 6]], np.int32))
    assert_same(one_eqn("cumsum", np.array([100, 100], np.int8), axis=0), np.array([100, -56], np.int8))
    assert one_eqn("cumsum", np.zeros((0, 2), np.float32), axis=0).shape == (0, 2)


def _naive_window(x, dims, strides, padding, fill, op):
    xp = np.pad(x.astype(np.float64), padding, constant_values=fill)
    out_shape = [(n - k) // s + 1 for n, k, s in zip(xp.shape, dims, strides)]
    out = np.empty(out_shape)
    for idx in np.ndindex(*out_shape):
        window = xp[tuple(slice(i * s, i * s + k) for i, s, k in zip(idx, strides, dims))]
        vals = window.ravel().tolist()
        out[idx] = op(vals)
    return out


@given(st.data())
@SETTINGS
def test_reduce_window_against_loops(data):
    nd = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.lists(st.integers(1, 5), min_size=nd, max_size=nd)))
    x = data.draw(hnp.arrays(np.float32, shape, elements=st.floats(-50, 50, width=32)))
    padding = tuple(tuple(data.draw(st.lists(st.integers(0, 2), min_size=2, max_size=2))) for _ in shape)
    dims = tuple(data.draw(st.integers(1, n + lo + hi)) for n, (lo, hi) in zip(shape, padding))
    strides = tuple(data.draw(st.lists(st.integers(1, 3), min_size=nd, max_size=nd)))
    got = one_eqn("reduce_window_max", x, window_dimensions=dims, window_strides=strides, padding=padding)
    np.testing.assert_array_equal(got, _naive_window(x, dims, strides, padding, -np.inf, max).astype(np.float32))
    got = one_eqn("reduce_window_sum", x, window_dimensions=dims, window_strides=strides, padding=padding)
    np.testing.assert_allclose(got, _naive_window(x, dims, strides, padding, 0, math.fsum), rtol=1e-5, atol=1e-4)


def test_reduce_window_int_and_nan():
    x = np.array([[1, -5, 3], [2, 8, -1]], np.int32)
    got = one_eqn("reduce_window_max", x, window_dimensions=(2, 2), window_strides=(1, 1), padding=((0, 0), (1, 0)))
    assert_same(got, np.array([[2, 8, 8]], np.int32))
    got = one_eqn("reduce_window_sum", np.array([1, 2, 3], np.uint8), window_dimensions=(2,), window_strides=(2,),
                  padding=((0, 1),))
    assert_same(got, np.array([3, 3], np.uint8))
    got = one_eqn("reduce_window_max", np.array([1.0, np.nan, 0.0], np.float32), window_dimensions=(2,),
                  window_strides=(1,), padding=((0, 0),))
    assert_same(got, np.array([np.nan, np.nan], np.float32))


def test_reduce_window_bf16():
    x = np.array([1.0, -2.0, 3.0], np.float32).astype(BF16)
    got = one_eqn("reduce_window_max", x, window_dimensions=(2,), window_strides=(1,), padding=((1, 0),))
    assert_same(got, np.array([1.0, 1.0, 3.0], np.float32).astype(BF16))


# ----------------------------------------------------------------------------------------------
# Contractions
# ----------------------------------------------------------------------------------------------

@given(st.data())
@SETTINGS
def test_dot_general_against_loops(data):
    nb, nc, nfa, nfb = (data.draw(st.integers(0, 2)) for _ in range(4))
    size = st.integers(0, 3)
    bs = [data.draw(size) for _ in range(nb)]
    cs = [data.draw(size) for _ in range(nc)]
    fa = [data.draw(size) for _ in range(nfa)]
    fb = [data.draw(size) for _ in range(nfb)]
    # lay out a's axes and b's axes in a random order
    a_roles = [("b", i) for i in range(nb)] + [("c", i) for i in range(nc)] + [("f", i) for i in range(nfa)]
    b_roles = [("b", i) for i in range(nb)] + [("c", i) for i in range(nc)] + [("f", i) for i in range(nfb)]
    a_roles = data.draw(st.permutations(a_roles))
    b_roles = data.draw(st.permutations(b_roles))
    sizes = {"b": bs, "c": cs}
    a_shape = tuple((sizes.get(r) or fa)[i] if r != "f" else fa[i] for r, i in a_roles)
    b_shape = tuple((sizes.get(r) or fb)[i] if r != "f" else fb[i] for r, i in b_roles)
    dt = data.draw(st.sampled_from([np.float64, np.int32, np.int8]))
    a = data.draw(hnp.arrays(dt, a_shape, elements=st.integers(-5, 5)))
    b = data.draw(hnp.arrays(dt, b_shape, elements=st.integers(-5, 5)))
    ca = tuple(a_roles.index(("c", i)) for i in range(nc))
    cb = tuple(b_roles.index(("c", i)) for i in range(nc))
    ba = tuple(a_roles.index(("b", i)) for i in range(nb))
    bb = tuple(b_roles.index(("b", i)) for i in range(nb))
    got = one_eqn("dot_general", a, b, dimension_numbers=((ca, cb), (ba, bb)))
    # output: batch dims, then a's free dims in a's axis order, then b's free dims in b's axis order
    free_a = [i for r, i in a_roles if r == "f"]
    free_b = [i for r, i in b_roles if r == "f"]
    out_shape = tuple(bs) + tuple(fa[i] for i in free_a) + tuple(fb[i] for i in free_b)
    assert got.shape == out_shape and got.dtype == dt
    for idx in np.ndindex(*out_shape):
        bi = idx[:nb]
        ai = dict(zip(free_a, idx[nb:nb + nfa]))
        bj = dict(zip(free_b, idx[nb + nfa:]))
        total = 0
        for ci in np.ndindex(*cs):
            pick = {"b": bi, "c": ci}
            ia = tuple(pick[r][i] if r != "f" else ai[i] for r, i in a_roles)
            ib = tuple(pick[r][i] if r != "f" else bj[i] for r, i in b_roles)
            total += int(a[ia]) * int(b[ib])
        want = np.array(total % 2 ** (8 * np.dtype(dt).itemsize), np.uint64).astype(dt) if dt != np.float64 \
            else float(total)
        assert got[idx] == want


def test_dot_general_preferred_type_and_f16():
    a = np.full((2, 4), 100, np.int8)
    got = one_eqn("dot_general", a, a.T.copy(), dimension_numbers=(((1,), (0,)), ((), ())),
                  preferred_element_type=np.dtype(np.int32))
    assert_same(got, np.full((2, 2), 40000, np.int32))
    h = np.array([[0.1, 0.2], [0.3, 0.4]], np.float16)
    got = one_eqn("dot_general", h, h, dimension_numbers=(((1,), (0,)), ((), ())))
    want = (h.astype(np.float64) @ h.astype(np.float64)).astype(np.float16)
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=1e-3)
    assert got.dtype == np.float16


def _naive_conv(x, w, strides, padding, lhs_dil, rhs_dil, groups):
    n, c = x.shape[:2]
    o, cg = w.shape[:2]
    nsp = x.ndim - 2
    # dilate the input (insert zeros), then pad (negative padding crops)
    sp = [(s - 1) * d + 1 if s else 0 for s, d in zip(x.shape[2:], lhs_dil)]
    xd = np.zeros((n, c) + tuple(sp))
    xd[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in lhs_dil)] = x
    xp = np.pad(xd, [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in padding])
    xp = xp[(slice(None), slice(None)) + tuple(slice(max(-lo, 0), xp.shape[2 + i] - max(-hi, 0))
                                               for i, (lo, hi) in enumerate(padding))]
    k = [(s - 1) * d + 1 for s, d in zip(w.shape[2:], rhs_dil)]
    out_sp = [(xp.shape[2 + i] - k[i]) // strides[i] + 1 for i in range(nsp)]
    out = np.zeros((n, o) + tuple(out_sp))
    for b in range(n):
        for oc in range(o):
            g = oc // (o // groups)
            for pos in np.ndindex(*out_sp):
                total = 0.0
                for ci in range(cg):
                    for kp in np.ndindex(*w.shape[2:]):
                        src = tuple(p * s + kk * d for p, s, kk, d in zip(pos, strides, kp, rhs_dil))
                        total += xp[(b, g * cg + ci) + src] * w[(oc, ci) + kp]
                out[(b, oc) + pos] = total
    return out


@given(st.data())
@settings(max_examples=20, deadline=None)
def test_conv_against_naive_loop(data):
    nsp = data.draw(st.integers(1, 2))
    groups = data.draw(st.integers(1, 2))
    n = data.draw(st.integers(1, 2))
    cg, og = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    ksz = [data.draw(st.integers(1, 3)) for _ in range(nsp)]
    rhs_dil = tuple(data.draw(st.integers(1, 2)) for _ in range(nsp))
    lhs_dil = tuple(data.draw(st.integers(1, 2)) for _ in range(nsp))
    strides = tuple(data.draw(st.integers(1, 2)) for _ in range(nsp))
    padding = tuple((data.draw(st.integers(-1, 2)), data.draw(st.integers(-1, 2))) for _ in range(nsp))
    sizes = []
    for i in range(nsp):
        k = (ksz[i] - 1) * rhs_dil[i] + 1
        lo, hi = padding[i]
        need = max(1, k - lo - hi)                   # dilated input must cover the kernel
        m = data.draw(st.integers(1, 5))
        while ((m - 1) * lhs_dil[i] + 1) < need:
            m += 1
        sizes.append(m)
    x = data.draw(hnp.arrays(np.float64, (n, cg * groups) + tuple(sizes), elements=st.integers(-3, 3).map(float)))
    w = data.draw(hnp.arrays(np.float64, (og * groups, cg) + tuple(ksz), elements=st.integers(-3, 3).map(float)))
    got = one_eqn("conv_general_dilated", x, w, window_strides=strides, padding=padding, lhs_dilation=lhs_dil,
                  rhs_dilation=rhs_dil, feature_group_count=groups)
    np.testing.assert_array_equal(got, _naive_conv(x, w, strides, padding, lhs_dil, rhs_dil, groups))


def test_conv_f32_and_int():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    w = np.array([[[[1, 0], [0, -1]]]], np.float32)
    got = one_eqn("conv_general_dilated", x, w, window_strides=(2, 2), padding=((0, 0), (0, 0)),
                  lhs_dilation=(1, 1), rhs_dilation=(1, 1), feature_group_count=1)
    assert_same(got, np.full((1, 1, 2, 2), -5.0, np.float32))           # x[i,j] - x[i+1,j+1] == -5
    xi = np.ones((1, 2, 3), np.int32)
    wi = np.ones((1, 2, 2), np.int32)
    got = one_eqn("conv_general_dilated", xi, wi, window_strides=(1,), padding=((1, 1),), lhs_dilation=(1,),
                  rhs_dilation=(1,), feature_group_count=1)
    assert_same(got, np.array([[[2, 4, 4, 2]]], np.int32))


# ----------------------------------------------------------------------------------------------
# Control flow
# ----------------------------------------------------------------------------------------------

def _body(fn, *avals):
    """A closed sub-jaxpr (no constvars) of fn at the given example arguments."""
    closed = tj.make_jaxpr(fn)(*avals)
    assert not closed.jaxpr.constvars
    return closed.jaxpr


def test_cond():
    x = np.array([1.0, -2.0], np.float32)
    b0 = _body(lambda v: v + 1.0, x)
    b1 = _body(lambda v: v * 10.0, x)
    b2 = _body(lambda v: -v, x)
    for i, want in [(0, [2.0, -1.0]), (1, [10.0, -20.0]), (2, [-1.0, 2.0]), (7, [-1.0, 2.0]), (-3, [2.0, -1.0])]:
        (got,) = one_eqn("cond", np.int32(i), x, branches=(b0, b1, b2))
        assert_same(got, np.array(want, np.float32))
    (got,) = one_eqn("cond", np.bool_(True), x, branches=(b0, b1))
    assert_same(got, np.array([10.0, -20.0], np.float32))


def test_while():
    # consts: (limit) for cond, (step) for body; carry (i, acc): while i < limit: i += 1; acc *= step
    i0, acc0 = np.int32(0), np.float64(1.0)
    cj = _body(lambda lim, i, acc: i < lim, np.int32(0), i0, acc0)
    bj = _body(lambda step, i, acc: (i + 1, acc * step), np.float64(0), i0, acc0)
    i, acc = one_eqn("while", np.int32(5), np.float64(3.0), i0, acc0, cond_jaxpr=cj, body_jaxpr=bj,
                     cond_nconsts=1, body_nconsts=1)
    assert_same(i, np.int32(5))
    assert_same(acc, np.float64(243.0))
    i, acc = one_eqn("while", np.int32(-1), np.float64(3.0), i0, acc0, cond_jaxpr=cj, body_jaxpr=bj,
                     cond_nconsts=1, body_nconsts=1)                       # zero trips
    assert_same(i, np.int32(0))
    assert_same(acc, np.float64(1.0))


@pytest.mark.parametrize("reverse", [False, True])
def test_scan(reverse):
    # consts (scale); carry (total); xs (x): total += scale * x; y = total
    xs = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    body = _body(lambda s, c, x: (c + s * x, c + s * x), np.float32(0), np.float32(0), np.float32(0))
    total, ys = one_eqn("scan", np.float32(2.0), np.float32(0.5), xs, jaxpr=body, num_consts=1, num_carry=1,
                        length=4, reverse=reverse)
    order = list(reversed(range(4))) if reverse else list(range(4))
    want_ys, acc = np.zeros(4, np.float32), 0.5
    for i in order:
        acc += 2.0 * xs[i]
        want_ys[i] = acc
    assert_same(total, np.float32(acc))
    assert_same(ys, want_ys)
    empty = one_eqn("scan", np.float32(2.0), np.float32(0.5), np.zeros(0, np.float32), jaxpr=body, num_consts=1,
                    num_carry=1, length=0, reverse=reverse)
    assert_same(empty[0], np.float32(0.5))
    assert_same(empty[1], np.zeros(0, np.float32))


def test_checkpoint():
    body = _body(lambda a, b: (a * b, a - b), np.float32(0), np.float32(0))
    p, d = one_eqn("checkpoint", np.float32(3.0), np.float32(5.0), jaxpr=body, policy=None)
    assert_same(p, np.float32(15.0))
    assert_same(d, np.float32(-2.0))


def test_control_flow_through_lax_matches_python():
    def f(x, n):
        y = tj.lax.fori_loop(0, n, lambda i, v: v * 2 + i.astype(np.float32), x)
        z = tj.lax.cond(y.sum() > 10, lambda v: v - 1, lambda v: v + 1, y)
        return tj.lax.scan(lambda c, v: (c + v, c * v), np.float32(0), z)

    def python(x, n):
        y = x.copy()
        for i in range(n):
            y = y * 2 + i
        z = y - 1 if y.sum() > 10 else y + 1
        c, ys = np.float32(0), []
        for v in z:
            ys.append(c * v)
            c = c + v
        return c, np.array(ys, np.float32)

    x = np.array([0.5, 1.0, -1.0], np.float32)
    for n in (0, 1, 3):
        got = tj.jit(f, backend="numpy", static_argnums=1)(x, n)
        want = python(x, n)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 4), st.integers(1, 3), st.integers(0, 5), st.booleans(), st.integers(0, 2**31))
def test_sparse_dot_against_loops(m, groups, n, transpose, seed):
    """out[i, c] = sum over the stored (k, value) of column c of x[i, k] * value (transposed: the
    stored weights of row k feed column k), indices clamped: written out with Python loops."""
    rng = np.random.default_rng(seed)
    k = 4 * groups
    x = rng.integers(-3, 4, (m, n if transpose else k)).astype(np.float64)
    vals = rng.integers(-3, 4, (2 * groups, n)).astype(np.float64)
    idx = rng.integers(0, 6, (2 * groups, n)).astype(np.uint8)
    want = np.zeros((m, k if transpose else n))
    for q in range(2 * groups):
        for c in range(n):
            kk = (q // 2) * 4 + min(int(idx[q, c]), 3)
            for i in range(m):
                if transpose:
                    want[i, kk] += x[i, c] * vals[q, c]
                else:
                    want[i, c] += x[i, kk] * vals[q, c]
    got = one_eqn("sparse_dot", x, vals, idx, format="2:4", dense_shape=(k, n), transpose=transpose)
    np.testing.assert_array_equal(got, want)
    nnz = int(rng.integers(0, 2 * k + 1))
    indptr = rng.integers(-2, nnz + 3, n + 1).astype(np.int32)
    cols = rng.integers(-2, k + 2, nnz).astype(np.int32)
    cvals = rng.integers(-3, 4, nnz).astype(np.float64)
    want = np.zeros((m, k if transpose else n))
    for c in range(n):
        lo, hi = (min(max(int(p), 0), nnz) for p in indptr[c:c + 2])
        for p in range(lo, hi):
            kk = min(max(int(cols[p]), 0), k - 1)
            for i in range(m):
                if transpose:
                    want[i, kk] += x[i, c] * cvals[p]
                else:
                    want[i, c] += x[i, kk] * cvals[p]
    got = one_eqn("sparse_dot", x, indptr, cols, cvals, format="csr", dense_shape=(k, n), transpose=transpose)
    np.testing.assert_array_equal(got, want)


# ----------------------------------------------------------------------------------------------
# Coverage: every primitive of the registry has a test above
# ----------------------------------------------------------------------------------------------

SPECIFIC = {
    "is_finite": "test_is_finite", "shift_left": "test_shifts_on_the_bit_pattern",
    "shift_right_logical": "test_shifts_on_the_bit_pattern", "not": "test_unary_integer_wraps",
    "and": "test_bool_binary_ops",
    "or": "test_bool_binary_ops", "xor": "test_bool_binary_ops",
    "integer_pow": "test_integer_pow_int_wraps", "convert_element_type": "test_convert_float_to_int_clamps",
    "select_n": "test_select_n", "broadcast_in_dim": "test_broadcast_in_dim",
    "reshape": "test_reshape_transpose_rev_squeeze_expand", "transpose": "test_reshape_transpose_rev_squeeze_expand",
    "rev": "test_reshape_transpose_rev_squeeze_expand", "squeeze": "test_reshape_transpose_rev_squeeze_expand",
    "expand_dims": "test_reshape_transpose_rev_squeeze_expand", "concatenate": "test_concatenate",
    "slice": "test_slice", "dynamic_slice": "test_dynamic_slice_clamps_starts",
    "dynamic_update_slice": "test_dynamic_update_slice_clamps_starts", "gather": "test_gather_clamps_indices",
    "scatter_add": "test_scatter_add", "pad": "test_pad_hand_computed", "iota": "test_iota",
    "reduce_sum": "test_reductions_float", "reduce_prod": "test_reductions_float",
    "reduce_max": "test_reductions_float", "reduce_min": "test_reductions_float", "argmax": "test_argmax",
    "cumsum": "test_cumsum", "reduce_window_max": "test_reduce_window_against_loops",
    "reduce_window_sum": "test_reduce_window_against_loops", "dot_general": "test_dot_general_against_loops",
    "conv_general_dilated": "test_conv_against_naive_loop", "cond": "test_cond", "while": "test_while",
    "scan": "test_scan", "checkpoint": "test_checkpoint", "sparse_dot": "test_sparse_dot_against_loops",
}


def test_every_primitive_is_tested():
    covered = set(UNARY_FLOAT) | set(BINARY_FLOAT) | set(COMPARE) | set(SPECIFIC)
    for test_name in SPECIFIC.values():
        assert callable(globals().get(test_name)), test_name
    missing = sorted(set(PRIMITIVES) - covered)
    stale = sorted(covered - set(PRIMITIVES))
    assert not missing, f"primitives without an interpreter test: {missing}"
    assert not stale, f"tests for primitives that do not exist: {stale}"


def test_every_primitive_has_an_implementation():
    from runtime.interpreter import IMPLS
    assert set(PRIMITIVES) <= set(IMPLS), sorted(set(PRIMITIVES) - set(IMPLS))
