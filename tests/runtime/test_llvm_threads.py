"""Threaded native kernels: results equal the interpreter's (and are the same bits whatever the thread
count), every output element is written by one thread, concurrent callers get right answers, and
small programs keep the single-threaded kernel."""
import contextlib
import os
import subprocess
import sys
import threading

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler import lax, nn
from compiler.ir.core import PRIMITIVES
from runtime import llvm
from runtime.llvm import plan as plan_mod, threads as threads_mod

from llvm_checks import SETTINGS, assert_same

pytestmark = pytest.mark.skipif(not threads_mod.available(), reason="native threads need Linux on x86-64/AArch64")


@pytest.fixture
def two_threads():
    old = llvm.get_num_threads()
    llvm.set_num_threads(2)
    yield
    llvm.set_num_threads(old)


@pytest.fixture
def forced(monkeypatch, two_threads):
    """Every step worth threading: small shapes exercise the chunked code paths quickly."""
    monkeypatch.setattr(plan_mod, "MIN_STEP_NS", 0)
    monkeypatch.setattr(plan_mod, "MIN_PROGRAM_NS", 0)
    monkeypatch.setattr(plan_mod, "CHUNK_NS", 1)
    llvm.clear_cache()
    yield
    llvm.clear_cache()


def check_threads(f, *args, threaded=True, **tol):
    """The interpreter's result (guarded against out-of-bounds writes); the same bits with 1 and 2
    threads at run time; close to the kernel compiled for 1 thread."""
    closed = tj.make_jaxpr(f)(*args)
    summary = llvm.plan_summary(closed)
    assert (summary["threads"] > 1) == threaded, summary
    assert_same(closed, *args, **tol)
    fn = runtime.compile(closed, "llvm")
    assert fn.kernel.threads == summary["threads"]
    two = fn(*args)
    llvm.set_num_threads(1)
    try:
        one = fn(*args)
        single = runtime.compile(closed, "llvm")
        assert single.kernel.threads == 1
        plain = single(*args)
    finally:
        llvm.set_num_threads(2)
    for a, b, c in zip(two, one, plain):
        assert a.tobytes() == b.tobytes(), "a threaded kernel's result depends on the thread count"
        if a.dtype.kind in "iub" and a.dtype != ml_dtypes.bfloat16:
            np.testing.assert_array_equal(a, c)
        else:
            np.testing.assert_allclose(a.astype(np.float64), c.astype(np.float64), equal_nan=True,
                                       **{"rtol": 1e-5, "atol": 1e-6, **tol})
    return summary


# ---- the API ----------------------------------------------------------------------------------

def test_set_num_threads(two_threads):
    assert llvm.get_num_threads() == 2
    llvm.set_num_threads(1)
    assert llvm.get_num_threads() == 1
    with pytest.raises(ValueError):
        llvm.set_num_threads(0)
    assert llvm.get_num_threads() == 1


