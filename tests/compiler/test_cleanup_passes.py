"""dce, cse, simplify: fewer equations, the same results, and programs that still verify."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler.ir import verify
from compiler.passes import cse, dce, run_passes, simplify


def seed(x1, x2):
    return tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))


def counts(closed):
    return len(closed.eqns)


def test_passes_shrink_the_gradient_program_and_keep_its_values():
    g = tj.make_jaxpr(tj.grad(seed, argnums=(0, 1)))(1.0, 0.5)
    cleaned = run_passes(g)
    verify(cleaned)
    assert counts(cleaned) < counts(g) - 5           # the seed's 1.0 factors and constant divisions go
    args = (np.float32(1.0), np.float32(0.5))
    for a, b in zip(runtime.eval_jaxpr(g, *args), runtime.eval_jaxpr(cleaned, *args)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_dce_drops_unused_work_and_constants():
    w = np.ones(3, np.float32)
    closed = tj.make_jaxpr(lambda x: (cnp.exp(x * w), x + 1)[1])(np.ones(3, np.float32))
    cleaned = dce(closed)
    assert [e.primitive.name for e in cleaned.eqns] == ["add"]
    assert cleaned.jaxpr.constvars == [] and cleaned.consts == []


def test_cse_merges_repeated_work():
    closed = tj.make_jaxpr(lambda x: cnp.sin(x) * 2 + cnp.sin(x) * 2)(np.ones(3, np.float32))
    merged = cse(closed)
    assert [e.primitive.name for e in merged.eqns] == ["sin", "mul", "add"]
    x = np.linspace(0, 1, 3, dtype=np.float32)
    np.testing.assert_array_equal(runtime.eval_jaxpr(merged, x)[0], runtime.eval_jaxpr(closed, x)[0])


@pytest.mark.parametrize("fn, remaining", [
    (lambda x: x * 1.0 + 0.0, []),
    (lambda x: (x - 0.0) / 1.0, []),
    (lambda x: -(-x), []),
    (lambda x: x.astype(np.float32).reshape(3).T, []),
    (lambda x: x.reshape(3, 1).reshape(1, 3).reshape(3), []),
    (lambda x: cnp.transpose(cnp.transpose(x.reshape(1, 3), (1, 0)), (1, 0)).reshape(3), []),
    (lambda x: x * (2.0 * 3.0), ["mul"]),
    (lambda x: cnp.exp(x) * 1.0, ["exp"]),
])
def test_simplify_identities(fn, remaining):
    x = np.array([0.5, -2.0, np.inf], np.float32)
    closed = tj.make_jaxpr(fn)(x)
    simple = simplify(closed)
    verify(simple)
    assert [e.primitive.name for e in simple.eqns] == remaining
    np.testing.assert_array_equal(runtime.eval_jaxpr(simple, x)[0], runtime.eval_jaxpr(closed, x)[0])


def test_float_times_zero_is_not_simplified():
    # inf * 0 is nan: only integer x * 0 may become 0
    closed = tj.make_jaxpr(lambda x: x * 0.0)(np.array([np.inf], np.float32))
    assert np.isnan(runtime.eval_jaxpr(simplify(closed), np.array([np.inf], np.float32))[0][0])
    ints = simplify(tj.make_jaxpr(lambda i: i * 0)(np.int32(7)))
    assert ints.eqns == [] and int(runtime.eval_jaxpr(ints, np.int32(7))[0]) == 0


OPS = [lambda a: a * 1.0, lambda a: a + 0.0, lambda a: cnp.exp(a), lambda a: -a, lambda a: a * a,
       lambda a: a.reshape(-1).reshape(a.shape), lambda a: cnp.sin(a) + cnp.sin(a), lambda a: a.T.T]


@given(st.lists(st.sampled_from(range(len(OPS))), min_size=1, max_size=8), st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_random_chains_keep_their_values(ops, n):
    def f(a):
        for k in ops:
            a = OPS[k](a)
        return a
    x = np.linspace(-1, 1, n * 2, dtype=np.float32).reshape(n, 2)
    closed = tj.make_jaxpr(f)(x)
    cleaned = run_passes(closed)
    verify(cleaned)
    assert counts(cleaned) <= counts(closed)
    np.testing.assert_allclose(runtime.eval_jaxpr(cleaned, x)[0], runtime.eval_jaxpr(closed, x)[0], rtol=1e-6)


def test_jit_runs_the_passes_and_can_switch_them_off():
    f = lambda x: x * 1.0 + 0.0
    x = np.ones(3, np.float32)
    assert "mul" not in tj.jit(f).lower(x).as_text()
    assert "mul" in tj.jit(f, passes=()).lower(x).as_text()


def test_grad_of_a_sum_of_products_loses_its_product_with_ones():
    """grad(sum(x @ w @ v)) seeds the backward pass with a matrix of ones; its two products with it
    become sums (O(n^2) instead of a matrix product), and the forward (x @ w) @ v, which the
    gradient does not use, goes."""
    rng = np.random.default_rng(0)
    x, w, v = (rng.standard_normal(s).astype(np.float32) for s in ((5, 4), (4, 6), (6, 3)))
    g = tj.make_jaxpr(tj.grad(lambda x, w, v: cnp.sum(x @ w @ v), argnums=(0, 1, 2)))(x, w, v)
    cleaned = simplify(g)
    verify(cleaned)
    dots = lambda c: sum(e.primitive.name == "dot_general" for e in c.eqns)   # noqa: E731
    assert dots(g) == 6 and dots(cleaned) == 3
    ones = np.ones((5, 3), np.float32)
    expect = [ones @ (w @ v).T, x.T @ ones @ v.T, (x @ w).T @ ones]       # by hand
    for got, want in zip(runtime.eval_jaxpr(cleaned, x, w, v), expect):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2), st.booleans(),
       st.sampled_from([1.0, -2.5]), st.sampled_from(["float32", "int32"]), st.booleans(), st.data())
def test_dot_general_with_a_splat_operand_keeps_its_value(m, k, n, nbatch, splat_left, value, dtype, transposed, data):
    """Any dimension numbers: batch axes, contraction on either axis, the splat on either side."""
    batch = tuple(data.draw(st.integers(1, 3)) for _ in range(nbatch))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    other_shape = batch + ((n, k) if transposed else (k, n))
    other = rng.integers(-4, 5, other_shape).astype(dtype)
    splat_shape = batch + (m, k)
    nb = len(batch)
    contract_other = nb + (1 if transposed else 0)
    dn_left = (((nb + 1,), (contract_other,)), (tuple(range(nb)), tuple(range(nb))))
    dn_right = (((contract_other,), (nb + 1,)), (tuple(range(nb)), tuple(range(nb))))
    s = np.asarray(value, dtype)

    def f(other, s):
        full = tj.lax.broadcast_in_dim(s, splat_shape, ())
        if splat_left:
            return tj.lax.dot_general(full, other, dn_left)
        return tj.lax.dot_general(other, full, dn_right)
    for seed_arg in (s, None):           # a scalar input, or a literal of the program
        g = (lambda o: f(o, s)) if seed_arg is None else f
        args = (other,) if seed_arg is None else (other, s)
        closed = tj.make_jaxpr(g)(*args)
        cleaned = simplify(closed)
        verify(cleaned)
        if seed_arg is not None or np.prod(splat_shape) > 1:     # (one literal element: folded instead)
            assert not any(e.primitive.name == "dot_general" for e in cleaned.eqns)
        want = runtime.eval_jaxpr(closed, *args)[0]
        got = runtime.eval_jaxpr(cleaned, *args)[0]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6)
