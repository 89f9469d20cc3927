"""Accuracy of the LLVM backend's float32 exp / log / logistic (own AVX-512 kernels in mathlib, and
libmvec as selected by OWN_KERNELS = False), in ulps against float64 truth and against numpy."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compiler as tj
import compiler.numpy as cnp
from compiler import nn
from runtime import llvm
from runtime.llvm import mathlib
from runtime.llvm.engine import host

AVX512 = "+avx512f" in host().features.split(",")
FUNCS = {"log": (cnp.log, np.log), "exp": (cnp.exp, np.exp),
         "logistic": (nn.sigmoid, lambda v: 1 / (1 + np.exp(-v)))}
# Max ulp error vs float64 truth: the own kernels measure <= 1 (log, exp) and ~2.1 (logistic, whose
# exp error is carried through the division); libmvec measures ~3.8 (log), ~2.5 (exp), ~3.3.
BOUND = {"own": {"log": 1.5, "exp": 1.5, "logistic": 3.0}, "libmvec": {"log": 4, "exp": 4, "logistic": 4}}


@pytest.fixture(params=["own", "libmvec"])
def mode(request):
    saved = mathlib.OWN_KERNELS
    mathlib.OWN_KERNELS = request.param == "own"
    llvm.clear_cache()              # kernels compiled under the other setting must not be reused
    yield request.param
    mathlib.OWN_KERNELS = saved
    llvm.clear_cache()


def run(name, x):
    with np.errstate(all="ignore"):
        return np.asarray(tj.jit(FUNCS[name][0], backend="llvm")(x))


def truth(name, x):
    with np.errstate(all="ignore"):
        return FUNCS[name][1](np.asarray(x, np.float64))


def ulps(got, want):
    """|got - want| in units of the float32 spacing at want (subnormal spacing at the bottom)."""
    spacing = np.maximum(np.spacing(np.abs(want.astype(np.float32))).astype(np.float64), 2.0 ** -149)
    return np.abs(got.astype(np.float64) - want) / spacing


def check(name, x, got, bound):
    """Finite truths are within ``bound`` ulps; NaN, +-inf and +-0 results are exactly numpy's."""
    want = truth(name, x)
    with np.errstate(all="ignore"):
        ref = FUNCS[name][1](x)
    finite = np.isfinite(want) & (np.abs(want) <= np.finfo(np.float32).max)
    err = ulps(got[finite], want[finite])
    assert err.max(initial=0) <= bound, (name, x[finite][err.argmax()], got[finite][err.argmax()])
    assert (np.isnan(got) == np.isnan(want)).all()
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf].astype(np.float32))
    big = ~np.isnan(ref) & (np.abs(want) > np.finfo(np.float32).max)     # float32 overflow: inf as numpy
    np.testing.assert_array_equal(got[big], ref[big])


@pytest.mark.parametrize("name", list(FUNCS))
def test_sweep_over_all_float32_exponents(mode, name):
    """2^20 bit patterns evenly spread over all 2^32 (every exponent, both signs, subnormals, inf, NaN)."""
    x = (np.arange(2 ** 20, dtype=np.uint64) * 4096 + 1234).astype(np.uint32).view(np.float32)
    got = run(name, x)
    check(name, x, got, BOUND[mode][name])
    with np.errstate(all="ignore"):
        ref = FUNCS[name][1](x)
    both = np.isfinite(ref) & np.isfinite(got) & (np.abs(ref) >= np.finfo(np.float32).tiny)
    # numpy float32 is itself ~1-3 ulp off the truth (its logistic, 1/(1+exp(-x)), much more)
    if name != "logistic":
        assert ulps(got[both], ref[both].astype(np.float64)).max() <= BOUND[mode][name] + 3


@pytest.mark.parametrize("name", list(FUNCS))
def test_dense_sweep_of_the_working_range(mode, name):
    lo, hi = {"log": (1e-3, 1e3), "exp": (-104, 89), "logistic": (-30, 30)}[name]
    x = np.linspace(lo, hi, 300_001).astype(np.float32)
    check(name, x, run(name, x), BOUND[mode][name])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2 ** 32 - 1), min_size=1, max_size=70), st.sampled_from(list(FUNCS)))
def test_random_bit_patterns(bits, name):
    """Random float32 bit patterns, at lengths that exercise full vectors and the remainder."""
    x = np.array(bits, np.uint64).astype(np.uint32).view(np.float32)
    check(name, x, run(name, x), BOUND["own" if mathlib.OWN_KERNELS else "libmvec"][name])


