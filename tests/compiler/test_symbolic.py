"""compiler.symbolic and explain_grad against sympy and hand-derived values."""
import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
from compiler import symbolic
from compiler.primitives import elementwise

x1, x2, x = sp.symbols("x1 x2 x", real=True)


def seed(x1, x2):
    return tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))


SEED_SYMPY = 1 / (1 + sp.exp(-(sp.Rational(3, 4) * sp.log(x1 / 2) + x1 + sp.log(3 * x2))))


def test_to_sympy_of_the_seed_function():
    expr = symbolic.to_sympy(seed, 1.0, 0.5)
    assert sp.simplify(expr - SEED_SYMPY) == 0


def test_seed_gradient_against_sympy_at_the_point():
    report = symbolic.check_grad(seed, 1.0, 0.5)
    assert report.ok and report.symbolic_ok and report.numeric_ok
    expected = [float(sp.diff(SEED_SYMPY, s).subs({x1: 1.0, x2: 0.5})) for s in (x1, x2)]
    np.testing.assert_allclose(report.numeric_tracejit, expected, rtol=1e-12)
    # largest perturbation of x1 keeping the output within 0.05, to first order
    delta = 0.05 / abs(expected[0])
    assert math.isclose(delta, 0.05 / 0.3618008781, rel_tol=1e-6)


def test_derivative_of_sigmoid_is_s_times_one_minus_s():
    d = symbolic.derivative(lambda x: tj.lax.logistic(x))
    s = 1 / (1 + sp.exp(-x))
    assert sp.simplify((d - s * (1 - s)).rewrite(sp.exp)) == 0


ACTIVATIONS = {
    "sigmoid": (lambda x: tj.lax.logistic(x), []),
    "softplus": (lambda x: cnp.maximum(x, 0.0) + cnp.log1p(cnp.exp(-cnp.abs(x))), []),
    "leaky_relu": (lambda x: cnp.where(x > 0, x, 0.02 * x), [0]),
    "relu": (lambda x: cnp.maximum(x, 0.0), [0]),
    "heaviside": (lambda x: cnp.heaviside(x, 0.5), [0]),
    "abs": (lambda x: cnp.abs(x), [0]),
    "shifted_abs": (lambda x: cnp.abs(x - 1.5), [sp.Rational(3, 2)]),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_nondifferentiable_points(name):
    fn, expected = ACTIVATIONS[name]
    assert symbolic.nondifferentiable_points(fn) == expected


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("at", [-1.3, 0.7])
def test_check_grad_accepts_activation_gradients_away_from_kinks(name, at):
    assert symbolic.check_grad(ACTIVATIONS[name][0], at).ok


def test_check_grad_catches_a_wrong_rule(monkeypatch):
    def wrong_vjp(cts, primals, outs):
        return [cnp.multiply(cts[0], cnp.sin(primals[0]))]          # should be cos
    monkeypatch.setattr(elementwise.sin, "vjp_rule", wrong_vjp)
    report = symbolic.check_grad(lambda x: cnp.sin(x) * x, 0.9)
    assert not report.ok and not report.symbolic_ok and not report.numeric_ok


# ---- random expression trees: the traced program read back by sympy equals the tree itself -------

UNARY = [("exp", cnp.exp, sp.exp), ("sin", cnp.sin, sp.sin), ("tanh", cnp.tanh, sp.tanh),
         ("sigmoid", tj.lax.logistic, lambda e: 1 / (1 + sp.exp(-e))),
         ("logsq", lambda e: cnp.log(1 + e * e), lambda e: sp.log(1 + e * e))]
BINARY = [("add", lambda a, b: a + b, lambda a, b: a + b), ("mul", lambda a, b: a * b, lambda a, b: a * b),
          ("sub", lambda a, b: a - b, lambda a, b: a - b)]


@st.composite
def trees(draw, depth=3):
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(["x1", "x2", 0.5, 2.0]))
    if draw(st.booleans()):
        return (draw(st.sampled_from(range(len(UNARY)))), draw(trees(depth=depth - 1)))
    return (draw(st.sampled_from(range(len(BINARY)))), draw(trees(depth=depth - 1)),
            draw(trees(depth=depth - 1)))


def build(tree, env, table_index):
    if isinstance(tree, str):
        return env[tree]
    if isinstance(tree, float):
        return np.float64(tree) if table_index == 1 else sp.Float(tree)
    if len(tree) == 2:
        return UNARY[tree[0]][table_index](build(tree[1], env, table_index))
    return BINARY[tree[0]][table_index](build(tree[1], env, table_index), build(tree[2], env, table_index))


@given(trees(), st.floats(-1.5, 1.5), st.floats(-1.5, 1.5))
@settings(max_examples=40, deadline=None)
def test_random_expression_trees_against_sympy(tree, a, b):
    def f(x1, x2):
        return build(tree, {"x1": x1, "x2": x2}, 1) + 0.0 * x1 + 0.0 * x2
    expected = build(tree, {"x1": x1, "x2": x2}, 2)
    got = symbolic.to_sympy(f, a, b)
    point = {x1: a, x2: b}
    assert abs(float(got.subs(point)) - float(expected.subs(point))) < 1e-9 * (1 + abs(float(expected.subs(point))))
    report = symbolic.check_grad(f, a, b, tolerance=1e-8 * (1 + max(abs(v) for v in report_scale(expected, point))))
    assert report.ok, str(report)


def report_scale(expr, point):
    return [float(sp.diff(expr, s).subs(point)) for s in (x1, x2)]


# ---- explain_grad --------------------------------------------------------------------------------

def test_explain_grad_matches_hand_backprop_for_L_equals_sum_times_w3(capsys):
    w1, w2, w3 = 2.0, -1.0, 3.0
    explanation = tj.explain_grad(lambda w1, w2, w3: (w1 + w2) * w3, argnums=(0, 1, 2))(w1, w2, w3)
    # dL/dw1 = dL/dw2 = w3, dL/dw3 = w1 + w2
    np.testing.assert_allclose(explanation.gradients, (w3, w3, w1 + w2))
    printed = capsys.readouterr().out
    assert "reverse pass" in printed and "mul" in printed and "add" in printed
    # the forward table holds the values a hand table would: w1 + w2 = 1, L = 3
    values = [float(np.asarray(s.value)) for s in explanation.forward if "=" in s.equation]
    assert values == [1.0, 3.0]


def test_explain_grad_equals_grad_on_the_seed_function():
    e = tj.explain_grad(seed, argnums=(0, 1))(1.0, 0.5)
    np.testing.assert_allclose(e.gradients, tj.grad(seed, argnums=(0, 1))(1.0, 0.5), rtol=1e-6)
