"""while_loop and scan as native loops in the LLVM backend, against the numpy interpreter (with
out-of-bounds guards), finite differences, and random loop programs (hypothesis)."""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler import lax, nn
from compiler.ir.core import PRIMITIVES
from runtime import llvm

from llvm_checks import SETTINGS, assert_same


def kinds(closed):
    return [g["kind"] for g in llvm.plan_summary(closed)["groups"]]


def test_every_primitive_has_an_llvm_rule():
    assert llvm.LOWERED == set(PRIMITIVES)


# ---- while ------------------------------------------------------------------------------------

@pytest.mark.parametrize("start", [0.0, 7.5, 8.5, 9.5, 20.0])      # 3, 2, 1 and 0 iterations (parity)
def test_while_trip_counts(start):
    def f(x):
        return lax.while_loop(lambda c: c[0] < 10.0,
                              lambda c: (c[0] + 1.0, c[1] * 1.5 - 0.25, c[2] + 1), (x, cnp.ones(5, np.float32), 0))
    closed = tj.make_jaxpr(f)(np.float32(start))
    assert "while" in kinds(closed)
    assert_same(closed, np.float32(start))


def test_while_integer_carries_and_consts():
    """Collatz steps of every element: integer carries, a closed-over limit in cond, an array const."""
    limit = np.int64(60)

    def f(n, bump):
        def cond(c):
            k, x = c
            return cnp.logical_and(k < limit, cnp.any(x != 1))

        def body(c):
            k, x = c
            odd = x % 2 == 1
            return k + 1, cnp.where(x == 1, x, cnp.where(odd, 3 * x + bump, x // 2))
        return lax.while_loop(cond, body, (np.int64(0), n))
    n = np.array([1, 6, 7, 27, 97, 12], np.int64)
    closed = tj.make_jaxpr(f)(n, np.int64(1))
    assert_same(closed, n, np.int64(1))
    k, x = runtime.compile(closed, "llvm")(n, np.int64(1))
    assert k == 60 and x[0] == 1 and x[1] == 1                       # 27 takes 111 steps: cut at 60


def test_while_body_returns_carry_unchanged_and_duplicates():
    """Outputs that are an input carry, or one value twice, must not alias the buffers being read."""
    def f(a, b):
        def body(c):
            i, x, y, z = c
            s = x + y
            return i + 1, y, s, s                  # y passes through (swapped), s twice
        return lax.while_loop(lambda c: c[0] < 5, body, (0, a, b, a))
    a, b = np.arange(6, dtype=np.float32), np.ones(6, np.float32) * 0.5
    assert_same(tj.make_jaxpr(f)(a, b), a, b)


def test_while_with_bool_and_scalar_carries():
    def f(x):
        def body(c):
            flag, v = c
            v = v * 0.5
            return v > 1.0, v
        return lax.while_loop(lambda c: c[0], body, (x > 1.0, x))
    for x in (0.5, 3.0, 1000.0):
        assert_same(tj.make_jaxpr(f)(np.float64(x)), np.float64(x))


def test_fori_loop_with_traced_bounds_is_a_while():
    def f(lo, hi, x):
        return lax.fori_loop(lo, hi, lambda i, v: v * 2.0 + cnp.astype(i, np.float32), x)
    x = np.linspace(0, 1, 9, dtype=np.float32)
    closed = tj.make_jaxpr(f)(np.int32(0), np.int32(3), x)
    assert "while" in kinds(closed)
    for lo, hi in ((0, 3), (2, 7), (5, 5), (4, 1)):
        assert_same(closed, np.int32(lo), np.int32(hi), x)


# ---- scan -------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 2, 3, 8])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_lengths_and_direction(length, reverse):
    rng = np.random.default_rng(length)
    h = rng.normal(size=(3, 4)).astype(np.float32)
    xs = rng.normal(size=(length, 3, 4)).astype(np.float32)
    ks = rng.integers(-9, 9, size=(length,)).astype(np.int32)

    def f(h, xs, ks):
        def step(c, x):
            h, n = c
            x, k = x
            h = cnp.tanh(h * 0.9 + x)
            return (h, n * 3 + k), (h.sum(axis=1), n, x[0])
        return lax.scan(step, (h, np.int32(1)), (xs, ks), reverse=reverse)
    closed = tj.make_jaxpr(f)(h, xs, ks)
    assert "scan" in kinds(closed)
    assert_same(closed, h, xs, ks)


def test_scan_over_a_strided_view_and_carry_passthrough():
    """xs given as a transpose (copied into a contiguous buffer first); the body returns its input
    carry as a y and swaps the two carries."""
    x = np.arange(24, dtype=np.float32).reshape(4, 6)

    def f(x):
        def step(c, col):
            a, b = c
            return (b, a + col), a
        return lax.scan(step, (cnp.zeros(4, np.float32), cnp.ones(4, np.float32)), x.T)
    assert_same(tj.make_jaxpr(f)(x), x)


def test_scan_without_xs_and_with_literal_outputs():
    def f(x):
        def step(c, _):
            return c * 2, (c, 7)
        return lax.scan(step, x, None, length=4)
    assert_same(tj.make_jaxpr(f)(np.int16(3)), np.int16(3))


def test_scan_of_a_matmul_uses_the_gemm():
    rng = np.random.default_rng(1)
    w = (rng.normal(size=(32, 32)) / 6).astype(np.float32)
    h = rng.normal(size=(32, 32)).astype(np.float32)

    def f(h, w):
        return lax.scan(lambda h, _: (cnp.tanh(h @ w), None), h, None, length=6)[0]
    closed = tj.make_jaxpr(f)(h, w)
    loop, = [g for g in llvm._plan(closed).groups if g.kind == "scan"]
    assert any(g.gemm is not None for g in loop.branches[0].groups)
    assert_same(closed, h, w, rtol=1e-4, atol=1e-5)



@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "uint8", "int8", "bool", "uint64"])
def test_scan_narrow_and_odd_dtypes(dtype):
    """Slices of xs and ys are addressed in bytes: every element size must step right."""
    import ml_dtypes
    d = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(7)
    xs = rng.integers(0, 3, size=(5, 3, 7)).astype(d)

    def f(xs):
        def step(c, x):
            c = cnp.logical_xor(c, x) if d == np.bool_ else c + x
            return c, (c, x)
        return lax.scan(step, xs[0], xs, reverse=True)
    assert_same(tj.make_jaxpr(f)(xs), xs, rtol=1e-2, atol=1e-2)