def test_env_default():
    code = "from runtime import llvm; print(llvm.get_num_threads())"
    env = dict(os.environ, TRACEJIT_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == "3", out.stderr
    env.pop("TRACEJIT_NUM_THREADS")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.stdout.strip() == str(len(os.sched_getaffinity(0))), out.stderr


def test_exit_right_after_workers_start_does_not_hang():
    """A worker created just before exit (set_num_threads(2) as the last statement) may start
    after stop() has woken the others: it must still see the quit flag, so the process exits."""
    code = ("import numpy as np, compiler as tj, compiler.numpy as cnp\n"
            "from runtime import llvm\n"
            "llvm.set_num_threads(1)\n"
            "tj.jit(lambda x: cnp.exp(x) * 2)(np.ones(64, np.float32))\n"
            "llvm.set_num_threads(2)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                             timeout=60)
        assert out.returncode == 0, out.stderr


def test_small_programs_stay_single_threaded(two_threads):
    x = np.ones(1000, np.float32)
    closed = tj.make_jaxpr(lambda x: cnp.sin(x) * 2 + 1)(x)
    assert llvm.plan_summary(closed)["threads"] == 1
    assert "tracejit_pool_run" not in llvm.llvm_ir(closed)


# ---- large programs, with the real cost model ---------------------------------------------------

def test_chain_and_gradient(two_threads):
    x = np.random.default_rng(0).uniform(0.1, 5, 1 << 19).astype(np.float32)

    def chain(x):
        return lax.logistic(0.75 * cnp.log(x / 2) + x + cnp.log(3 * x))
    check_threads(chain, x)
    check_threads(tj.grad(lambda x: cnp.sum(chain(x))), x, rtol=1e-4)


def test_broadcast_and_transpose(two_threads):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((700, 900)).astype(np.float32)
    b = rng.standard_normal((900, 700)).astype(np.float32)
    check_threads(lambda a, b: cnp.exp(a[:, :1] * a[:1, :]) + b.T, a, b)
    check_threads(lambda a, b: cnp.sin(a.T) + b, a, b)


def test_reductions(two_threads):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((640, 700)).astype(np.float32)
    ints = rng.integers(-1000, 1000, (640, 700)).astype(np.int32)
    flat = rng.standard_normal(1 << 19).astype(np.float32)
    few = rng.standard_normal((3, 1 << 17)).astype(np.float32)
    for axis in (0, 1):
        s = check_threads(lambda a: cnp.sum(cnp.exp(a), axis=axis), a, rtol=1e-4)
        assert s["groups"][-1]["split"] == "kept"
        check_threads(lambda a: cnp.max(cnp.sin(a), axis=axis), a)
        check_threads(lambda a: cnp.argmax(a * 1.5, axis=axis), a)
        check_threads(lambda a: cnp.sum(a * 3, axis=axis), ints)
        check_threads(lambda a: cnp.cumsum(a, axis=axis), ints)
    s = check_threads(lambda x: cnp.sum(cnp.sin(x)), flat, rtol=1e-4, atol=1e-3)
    assert s["groups"][-1]["split"] == "red"                      # per-chunk partial sums
    check_threads(lambda x: cnp.min(cnp.cos(x)), flat)
    check_threads(lambda x: cnp.sum(cnp.exp(x), axis=1), few, rtol=1e-4)
    check_threads(lambda x: cnp.sum(cnp.exp(x), axis=0), np.ascontiguousarray(few.T), rtol=1e-4)
    check_threads(lambda x: cnp.sum(x * x), flat.astype(np.float16), rtol=1e-2)
    check_threads(lambda x: cnp.any(x > 4.0), flat)


def test_exact_partial_sums(two_threads):
    """Small integers in floats: every chunk boundary must count each element exactly once."""
    rng = np.random.default_rng(3)
    for shape, axis in (((1 << 20) + 37,), 0), ((5, (1 << 17) + 9), 1), (((1 << 17) + 3, 5), 0):
        x = rng.integers(0, 4, shape).astype(np.float32)
        closed = tj.make_jaxpr(lambda x: cnp.sum(x * 1, axis=axis))(x)
        assert llvm.plan_summary(closed)["threads"] == 2
        got = runtime.compile(closed, "llvm")(x)[0]
        np.testing.assert_array_equal(got, x.astype(np.float64).sum(axis))


def test_matmul(two_threads):
    rng = np.random.default_rng(4)
    a = rng.standard_normal((300, 260)).astype(np.float32)
    b = rng.standard_normal((260, 333)).astype(np.float32)
    s = check_threads(lambda a, b: a @ b, a, b, rtol=1e-4, atol=1e-4)
    assert s["groups"][-1]["split"] == "tiles"
    check_threads(lambda a, b: a @ b, a.astype(np.float64), b.astype(np.float64))
    check_threads(lambda a, b: a @ b, a.astype(np.float16), b.astype(np.float16), rtol=2e-2, atol=5e-2)
    check_threads(lambda a, b: a.T @ b.T, np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), rtol=1e-4,
                  atol=1e-4)                                               # strided operands
    ba = rng.standard_normal((32, 64, 80)).astype(np.float32)
    bb = rng.standard_normal((32, 80, 72)).astype(np.float32)
    s = check_threads(lambda a, b: cnp.matmul(a, b), ba, bb, rtol=1e-4, atol=1e-4)
    assert s["groups"][-1]["split"] == "batch"
    v = rng.standard_normal(260).astype(np.float32)
    big = rng.standard_normal((2000, 260)).astype(np.float32)
    check_threads(lambda a, v: a @ v, big, v, rtol=1e-4, atol=1e-4)              # matrix-vector
    check_threads(lambda a, v: a @ v, (big * 8).astype(np.int32), (v * 8).astype(np.int32))


def test_conv(two_threads):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 8, 24, 24)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32)
    summary = check_threads(lambda x, w: nn.conv2d(x, w, padding=1), x, w, rtol=1e-4, atol=1e-4)
    im2col = summary["groups"][0]          # 9 copies and 8 zero borders, each too small to cut alone
    assert len(im2col["chunks"]) == 17 and min(im2col["chunks"]) > 1, im2col
    check_threads(tj.grad(lambda x, w: cnp.sum(nn.conv2d(x, w, padding=1) ** 2), argnums=(0, 1)), x, w,
                  rtol=1e-3, atol=1e-3)