def test_special_values(mode):
    inf, nan = np.inf, np.nan
    tiny = np.float32(2.0 ** -149)
    x = np.array([0.0, -0.0, inf, -inf, nan, -1.0, -tiny, tiny, 1.0], np.float32)
    got = run("log", x)
    np.testing.assert_array_equal(got[:7], [-inf, -inf, inf, nan, nan, nan, nan])
    assert got[8] == 0.0
    assert ulps(got[7:8], np.array([-149 * np.log(2.0)])) <= 1

    big = np.float32(88.72283)          # the largest float32 whose exp is finite
    x = np.array([inf, -inf, nan, 0.0, -0.0, big, np.nextafter(big, np.float32(inf)), 200.0,
                  -103.97, -103.98, -200.0, -95.0, 1.0], np.float32)
    got = run("exp", x)
    np.testing.assert_array_equal(got[:5], [inf, 0.0, nan, 1.0, 1.0])
    assert np.isfinite(got[5]) and got[6] == inf and got[7] == inf
    assert got[8] == tiny and got[9] == 0.0 and got[10] == 0.0     # underflow to the last subnormal, then 0
    assert got[11] < np.finfo(np.float32).tiny                       # a subnormal result
    assert (ulps(got[11:], np.exp(x[11:].astype(np.float64))) <= 1).all()

    x = np.array([inf, -inf, nan, 0.0, -0.0, 100.0, 17.0, -100.0, -200.0], np.float32)
    got = run("logistic", x)
    np.testing.assert_array_equal(got[:7], [1.0, 0.0, nan, 0.5, 0.5, 1.0, 1.0])
    assert got[8] == 0.0
    assert ulps(got[7:8], np.exp(np.array([-100.0]))) <= 1          # a subnormal, not 0 as numpy's 1/(1+e^100)


@pytest.mark.parametrize("n", [1, 5, 16, 17, 33, 1000])
def test_lengths_and_scalars(mode, n):
    """Narrow, partial and scalar lanes (padded into one 16-lane kernel) agree with full vectors."""
    x = np.random.default_rng(n).uniform(-10, 10, n).astype(np.float32)
    wide = np.tile(x, 16 // n + 2)[: max(32, n)]
    for name in FUNCS:
        xin = np.abs(x) if name == "log" else x
        got = run(name, xin)
        assert got.tobytes() == run(name, np.abs(wide) if name == "log" else wide)[:n].tobytes()
        check(name, xin, got, BOUND[mode][name])
    s = np.float32(2.5)
    if mode == "own":                   # libmvec's scalar fallback is libm, which may differ by an ulp
        assert run("exp", s) == run("exp", np.full(16, s))[0]
    check("exp", np.array([s]), run("exp", s).reshape(1), BOUND[mode]["exp"])


def test_own_kernels_are_used_only_for_float32_on_avx512():
    n = mathlib.INLINE_MIN_ELEMS                    # a long loop: inlined kernels
    f32 = tj.make_jaxpr(lambda x: cnp.log(cnp.exp(x)))(np.ones(n, np.float32))
    f64 = tj.make_jaxpr(lambda x: cnp.log(cnp.exp(x)))(np.ones(n, np.float64))
    text32, text64 = llvm.llvm_ir(f32), llvm.llvm_ir(f64)
    assert ("getmant" in text32 and "scalef" in text32) == (AVX512 and mathlib.OWN_KERNELS)
    assert "getmant" not in text64 and "scalef" not in text64 and "tracejit_expf16" not in text64
    if AVX512 and host().mvec_isa:
        assert "_ZGVeN8v_log" in text64 and "_ZGVeN8v_exp" in text64


@pytest.mark.skipif(not AVX512, reason="needs AVX-512")
def test_libmvec_path_stays_selectable(mode):
    f = tj.make_jaxpr(cnp.exp)(np.ones(64, np.float32))
    text = llvm.llvm_ir(f)
    assert ("_ZGVeN16v_expf" in text) == (mode == "libmvec")


@pytest.mark.skipif(not AVX512, reason="own kernels need AVX-512")
def test_short_loops_call_one_shared_copy():
    """In loops shorter than mathlib.INLINE_MIN_ELEMS, exp and log are calls of the process-wide
    copies (same accuracy, special values included; only declared in the program's IR); long loops
    inline them."""
    saved = mathlib.OWN_KERNELS
    mathlib.OWN_KERNELS = True
    llvm.clear_cache()
    try:
        n = 5
        f = lambda x: [cnp.exp(x * (k + 1) / n) for k in range(n)] + [cnp.log(x + k) for k in range(n)]  # noqa: E731
        x = np.concatenate([np.linspace(-80, 80, 4001), [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40]]).astype(np.float32)
        outs = tj.jit(f, backend="llvm")(x)
        for k in range(n):
            check("exp", (x * np.float32(k + 1) / np.float32(n)).astype(np.float32), np.asarray(outs[k]), 1.5)
            check("log", (x + np.float32(k)).astype(np.float32), np.asarray(outs[n + k]), 1.5)
        text = tj.jit(f, backend="llvm").lower(x).as_text("llvm")
        assert 'declare <16 x float> @"tracejit_expf16"' in text and "getmant" not in text
        assert 'declare <16 x float> @"tracejit_logf16"' in text
        long_x = np.linspace(0.5, 2, mathlib.INLINE_MIN_ELEMS, dtype=np.float32)
        assert "tracejit_expf16" not in tj.jit(f, backend="llvm").lower(long_x).as_text("llvm")
    finally:
        mathlib.OWN_KERNELS = saved
        llvm.clear_cache()
