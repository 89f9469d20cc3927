"""Low-precision types in the LLVM backend: the VNNI int8 GEMM (against int64 numpy products and the
interpreter), and int4 / float8 loads, stores and conversions (bit for bit against ml_dtypes and the
interpreter, over every byte pattern of the small types and every rounding boundary of float8)."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler import lax, nn
from compiler.ir.core import DTYPES
from compiler.passes import quantize
from runtime import llvm
from runtime.llvm import engine, intgemm

from llvm_checks import SETTINGS, assert_same, guarded_call

I32 = DTYPES["i32"]
VNNI = intgemm.has_vnni(engine.host())
ALL = ["f64", "f32", "f16", "bf16", "f8_e4m3fn", "f8_e5m2", "i64", "i32", "i16", "i8", "i4", "u64", "u32", "u16",
       "u8", "bool"]
F8 = ["f8_e4m3fn", "f8_e5m2"]
SMALL = F8 + ["i4"]


# ----------------------------------------------------------------------------------------------
# int8 x int8 -> int32 GEMM
# ----------------------------------------------------------------------------------------------

def int_dot(a, b, dims):
    return tj.make_jaxpr(lambda a, b: lax.dot_general(a, b, dims, preferred_element_type=I32))(a, b)


def reference(a, b, dims):
    """The exact int64 product, wrapped to int32 (what the interpreter defines)."""
    (ca, cb), (ba, bb) = dims
    fa = [d for d in range(a.ndim) if d not in ca and d not in ba]
    fb = [d for d in range(b.ndim) if d not in cb and d not in bb]
    at = np.transpose(a.astype(np.int64), list(ba) + fa + list(ca))
    bt = np.transpose(b.astype(np.int64), list(bb) + list(cb) + fb)
    k = int(np.prod([a.shape[d] for d in ca]))
    nb = [a.shape[d] for d in ba]
    out = np.matmul(at.reshape(nb + [-1, k]), bt.reshape(nb + [k, -1]))
    return out.reshape(nb + [a.shape[d] for d in fa] + [b.shape[d] for d in fb]).astype(np.int32)


def check_int_dot(a, b, dims, expect_vnni=True):
    closed = int_dot(a, b, dims)
    fn = runtime.compile(closed, "llvm")
    got = guarded_call(fn, a, b)[0]
    np.testing.assert_array_equal(got, reference(a, b, dims))
    np.testing.assert_array_equal(got, runtime.eval_jaxpr(closed, a, b)[0])
    if expect_vnni and VNNI:
        assert any(g["gemm"] for g in llvm.plan_summary(closed)["groups"])
        assert "tracejit_ukernel_vnni_" in llvm.llvm_ir(closed)       # the VNNI micro-kernel


def int8(rng, shape, extreme=False):
    if extreme:                                   # the values that break sign / saturation mistakes
        return rng.choice(np.array([-128, -127, -1, 0, 1, 127], np.int8), shape)
    return rng.integers(-128, 128, shape).astype(np.int8)


@pytest.mark.parametrize("m, k, n", [(16, 16, 32), (8, 4, 256), (17, 5, 33), (64, 64, 64), (9, 513, 70),
                                     (200, 1030, 40), (3, 7, 1600)])
def test_int8_gemm_shapes(m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    check_int_dot(int8(rng, (m, k)), int8(rng, (k, n)), (((1,), (0,)), ((), ())), expect_vnni=2 * m * n * k >= 2 * 16 ** 3)


def test_int8_gemm_all_minus_128_and_wraparound():
    """-128 * -128 summed: per k group 4 * 16384 fits a lane; over K = 131073 the sum passes 2^31 and
    must wrap exactly as int64 -> int32 does (no saturation anywhere)."""
    k = 131073
    a = np.full((2, k), -128, np.int8)
    b = np.full((k, 16), -128, np.int8)
    b[:, 1] = 127
    assert reference(a, b, (((1,), (0,)), ((), ())))[0, 0] != 16384 * k      # it does wrap
    check_int_dot(a, b, (((1,), (0,)), ((), ())))


@settings(**SETTINGS)
@given(st.integers(2, 40), st.integers(1, 80), st.integers(2, 70), st.booleans(), st.booleans(),
       st.integers(0, 2), st.booleans(), st.integers(0, 2**32 - 1))
def test_int8_gemm_layouts(m, k, n, ta, tb, nbatch, extreme, seed):
    """Any dimension numbers the float GEMM takes: transposed operands and batch dimensions."""
    rng = np.random.default_rng(seed)
    batch = (3, 2)[:nbatch]
    sa = batch + ((k, m) if ta else (m, k))
    sb = batch + ((n, k) if tb else (k, n))
    nb = len(batch)
    dims = (((nb + (0 if ta else 1),), (nb + (1 if tb else 0),)), (tuple(range(nb)), tuple(range(nb))))
    a, b = int8(rng, sa, extreme), int8(rng, sb, extreme)
    check_int_dot(a, b, dims, expect_vnni=2 * m * n * k >= 2 * 16 ** 3)


def test_int8_gemm_without_vnni_uses_the_reduction(monkeypatch):
    monkeypatch.setattr(intgemm, "has_vnni", lambda host: False)
    rng = np.random.default_rng(1)
    a, b = int8(rng, (33, 70)), int8(rng, (70, 40))
    closed = int_dot(a, b, (((1,), (0,)), ((), ())))
    assert not any(g["gemm"] for g in llvm.plan_summary(closed)["groups"])
    llvm.clear_cache()
    try:
        np.testing.assert_array_equal(runtime.compile(closed, "llvm")(a, b)[0], reference(a, b, (((1,), (0,)), ((), ()))))
    finally:
        llvm.clear_cache()


def test_int8_gemm_fused_into_a_program():
    """The GEMM's result feeds fused elementwise code (the quantized layer's rescale)."""
    rng = np.random.default_rng(2)
    a, b = int8(rng, (48, 64)), int8(rng, (64, 96))
    s = rng.uniform(0.5, 2, 96).astype(np.float32)

    def f(a, b, s):
        acc = lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=I32)
        return lax.convert_element_type(acc, np.float32) * s + 1.0
    assert_same(tj.make_jaxpr(f)(a, b, s), a, b, s)


def test_quantized_mlp_runs_natively_and_matches_the_interpreter():
    rng = np.random.default_rng(3)
    w1 = (rng.standard_normal((64, 128)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((128, 10)) * 0.2).astype(np.float32)
    x = rng.standard_normal((32, 64)).astype(np.float32)
    closed = tj.make_jaxpr(lambda x: nn.relu(x @ w1) @ w2)(x)
    for weights, acts in (("int8", "int8"), ("int4", None), ("fp8", None), ("int8", "fp8")):
        q = quantize(closed, weights, acts)
        fn = runtime.compile(q, "llvm")           # raises NotImplementedError if anything is not lowered
        got = fn(x)[0]
        ref = runtime.eval_jaxpr(q, x)[0]
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
        if acts == "int8" and VNNI:
            assert any(g["gemm"] for g in llvm.plan_summary(q)["groups"])


# ----------------------------------------------------------------------------------------------
# int4 and float8 conversions
# ----------------------------------------------------------------------------------------------

def convert(x, dst):
    return tj.make_jaxpr(lambda x: lax.convert_element_type(x, DTYPES[dst].np))(x)


def check_bits(x, dst, truth=None):
    """LLVM == interpreter bit for bit (and == ``truth`` when given), inside its buffers."""
    closed = convert(x, dst)
    with np.errstate(all="ignore"):
        ref = runtime.eval_jaxpr(closed, x)[0]
    fn = runtime.compile(closed, "llvm")
    got = guarded_call(fn, x)[0]
    if truth is not None:
        assert ref.dtype == truth.dtype
        np.testing.assert_array_equal(ref.view(np.uint8), truth.view(np.uint8))
    bad = np.nonzero(got.view(np.uint8).reshape(x.size, -1) != ref.view(np.uint8).reshape(x.size, -1))[0]
    assert bad.size == 0, f"{x.dtype} -> {dst}: {x.ravel()[bad[:5]]} gave {got.ravel()[bad[:5]]}, want {ref.ravel()[bad[:5]]}"


def every(name):
    """Every value of a one-byte type (int4: the 16 nibbles), as an array of that type."""
    return np.arange(16 if name == "i4" else 256, dtype=np.uint8).view(DTYPES[name].np)


@pytest.mark.parametrize("src", SMALL)
@pytest.mark.parametrize("dst", ALL)
def test_every_small_value_to_every_type(src, dst):
    x = every(src)
    truth = None
    if DTYPES[dst].is_float or not DTYPES[src].is_float:      # ml_dtypes' own cast is the truth there
        with np.errstate(all="ignore"):
            truth = x.astype(DTYPES[dst].np)
    check_bits(x, dst, truth)


def test_int4_reads_only_the_low_nibble():
    raw = np.arange(256, dtype=np.uint8)
    x = raw.view(ml_dtypes.int4)                          # high nibbles are junk ml_dtypes ignores
    expect = ((raw & 15).astype(np.int16) ^ 8) - 8
    check_bits(x, "i16", expect.astype(np.int16))


@pytest.mark.parametrize("src", ["f16", "bf16"])
@pytest.mark.parametrize("dst", SMALL)
def test_every_half_value_to_small_types(src, dst):
    x = np.arange(65536, dtype=np.uint16).view(DTYPES[src].np)
    with np.errstate(all="ignore"):
        check_bits(x, dst, None if dst == "i4" else x.astype(DTYPES[dst].np))


def boundaries(fmt, float_type):
    """Values at and next to every rounding boundary of a float8 format (midpoints between
    neighbours, the overflow threshold, the subnormal range), in float_type, both signs."""
    float_type = np.dtype(float_type).type
    vals = np.unique(every(fmt).astype(np.float64))
    vals = vals[np.isfinite(vals) & (vals >= 0)]
    top = float(ml_dtypes.finfo(DTYPES[fmt].np).max)
    ulp_top = top - vals[-2]
    mids = np.concatenate([(vals[1:] + vals[:-1]) / 2, [top + ulp_top / 2, top + ulp_top, 2 * top]])
    mids = mids.astype(float_type)
    out = [mids, vals.astype(float_type)]
    for steps in (1, 2):
        up, down = mids.copy(), mids.copy()
        for _ in range(steps):
            up = np.nextafter(up, float_type(np.inf))
            down = np.nextafter(down, float_type(-np.inf))
        out += [up, down]
    x = np.concatenate(out + [np.array([np.inf, np.nan, 1e-30, 1e30], float_type)])
    return np.concatenate([x, -x])


@pytest.mark.parametrize("src", ["f32", "f64"])
@pytest.mark.parametrize("dst", F8)
def test_float_to_f8_at_every_rounding_boundary(src, dst):
    x = boundaries(dst, DTYPES[src].np)
    with np.errstate(all="ignore"):
        check_bits(x, dst, x.astype(DTYPES[dst].np))


@settings(**SETTINGS)
@given(st.sampled_from(["f32", "f64"]), st.sampled_from(SMALL), st.integers(0, 2**32 - 1))
def test_random_float_bits_to_small_types(src, dst, seed):
    rng = np.random.default_rng(seed)
    nbits = 32 if src == "f32" else 64
    x = rng.integers(0, 2**nbits, 2000, dtype=np.uint64).astype(f"u{nbits // 8}").view(DTYPES[src].np)
    scaled = (rng.standard_normal(2000) * 2.0 ** rng.integers(-12, 18, 2000)).astype(DTYPES[src].np)
    x = np.concatenate([x, scaled])
    with np.errstate(all="ignore"):
        truth = None if dst == "i4" else x.astype(DTYPES[dst].np)
    check_bits(x, dst, truth)


@pytest.mark.parametrize("src", ["i64", "i32", "i16", "i8", "u64", "u32", "u16", "u8", "bool"])
@pytest.mark.parametrize("dst", SMALL)
def test_integers_to_small_types(src, dst):
    d = np.dtype(DTYPES[src].np)
    if d == np.bool_:
        x = np.array([False, True])
    else:
        info = np.iinfo(d)
        rng = np.random.default_rng(0)
        edges = [info.min, info.max, 0, 1, 7, 8, 9, 15, 16, 17, 447, 448, 464, 465, 57343, 57344, 61439, 61440]
        x = np.concatenate([np.array([e for e in edges + [-e for e in edges] if info.min <= e <= info.max], d),
                            rng.integers(info.min, info.max, 3000, dtype=d, endpoint=True)])
    with np.errstate(all="ignore"):
        check_bits(x, dst, x.astype(DTYPES[dst].np))


@pytest.mark.parametrize("name", SMALL)
def test_data_movement_keeps_every_byte(name):
    """Transposes, slices, reversals and concatenations of raw bytes (every NaN payload included)."""
    rng = np.random.default_rng(4)
    x = rng.integers(0, 16 if name == "i4" else 256, (24, 40), dtype=np.uint8).view(DTYPES[name].np)
    y = every(name)[:16].reshape(4, 4)

    def f(x, y):
        t = cnp.transpose(x)[::-1, 3:20]
        return cnp.concatenate([t[:, :4], cnp.transpose(y)], 0), x[::2, ::3]
    closed = tj.make_jaxpr(f)(x, y)
    fn = runtime.compile(closed, "llvm")
    for g, r in zip(guarded_call(fn, x, y), runtime.eval_jaxpr(closed, x, y)):
        np.testing.assert_array_equal(g.view(np.uint8), r.view(np.uint8))


@pytest.mark.parametrize("name", SMALL)
def test_arithmetic_on_storage_types_is_refused_clearly(name):
    x = every(name)[:8]
    closed = tj.make_jaxpr(lambda x: x + x)(x)
    with pytest.raises(NotImplementedError, match=f"'add' on {name}"):
        runtime.compile(closed, "llvm")