def test_conv_packed_from_its_input(two_threads):
    """The implicit-GEMM convolution (gemm.ImplicitConv) cut into column chunks, forward and in the
    gradient (whose input gradient is such a convolution too)."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 8, 32, 32)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.1).astype(np.float32)
    summary = check_threads(lambda x, w: nn.conv2d(x, w, padding=1), x, w, rtol=1e-4, atol=1e-4)
    assert [(g["kind"], g["split"]) for g in summary["groups"]] == [("loop", ""), ("dot", "cols")], summary
    check_threads(tj.grad(lambda x, w: cnp.sum(nn.conv2d(x, w, padding=1) ** 2), argnums=(0, 1)), x, w,
                  rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("m,k,n", [(300, 200, 520), (64, 96, 1030)])
def test_int8_gemm_in_column_chunks(two_threads, m, k, n):
    """The VNNI GEMM cut into column chunks, each thread packing into its own buffers: exact, and
    the same on 1 and 2 threads (the edge panel included)."""
    from runtime.llvm import intgemm
    if not intgemm.has_vnni(llvm.engine.host()):
        pytest.skip("no AVX-512 VNNI on this host")
    rng = np.random.default_rng(m)
    a = rng.integers(-128, 128, (m, k)).astype(np.int8)
    b = rng.integers(-128, 128, (k, n)).astype(np.int8)
    f = lambda a, b: lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=np.int32)  # noqa: E731
    summary = check_threads(f, a, b)
    assert [(g["gemm"], g["split"]) for g in summary["groups"]] == [(True, "cols")], summary
    np.testing.assert_array_equal(runtime.compile(tj.make_jaxpr(f)(a, b), "llvm")(a, b)[0],
                                  a.astype(np.int32) @ b.astype(np.int32))


def test_cond_in_a_threaded_program(two_threads):
    """Branches are sub-plans: they run on one thread, inside a threaded schedule."""
    a = np.random.default_rng(6).standard_normal((600, 600)).astype(np.float32)
    for p in (np.float32(1), np.float32(-1)):
        check_threads(lambda p, a: lax.cond(p > 0, lambda a: cnp.sin(a) * 2, lambda a: cnp.cos(a), a) * cnp.exp(a),
                      p, a)


# ---- every chunked code path on small shapes ----------------------------------------------------

def test_forced_paths(forced):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((37, 29)).astype(np.float32)
    x = rng.uniform(0.1, 4, 1001).astype(np.float32)
    P = PRIMITIVES
    cases = [
        (lambda x: cnp.log(x) * x, (x,), {}),
        (lambda a: cnp.sin(a.T) + 1, (a,), {}),
        (lambda a: cnp.sum(a, axis=0), (a,), {}),
        (lambda a: cnp.sum(a, axis=1), (a,), {}),
        (lambda a: cnp.max(a), (a,), {}),
        (lambda a: cnp.argmax(a, axis=0), (a,), {}),
        (lambda a: cnp.cumsum(a, axis=1), (a,), {"rtol": 1e-5, "atol": 1e-5}),
        (lambda a: cnp.prod(1 + a * 0.01, axis=1), (a,), {}),
        (lambda a, b: a @ b, (a, a.T.copy()), {"rtol": 1e-4, "atol": 1e-4}),
        (lambda a, b: cnp.matmul(a, b), (rng.standard_normal((6, 5, 7)).astype(np.float32),
                                         rng.standard_normal((6, 7, 9)).astype(np.float32)), {"rtol": 1e-5, "atol": 1e-5}),
        (lambda a, v: a @ v, (a, a[0].copy()), {"rtol": 1e-5, "atol": 1e-5}),
        (lambda x, y: cnp.sum(x * y), (x, x[::-1].copy()), {"rtol": 1e-5, "atol": 1e-4}),
        (lambda a: cnp.concatenate([cnp.pad(a, 2), cnp.pad(a, 2) * 2], axis=0), (a,), {}),
        (lambda a: lax.reduce_window(a, "max", (3, 3), (2, 1), ((1, 1), (0, 2))), (a,), {}),
        (lambda a: lax.reduce_window(a, "sum", (4, 3), (1, 1), ((2, 1), (1, 1))), (a,), {"atol": 1e-5}),
        (lambda a, i, u: P["scatter_add"].bind(a, i, u, axis=0),
         (a, rng.integers(0, 37, 50).astype(np.int32), rng.standard_normal((50, 29)).astype(np.float32)),
         {"atol": 1e-5}),
        (lambda a, u, i: lax.dynamic_update_slice(a, u, (i, 3)), (a, a[:5, :7] * 3, np.int32(4)), {}),
    ]
    for f, args, tol in cases:
        check_threads(f, *args, **tol)
    xc = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    wc = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    check_threads(tj.grad(lambda x, w: cnp.sum(nn.conv2d(x, w, padding=1) ** 2), argnums=(0, 1)), xc, wc,
                  rtol=1e-4, atol=1e-4)


def test_forced_convolutions(forced):
    """Strides, dilations (input dilation: a full zero fill, then the pieces), padding, groups."""
    rng = np.random.default_rng(11)
    for ws, pad, ld, rd, groups in [((1, 1), ((1, 1), (1, 1)), (1, 1), (1, 1), 1),
                                    ((2, 1), ((2, 0), (1, 2)), (1, 1), (2, 1), 1),
                                    ((1, 2), ((1, 1), (0, 0)), (2, 1), (1, 1), 1),
                                    ((1, 1), ((0, 1), (1, 0)), (1, 2), (1, 2), 2)]:
        x = rng.standard_normal((2, 4, 7, 6)).astype(np.float32)
        w = rng.standard_normal((6, 4 // groups, 3, 2)).astype(np.float32)
        check_threads(lambda x, w: lax.conv_general_dilated(x, w, ws, pad, ld, rd, groups), x, w, rtol=1e-4,
                      atol=1e-4)


def test_im2col_writes_each_entry_once():
    """The zero borders and the copied pieces of a convolution's columns are disjoint (threads may
    write them in any order, none writes an entry another writes) and cover every entry."""
    import itertools
    rng = np.random.default_rng(12)
    checked = 0
    for _ in range(150):
        nsp = int(rng.integers(1, 3))
        S, K = [int(rng.integers(1, 7)) for _ in range(nsp)], [int(rng.integers(1, 5)) for _ in range(nsp)]
        ws, rd = tuple(int(rng.integers(1, 3)) for _ in range(nsp)), tuple(int(rng.integers(1, 3)) for _ in range(nsp))
        pad = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nsp))
        x, w = np.ones((2, 3, *S), np.float32), np.ones((4, 3, *K), np.float32)
        if any((s - 1) + lo + hi < (k - 1) * r for s, (lo, hi), k, r in zip(S, pad, K, rd)):
            continue                                              # the window does not fit
        closed = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(x, w, ws, pad, (1,) * nsp, rd, 1))(x, w)
        g = plan_mod.make_plan(closed, None, None).groups[0]
        counts = None
        for nest in g.nests:
            (_, dst, _), = nest.outs
            counts = np.zeros(dst.buf.size, np.int64) if counts is None else counts
            idx = [dst.offset + sum(i * st for i, st in zip(ix, dst.strides))
                   for ix in itertools.product(*map(range, dst.shape))]
            np.add.at(counts, np.array(idx, np.int64), 1)
        assert all(n.joins_previous for n in g.nests[1:])
        assert (counts == 1).all()
        checked += 1
    assert checked > 50


@contextlib.contextmanager
def forced_chunks():
    """Like the ``forced`` fixture, for hypothesis tests (which cannot take function-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plan_mod, "MIN_STEP_NS", 0)
        mp.setattr(plan_mod, "MIN_PROGRAM_NS", 0)
        mp.setattr(plan_mod, "CHUNK_NS", 1)
        old = llvm.get_num_threads()
        llvm.set_num_threads(2)
        llvm.clear_cache()                  # a kernel cached before the thresholds changed is not chunked
        try:
            yield
        finally:
            llvm.set_num_threads(old)


