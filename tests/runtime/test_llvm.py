"""The LLVM backend against the numpy interpreter: random programs (hypothesis), argument checks in
a subprocess, the kernel cache, fusion, and clear errors for what is not lowered yet."""
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler.ir.core import PRIMITIVES, dtype as D
from runtime import llvm

from llvm_checks import SETTINGS, assert_same


def check(f, *args, **tol):
    assert_same(tj.make_jaxpr(f)(*args), *args, **tol)


# ----------------------------------------------------------------------------------------------
# Random programs
# ----------------------------------------------------------------------------------------------

# Unary steps whose results stay finite for finite inputs, so FMA contraction cannot turn a tiny
# positive into a tiny negative and one side into NaN.
UNARY = {
    "sin": cnp.sin, "cos": cnp.cos, "tanh": cnp.tanh, "neg": lambda x: -x, "abs": cnp.abs,
    "logistic": tj.lax.logistic, "exp_neg_abs": lambda x: cnp.exp(-cnp.abs(x)),
    "log1p_abs": lambda x: cnp.log1p(cnp.abs(x)), "sqrt_abs1": lambda x: cnp.sqrt(cnp.abs(x) + 1),
    "square": lambda x: x * x, "clip": lambda x: cnp.clip(x, -1.5, 2.0),
}
BINARY = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "max": cnp.maximum, "min": cnp.minimum, "div": lambda x, y: x / (cnp.abs(y) + 1),
}
INT_BINARY = {
    "add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
    "max": cnp.maximum, "min": cnp.minimum, "floordiv": lambda x, y: x // y, "mod": lambda x, y: x % y,
    "and": lambda x, y: x & y, "xor": lambda x, y: x ^ y,
}


@st.composite
def broadcast_shapes(draw, n):
    """A base shape and n input shapes that broadcast to it (dims set to 1 or dropped in front)."""
    base = draw(st.lists(st.integers(1, 9), min_size=0, max_size=3))
    shapes = []
    for _ in range(n):
        shape = [d if draw(st.booleans()) else 1 for d in base]
        drop = draw(st.integers(0, len(shape)))
        shapes.append(tuple(shape[drop:]))
    return tuple(base), shapes


@st.composite
def programs(draw, integer=False):
    n_in = draw(st.integers(1, 3))
    _, shapes = draw(broadcast_shapes(n_in))
    unary, binary = ({}, INT_BINARY) if integer else (UNARY, BINARY)
    steps = []
    for _ in range(draw(st.integers(1, 8))):
        if unary and draw(st.booleans()):
            steps.append(("u", draw(st.sampled_from(sorted(unary))), draw(st.integers(0, 99))))
        else:
            steps.append(("b", draw(st.sampled_from(sorted(binary))), draw(st.integers(0, 99)),
                          draw(st.integers(0, 99))))
    select = draw(st.booleans())
    outs = draw(st.lists(st.integers(0, 99), min_size=1, max_size=3))

    def f(*xs):
        pool = list(xs)
        for step in steps:
            if step[0] == "u":
                pool.append(unary[step[1]](pool[step[2] % len(pool)]))
            else:
                pool.append(binary[step[1]](pool[step[2] % len(pool)], pool[step[3] % len(pool)]))
        if select:          # compare inputs only: computed values may differ in the last bit
            pool.append(cnp.where(xs[0] > xs[-1], pool[-1], xs[0]))
        return tuple(pool[-1 - (o % (len(pool) - n_in))] for o in outs)
    return f, shapes


@settings(**SETTINGS)
@given(programs(), st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_random_float_elementwise_chains(prog, dt, seed):
    f, shapes = prog
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-3, 3, s).astype(dt) for s in shapes]
    check(f, *args, rtol=2e-5 if dt == np.float32 else 1e-12, atol=1e-6 if dt == np.float32 else 1e-12)


