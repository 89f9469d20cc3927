"""sparse_dot and the sparsify pass on the interpreter: the compressed formats read back to the dense
weight, the rewritten program computes what the dense one does (values and gradients), the IR prints
and parses back, and bad input gets a clear error."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import runtime
from compiler.ir.errors import ShapeError
from compiler.ir.parser import parse
from compiler.ir.verify import verify
from compiler.passes import is_n_m_sparse, prune, sparsify
from compiler.primitives.sparse import compress_csr, compress_n_m, sparse_dot, to_dense

SETTINGS = dict(max_examples=30, deadline=None)


def _pruned(rng, k, n, structure, sparsity=0.9):
    w = rng.standard_normal((k, n)).astype(np.float32)
    if structure == "2:4":
        return prune(w.T, 0.5, structure="2:4").T.copy()       # groups run along k (the first axis)
    return prune(w, sparsity)


@settings(**SETTINGS)
@given(st.integers(1, 12), st.integers(1, 20), st.sampled_from(["2:4", "1:4", "2:8", "csr"]), st.integers(0, 2**31))
def test_formats_read_back_to_the_dense_weight(groups, n, fmt, seed):
    rng = np.random.default_rng(seed)
    if fmt == "csr":
        w = _pruned(rng, groups * 4, n, "unstructured", rng.uniform(0, 0.99))
        arrays = compress_csr(w)
        assert arrays[0][-1] == np.count_nonzero(w)
    else:
        nn, mm = map(int, fmt.split(":"))
        w = prune(rng.standard_normal((n, groups * mm)).astype(np.float32), structure=fmt).T.copy()
        arrays = compress_n_m(w, nn, mm)
        assert arrays[0].shape == (groups * nn, n) and arrays[1].dtype == np.uint8
    np.testing.assert_array_equal(to_dense(fmt, w.shape, *arrays), w)


def test_compress_rejects_weights_that_do_not_fit():
    w = np.ones((8, 3), np.float32)
    with pytest.raises(ValueError, match="not 2:4 sparse.*group 0 of column 0 has 4 non-zeros"):
        compress_n_m(w, 2, 4)
    with pytest.raises(ValueError, match="divisible by 4"):
        compress_n_m(np.zeros((6, 3), np.float32), 2, 4)
    with pytest.raises(ValueError, match="2-D"):
        compress_csr(np.zeros(5, np.float32))


def _sd(x, *w, **params):
    return sparse_dot.bind(x, *w, **params)


def test_shape_rule_errors_name_expected_and_got():
    x = np.zeros((3, 8), np.float32)
    vals, idx = np.zeros((4, 5), np.float32), np.zeros((4, 5), np.uint8)
    ok = dict(format="2:4", dense_shape=(8, 5), transpose=False)
    assert tj.make_jaxpr(lambda x: _sd(x, vals, idx, **ok))(x).out_avals[0].shape == (3, 5)
    cases = [
        ((x, vals, idx.astype(np.int32)), ok, "indices must be u8\\[4,5\\], got i32\\[4,5\\]"),
        ((x, vals[:3], idx[:3]), ok, "values must be f32\\[4,5\\], got f32\\[3,5\\]"),
        ((x[:, :4], vals, idx), ok, "last axis must have size 8"),
        ((x, vals, idx), dict(ok, format="3:2"), "format must be 'csr' or 'N:M'"),
        ((x, vals, idx), dict(ok, dense_shape=(8,)), "dense_shape must be a pair"),
        ((x.astype(np.int32), vals, idx), ok, "floating-point"),
        ((x, vals), ok, "takes x, values, indices"),
        ((x, np.zeros(4, np.int32), np.zeros(3, np.int32), np.zeros(3, np.float32)),
         dict(ok, format="csr"), "indptr must be i32\\[6\\], got i32\\[4\\]"),
    ]
    for args, params, message in cases:
        with pytest.raises(ShapeError, match=message):
            tj.make_jaxpr(lambda *a: _sd(*a, **params))(*args)


def _mlp(rng, k, h, n, wlhs=False):
    w1 = rng.standard_normal((k, h)).astype(np.float32)
    w2 = rng.standard_normal((n, h)).astype(np.float32)          # used transposed: contraction on axis 1

    def f(x):
        y = tj.numpy.tanh(x @ w1)
        return (w2 @ y.T) if wlhs else y @ w2.T
    return f


@settings(**SETTINGS)
@given(st.integers(1, 9), st.integers(1, 6), st.integers(1, 6), st.integers(1, 12), st.booleans(),
       st.sampled_from([("2:4", 0.5), ("unstructured", 0.8), ("unstructured", 0.95)]), st.integers(0, 2**31))
def test_sparsified_program_matches_the_dense_one(m, kg, hg, n, wlhs, pruning, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, 4 * kg)).astype(np.float32)
    dense = prune(tj.make_jaxpr(_mlp(rng, 4 * kg, 4 * hg, n, wlhs))(x), pruning[1], structure=pruning[0])
    sparse, report = sparsify(dense, report=True)
    verify(sparse.jaxpr)
    names = [e.primitive.name for e in sparse.eqns]
    assert "dot_general" not in names or pruning[0] == "unstructured", (names, str(report))
    if pruning[0] == "2:4":
        assert names.count("sparse_dot") == 2 and all(r["format"] == "2:4" for r in report.rows)
    np.testing.assert_allclose(runtime.eval_jaxpr(sparse, x)[0], runtime.eval_jaxpr(dense, x)[0],
                               rtol=1e-5, atol=1e-5)
    # the text reads back to the same program
    text = str(sparse)
    again = parse(text, consts=sparse.consts)
    assert str(again) == text
    np.testing.assert_allclose(runtime.eval_jaxpr(again, x)[0], runtime.eval_jaxpr(sparse, x)[0])


def test_gradients_through_sparse_dot_match_the_dense_program():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 16)).astype(np.float32)
    for structure, sparsity in (("2:4", 0.5), ("unstructured", 0.9)):
        dense = prune(tj.make_jaxpr(_mlp(rng, 16, 8, 5))(x), sparsity, structure=structure)
        sparse = sparsify(dense, min_sparsity=0.0 if structure != "2:4" else 0.85)
        assert "dot_general" not in [e.primitive.name for e in sparse.eqns]

        def loss(program):
            return lambda x: tj.numpy.sum(tj.numpy.sin(tj.jaxpr_as_fun(program)(x)[0]))
        np.testing.assert_allclose(tj.grad(loss(sparse))(x), tj.grad(loss(dense))(x), rtol=1e-5, atol=1e-5)
        t = rng.standard_normal(x.shape).astype(np.float32)
        _, ts = tj.jvp(tj.jaxpr_as_fun(sparse), (x,), (t,))
        _, td = tj.jvp(tj.jaxpr_as_fun(dense), (x,), (t,))
        np.testing.assert_allclose(ts[0], td[0], rtol=1e-5, atol=1e-5)
        # and against finite differences (float64 for accuracy)
        f = lambda x: np.sum(np.sin(runtime.eval_jaxpr(sparse, x.astype(np.float32))[0].astype(np.float64)))  # noqa
        e = np.zeros_like(x)
        e[2, 3] = 1e-2
        fd = (f(x + e) - f(x - e)) / 2e-2
        assert abs(fd - tj.grad(loss(sparse))(x)[2, 3]) < 2e-2 * max(1, abs(fd))


@pytest.mark.parametrize("fmt", ["2:4", "csr"])
@pytest.mark.parametrize("transpose", [False, True])
def test_value_gradient_is_the_dense_gradient_at_the_stored_places(fmt, transpose):
    rng = np.random.default_rng(2)
    w = _pruned(rng, 8, 6, "2:4" if fmt == "2:4" else "unstructured", 0.6)
    arrays = list(compress_n_m(w, 2, 4) if fmt == "2:4" else compress_csr(w))
    vi = 0 if fmt == "2:4" else 2
    x = rng.standard_normal((3, 6 if transpose else 8)).astype(np.float32)
    ct = rng.standard_normal((3, 8 if transpose else 6)).astype(np.float32)
    params = dict(format=fmt, dense_shape=(8, 6), transpose=transpose)

    def f(vals):
        ops = list(arrays)
        ops[vi] = vals
        return tj.numpy.sum(_sd(x, *ops, **params) * ct)
    g = tj.grad(f)(arrays[vi])
    dense_grad = (ct.T @ x) if transpose else (x.T @ ct)          # d sum(ct * (x @ W)) / dW, as [K, N]
    ones = list(arrays)
    ones[vi] = np.ones_like(arrays[vi])
    # each stored value's gradient is dense_grad at its (k, n): check through to_dense of the gradient
    got = list(arrays)
    got[vi] = g
    np.testing.assert_allclose(to_dense(fmt, (8, 6), *got), dense_grad * (to_dense(fmt, (8, 6), *ones) != 0),
                               rtol=1e-5, atol=1e-5)


def test_vmap_over_x():
    rng = np.random.default_rng(3)
    w = _pruned(rng, 8, 5, "2:4")
    vals, idx = compress_n_m(w, 2, 4)
    xs = rng.standard_normal((4, 3, 8)).astype(np.float32)
    f = tj.vmap(lambda x: _sd(x, vals, idx, format="2:4", dense_shape=(8, 5), transpose=False), in_axes=1)
    np.testing.assert_allclose(f(xs), np.moveaxis(xs, 1, 0) @ w, rtol=1e-5, atol=1e-5)


def test_indices_are_clamped_not_trusted():
    x = np.arange(8, dtype=np.float32).reshape(1, 8)
    vals = np.ones((4, 1), np.float32)
    idx = np.array([[0], [200], [1], [9]], np.uint8)         # 200 and 9 clamp to position 3
    out = runtime.eval_jaxpr(tj.make_jaxpr(lambda x: _sd(x, vals, idx, format="2:4", dense_shape=(8, 1)))(x), x)[0]
    assert out[0, 0] == 0 + 3 + 5 + 7
    indptr = np.array([5, -3, 2], np.int32)                  # clamp to [0, nnz]; a decreasing row is empty
    cols = np.array([-1, 100, 2], np.int32)
    csr = (indptr, cols, np.ones(3, np.float32))
    out = runtime.eval_jaxpr(tj.make_jaxpr(lambda x: _sd(x, *csr, format="csr", dense_shape=(8, 2)))(x), x)[0]
    np.testing.assert_array_equal(out, [[0, 0 + 7]])


def test_sparsify_errors_and_what_it_leaves_alone():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8)).astype(np.float32)
    w = rng.standard_normal((8, 4)).astype(np.float32)
    dense = tj.make_jaxpr(lambda x: x @ w)(x)
    assert sparsify(dense).eqns[0].primitive.name == "dot_general"         # auto: not sparse, kept
    with pytest.raises(ValueError, match="no weight qualifies.*not 2:4 along its contraction axis"):
        sparsify(dense, format="2:4")
    with pytest.raises(ValueError, match="sparsity 0.0% < min_sparsity 85%"):
        sparsify(dense, format="csr")
    with pytest.raises(ValueError, match="format must be"):
        sparsify(dense, format="dense")
    with pytest.raises(ValueError, match="min_sparsity"):
        sparsify(dense, min_sparsity=1.5)
    with pytest.raises(TypeError, match="ClosedJaxpr"):
        sparsify(w)
    # 2:4 along the wrong axis (the free one) is not 2:4 along K
    wrong = prune(w, structure="2:4")          # groups along the last axis, N=4
    assert is_n_m_sparse(wrong, 2, 4) and not is_n_m_sparse(wrong.T, 2, 4)
    assert sparsify(tj.make_jaxpr(lambda x: x @ wrong)(x)).eqns[0].primitive.name == "dot_general"
    # a matmul of two inputs has no constant weight
    prog = tj.make_jaxpr(lambda a, b: a @ b)(x, w)
    assert sparsify(prog).eqns[0].primitive.name == "dot_general"
