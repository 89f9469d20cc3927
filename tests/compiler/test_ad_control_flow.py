"""Derivatives through control flow (cond, scan, fori_loop, while_loop, checkpoint) against central
finite differences, in both modes, and their derivative programs as jaxprs."""
import numpy as np
import pytest

import compiler as tj
import compiler.numpy as cnp
from compiler.ir import parse, verify

rng = np.random.default_rng(0)
W = rng.standard_normal((3, 3)) * 0.5


def finite_difference(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


FUNCTIONS = {
    "cond_positive": lambda x: tj.lax.cond(cnp.sum(x) > 0, lambda v: cnp.sum(cnp.sin(v) * v),
                                           lambda v: cnp.sum(v ** 3), x),
    "cond_negative": lambda x: tj.lax.cond(cnp.sum(x) > 100, lambda v: cnp.sum(cnp.sin(v) * v),
                                           lambda v: cnp.sum(v ** 3), x),
    "switch_with_closure": lambda x: tj.lax.switch(1, [lambda v: cnp.sum(v), lambda v: cnp.sum(W @ v),
                                                      lambda v: cnp.prod(v)], x),
    "scan_rnn": lambda x: cnp.sum(tj.lax.scan(lambda h, xi: (cnp.tanh(W @ h + xi), cnp.sum(h * h)),
                                              x, cnp.stack([x, 2 * x, -x]))[1]),
    "scan_reverse": lambda x: tj.lax.scan(lambda c, xi: (c * cnp.cos(xi) + xi, c), 1.0, x, reverse=True)[0],
    "fori_static": lambda x: cnp.sum(tj.lax.fori_loop(0, 4, lambda i, v: cnp.sin(v) * (i + 1), x)),
    "checkpointed": lambda x: cnp.sum(tj.checkpoint(lambda v: cnp.exp(cnp.tanh(W @ v)))(x)),
    "nested_scan_in_cond": lambda x: tj.lax.cond(x[0] > -10, lambda v: cnp.sum(tj.lax.scan(
        lambda c, xi: (c + xi * c, c), 0.5, v)[1]), lambda v: cnp.sum(v), x),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_reverse_and_forward_mode_match_finite_differences(name):
    f = FUNCTIONS[name]
    x = rng.standard_normal(3) * 0.5
    expected = finite_difference(f, x)
    np.testing.assert_allclose(tj.grad(f)(x), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tj.jacfwd(f)(x), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tj.jit(tj.grad(f))(x), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_derivative_programs_are_jaxprs(name):
    x = rng.standard_normal(3) * 0.5
    closed = tj.make_jaxpr(tj.grad(FUNCTIONS[name]))(x)
    verify(closed)
    assert str(parse(str(closed), consts=closed.consts)) == str(closed)


def test_second_derivative_through_scan_and_cond():
    f = lambda x: tj.lax.scan(lambda c, _: (tj.lax.cond(c > 0, lambda v: v * v, lambda v: -v, c), None),
                              x, None, length=2)[0]
    # c1 = x^2, c2 = x^4 for x > 0: f'' = 12 x^2
    assert np.isclose(tj.grad(tj.grad(f))(1.5), 12 * 1.5 ** 2)
    assert np.isclose(tj.hessian(f)(np.float64(0.7)), 12 * 0.49)


def test_while_loop_forward_mode_and_clear_reverse_mode_error():
    f = lambda x: tj.lax.while_loop(lambda c: c[1] < 3, lambda c: (cnp.sin(c[0]) * 2, c[1] + 1), (x, 0))[0]
    x = np.float64(0.3)
    expected = (f(x + 1e-6) - f(x - 1e-6)) / 2e-6
    assert np.isclose(tj.jvp(f, (x,), (1.0,))[1], expected, rtol=1e-5)
    assert np.isclose(tj.jacfwd(f)(np.float64(x)), expected, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="fori_loop"):
        tj.grad(f)(x)