@settings(**SETTINGS)
@given(programs(integer=True), st.sampled_from([np.int32, np.int8, np.uint8, np.int64]), st.integers(0, 2**32 - 1))
def test_random_integer_elementwise_chains(prog, dt, seed):
    f, shapes = prog
    rng = np.random.default_rng(seed)
    info = np.iinfo(dt)
    args = [rng.integers(max(info.min, -100), min(info.max, 100) + 1, s).astype(dt) for s in shapes]
    check(f, *args)


REDUCTIONS = {
    "sum": lambda x, a: x.sum(axis=a), "max": lambda x, a: cnp.max(x, axis=a),
    "min": lambda x, a: cnp.min(x, axis=a), "prod": lambda x, a: cnp.prod(x, axis=a),
}


@settings(**SETTINGS)
@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.data(),
       st.sampled_from(sorted(REDUCTIONS) + ["argmax", "cumsum"]), st.sampled_from([np.float32, np.int32, np.float64]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_random_reductions(shape, data, op, dt, fuse, seed):
    rng = np.random.default_rng(seed)
    x = (rng.uniform(-2, 2, shape) if dt != np.int32 else rng.integers(-9, 10, shape)).astype(dt)
    ndim = len(shape)
    if op in ("argmax", "cumsum"):
        axes = data.draw(st.integers(0, ndim - 1))
    else:
        axes = tuple(sorted(data.draw(st.sets(st.integers(0, ndim - 1)))))

    def f(x):
        y = x * x - 1 if fuse else x          # fuse: the reduction absorbs the elementwise producer
        if op == "argmax":
            return cnp.argmax(y, axis=axes)
        if op == "cumsum":
            return tj.lax.cumsum(y, axis=axes, reverse=bool(seed % 2))
        return REDUCTIONS[op](y, axes)
    check(f, x, rtol=1e-5, atol=1e-5)


@settings(**SETTINGS)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2), st.booleans(), st.booleans(),
       st.sampled_from([np.float32, np.float64, np.int32]), st.integers(0, 2**32 - 1))
def test_random_matmuls(m, k, n, nbatch, trans_a, trans_b, dt, seed):
    rng = np.random.default_rng(seed)
    batch = tuple(int(b) for b in rng.integers(1, 4, nbatch))
    a_shape = batch + ((k, m) if trans_a else (m, k))
    b_shape = batch + ((n, k) if trans_b else (k, n))
    a, b = (rng.uniform(-1, 1, s) if dt != np.int32 else rng.integers(-9, 10, s) for s in (a_shape, b_shape))
    a, b = a.astype(dt), b.astype(dt)
    bd = tuple(range(nbatch))
    dims = (((nbatch + (0 if trans_a else 1),), (nbatch + (1 if trans_b else 0),)), (bd, bd))
    check(lambda a, b: tj.lax.dot_general(a, b, dims), a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("a_shape,b_shape", [((1, 1), (1, 1)), ((7, 13), (13, 5)), ((64, 100), (100, 70)),
                                             ((3, 37, 29), (3, 29, 41)), ((300, 17), (17, 2))])
def test_matmul_sizes(a_shape, b_shape):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(np.float32), rng.standard_normal(b_shape).astype(np.float32)
    check(lambda a, b: a @ b, a, b, rtol=1e-4, atol=1e-4)


def test_large_matmul_uses_the_gemm_kernel():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((130, 300)).astype(np.float32), rng.standard_normal((300, 97)).astype(np.float32)
    closed = tj.make_jaxpr(lambda a, b: a.T.T @ b)(a, b)
    assert [g["gemm"] for g in llvm.plan_summary(closed)["groups"]] == [True]
    assert_same(closed, a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,k,n,trans_a", [(256, 128, 10, False), (128, 256, 10, True), (1000, 300, 16, False),
                                           (33, 70, 3, True), (145, 9, 1 + 8, False)])
