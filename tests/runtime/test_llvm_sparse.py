"""The LLVM backend's sparse_dot kernels against numpy (dense matmul of the pruned weight) and the
interpreter, over shapes, formats and both kernels; with bad indices they agree with the
interpreter's clamping and stay inside their buffers."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import runtime
from compiler.passes import prune, sparsify
from compiler.primitives.sparse import sparse_dot
from runtime.llvm import plan_summary
from runtime.llvm.engine import host
from runtime.llvm.sparse import sparse_spec
from tests.runtime.llvm_checks import SETTINGS, assert_same, guarded_call


def _program(rng, lead, k, n, dtype, structure, sparsity, wlhs=False):
    w = rng.standard_normal((k, n)).astype(dtype)
    if structure == "2:4":
        w = prune(w.T, 0.5, structure="2:4").T.copy()
    else:
        w = prune(w, sparsity)
    x = rng.standard_normal(lead + (k,)).astype(dtype)
    f = (lambda x: tj.numpy.moveaxis(w.T @ tj.numpy.moveaxis(x, -1, -2), -1, -2)) if wlhs else (lambda x: x @ w)
    dense = tj.make_jaxpr(f)(x)
    return dense, x, w


def _kernels(closed):
    return [sparse_spec(e, host().vector_bytes).kernel for e in closed.eqns if e.primitive.name == "sparse_dot"]


@settings(**SETTINGS)
@given(st.lists(st.integers(1, 20), min_size=0, max_size=2), st.integers(1, 24), st.integers(1, 70),
       st.sampled_from([np.float32, np.float64]),
       st.sampled_from([("2:4", 0.5), ("unstructured", 0.8), ("unstructured", 0.97)]), st.booleans(),
       st.integers(0, 2**31))
def test_sparse_kernels_match_numpy(lead, kg, n, dtype, pruning, wlhs, seed):
    rng = np.random.default_rng(seed)
    dense, x, w = _program(rng, tuple(lead), 4 * kg, n, dtype, *pruning, wlhs=wlhs and len(lead) == 1)
    sparse = sparsify(dense, format="2:4" if pruning[0] == "2:4" else "csr", min_sparsity=0.0)
    assert "sparse_dot" in [g for grp in plan_summary(sparse)["groups"] for g in grp["eqns"]]
    assert_same(sparse, x, rtol=1e-4, atol=1e-4)
    got = runtime.compile(sparse, "llvm")(x)[0]
    np.testing.assert_allclose(got, x @ w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m", [8, 19, 64])
def test_both_kernels_run_for_2_4(m):
    """Rows of x >= 8 and >= 16 columns take the permute kernel (on AVX-512); fewer rows row-axpy."""
    rng = np.random.default_rng(m)
    for rows in (m, 3):
        dense, x, w = _program(rng, (rows,), 64, 40, np.float32, "2:4", 0.5)
        sparse = sparsify(dense)
        expected = "perm" if rows >= 8 and host().vector_bytes == 64 else "axpy"
        assert _kernels(sparse) == [expected]
        assert_same(sparse, x, rtol=1e-5, atol=1e-5)


def test_strided_activation_and_gradient_program_on_llvm():
    """x read through a transposed view; the gradient program (sparse_dot with transpose=True)
    runs natively too and equals the dense program's gradient."""
    rng = np.random.default_rng(5)
    w1 = prune(rng.standard_normal((48, 32)).T.astype(np.float32), structure="2:4").T.copy()
    w2 = prune(rng.standard_normal((32, 10)).astype(np.float32), 0.9)

    def model(x):
        return tj.numpy.tanh(tj.numpy.transpose(x) @ w1) @ w2

    x = rng.standard_normal((48, 20)).astype(np.float32)
    dense = tj.make_jaxpr(model)(x)
    sparse = sparsify(dense)
    assert [e.primitive.name for e in sparse.eqns].count("sparse_dot") == 2
    assert_same(sparse, x)
    f = tj.jaxpr_as_fun(sparse)
    grad_program = tj.make_jaxpr(tj.grad(lambda x: tj.numpy.sum(f(x)[0] ** 2)))(x)
    assert sum(e.params.get("transpose", False) for e in grad_program.eqns if e.primitive.name == "sparse_dot") == 2
    assert_same(grad_program, x, rtol=1e-4, atol=1e-4)
    g_dense = tj.grad(lambda x: tj.numpy.sum(tj.jaxpr_as_fun(dense)(x)[0] ** 2))(x)
    np.testing.assert_allclose(runtime.compile(grad_program, "llvm")(x)[0], g_dense, rtol=1e-4, atol=1e-4)


