"""lax.cond / switch / while_loop / fori_loop / scan against plain Python loops."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
from compiler.ir import ShapeError, parse


@given(st.floats(-10, 10, width=32))
@settings(max_examples=30, deadline=None)
def test_cond_picks_the_branch_like_python(x):
    w = np.float32(3.0)
    f = tj.jit(lambda x: tj.lax.cond(x > 0, lambda v: v * w, lambda v: v - w, x))
    expected = np.float32(x) * w if x > 0 else np.float32(x) - w
    assert f(np.float32(x)) == expected


def test_switch_clamps_index():
    branches = [lambda v: v + 1, lambda v: v * 10, lambda v: -v]
    f = tj.jit(lambda i, v: tj.lax.switch(i, branches, v))
    assert [float(f(np.int32(i), np.float32(2))) for i in (-3, 0, 1, 2, 7)] == [3.0, 3.0, 20.0, -2.0, -2.0]


def test_cond_branches_must_agree():
    with pytest.raises(ShapeError, match="branch"):
        tj.make_jaxpr(lambda x: tj.lax.cond(x > 0, lambda v: v, lambda v: v.astype(np.int32), x))(1.0)


def test_while_loop_collatz_steps():
    def steps(n):
        def body(c):
            n, k = c
            return tj.lax.cond(n % 2 == 0, lambda n: n // 2, lambda n: 3 * n + 1, n), k + 1
        return tj.lax.while_loop(lambda c: c[0] != 1, body, (n, 0))[1]

    def python_steps(n):
        k = 0
        while n != 1:
            n, k = (n // 2 if n % 2 == 0 else 3 * n + 1), k + 1
        return k

    f = tj.jit(steps)
    for n in (1, 6, 27, 97):
        assert int(f(np.int32(n))) == python_steps(n)


def test_fori_loop_static_and_traced_bounds():
    body = lambda i, acc: acc + i * i
    static = tj.jit(lambda x: tj.lax.fori_loop(0, 5, body, x))
    traced = tj.jit(lambda n, x: tj.lax.fori_loop(0, n, body, x))
    assert int(static(np.int32(0))) == sum(i * i for i in range(5))
    assert int(traced(np.int32(7), np.int32(0))) == sum(i * i for i in range(7))
    assert "scan" in static.lower(np.int32(0)).as_text()
    assert "while" in traced.lower(np.int32(7), np.int32(0)).as_text()


@given(st.integers(1, 6), st.booleans())
@settings(max_examples=20, deadline=None)
def test_scan_cumulative_product_matches_numpy(n, reverse):
    xs = np.linspace(0.5, 1.5, n * 2, dtype=np.float32).reshape(n, 2)

    def f(xs):
        return tj.lax.scan(lambda c, x: (c * x, c * x), np.ones(2, np.float32), xs, reverse=reverse)

    carry, ys = tj.jit(f)(xs)
    order = xs[::-1] if reverse else xs
    expected = np.cumprod(order, axis=0)
    np.testing.assert_allclose(ys, expected[::-1] if reverse else expected, rtol=1e-6)
    np.testing.assert_allclose(carry, expected[-1], rtol=1e-6)


def test_scan_with_pytree_carry_and_closure_roundtrips_through_text():
    w = np.array([[0.5, -1.0], [1.0, 0.25]], np.float32)

    def rnn(h0, xs):
        def cell(h, x):
            h = cnp.tanh(h @ w + x)
            return h, h.sum()
        return tj.lax.scan(cell, h0, xs)

    h0, xs = np.zeros(2, np.float32), np.arange(8, dtype=np.float32).reshape(4, 2) / 8
    closed = tj.make_jaxpr(rnn)(h0, xs)
    again = parse(str(closed), consts=closed.consts)
    import runtime
    for a, b in zip(runtime.eval_jaxpr(closed, h0, xs), runtime.eval_jaxpr(again, h0, xs)):
        np.testing.assert_array_equal(a, b)
    h, sums = h0, []
    for x in xs:
        h = np.tanh(h @ w + x)
        sums.append(h.sum())
    out_h, out_sums = tj.jit(rnn)(h0, xs)
    np.testing.assert_allclose(out_h, h, rtol=1e-6)
    np.testing.assert_allclose(out_sums, sums, rtol=1e-6)