def test_narrow_matmuls_use_one_vector_of_columns(m, k, n, trans_a):
    """A product with at most one vector of columns (a layer's few outputs) runs 16-row tiles of one
    vector: every tile is an edge tile in n, and m crosses several row blocks."""
    if llvm.engine.host().vector_bytes < 64:
        pytest.skip("the narrow tiles are for AVX-512 hosts")
    rng = np.random.default_rng(m + n)
    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    closed = tj.make_jaxpr(lambda a, b: (a.T if trans_a else a) @ b)(a, b)
    plan = llvm._plan(closed, 1)
    spec = [g.gemm for g in plan.groups if g.gemm is not None]
    assert len(spec) == 1 and (spec[0].mr, spec[0].nr) == (16, 16)
    assert_same(closed, a, b, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Every lowered primitive, special values included
# ----------------------------------------------------------------------------------------------

SPECIAL = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 0.5, 1.5, 2.5, -2.5, 1e-30, 88.0, -100.0,
                    1e4, -1e4, 3.0, 0.7, 20.0, 1e-5])
UNARY_PRIMS = ["neg", "sign", "abs", "exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "sqrt", "rsqrt",
               "floor", "ceil", "round", "is_finite", "logistic", "erf", "stop_gradient"]


@pytest.mark.parametrize("dt,tol", [(np.float32, 4e-6), (np.float64, 4e-15), (np.float16, 2e-3),
                                    (ml_dtypes.bfloat16, 1.6e-2)])
def test_float_unary_special_values(dt, tol):
    x = np.concatenate([SPECIAL, np.linspace(-9, 9, 37)]).astype(dt)
    check(lambda x: tuple(PRIMITIVES[p].bind(x) for p in UNARY_PRIMS), x, rtol=tol, atol=1e-30)


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.int32, np.int8, np.uint8, np.uint32, np.int64])
def test_binary_primitives(dt):
    rng = np.random.default_rng(1)
    if np.dtype(dt).kind == "f":
        x = np.concatenate([SPECIAL, rng.uniform(-5, 5, 20)]).astype(dt)
        y = np.concatenate([SPECIAL[::-1], rng.uniform(-5, 5, 20)]).astype(dt)
        names = ["add", "sub", "mul", "div", "rem", "pow", "max", "min", "eq", "ne", "lt", "le", "gt", "ge"]
    else:
        info = np.iinfo(dt)
        x = rng.integers(info.min, info.max, 40, dtype=dt, endpoint=True)
        y = rng.integers(info.min, info.max, 40, dtype=dt, endpoint=True)
        y[:4] = 0
        if info.min < 0:
            x[4], y[4] = info.min, -1                     # MIN // -1 must not trap
        names = ["add", "sub", "mul", "div", "rem", "max", "min", "eq", "ne", "lt", "le", "gt", "ge", "and", "or",
                 "xor", "shift_left", "shift_right_logical"]
        y[5:9] = np.array([1, 3, 8 * x.itemsize - 1, 8 * x.itemsize]).astype(dt)
    check(lambda x, y: tuple(PRIMITIVES[p].bind(x, y) for p in names) +
          tuple(PRIMITIVES[p].bind(x, y[7]) for p in names), x, y, rtol=2e-6, atol=0)


DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint32, np.bool_]


@pytest.mark.parametrize("src", DTYPES)
def test_convert_element_type_all_pairs(src):
    rng = np.random.default_rng(2)
    if src in (np.float32, np.float64, np.float16, ml_dtypes.bfloat16):
        x = np.concatenate([[np.nan, np.inf, -np.inf, 0.5, -0.5, 1e10, -1e10, 255.5, 65519.0, 70000.0,
                             1 + 2 ** -11 + 2 ** -40], rng.uniform(-300, 300, 20)]).astype(src)
    elif src == np.bool_:
        x = rng.random(20) > 0.5
    else:
        info = np.iinfo(src)
        x = rng.integers(info.min, info.max, 30, dtype=src, endpoint=True)
    check(lambda x: tuple(tj.lax.convert_element_type(x, d) for d in DTYPES), x, rtol=1e-7, atol=0)


