"""Result dtypes of binary operations: numpy's rules between arrays, weakly typed Python scalars.

Between arrays (and numpy scalars, which are strongly typed) the result dtype is np.result_type's,
for every pair of dtypes. ml_dtypes' bfloat16 meets float16 at float32. Python scalars are weakly
typed, as in JAX and numpy's NEP 50: they adopt the array's dtype unless they are of a higher kind.
"""
import itertools

import ml_dtypes
import numpy as np
import pytest

import compiler as tj
import compiler.numpy as cnp
from compiler.ir.core import DTYPES, f32, promote_types

BF16 = np.dtype(ml_dtypes.bfloat16)
NUMPY_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint64, np.uint32,
                np.uint16, np.uint8, np.bool_]


def jit(f):
    return tj.jit(f, backend="numpy")


def one(dt):
    return np.ones(2, dt)


def test_all_pairs_agree_with_numpy_result_type():
    for a, b in itertools.product(NUMPY_DTYPES, repeat=2):
        want = np.result_type(np.dtype(a), np.dtype(b))
        assert cnp.result_type(one(a), one(b)).np == want, (a, b)
        assert promote_types(DTYPES[_name(a)], DTYPES[_name(b)]).np == want, (a, b)


def _name(dt):
    return next(k for k, v in DTYPES.items() if v.np == np.dtype(dt))


@pytest.mark.parametrize("op", ["add", "maximum", "multiply", "equal", "where"])
def test_traced_binary_ops_give_numpy_dtypes_for_all_pairs(op):
    for a, b in itertools.product(NUMPY_DTYPES, repeat=2):
        x, y = one(a), one(b)
        if op == "where":
            want = np.where(np.array([True, False]), x, y)
            got = jit(lambda u, v: cnp.where(np.array([True, False]), u, v))(x, y)
        else:
            want = getattr(np, op)(x, y)
            got = jit(getattr(cnp, op))(x, y)
        assert got.dtype == want.dtype, (op, a, b, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def test_numpy_scalars_are_strongly_typed():
    x = np.ones(2, np.float32)
    assert jit(lambda v: v * np.float64(2.0))(x).dtype == np.float64          # as numpy 2 (NEP 50)
    assert jit(lambda v: v + np.int32(1))(np.ones(2, np.int8)).dtype == np.int32
    assert jit(lambda v: v + np.float16(1))(np.ones(2, np.int8)).dtype == np.float16
    assert (x * np.float64(2.0)).dtype == np.float64                          # the numpy behaviour matched


def test_concatenate_and_matmul_promote():
    a, b = np.ones((2, 2), np.int8), np.ones((2, 2), np.float16)
    assert jit(lambda u, v: cnp.concatenate([u, v]))(a, b).dtype == np.concatenate([a, b]).dtype
    assert jit(lambda u, v: u @ v)(a, b).dtype == (a @ b).dtype
    assert jit(lambda u, v: cnp.stack([u, v]))(np.ones(2, np.uint8), np.ones(2, np.int8)).dtype == np.int16


# ----------------------------------------------------------------------------------------------
# ml_dtypes
# ----------------------------------------------------------------------------------------------

def test_bf16_with_f16_meets_at_f32():
    assert promote_types(DTYPES["bf16"], DTYPES["f16"]) == f32
    assert cnp.result_type(one(BF16), one(np.float16)).np == np.float32
    assert cnp.result_type(one(np.float16), one(BF16)).np == np.float32


def test_bf16_pairs_numpy_can_resolve():
    for other in [BF16, np.float32, np.float64, np.int8, np.uint8, np.bool_]:
        want = np.result_type(BF16, np.dtype(other))
        assert cnp.result_type(one(BF16), one(other)).np == want, other
        assert cnp.result_type(one(other), one(BF16)).np == want, other


def test_bf16_arithmetic_under_jit():
    x = np.array([1.0, 2.5], np.float32).astype(BF16)
    h = np.array([0.5, 3.0], np.float16)
    out = jit(lambda u, v: u + v)(x, h)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([1.5, 5.5], np.float32))
    assert jit(lambda u: u * 2.0)(x).dtype == BF16                             # weak float keeps bf16
    assert jit(lambda u: cnp.exp(u))(x).dtype == BF16


# ----------------------------------------------------------------------------------------------
# Weak typing of Python scalars
# ----------------------------------------------------------------------------------------------