@settings(**SETTINGS)
@given(st.integers(1, 20), st.integers(1, 4), st.integers(1, 40), st.booleans(), st.integers(0, 2**31))
def test_hostile_indices_are_clamped_like_the_interpreter(m, kg, n, transpose, seed):
    """Compressed operands passed as inputs with arbitrary index values: the kernel clamps them as
    the interpreter does and never leaves its buffers (checked with guard bytes)."""
    rng = np.random.default_rng(seed)
    k = 4 * kg
    x = rng.standard_normal((m, n if transpose else k)).astype(np.float32)
    vals = rng.standard_normal((k // 2, n)).astype(np.float32)
    idx = rng.integers(0, 256, (k // 2, n)).astype(np.uint8)
    nnz = int(rng.integers(0, 3 * k))
    indptr = rng.integers(-5, nnz + 6, n + 1).astype(np.int32)
    cols = rng.integers(-2 * k, 2 * k, nnz).astype(np.int32)
    cvals = rng.standard_normal(nnz).astype(np.float32)
    for fmt, ops in (("2:4", (vals, idx)), ("csr", (indptr, cols, cvals))):
        prog = tj.make_jaxpr(lambda x, *w: sparse_dot.bind(x, *w, format=fmt, dense_shape=(k, n),
                                                           transpose=transpose))(x, *ops)
        assert_same(prog, x, *ops, rtol=1e-4, atol=1e-4)


def test_bad_arguments_are_refused_before_native_code():
    rng = np.random.default_rng(6)
    dense, x, _ = _program(rng, (4,), 16, 8, np.float32, "2:4", 0.5)
    fn = runtime.compile(sparsify(dense), "llvm")
    with pytest.raises(TypeError, match="f32\\[4,16\\]"):
        fn(x[:, :8])
    with pytest.raises(TypeError):
        fn(x.astype(np.float64))
    assert guarded_call(fn, x)[0].shape == (4, 8)


def test_jit_with_the_sparsify_pass():
    rng = np.random.default_rng(7)
    w = prune(rng.standard_normal((32, 64)).T.astype(np.float32), structure="2:4").T.copy()
    x = rng.standard_normal((16, 32)).astype(np.float32)
    jf = tj.jit(lambda x: tj.numpy.maximum(x @ w, 0.0), backend="llvm", passes=("simplify", "sparsify", "dce"))
    assert "sparse_dot" in [e.primitive.name for e in jf.lower(x).closed.eqns]
    np.testing.assert_allclose(jf(x), np.maximum(x @ w, 0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("structure,transpose,rows,k", [("2:4", False, 200, 512), ("2:4", False, 203, 500),
                                                        ("unstructured", False, 203, 512), ("2:4", True, 200, 512),
                                                        ("unstructured", True, 203, 500)])
def test_threaded_kernels_match_one_thread_bit_for_bit(structure, transpose, rows, k):
    """A large sparse_dot is cut into chunks of row blocks (row-axpy) or column panels (permute, each
    thread packing its own weights) on two threads; the result is the one-thread kernel's bit for
    bit, and numpy's to rounding. transpose: the gradient w.r.t. x (sparse_dot with transpose=True);
    rows and k off the vector width: x's packed copy is zero padded first."""
    from runtime.llvm import _build, prepare_consts
    from runtime.llvm.abi import NativeFunction
    rng = np.random.default_rng(11)
    dense, x, w = _program(rng, (rows,), k, 384, np.float32, structure, 0.8)
    sparse = sparsify(dense, format="2:4" if structure == "2:4" else "csr", min_sparsity=0.0)
    if transpose:
        t = rng.standard_normal((rows, 384)).astype(np.float32)
        f = tj.jaxpr_as_fun(sparse)
        sparse = tj.make_jaxpr(tj.grad(lambda x: tj.numpy.sum(f(x)[0] * t)))(x)
        want = t @ w.T
    else:
        want = x @ w
        assert _kernels(sparse) == ["perm" if structure == "2:4" and host().vector_bytes == 64 else "axpy"]
    assert transpose in [e.params["transpose"] for e in sparse.eqns if e.primitive.name == "sparse_dot"]
    groups = [g for g in plan_summary(sparse, threads=2)["groups"] if g["kind"] == "sparse"]
    assert groups and all(g["split"] == "sparse" and g["chunks"] >= 2 for g in groups)
    sig = tuple(str(v.aval) for v in sparse.jaxpr.invars)
    consts = prepare_consts([v.aval for v in sparse.jaxpr.constvars], sparse.consts)
    one, two = (NativeFunction(_build(sparse, threads, sig), consts)(x)[0] for threads in (1, 2))
    assert one.tobytes() == two.tobytes()
    np.testing.assert_allclose(two, want, rtol=1e-4, atol=1e-3)