@settings(**SETTINGS)
@given(st.lists(st.integers(1, 23), min_size=1, max_size=4), st.data())
def test_forced_random_reductions(shape, data):
    """Random shapes and axes: chunk boundaries on vectors, tails and tiles never lose or double
    an element (integer data, exact)."""
    with forced_chunks():
        axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1)))))
        perm = data.draw(st.permutations(range(len(shape))))
        x = np.random.default_rng(len(shape)).integers(-50, 50, shape).astype(np.int64)
        kind = data.draw(st.sampled_from(["sum", "max", "min"]))
        red = {"sum": cnp.sum, "max": cnp.max, "min": cnp.min}[kind]
        closed = tj.make_jaxpr(lambda x: red(cnp.transpose(x * 3 + 1, perm), axis=axes) if axes else
                               cnp.transpose(x * 3 + 1, perm))(x)
        assert_same(closed, x)


@settings(**SETTINGS)
@given(st.integers(1, 3000), st.sampled_from([None, 0, 1]), st.sampled_from(["f32", "f64", "i32"]),
       st.integers(0, 6), st.integers(0, 2**31 - 1))
def test_forced_argmax_in_partial_results(n, axis, dt, specials, seed):
    """argmax over reduced axes cut into chunks: each chunk's (value, index), then the best of them,
    so repeated maxima and NaNs (numpy: the first NaN wins) resolve to the first, as in one pass."""
    with forced_chunks():
        rng = np.random.default_rng(seed)
        x = rng.integers(-3, 4, (2, n)).astype(np.dtype(dt.replace("f", "float").replace("i", "int")))
        if dt != "i32":                         # few distinct values: ties across chunks; NaNs too
            x[rng.integers(0, 2, specials), rng.integers(0, n, specials)] = np.nan
        closed = tj.make_jaxpr(lambda x: cnp.argmax(x, axis=axis))(x)
        splits = {g["split"] for g in llvm.plan_summary(closed)["groups"]}
        assert ("red" in splits) if axis != 0 else (splits & {"red", "kept"}), splits   # (axis 0: n kept)
        assert_same(closed, x)
        np.testing.assert_array_equal(runtime.compile(closed, "llvm")(x)[0], np.argmax(x, axis=axis))