WEAK_CASES = [
    # (array dtype, Python scalar, op, expected dtype)
    (np.float32, 2.0, "mul", np.float32),
    (np.float16, 2.0, "mul", np.float16),
    (np.float64, 2, "add", np.float64),
    (np.int8, 1, "add", np.int8),
    (np.uint8, 3, "mul", np.uint8),
    (np.int16, 7, "sub", np.int16),
    (np.int64, 1, "add", np.int64),
    (np.int32, 2.5, "mul", np.float32),   # JAX: the default float. numpy (NEP 50) gives f64 here.
    (np.int8, 2.5, "add", np.float32),    # JAX: the default float. numpy gives f64.
    (np.uint8, 0.5, "mul", np.float32),
    (np.bool_, 1, "add", np.int32),       # JAX: the default int. numpy gives i64.
    (np.bool_, 1.5, "mul", np.float32),
    (np.bool_, True, "add", np.bool_),
    (np.float32, True, "add", np.float32),
    (np.int8, False, "mul", np.int8),
]


@pytest.mark.parametrize("dt,scalar,op,expected", WEAK_CASES)
def test_python_scalars_are_weakly_typed(dt, scalar, op, expected):
    x = np.array([1, 0, 1], dt)
    fn = {"mul": lambda a, b: a * b, "add": lambda a, b: a + b, "sub": lambda a, b: a - b}[op]
    got = jit(lambda v: fn(v, scalar))(x)
    got_r = jit(lambda v: fn(scalar, v))(x)
    assert got.dtype == expected and got_r.dtype == expected
    # values as numpy computes them in the expected dtype
    want = fn(x.astype(expected), np.asarray(scalar, expected))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_r, fn(np.asarray(scalar, expected), x.astype(expected)))
    if expected in (np.float32, np.float16, np.float64) and np.dtype(dt).kind == "f" or \
            np.dtype(dt).kind in "iu" and isinstance(scalar, int):
        assert fn(x, scalar).dtype == expected          # where we agree with numpy 2, say so


def test_weak_typing_matches_numpy_nep50_where_numpy_defines_it():
    for dt in [np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16]:
        x = np.arange(3).astype(dt)
        for scalar in (1, 3):
            assert jit(lambda v: v + scalar)(x).dtype == (x + scalar).dtype
            assert jit(lambda v: scalar * v)(x).dtype == (scalar * x).dtype
        if np.dtype(dt).kind == "f":
            assert jit(lambda v: v / 3.0)(x).dtype == (x / 3.0).dtype
            assert jit(lambda v: v ** 2.0)(x).dtype == (x ** 2.0).dtype


def test_python_scalar_overflowing_the_array_type_raises_like_numpy():
    x = np.ones(2, np.int8)
    with pytest.raises(OverflowError):
        x + 300                                        # numpy 2
    with pytest.raises(OverflowError):
        jit(lambda v: v + 300)(x)


def test_bare_python_scalars_as_arguments():
    closed = tj.make_jaxpr(lambda a: a * 2)(2.0)
    assert str(closed.in_avals[0]) == "f32[]"            # a bare Python float traces as f32
    assert jit(lambda a: a * 2)(2.0).dtype == np.float32
    assert str(tj.make_jaxpr(lambda a: a + 1)(3).in_avals[0]) == "i32[]"
    assert str(tj.make_jaxpr(lambda a: a)(True).in_avals[0]) == "bool[]"
    # a weak argument still combines weakly with a typed array
    assert jit(lambda a, v: a * v)(2.0, np.ones(2, np.float16)).dtype == np.float16
    assert jit(lambda a, v: a + v)(3, np.ones(2, np.int8)).dtype == np.int8
    out = jit(lambda a, b: a * b)(1.5, 2)
    assert out.dtype == np.float32 and out == 3.0


def test_divide_and_mean_of_integers_give_default_float():
    x = np.array([1, 2], np.int32)
    assert jit(lambda v: v / v)(x).dtype == np.float32       # JAX's default float; numpy gives f64
    assert jit(lambda v: cnp.mean(v))(x).dtype == np.float32
    assert jit(lambda v: v / 2)(np.array([1, 2], np.int8)).dtype == np.float32
    np.testing.assert_array_equal(jit(lambda v: v / 2)(x), np.array([0.5, 1.0], np.float32))
    assert jit(lambda v: v / 2)(np.ones(2, np.float16)).dtype == np.float16