def test_loop_program_checks_its_arguments():
    closed = tj.make_jaxpr(lambda xs: lax.scan(lambda c, x: (c + x, c), 0.0, xs))(np.ones(4, np.float32))
    fn = runtime.compile(closed, "llvm")
    with pytest.raises(TypeError, match="f32"):
        fn(np.ones(5, np.float32))
    with pytest.raises(TypeError):
        fn(np.ones(4, np.float64))

# ---- nesting ----------------------------------------------------------------------------------

def test_scan_inside_while_and_cond_inside_scan():
    def f(x):
        def inner(v):
            def step(c, k):
                c = lax.cond(k % 2 == 0, lambda c: c * 0.5 + cnp.astype(k, np.float32), lambda c: -c, c)
                return c, c.sum()
            return lax.scan(step, v, cnp.arange(5))

        def body(c):
            i, v, total = c
            v, ys = inner(v)
            return i + 1, cnp.sin(v), total + ys
        return lax.while_loop(lambda c: c[0] < 3, body, (0, x, cnp.zeros(5, np.float32)))
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    closed = tj.make_jaxpr(f)(x)
    assert_same(closed, x, rtol=1e-5, atol=1e-5)


def test_while_inside_scan_with_consts_at_every_level():
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.5, 1.0, size=(4,)).astype(np.float32)
    xs = rng.uniform(1, 50, size=(6, 4)).astype(np.float32)

    def f(xs, scale):
        def step(acc, x):
            def halve(c):
                n, v = c
                return n + 1, v * scale                # scale: a const of the inner body
            n, v = lax.while_loop(lambda c: cnp.max(c[1]) > 1.0, halve, (0, x))
            return acc + v, n
        return lax.scan(step, cnp.zeros(4, np.float32), xs)
    assert_same(tj.make_jaxpr(f)(xs, scale), xs, scale)


# ---- derivatives and jit ----------------------------------------------------------------------

def _numeric_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        d = np.zeros_like(x)
        d[i] = eps
        g[i] = (f(x + d) - f(x - d)) / (2 * eps)
    return g