# ---- concurrency --------------------------------------------------------------------------------

def test_two_python_threads_call_one_kernel(two_threads):
    """ctypes releases the GIL: both calls run natively at once, one of them on the pool and the
    other alone (the pool is busy), each on its own scratch arena."""
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((512, 512)).astype(np.float32) for _ in range(4)]
    f = tj.jit(lambda a, b: cnp.sum(cnp.tanh(a @ b), axis=1) + cnp.sum(a, axis=0))
    assert llvm.plan_summary(tj.make_jaxpr(lambda a, b: cnp.sum(cnp.tanh(a @ b), axis=1) + cnp.sum(a, axis=0))(
        xs[0], xs[1]))["threads"] == 2
    refs = [np.asarray(f(xs[i], xs[(i + 1) % 4])) for i in range(4)]
    errors = []

    def worker(i):
        try:
            for r in range(25):
                k = (i + r) % 4
                got = np.asarray(f(xs[k], xs[(k + 1) % 4]))
                if got.tobytes() != refs[k].tobytes():
                    errors.append((i, r))
        except Exception as e:  # noqa: BLE001
            errors.append(e)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_repeated_calls_stay_identical(forced):
    """Many calls of one chunked kernel: a race would show up as a result that changes."""
    rng = np.random.default_rng(9)
    a = rng.standard_normal((64, 300)).astype(np.float32)
    f = runtime.compile(tj.make_jaxpr(lambda a: (cnp.sum(cnp.exp(a), axis=0), cnp.cumsum(a, axis=1),
                                                  lax.reduce_window(a, "sum", (3, 5), (1, 2), ((1, 1), (2, 2)))))(a),
                        "llvm")
    first = [o.tobytes() for o in f(a)]
    for _ in range(300):
        assert [o.tobytes() for o in f(a)] == first


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_workers(two_threads):
    x = np.random.default_rng(10).uniform(0.1, 2, 1 << 19).astype(np.float32)
    f = tj.jit(lambda x: cnp.log(x) * cnp.exp(-x))
    ref = np.asarray(f(x))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                   # the child: threaded kernels still work
        ok = all(np.asarray(f(x)).tobytes() == ref.tobytes() for _ in range(5))
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.waitpid(pid, 0)
    assert got == b"1"