def test_integer_pow_select_n_and_bool_ops():
    rng = np.random.default_rng(3)
    x = rng.uniform(-3, 3, 23).astype(np.float32)
    i = rng.integers(-20, 20, 23).astype(np.int32)
    check(lambda x, i: tuple(PRIMITIVES["integer_pow"].bind(x, y=y) for y in (0, 1, 2, 3, 5, 7, -1, -3)) +
          tuple(PRIMITIVES["integer_pow"].bind(i, y=y) for y in (0, 2, 3)), x, i, rtol=1e-6)
    w = rng.integers(-1, 4, (6, 5)).astype(np.int32)
    a, b, c = (rng.standard_normal((6, 5)).astype(np.float32) for _ in range(3))
    check(lambda w, a, b, c: (PRIMITIVES["select_n"].bind(w, a, b, c), PRIMITIVES["select_n"].bind(w > 0, a, b),
                              PRIMITIVES["select_n"].bind(w[0, 0] > 0, a, b),
                              (w > 0) & (a > b), ~(w > 1) | (a < 0), (w > 0) ^ (b > 0)), w, a, b, c)


def test_structural_primitives():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    P = PRIMITIVES
    check(lambda x: (P["transpose"].bind(x, permutation=(2, 0, 1)),
                     P["slice"].bind(x, start_indices=(1, 0, 1), limit_indices=(3, 4, 5), strides=(1, 2, 2)),
                     P["rev"].bind(x, dimensions=(0, 2)), P["rev"].bind(x, dimensions=(2,)) + x,
                     P["reshape"].bind(P["transpose"].bind(x, permutation=(2, 0, 1)), new_sizes=(5, 12)),
                     P["squeeze"].bind(P["expand_dims"].bind(x, dimensions=(0, 3)), dimensions=(0,)),
                     P["concatenate"].bind(x, x * 2, x[:1], dimension=0),
                     P["pad"].bind(x, 0.5, padding_config=((1, 2, 0), (0, 0, 1), (2, -1, 1))),
                     P["pad"].bind(x, x[0, 0, 0], padding_config=((-2, 1, 2), (0, 0, 0), (-3, -3, 1))),
                     P["iota"].bind(dtype=D("i32"), shape=(4, 6), dimension=1) + 1,
                     P["broadcast_in_dim"].bind(x[0], shape=(2, 4, 3, 5), broadcast_dimensions=(1, 3)) + 1,
                     P["broadcast_in_dim"].bind(1.5, shape=(2, 3), broadcast_dimensions=()),
                     x, x.T, x.reshape(-1), 2.0), x)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_gather_scatter_add(axis):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    idx = np.array([[0, 2], [-1, 7]], np.int32)                   # out of range: clamped
    upd = rng.standard_normal(x.shape[:axis] + idx.shape + x.shape[axis + 1:]).astype(np.float32)
    P = PRIMITIVES
    check(lambda x, i, u: (P["gather"].bind(x, i, axis=axis), P["gather"].bind(x, i, axis=axis) * 2 + 1,
                           P["scatter_add"].bind(x, i, u, axis=axis)), x, idx, upd, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 40), st.integers(1, 30), st.sampled_from(["f32", "f64", "i32", "f16"]),
       st.integers(0, 2**31 - 1))
def test_scatter_add_in_vectors_with_repeated_rows(rows, width, nidx, dt, seed):
    """Scatter-add runs its trailing axis in vectors (one index per row): repeated and clamped
    indices still add up in order, exactly as the interpreter's np.add.at."""
    rng = np.random.default_rng(seed)
    d = D(dt).np
    x = (rng.standard_normal((rows, width)) * 4).astype(d)
    idx = rng.integers(-2, rows + 2, nidx).astype(np.int32)
    upd = (rng.standard_normal((nidx, width)) * 4).astype(d)
    check(lambda x, i, u: PRIMITIVES["scatter_add"].bind(x, i, u, axis=0), x, idx, upd, rtol=0, atol=0)