def test_grad_of_scan_runs_natively_and_matches_finite_differences():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3)) * 0.5
    h0 = rng.normal(size=(2, 3))
    xs = rng.normal(size=(5, 2, 3))

    def loss(w, h0, xs):
        def step(h, x):
            h = cnp.tanh(x @ w + h)
            return h, (h * h).sum()
        h, ys = lax.scan(step, h0, xs)
        return ys.sum() + h.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)          # no fallback to the interpreter
        gw = tj.jit(tj.grad(loss), backend="llvm")(w, h0, xs)
    assert "scan" in kinds(tj.make_jaxpr(tj.grad(loss))(w, h0, xs))
    num = _numeric_grad(lambda w: float(loss(w, h0, xs)), w)
    np.testing.assert_allclose(gw, num, rtol=1e-5, atol=1e-7)


def test_grad_of_fori_loop_matches_finite_differences():
    def f(a, x):
        return lax.fori_loop(0, 6, lambda i, v: cnp.sin(v * a) + 0.1 * i, x).sum()
    x = np.linspace(-1, 1, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        ga = tj.jit(tj.grad(f), backend="llvm")(np.float64(0.8), x)
    num = (f(0.8 + 1e-6, x) - f(0.8 - 1e-6, x)) / 2e-6
    np.testing.assert_allclose(ga, num, rtol=1e-6)


def test_rnn_training_step_under_jit_runs_natively():
    """The examples/rnn_scan.py model and loss: value and gradient equal the interpreter's."""
    rng = np.random.default_rng(0)
    hidden, T, N = 8, 7, 5
    params = {"w_x": rng.normal(size=(hidden, 1)).astype(np.float32), "w_h": (rng.normal(size=(hidden, hidden)) / 3).astype(np.float32),
              "b": np.zeros(hidden, np.float32), "w_o": rng.normal(size=(1, hidden)).astype(np.float32)}
    xs = rng.normal(size=(T, N, 1)).astype(np.float32)
    ys = (np.cumsum(xs[..., 0], axis=0) > 0).astype(np.float32)

    def loss(p, xs, ys):
        def step(h, x):
            h = nn.tanh(nn.linear(x, p["w_x"]) + nn.linear(h, p["w_h"], p["b"]))
            return h, nn.linear(h, p["w_o"])[:, 0]
        _, z = lax.scan(step, cnp.zeros((N, hidden), np.float32), xs)
        return cnp.mean(nn.softplus(z) - ys * z)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        v, g = tj.jit(tj.value_and_grad(loss), backend="llvm")(params, xs, ys)
    v0, g0 = tj.jit(tj.value_and_grad(loss), backend="numpy")(params, xs, ys)
    np.testing.assert_allclose(v, v0, rtol=1e-5)
    for k in params:
        np.testing.assert_allclose(g[k], g0[k], rtol=1e-4, atol=1e-6)



def test_vmap_of_while_and_jvp_of_while():
    """A batched predicate (the loop runs while any example does) and a forward-mode while."""
    def f(x):
        return lax.while_loop(lambda c: c[1] < 4.0, lambda c: (c[0] * 1.5, c[1] + cnp.abs(c[0])), (x, x * 0.0))
    x = np.array([0.1, 0.9, 2.0, -3.0, 0.01], np.float32)
    assert_same(tj.make_jaxpr(tj.vmap(f))(x), x)
    closed = tj.make_jaxpr(lambda x, t: tj.jvp(f, (x,), (t,)))(np.float32(0.3), np.float32(1.0))
    assert "while" in kinds(closed)
    assert_same(closed, np.float32(0.3), np.float32(1.0))

def test_unsupported_dtype_in_a_loop_body_still_falls_back():
    """The fallback stays for what is genuinely not lowered (f8 arithmetic), inside loop bodies too."""
    import ml_dtypes
    f8 = ml_dtypes.float8_e4m3fn

    def f(x):
        def body(c, _):
            c8 = cnp.astype(c, f8)
            return c, cnp.astype(c8 * c8, np.float32)
        return lax.scan(body, x, None, length=2)[1]
    closed = tj.make_jaxpr(f)(np.float32(1.5))
    with pytest.raises(NotImplementedError, match="f8"):
        runtime.compile(closed, "llvm")
    with pytest.warns(RuntimeWarning, match="interpreter"):
        out = tj.jit(f, backend="llvm")(np.float32(1.5))
    np.testing.assert_array_equal(out, [2.25, 2.25])


# ---- random loop programs ---------------------------------------------------------------------

SHAPES = [(), (3,), (2, 5), (17,)]
DTYPES = ["float32", "float64", "int32", "int64"]


def _op(name, a, b, x, k, j, shape, dtype):
    """One way to compute a new carry from carries a, b, the step's x and a const k."""
    if name == "keep":
        return a
    if name == "add":
        return a + b
    if name == "x":
        return a + x
    if name == "const":
        return a * k
    if name == "reduce":
        return a + cnp.max(b)
    if name == "cond":
        # Not sum(a) > sum(b): carries of different float types often hold the same value rounded
        # two ways, and a 1-ulp difference in tanh (libm's is correctly rounded where numpy's float32
        # one is not) would pick the branch. The offset keeps the test off that structural tie.
        return lax.cond(cnp.sum(a) > cnp.sum(b) + 0.125, lambda u, v: u - v, lambda u, v: v + 1, a, b)
    if name == "inner":                                    # a short inner scan
        return lax.scan(lambda c, _: (c + b, None), a, None, length=2)[0]
    raise AssertionError(name)


@st.composite
def loop_programs(draw):
    kind = draw(st.sampled_from(["scan", "while"]))
    shape = draw(st.sampled_from(SHAPES))
    nc = draw(st.integers(1, 3))
    dtypes = [draw(st.sampled_from(DTYPES)) for _ in range(nc)]
    ops = [(draw(st.sampled_from(["keep", "add", "x", "const", "reduce", "cond", "inner"])),
            draw(st.integers(0, nc - 1)), draw(st.integers(0, nc - 1))) for _ in range(nc)]
    ys = [draw(st.integers(0, nc - 1)) for _ in range(draw(st.integers(0, 2)))]
    length = draw(st.integers(0, 5))
    reverse = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 16))
    return kind, shape, dtypes, ops, ys, length, reverse, seed


