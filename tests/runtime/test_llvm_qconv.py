"""int8 x int8 -> int32 convolutions in the LLVM backend: im2col into int8 columns, then the VNNI GEMM.

Checked exactly against a direct int64 numpy convolution written here (zero-insert, pad, sum over
kernel positions), against the interpreter, and inside guard bytes; the quantized CNN against the
interpreter running the same quantized program."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import runtime
from compiler import lax, nn
from compiler.ir.core import DTYPES
from compiler.passes import quantize
from runtime import llvm
from runtime.llvm import engine, intgemm

from llvm_checks import SETTINGS, assert_same, guarded_call

I32 = DTYPES["i32"]
VNNI = intgemm.has_vnni(engine.host())


def reference(x, w, strides, padding, lhs_dil, rhs_dil, groups):
    """The exact int64 cross-correlation, wrapped to int32: for each kernel position, the strided
    slice of the dilated, padded input times that kernel tap, summed over input channels of a group."""
    x, w = x.astype(np.int64), w.astype(np.int64)
    n, c, *sp = x.shape
    o, cg, *ks = w.shape
    nsp = len(sp)
    dil = np.zeros((n, c) + tuple((s - 1) * d + 1 if s else 0 for s, d in zip(sp, lhs_dil)), np.int64)
    dil[(slice(None), slice(None)) + tuple(slice(None, None, d) for d in lhs_dil)] = x
    # padding may be negative (crop): pad the positive part, then slice off the negative part
    padded = np.pad(dil, [(0, 0), (0, 0)] + [(max(lo, 0), max(hi, 0)) for lo, hi in padding])
    padded = padded[(slice(None), slice(None)) + tuple(
        slice(max(-lo, 0), padded.shape[2 + i] - max(-hi, 0)) for i, (lo, hi) in enumerate(padding))]
    out_sp = [(padded.shape[2 + i] - ((ks[i] - 1) * rhs_dil[i] + 1)) // strides[i] + 1 for i in range(nsp)]
    out = np.zeros((n, o, *out_sp), np.int64)
    og = o // groups
    for tap in np.ndindex(*ks):
        sl = tuple(slice(t * d, t * d + (m - 1) * s + 1, s) for t, d, m, s in zip(tap, rhs_dil, out_sp, strides))
        window = padded[(slice(None), slice(None)) + sl]                      # (N, C, *out)
        for g in range(groups):
            xs = window[:, g * cg:(g + 1) * cg]
            ws = w[(slice(g * og, (g + 1) * og), slice(None)) + tap]           # (O/G, Cg)
            out[:, g * og:(g + 1) * og] += np.einsum("nc...,oc->no...", xs, ws)
    return out.astype(np.int32)


def int_conv(x, w, strides, padding, lhs_dil, rhs_dil, groups):
    return tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(
        x, w, strides, padding, lhs_dil, rhs_dil, groups, preferred_element_type=I32))(x, w)


def int8(rng, shape, extreme=False):
    if extreme:
        return rng.choice(np.array([-128, -127, -1, 0, 1, 127], np.int8), shape)
    return rng.integers(-128, 128, shape).astype(np.int8)


def uses_vnni(closed) -> bool:
    return (any(g["gemm"] for g in llvm.plan_summary(closed)["groups"])
            and "tracejit_ukernel_vnni_" in llvm.llvm_ir(closed))        # calls the VNNI micro-kernel


def check(x, w, strides, padding, lhs_dil=None, rhs_dil=None, groups=1, expect_vnni=None):
    nsp = x.ndim - 2
    lhs_dil, rhs_dil = lhs_dil or (1,) * nsp, rhs_dil or (1,) * nsp
    closed = int_conv(x, w, strides, padding, lhs_dil, rhs_dil, groups)
    assert closed.jaxpr.outvars[0].aval.dtype == I32
    truth = reference(x, w, strides, padding, lhs_dil, rhs_dil, groups)
    ref = runtime.eval_jaxpr(closed, x, w)[0]
    np.testing.assert_array_equal(ref, truth)
    fn = runtime.compile(closed, "llvm")
    got = guarded_call(fn, x, w)[0]
    np.testing.assert_array_equal(got, truth)
    if expect_vnni and VNNI:
        assert uses_vnni(closed)
    return closed


def test_reference_agrees_with_torch_on_a_float_conv():
    """The hand reference itself, against torch (float64 holds these int8 sums exactly)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w = int8(rng, (2, 6, 9, 8)), int8(rng, (4, 3, 3, 2))
    got = reference(x, w, (2, 1), ((1, 2), (0, 1)), (1, 1), (2, 1), 2)
    xt = torch.nn.functional.pad(torch.tensor(x, dtype=torch.float64), (0, 1, 1, 2))
    want = torch.nn.functional.conv2d(xt, torch.tensor(w, dtype=torch.float64), stride=(2, 1), dilation=(2, 1),
                                      groups=2).numpy()
    np.testing.assert_array_equal(got, want.astype(np.int32))