def test_dynamic_slices():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    u = rng.standard_normal((2, 2, 3)).astype(np.float32)
    P = PRIMITIVES
    for s1, s2 in [(1, 7), (-4, 2), (0, 0)]:
        check(lambda x, u, a, b: (P["dynamic_slice"].bind(x, a, b, a, slice_sizes=(2, 2, 3)),
                                  P["dynamic_slice"].bind(x, 1, -3, 9, slice_sizes=(2, 2, 3)),
                                  P["dynamic_update_slice"].bind(x, u, a, b, a)), x, u, np.int32(s1), np.int32(s2))


def test_reduction_edge_cases():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    x[1, 2] = np.nan
    x[3, :] = -np.inf
    P = PRIMITIVES
    check(lambda x: (cnp.argmax(x, axis=0), cnp.argmax(x, axis=1), cnp.max(x, axis=1), cnp.min(x, axis=0),
                     P["reduce_sum"].bind(x, axes=()), x.sum()), x, rtol=1e-5)
    check(lambda x: (P["reduce_sum"].bind(x, axes=(1,)), P["reduce_prod"].bind(x, axes=(1,))),
          np.zeros((3, 0), np.float32))
    b = rng.random((4, 5)) > 0.5
    check(lambda b: (cnp.max(b, axis=1), cnp.min(b, axis=0), cnp.argmax(b, axis=1)), b)


# numpy rounds float16 sums every step or not depending on the memory layout; we accumulate in f32
@pytest.mark.parametrize("dt,tol", [(np.float16, 1e-2), (ml_dtypes.bfloat16, 4e-2)])
def test_half_precision_chains_and_reductions(dt, tol):
    rng = np.random.default_rng(8)
    x = rng.uniform(-2, 2, (40, 30)).astype(dt)
    check(lambda x: (cnp.exp(x) * x + 1, (x * x).sum(), x.sum(axis=0), cnp.max(x, axis=1), cnp.argmax(x, axis=0),
                     tj.lax.cumsum(x, axis=1), x @ x.T, x + x, x * x, x / (x + 3), cnp.maximum(x, 0.5)),
          x, rtol=tol, atol=tol)


def test_checkpoint_is_inlined():
    rng = np.random.default_rng(8)
    y = rng.standard_normal(50).astype(np.float32)
    check(lambda y: tj.checkpoint(lambda v: cnp.sin(v) * 2)(y) + 1, y)


def test_scalars_literals_and_python_arguments():
    closed = tj.make_jaxpr(lambda a, b: (a * b + 1, 3.0, a))(np.float32(2), np.float32(3))
    assert_same(closed, np.float32(2), np.float32(3))
    f = runtime.compile(tj.make_jaxpr(lambda a: a * 2)(1.0), "llvm")
    assert float(f(3.0)[0]) == 6.0


def test_consts_are_passed_not_baked():
    w1, w2 = np.arange(6, dtype=np.float32), np.ones(6, np.float32)
    c1 = tj.make_jaxpr(lambda x: x * w1)(w2)
    c2 = tj.make_jaxpr(lambda x: x * w2)(w2)
    np.testing.assert_array_equal(runtime.compile(c1, "llvm")(w2)[0], w1)
    np.testing.assert_array_equal(runtime.compile(c2, "llvm")(w2)[0], w2)


# ----------------------------------------------------------------------------------------------
# Fusion, caching, errors
# ----------------------------------------------------------------------------------------------

def chain(x):
    return tj.lax.logistic(0.75 * cnp.log(x / 2) + x + cnp.log(3 * x))


def test_elementwise_chain_is_one_loop_without_temporaries():
    closed = tj.make_jaxpr(chain)(np.ones(1000, np.float32))
    summary = llvm.plan_summary(closed)
    assert [g["kind"] for g in summary["groups"]] == ["loop"]
    assert summary["scratch_bytes"] == 0
    text = llvm.llvm_ir(closed, optimized=True)
    assert "<16 x float>" in text or "<8 x float>" in text       # vectorized
    x = np.random.default_rng(0).uniform(0.1, 5, 1000).astype(np.float32)
    assert_same(closed, x, rtol=4e-6)