@settings(**SETTINGS)
@given(loop_programs())
def test_random_loop_programs(prog):
    kind, shape, dtypes, ops, y_src, length, reverse, seed = prog
    rng = np.random.default_rng(seed)

    def values(shape, dtype):
        if dtype.startswith("int"):
            return rng.integers(-5, 6, size=shape).astype(dtype)
        return rng.normal(size=shape).astype(dtype)
    init = [values(shape, d) for d in dtypes]
    xs = values((length,) + shape, "float32")
    k = values(shape, "float64")

    def to(v, d):
        """v as dtype d; a float going to an integer is rounded first, not truncated: tanh saturates
        to exactly +-1, where truncation would turn a 1-ulp difference (libm's tanhf vs numpy's)
        into a difference of 1."""
        if d.startswith("int") and v.dtype.kind == "f":
            v = cnp.round(v)
        return cnp.astype(v, d)

    def step(carry, x, k):
        new = []
        for j, (name, a, b) in enumerate(ops):
            d = dtypes[j]
            v = _op(name, to(carry[a], d), to(carry[b], d), to(x, d), to(k, d), j, shape, d)
            new.append(cnp.tanh(v) if d.startswith("float") and name != "keep" else v)
        return new, [carry[j] if i % 2 else new[j] for i, j in enumerate(y_src)]

    if kind == "scan":
        def f(init, xs, k):
            return lax.scan(lambda c, x: step(c, x, k), init, xs, reverse=reverse)
    else:
        def f(init, xs, k):
            def body(c):
                i, carry = c
                x = xs[i] if length else cnp.zeros(shape, np.float32)
                return i + 1, step(carry, x, k)[0]
            return lax.while_loop(lambda c: c[0] < length, body, (0, init))
    closed = tj.make_jaxpr(f)(init, xs, k)
    assert kind in kinds(closed)
    assert_same(closed, *init, xs, k, rtol=1e-5, atol=1e-6)


def test_rnn_example_runs_without_falling_back(tmp_path):
    """examples/rnn_scan.py (forward, training step and evaluation all jitted) with every
    RuntimeWarning an error: the interpreter fallback would warn."""
    pytest.importorskip("matplotlib")              # the example plots (the `examples` extra)
    pytest.importorskip("tqdm")
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=root)
    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", os.path.join(root, "examples", "rnn_scan.py"),
                           "--quick", "--steps", "5", "--out", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT" in proc.stdout