def test_mnist_like_layer_runs_on_vnni():
    rng = np.random.default_rng(1)
    check(int8(rng, (8, 16, 13, 13)), int8(rng, (32, 16, 3, 3)), (1, 1), ((0, 0), (0, 0)), expect_vnni=True)
    check(int8(rng, (4, 1, 28, 28)), int8(rng, (16, 1, 3, 3)), (1, 1), ((1, 1), (1, 1)), expect_vnni=True)


@settings(**SETTINGS)
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2, 3, 5]), st.sampled_from([1, 3, 8, 17]),
       st.integers(1, 12),
       st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.integers(0, 2), st.integers(1, 3),
                          st.integers(1, 2), st.integers(1, 2)), min_size=2, max_size=2),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_int8_conv_matches_the_exact_reference(n, groups, cg_, og, h, dims, extreme, seed):
    """Strides, padding (none, one-sided, both), kernel and input dilation, groups and odd channel
    counts; extreme values (-128 everywhere) catch sign and saturation mistakes."""
    rng = np.random.default_rng(seed)
    c, o = groups * cg_, groups * og
    spatial, kernel, strides, pads, rdil, ldil = [], [], [], [], [], []
    for k, lo, hi, s, rd, ld in dims:
        need = (k - 1) * rd + 1
        size = max(h, -(-max(need - lo - hi, 1) // ld) + 1)          # the padded, dilated input holds a window
        spatial.append(size)
        kernel.append(k)
        strides.append(s)
        pads.append((lo, hi))
        rdil.append(rd)
        ldil.append(ld)
    x = int8(rng, (n, c, *spatial), extreme)
    w = int8(rng, (o, cg_, *kernel), extreme)
    closed = check(x, w, tuple(strides), tuple(pads), tuple(ldil), tuple(rdil), groups)
    out = closed.jaxpr.outvars[0].aval
    m, npix, k = og, n * int(np.prod(out.shape[2:])), cg_ * int(np.prod(kernel))
    if VNNI and m >= 2 and npix >= 2 and 2 * m * npix * k >= 2 * 16 ** 3:
        assert uses_vnni(closed)


@pytest.mark.parametrize("strides, padding, lhs_dil, rhs_dil, groups", [
    ((2, 1), ((1, 2), (0, 1)), (1, 1), (1, 1), 1), ((1, 2), ((2, 2), (1, 1)), (1, 1), (2, 3), 1),
    ((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 3), ((2, 2), ((0, 1), (2, 0)), (2, 1), (1, 2), 3)])
def test_vnni_conv_layouts(strides, padding, lhs_dil, rhs_dil, groups):
    """Layers big enough for the GEMM, with odd channel counts (K not a multiple of 4, M of 8)."""
    rng = np.random.default_rng(sum(strides) + groups)
    x, w = int8(rng, (3, 5 * groups, 15, 14)), int8(rng, (11 * groups, 5, 3, 3))
    check(x, w, strides, padding, lhs_dil, rhs_dil, groups, expect_vnni=True)


@pytest.mark.parametrize("nsp", [1, 3])
def test_one_and_three_spatial_dimensions(nsp):
    rng = np.random.default_rng(nsp)
    sp, ks = [(40,), (6, 5, 7)][nsp == 3], [(5,), (3, 2, 3)][nsp == 3]
    x, w = int8(rng, (3, 7, *sp)), int8(rng, (12, 7, *ks))
    check(x, w, (2,) * nsp, ((1, 2),) * nsp, None, (1,) * (nsp - 1) + (2,), expect_vnni=True)


def test_sums_past_int32_wrap_like_the_interpreter():
    """-128 * -128 over 16384 channels x 9 taps passes 2^31: the result wraps exactly, no saturation."""
    x = np.full((1, 16384, 4, 4), -128, np.int8)
    w = np.full((2, 16384, 3, 3), -128, np.int8)
    w[1] = 127
    assert 16384 * 9 * 16384 > 2 ** 31
    check(x, w, (1, 1), ((0, 0), (0, 0)), expect_vnni=True)


def test_without_vnni_the_reduction_is_exact(monkeypatch):
    monkeypatch.setattr(intgemm, "has_vnni", lambda host: False)
    rng = np.random.default_rng(2)
    x, w = int8(rng, (2, 9, 10, 10)), int8(rng, (6, 3, 3, 3))
    llvm.clear_cache()
    try:
        closed = check(x, w, (1, 2), ((1, 1), (2, 0)), groups=3)
        assert not any(g["gemm"] for g in llvm.plan_summary(closed)["groups"])
    finally:
        llvm.clear_cache()


def test_int8_conv_feeds_a_fused_rescale():
    rng = np.random.default_rng(3)
    x, w = int8(rng, (4, 8, 9, 9)), int8(rng, (16, 8, 3, 3))
    s = rng.uniform(0.5, 2, (1, 16, 1, 1)).astype(np.float32)

    def f(x, w, s):
        acc = lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), preferred_element_type=I32)
        return nn.relu(lax.convert_element_type(acc, np.float32) * s - 3.0)
    assert_same(tj.make_jaxpr(f)(x, w, s), x, w, s)


def test_float_convs_keep_the_float_gemm():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    closed = tj.make_jaxpr(lambda x, w: nn.conv2d(x, w, padding=1))(x, w)
    assert_same(closed, x, w, rtol=1e-4, atol=1e-4)
    assert "tracejit_ukernel_vnni_" not in llvm.llvm_ir(closed)


def test_float_conv_with_a_wider_result_type():
    """f32 x f32 -> f64: f32 columns and GEMM, the result widened as the interpreter does."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 8, 9, 9)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    closed = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(
        x, w, (1, 1), ((1, 1), (1, 1)), preferred_element_type=np.float64))(x, w)
    assert closed.jaxpr.outvars[0].aval.dtype.name == "f64"
    assert_same(closed, x, w, rtol=1e-5, atol=1e-5)


def small_cnn(rng):
    w1 = (rng.standard_normal((16, 1, 3, 3)) * 0.5).astype(np.float32)
    b1 = (rng.standard_normal(16) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((32, 16, 3, 3)) * np.sqrt(2 / 144)).astype(np.float32)
    w3 = (rng.standard_normal((32 * 5 * 5, 10)) * np.sqrt(2 / 800)).astype(np.float32)

    def cnn(x):
        h = nn.max_pool2d(nn.relu(nn.conv2d(x, w1, b1)), 2)
        h = nn.max_pool2d(nn.relu(nn.conv2d(h, w2)), 2)
        return h.reshape(x.shape[0], -1) @ w3
    return cnn


@pytest.mark.parametrize("static", [True, False])
def test_quantized_cnn_runs_natively_and_matches_the_interpreter(static):
    rng = np.random.default_rng(5)
    cnn = small_cnn(rng)
    x = rng.uniform(0, 1, (16, 1, 28, 28)).astype(np.float32)
    closed = tj.make_jaxpr(cnn)(x)
    q = quantize(closed, "int8", "int8", calibration=[(x,)] if static else None)
    convs = [e for e in q.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 2 and all(e.inputs[0].aval.dtype.name == "i8" and e.outvars[0].aval.dtype == I32
                                   for e in convs)
    assert_same(q, x, rtol=1e-5, atol=1e-5)
    if VNNI:
        assert sum(g["gemm"] for g in llvm.plan_summary(q)["groups"]) == 3     # two convs and the dense layer
    float_out = runtime.eval_jaxpr(closed, x)[0]
    got = runtime.compile(q, "llvm")(x)[0]
    assert np.linalg.norm(got - float_out) / np.linalg.norm(float_out) < 0.05
