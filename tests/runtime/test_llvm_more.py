"""The LLVM backend's pooling (reduce_window_max / reduce_window_sum) and convolution
(conv_general_dilated) against the numpy interpreter, with out-of-bounds write guards."""
import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
from compiler import lax, nn
from runtime import llvm

from llvm_checks import SETTINGS, assert_same


def test_lowered_names():
    assert {"reduce_window_max", "reduce_window_sum", "conv_general_dilated"} <= llvm.LOWERED


@st.composite
def windows(draw):
    nd = draw(st.integers(1, 4))
    shape, wd, ws, pad = [], [], [], []
    for _ in range(nd):
        n = draw(st.integers(1, 9))
        lo, hi = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        k = draw(st.integers(1, n + lo + hi))
        shape.append(n)
        wd.append(k)
        ws.append(draw(st.integers(1, 3)))
        pad.append((lo, hi))
    return tuple(shape), tuple(wd), tuple(ws), tuple(pad)


def _rand(rng, shape, dt):
    if np.dtype(dt).kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(max(info.min, -100), min(info.max, 100), shape, endpoint=True).astype(dt)
    return rng.uniform(-3, 3, shape).astype(dt)


@settings(**SETTINGS)
@given(windows(), st.sampled_from(["max", "sum"]),
       st.sampled_from([np.float32, np.float64, np.int32, np.int8, np.uint8, np.float16, ml_dtypes.bfloat16]),
       st.integers(0, 2**32 - 1))
def test_reduce_window_random(win, kind, dt, seed):
    shape, wd, ws, pad = win
    x = _rand(np.random.default_rng(seed), shape, dt)
    tol = dict(rtol=1e-2, atol=2e-2) if dt in (np.float16, ml_dtypes.bfloat16) else {}
    if kind == "sum" and dt == np.float32:        # another summation order: cancellation shows as atol
        tol = dict(rtol=1e-5, atol=1e-6 * 3 * int(np.prod(wd)))
    if kind == "sum" and dt in (np.float16, ml_dtypes.bfloat16):   # each partial sum rounds to the dtype:
        eps = float(ml_dtypes.finfo(dt).eps)                        # up to an ulp of |sum| <= 3 * window per step
        tol = dict(rtol=1e-2, atol=eps * 3 * int(np.prod(wd)))
    closed = tj.make_jaxpr(lambda x: lax.reduce_window(x, kind, wd, ws, pad))(x)
    assert_same(closed, x, **tol)


def test_reduce_window_nan_and_inf():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    x[1, 2] = np.nan
    x[3, 5] = -np.inf
    for kind in ("max", "sum"):
        closed = tj.make_jaxpr(lambda x: lax.reduce_window(x, kind, (2, 3), (1, 2), ((1, 1), (2, 0))))(x)
        assert_same(closed, x)


def test_pooling_fused_with_neighbours():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 9, 10)).astype(np.float32)

    def f(x):
        h = nn.max_pool2d(nn.relu(x * 2.0 + 1.0), 2)
        return h + 1.0, nn.avg_pool2d(x, 3, stride=2, padding=1) if hasattr(nn, "avg_pool2d") else h
    assert_same(tj.make_jaxpr(f)(x), x)


@st.composite
def convs(draw):
    nsp = draw(st.integers(1, 3))
    g = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n = draw(st.integers(1, 2))
    sp, k, strides, pad, ld, rd = [], [], [], [], [], []
    for _ in range(nsp):
        s = draw(st.integers(1, 7 if nsp < 3 else 4))
        kk = draw(st.integers(1, 3))
        l_, r_ = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        lo, hi = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        span = (s - 1) * l_ + 1 + lo + hi - ((kk - 1) * r_ + 1)
        if span < 0:
            hi += -span
        sp.append(s)
        k.append(kk)
        strides.append(draw(st.integers(1, 3)))
        pad.append((lo, hi))
        ld.append(l_)
        rd.append(r_)
    return ((n, g * cg) + tuple(sp), (g * og, cg) + tuple(k), dict(
        window_strides=tuple(strides), padding=tuple(pad), lhs_dilation=tuple(ld), rhs_dilation=tuple(rd),
        feature_group_count=g))


@settings(**SETTINGS)
@given(convs(), st.sampled_from([np.float32, np.float64, np.int32, np.float16, ml_dtypes.bfloat16]),
       st.integers(0, 2**32 - 1))
