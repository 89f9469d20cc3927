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