def test_reduction_absorbs_its_elementwise_operand():
    closed = tj.make_jaxpr(lambda x: ((x - 1) ** 2).sum(axis=1))(np.ones((8, 16), np.float32))
    assert [g["kind"] for g in llvm.plan_summary(closed)["groups"]] == ["reduce"]


def test_compile_cache_hits_on_same_program():
    x = np.ones((3, 5), np.float32)

    def f(x):
        return cnp.tanh(x) * 3 - x.sum()
    llvm.compile_llvm(tj.make_jaxpr(f)(x))
    before = llvm.cache_info()
    g = llvm.compile_llvm(tj.make_jaxpr(f)(x))
    after = llvm.cache_info()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"]
    np.testing.assert_allclose(g(x)[0], np.tanh(x) * 3 - x.sum(), rtol=1e-6)
    llvm.compile_llvm(tj.make_jaxpr(f)(np.ones((4, 5), np.float32)))          # new signature: a miss
    assert llvm.cache_info()["misses"] == after["misses"] + 1


def test_jit_and_lowered_text():
    f = tj.jit(chain, backend="llvm")
    x = np.random.default_rng(0).uniform(0.1, 5, 100).astype(np.float32)
    np.testing.assert_allclose(f(x), runtime.eval_jaxpr(tj.make_jaxpr(chain)(x), x)[0], rtol=4e-6)
    text = f.lower(x).as_text("llvm")
    assert 'define void @"entry"' in text or 'define void @"kernel"' in text


def test_unsupported_dtype_raises_naming_it():
    import ml_dtypes
    closed = tj.make_jaxpr(lambda x: x * 2)(np.ones(3, ml_dtypes.float8_e4m3fn))
    with pytest.raises(NotImplementedError, match="f8"):
        runtime.compile(closed, "llvm")


def test_lowered_table_is_known_primitives():
    assert llvm.LOWERED == set(PRIMITIVES)


BAD_CALLS = textwrap.dedent("""
    import numpy as np
    import compiler as tj, compiler.numpy as cnp
    import runtime
    f = runtime.compile(tj.make_jaxpr(lambda x, y: x @ y + 1)(np.ones((4, 3), np.float32),
                                                            np.ones((3, 5), np.float32)), "llvm")
    good = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    bad = [
        (np.ones((4, 3), np.float64), good[1]),                 # wrong dtype
        (np.ones((4, 4), np.float32), good[1]),                 # wrong shape
        (np.ones((3, 4), np.float32).T, good[1]),               # non-contiguous
        (good[0],),                                             # too few
        good + (good[0],),                                      # too many
        ([[1.0] * 3] * 4, good[1]),                             # a list, not an array
        (np.frombuffer(bytes(49), np.float32, 12, 1).reshape(4, 3), good[1]),   # misaligned
        (np.float32(1.0), good[1]),                             # a scalar for an array
    ]
    for args in bad:
        try:
            f(*args)
        except TypeError as e:
            print("TypeError:", e)
        else:
            raise SystemExit("no TypeError for %r" % (args,))
    assert f(*good)[0].shape == (4, 5)
    print("done")
""")


def test_bad_arguments_raise_type_error_in_a_subprocess():
    proc = subprocess.run([sys.executable, "-c", BAD_CALLS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stdout.splitlines()
    assert lines[-1] == "done" and sum(line.startswith("TypeError:") for line in lines) == 8, proc.stdout
    assert "expected" in lines[0] and "f32[4,3]" in lines[0]


def test_concurrent_calls_use_separate_scratch():
    import threading
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((64, 33)).astype(np.float32) for _ in range(4)]
    f = runtime.compile(tj.make_jaxpr(lambda x: cnp.exp(x - cnp.max(x, axis=1, keepdims=True)).sum(axis=0))(xs[0]),
                        "llvm")
    assert f.kernel.scratch_bytes > 0
    want = [np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=0) for x in xs]
    errors = []

    def work(i):
        for _ in range(50):
            got = f(xs[i])[0]
            if not np.allclose(got, want[i], rtol=1e-5):
                errors.append(i)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