def test_conv_random(conv, dt, seed):
    xs, wsh, params = conv
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, xs, dt), _rand(rng, wsh, dt)
    tol = dict(rtol=2e-2, atol=5e-2) if dt in (np.float16, ml_dtypes.bfloat16) else dict(rtol=1e-4, atol=1e-4)
    closed = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(x, w, **params))(x, w)
    assert_same(closed, x, w, **tol)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1),
                                                              (1, 1, 1, 4), (2, 0, 1, 2)])
def test_conv2d_layers_and_gradient(stride, padding, dilation, groups):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 8, 12, 11)).astype(np.float32)
    w = rng.normal(size=(16, 8 // groups, 3, 3)).astype(np.float32) * 0.3
    b = rng.normal(size=(16,)).astype(np.float32)

    def loss(w, b, x):
        y = nn.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        y = nn.max_pool2d(nn.relu(y), 2)
        return (y * y).sum()
    assert_same(tj.make_jaxpr(loss)(w, b, x), w, b, x, rtol=1e-4, atol=1e-3)
    assert_same(tj.make_jaxpr(tj.grad(loss, argnums=(0, 1, 2)))(w, b, x), w, b, x, rtol=1e-3, atol=1e-3)


def test_conv_zero_batch_and_const_operand():
    x = np.zeros((0, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 2, 2), np.float32)
    assert_same(tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((0, 0), (0, 0))))(x, w), x, w)
    x = np.arange(50, dtype=np.float32).reshape(1, 2, 5, 5)
    assert_same(tj.make_jaxpr(lambda x: lax.conv_general_dilated(x, w, (2, 1), ((1, 0), (0, 1))))(x), x)


@pytest.mark.parametrize("kind", ["max", "sum"])
@pytest.mark.parametrize("dt", [np.float32, np.int16, np.uint8])
def test_global_and_heavily_padded_pooling(kind, dt):
    x = _rand(np.random.default_rng(3), (2, 3, 7, 9), dt)
    for wd, ws, pad in [((1, 1, 7, 9), (1, 1, 1, 1), ((0, 0),) * 4),            # global pooling
                        ((1, 2, 3, 3), (1, 1, 2, 3), ((0, 1), (0, 2), (3, 3), (2, 4))),
                        ((2, 3, 1, 1), (2, 3, 5, 5), ((0, 0),) * 4),
                        ((1, 1, 11, 1), (1, 1, 1, 1), ((0, 0), (0, 0), (2, 2), (0, 0)))]:
        closed = tj.make_jaxpr(lambda x: lax.reduce_window(x, kind, wd, ws, pad))(x)
        assert_same(closed, x)


def test_big_kernel_conv_compiles_quickly():
    """A weight gradient is a convolution whose kernel is as large as the output: its im2col is a
    handful of strided copies, not one per kernel position."""
    import time
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 3, 30, 30)).astype(np.float32)
    w = rng.normal(size=(16, 3, 28, 28)).astype(np.float32)
    closed = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((0, 0), (0, 0))))(x, w)
    t = time.perf_counter()
    assert_same(closed, x, w, rtol=1e-4, atol=1e-3)
    assert time.perf_counter() - t < 20


# ---- cond as native branches ------------------------------------------------------------------

@pytest.fixture
def native_cond():
    assert "cond" in llvm.LOWERED
    yield


def test_cond_lowered_natively(native_cond):
    x = np.linspace(-2, 2, 37, dtype=np.float32)
    closed = tj.make_jaxpr(lambda p, x: lax.cond(p, lambda x: cnp.sin(x) * 2.0, lambda x: x[::-1] + 1.0, x))(True, x)
    kinds = [g["kind"] for g in llvm.plan_summary(closed)["groups"]]
    assert "cond" in kinds
    for p in (True, False):
        assert_same(closed, np.bool_(p), x)


@pytest.mark.parametrize("index", [-3, 0, 1, 2, 7])
def test_switch_clamps_and_mixes_outputs(index, native_cond):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    y = rng.integers(-5, 5, (6,)).astype(np.int32)
    w = rng.normal(size=(6, 20)).astype(np.float32)
    branches = [
        lambda x, y: (x.sum(axis=0), y),                                   # pass-through output
        lambda x, y: (cnp.maximum(x, 0.0).max(axis=0), y * 2 + 1),
        lambda x, y: ((x @ w @ w.T).T @ cnp.ones((4,), np.float32) * 0.01 + x[1], cnp.zeros((6,), np.int32) + 3),
    ]

    def f(i, x, y):
        a, b = lax.switch(i, branches, x.T.T * 1.5, y)
        return a + 1.0, b, x
    closed = tj.make_jaxpr(f)(np.int32(0), x, y)
    assert_same(closed, np.int32(index), x, y, rtol=1e-5, atol=1e-5)


def test_nested_cond_and_grad_through_cond(native_cond):
    x = np.linspace(-1, 1.2, 50, dtype=np.float32).reshape(5, 10)   # sums far from 0: no ties

    def f(x):
        def inner(x):
            return lax.cond(x.sum() > 0, lambda x: x * x, lambda x: -x, x)
        return lax.cond(x.mean() < 0.5, lambda x: inner(x) + 1.0, lambda x: x, x).sum()
    for v in (x, -x, x + 3):
        assert_same(tj.make_jaxpr(f)(v), v)
        assert_same(tj.make_jaxpr(tj.grad(f))(v), v)


@st.composite
def implicit_convs(draw):
    """2-D convolutions the GEMM packs straight from the input (gemm.ImplicitConv): any kernel size,
    row stride, dilation and padding, with output rows a multiple of the vector width."""
    dt = draw(st.sampled_from([np.float32, np.float64]))
    vw = 16 if dt == np.float32 else 8
    ow = vw * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sy, dy, dx = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    (ylo, yhi), (xlo, xhi) = [(draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2)]
    oh = 2 * draw(st.integers(1, 3))
    w_in = ow + (kw - 1) * dx - xlo - xhi
    h_in = (oh - 1) * sy + (kh - 1) * dy + 1 - ylo - yhi + draw(st.integers(0, sy - 1))
    if w_in < 1 or h_in < 1:
        xlo = xhi = ylo = yhi = 0
        w_in, h_in = ow + (kw - 1) * dx, (oh - 1) * sy + (kh - 1) * dy + 1
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 20))
    return dt, (n, c, h_in, w_in), (o, c, kh, kw), dict(
        window_strides=(sy, 1), padding=((ylo, yhi), (xlo, xhi)), rhs_dilation=(dy, dx))


@settings(**SETTINGS)
@given(implicit_convs(), st.integers(0, 2**32 - 1))
def test_conv_packed_from_its_input(conv, seed):
    """No im2col buffer and no copy of the result: one GEMM group (after the zero-padded copy of
    the input, when padded) whose B panels are packed from the input itself."""
    dt, xs, wsh, params = conv
    if llvm.engine.host().vector_bytes < 64:
        pytest.skip("the shapes here are drawn for AVX-512's vector width")
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, xs, dt), _rand(rng, wsh, dt)
    closed = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(x, w, **params))(x, w)
    out = closed.jaxpr.outvars[0].aval.shape
    if 2 * np.prod(out) * np.prod(wsh[1:]) >= 2 * 16 ** 3:      # (smaller ones are no GEMM at all)
        plan = llvm._plan(closed, 1)
        gemms = [g for g in plan.groups if g.gemm is not None]
        padded = any(v for pair in params["padding"] for v in pair)
        assert len(gemms) == 1 and gemms[0].gemm.conv is not None
        assert [g.kind for g in plan.groups] == (["loop", "dot"] if padded else ["dot"])
    assert_same(closed, x, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dt", ["float32", "float64", "float16", "int8", "int32"])
def test_vector_tails_read_and_write_exactly_their_lanes(dt):
    """Every tail length of a vector loop (a masked load, stores in pieces of 2^k lanes): three
    pieces written side by side into one output, each read from a neighbouring slice of x, come
    out exactly as numpy's (a tail that wrote past its lanes would clobber the next piece)."""
    for n in range(1, 40):
        x = (np.arange(3 * n) % 7 - 3).astype(dt)
        f = tj.jit(lambda x: cnp.concatenate([x[:n] * 2, x[n:2 * n] + 1, x[2 * n:] - x[:n]]))
        want = np.concatenate([x[:n] * 2, x[n:2 * n] + 1, x[2 * n:] - x[:n]])
        got = f(x)
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (dt, n, got, want)
