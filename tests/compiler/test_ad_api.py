"""The AD API (jvp, vjp, grad, value_and_grad, jacfwd, jacrev, hessian) on hand-derived cases.

Every expected number below is computed by hand (or by an independent method: finite differences,
closed-form derivatives), never read off the implementation.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import compiler as tj
import compiler.numpy as cnp

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def f64(x):
    return np.asarray(x, np.float64)


def relu(x):
    return cnp.maximum(x, 0.0)


# ------------------------------------------------------------------------------------------------
# Hand backprop tables
# ------------------------------------------------------------------------------------------------

def test_sum_times_weight_gradients_and_one_sgd_step():
    # L = (w1 + w2) * w3 at (2, 3, 4): L = 20, dL/dw1 = dL/dw2 = w3 = 4, dL/dw3 = w1 + w2 = 5
    def loss(w1, w2, w3):
        return (w1 + w2) * w3

    w = (f64(2.0), f64(3.0), f64(4.0))
    value, grads = tj.value_and_grad(loss, argnums=(0, 1, 2))(*w)
    assert value == 20.0
    assert [float(g) for g in grads] == [4.0, 4.0, 5.0]
    # one SGD step, lr = 0.01: (1.96, 2.96, 3.95), and L = (1.96 + 2.96) * 3.95 = 19.434
    new = [wi - 0.01 * gi for wi, gi in zip(w, grads)]
    np.testing.assert_allclose([float(v) for v in new], [1.96, 2.96, 3.95], rtol=1e-15)
    assert float(loss(*new)) == pytest.approx(19.434, rel=1e-14)
    assert float(loss(*new)) < 20.0
    # the same through a list of parameters
    g = tj.grad(lambda p: (p[0] + p[1]) * p[2])(list(w))
    assert isinstance(g, list) and [float(x) for x in g] == [4.0, 4.0, 5.0]


def test_x_to_the_fourth_by_repeated_squaring():
    def f(x):
        z1 = x
        z2 = z1 * z1
        z3 = z2 * z2
        return z3

    x = f64(2.0)
    assert tj.grad(f)(x) == 32.0                 # 4 x^3
    assert tj.grad(tj.grad(f))(x) == 48.0        # 12 x^2
    assert tj.grad(tj.grad(tj.grad(f)))(x) == 48.0   # 24 x
    assert tj.grad(tj.grad(tj.grad(tj.grad(f))))(x) == 24.0
    _, t = tj.jvp(f, (x,), (f64(1.0),))
    assert t == 32.0


def test_log_of_exp_of_product():
    gx, gy = tj.grad(lambda x, y: cnp.log(cnp.exp(x * y)), argnums=(0, 1))(f64(2.0), f64(3.0))
    assert float(gx) == pytest.approx(3.0, rel=1e-15) and float(gy) == pytest.approx(2.0, rel=1e-15)


def test_rnn_cell():
    # L = wo * relu(wr * h0 + wi * x1), pre-activation 4*3 + 5*2 = 22 > 0
    def cell(wr, wi, wo, x1, h0):
        return wo * relu(wr * h0 + wi * x1)

    args = [f64(v) for v in (4.0, 5.0, 6.0, 2.0, 3.0)]
    value, (gr, gi, go) = tj.value_and_grad(cell, argnums=(0, 1, 2))(*args)
    assert value == 6.0 * 22.0
    assert (float(gr), float(gi), float(go)) == (18.0, 12.0, 22.0)
    # with a negative pre-activation relu is flat: no gradient reaches wr, wi, nor wo
    args[0] = f64(-4.0)                          # -12 + 10 = -2
    assert [float(g) for g in tj.grad(cell, argnums=(0, 1, 2))(*args)] == [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------------
# Derivative conventions at kinks (PyTorch)
# ------------------------------------------------------------------------------------------------

def test_conventions_at_kinks():
    zero = f64(0.0)
    assert tj.grad(relu)(zero) == 0.0
    assert tj.grad(relu)(f64(1e-3)) == 1.0 and tj.grad(relu)(f64(-1e-3)) == 0.0
    assert tj.grad(cnp.abs)(zero) == 0.0
    assert tj.grad(cnp.abs)(f64(-2.0)) == -1.0 and tj.grad(cnp.abs)(f64(2.0)) == 1.0
    for x in (-1.0, 0.0, 1.0):
        assert tj.grad(lambda x: cnp.heaviside(x, 0.5))(f64(x)) == 0.0
        assert tj.grad(cnp.sign)(f64(x)) == 0.0
    # vectorised: relu'(x) is 1 exactly where x > 0
    x = f64([-2.0, -0.0, 0.0, 0.5, 3.0])
    np.testing.assert_array_equal(tj.grad(lambda x: cnp.sum(relu(x)))(x), [0, 0, 0, 1, 1])
    np.testing.assert_array_equal(tj.grad(lambda x: cnp.sum(cnp.abs(x)))(x), [-1, 0, 0, 1, 1])


# ------------------------------------------------------------------------------------------------
# The API surface
# ------------------------------------------------------------------------------------------------

def test_argnums_int_and_tuple():
    f = lambda x, y, z: x * y * y + z
    x, y, z = f64(2.0), f64(3.0), f64(5.0)
    assert tj.grad(f)(x, y, z) == 9.0
    assert tj.grad(f, argnums=1)(x, y, z) == 12.0
    assert tj.grad(f, argnums=-1)(x, y, z) == 1.0
    g = tj.grad(f, argnums=(2, 0))(x, y, z)
    assert isinstance(g, tuple) and [float(v) for v in g] == [1.0, 9.0]
    g = tj.grad(f, argnums=(1,))(x, y, z)
    assert isinstance(g, tuple) and len(g) == 1 and g[0] == 12.0


def test_has_aux_and_value_and_grad():
    def f(x):
        return cnp.sum(x * x), {"mean": cnp.mean(x), "n": 3}

    x = f64([1.0, 2.0, 3.0])
    g, aux = tj.grad(f, has_aux=True)(x)
    np.testing.assert_array_equal(g, 2 * x)
    assert float(aux["mean"]) == 2.0 and aux["n"] == 3
    (value, aux), g = tj.value_and_grad(f, has_aux=True)(x)
    assert value == 14.0 and float(aux["mean"]) == 2.0
    np.testing.assert_array_equal(g, 2 * x)
    value, g = tj.value_and_grad(lambda x: cnp.sum(x ** 3))(x)
    assert value == 36.0
    np.testing.assert_array_equal(g, 3 * x ** 2)


def test_pytree_params():
    # loss = sum((W x + b)^2) + c^2: dW = 2 r x^T, db = 2 r, dc = 2c with r = W x + b
    W = f64([[1.0, 2.0], [0.0, -1.0]])
    b = f64([0.5, 1.0])
    x = f64([1.0, 3.0])
    params = {"layer": [W, b], "scale": (f64(1.5),)}

    def loss(p, x):
        (W, b), (c,) = p["layer"], p["scale"]
        return cnp.sum((W @ x + b) ** 2) + c * c

    g = tj.grad(loss)(params, x)
    r = W @ x + b                                                 # (7.5, -2)
    assert set(g) == {"layer", "scale"} and isinstance(g["layer"], list) and isinstance(g["scale"], tuple)
    np.testing.assert_allclose(g["layer"][0], 2 * np.outer(r, x))
    np.testing.assert_allclose(g["layer"][1], 2 * r)
    assert float(g["scale"][0]) == 3.0
    gp, gx = tj.grad(loss, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(gx, 2 * W.T @ r)
    np.testing.assert_allclose(gp["layer"][1], 2 * r)


def test_jvp_and_vjp_pytrees():
    def f(p):
        a, (b, c) = p["a"], p["bc"]
        return {"s": a * b, "t": [cnp.sin(c), a + c]}

    p = {"a": f64(2.0), "bc": (f64(3.0), f64([0.0, 1.0]))}
    t = {"a": f64(1.0), "bc": (f64(-1.0), f64([2.0, 0.5]))}
    out, tout = tj.jvp(f, (p,), (t,))
    assert set(out) == {"s", "t"} and set(tout) == {"s", "t"}
    # d(a b) = b da + a db = 3 - 2; d sin c = cos c dc; d(a + c) = da + dc
    assert float(tout["s"]) == 1.0
    np.testing.assert_allclose(tout["t"][0], np.cos([0.0, 1.0]) * [2.0, 0.5])
    np.testing.assert_allclose(tout["t"][1], [3.0, 1.5])
    out, vjp_fn = tj.vjp(f, p)
    (ct,) = vjp_fn({"s": f64(1.0), "t": [f64([1.0, 1.0]), f64([10.0, 100.0])]})
    assert set(ct) == {"a", "bc"} and isinstance(ct["bc"], tuple)
    assert float(ct["a"]) == 3.0 + 110.0                        # b + sum of (a + c)'s cotangent
    assert float(ct["bc"][0]) == 2.0
    np.testing.assert_allclose(ct["bc"][1], np.cos([0.0, 1.0]) + [10.0, 100.0])
    with pytest.raises(TypeError):
        tj.jvp(f, (p,), ({"a": f64(1.0)},))
    with pytest.raises(TypeError):
        vjp_fn({"s": f64(1.0)})


def test_vjp_with_several_arguments_and_has_aux():
    out, vjp_fn, aux = tj.vjp(lambda x, y: (x * y, x - y), f64(2.0), f64(5.0), has_aux=True)
    assert out == 10.0 and aux == -3.0
    gx, gy = vjp_fn(f64(1.0))
    assert (float(gx), float(gy)) == (5.0, 2.0)


def test_grad_of_jit_and_jit_of_grad_agree():
    def f(x, w):
        return cnp.sum(cnp.tanh(x @ w) ** 2)

    rng = np.random.default_rng(0)
    x, w = f64(rng.standard_normal((3, 4))), f64(rng.standard_normal((4, 2)))
    g1 = tj.grad(tj.jit(f), argnums=(0, 1))(x, w)
    g2 = tj.jit(tj.grad(f, argnums=(0, 1)))(x, w)
    g3 = tj.grad(f, argnums=(0, 1))(x, w)
    # by hand: d/dz sum(tanh(z)^2) = 2 tanh(z) (1 - tanh(z)^2), z = x w
    z = x @ w
    dz = 2 * np.tanh(z) * (1 - np.tanh(z) ** 2)
    for gx, gw in (g1, g2, g3):
        np.testing.assert_allclose(gx, dz @ w.T, rtol=1e-12)
        np.testing.assert_allclose(gw, x.T @ dz, rtol=1e-12)


def test_grad_grad_grad():
    f = lambda x: cnp.sin(x) * x
    # f' = cos x * x + sin x, f'' = 2 cos x - x sin x, f''' = -3 sin x - x cos x
    for x in (0.0, 0.7, -2.0):
        g3 = tj.grad(tj.grad(tj.grad(f)))(f64(x))
        assert float(g3) == pytest.approx(-3 * math.sin(x) - x * math.cos(x), abs=1e-14)
        assert float(tj.jit(tj.grad(tj.grad(f)))(f64(x))) == pytest.approx(
            2 * math.cos(x) - x * math.sin(x), abs=1e-14)


def test_composes_with_vmap():
    # per-example gradients of (w . x_i)^2: 2 (w . x_i) x_i
    w = f64([1.0, -2.0])
    xs = f64([[1.0, 0.0], [3.0, 1.0], [0.5, 0.5]])
    g = tj.vmap(tj.grad(lambda w, x: cnp.dot(w, x) ** 2), in_axes=(None, 0))(w, xs)
    np.testing.assert_allclose(g, 2 * (xs @ w)[:, None] * xs)


def test_stop_gradient():
    f = lambda x, y: x * tj.stop_gradient(x * y) + y
    gx, gy = tj.grad(f, argnums=(0, 1))(f64(2.0), f64(3.0))
    assert (float(gx), float(gy)) == (6.0, 1.0)
    assert tj.grad(lambda x: tj.stop_gradient(x) ** 2)(f64(3.0)) == 0.0
    _, t = tj.jvp(lambda x: tj.stop_gradient(cnp.exp(x)), (f64([1.0, 2.0]),), (f64([1.0, 1.0]),))
    np.testing.assert_array_equal(t, [0.0, 0.0])


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------

def test_integer_inputs_are_rejected_by_name():
    with pytest.raises(TypeError, match="i32") as e:
        tj.grad(lambda x: x * 2.0)(np.int32(3))
    assert "input" in str(e.value)
    with pytest.raises(TypeError, match="i32"):
        tj.grad(lambda x, n: x * n, argnums=(0, 1))(f64(1.0), np.int32(3))
    with pytest.raises(TypeError, match="bool"):
        tj.grad(lambda x, b: x * b)(np.asarray([True]), f64(1.0))
    for transform in (tj.jacfwd, tj.jacrev):
        with pytest.raises(TypeError):
            transform(lambda x: x * 2.0)(np.asarray([1, 2], np.int32))
    # integers are fine outside argnums
    assert tj.grad(lambda x, n: x * n, argnums=0)(f64(1.5), np.int32(3)) == 3.0


def test_non_scalar_outputs_are_rejected():
    with pytest.raises(TypeError, match="scalar"):
        tj.grad(lambda x: x * 2.0)(f64([1.0, 2.0]))
    with pytest.raises(TypeError):
        tj.grad(lambda x: (x, x))(f64(1.0))
    with pytest.raises(TypeError):
        tj.value_and_grad(lambda x: cnp.astype(x > 0, np.int32))(f64(1.0))


# ------------------------------------------------------------------------------------------------
# Jacobians and Hessians of random functions
# ------------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "tanh": cnp.tanh, "sin": cnp.sin, "square": lambda z: z * z,
    "softplus": lambda z: cnp.log1p(cnp.exp(z)), "exp": lambda z: cnp.exp(0.3 * z),
}


@st.composite
def random_functions(draw):
    """x -> act_k(A_k ... act_1(A_1 x + b_1) ...) * (1 + x_0 / 2) for random matrices."""
    n, m = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sizes = [n] + [draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 2)))] + [m]
    elems = st.floats(-1.5, 1.5, allow_nan=False, allow_subnormal=False)
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        A = draw(hnp.arrays(np.float64, (b, a), elements=elems))
        bias = draw(hnp.arrays(np.float64, (b,), elements=elems))
        layers.append((A, bias, draw(st.sampled_from(sorted(ACTIVATIONS)))))
    x = draw(hnp.arrays(np.float64, (n,), elements=elems))

    def f(x):
        h = x
        for A, bias, act in layers:
            h = ACTIVATIONS[act](A @ h + bias)
        return h * (1.0 + x[0] / 2)
    return f, f64(x), m


def finite_difference_jacobian(f, x, h=1e-6):
    cols = []
    for k in range(x.size):
        e = np.zeros_like(x)
        e[k] = h
        cols.append((f64(f(x + e)) - f64(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


@SETTINGS
@given(random_functions())
def test_jacfwd_equals_jacrev_and_finite_differences(fm):
    f, x, m = fm
    jf, jr = tj.jacfwd(f)(x), tj.jacrev(f)(x)
    assert jf.shape == jr.shape == (m, x.size)
    np.testing.assert_allclose(jf, jr, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jf, finite_difference_jacobian(f, x), rtol=1e-5, atol=1e-7)


@SETTINGS
@given(random_functions())
def test_hessian_is_symmetric_and_matches_finite_differences_of_grad(fm):
    f, x, _ = fm
    scalar = lambda x: cnp.sum(f(x))
    H = tj.hessian(scalar)(x)
    assert H.shape == (x.size, x.size)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(H, finite_difference_jacobian(tj.grad(scalar), x), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(st.integers(1, 5).flatmap(lambda n: st.tuples(
    hnp.arrays(np.float64, (n, n), elements=st.floats(-3, 3, allow_subnormal=False)),
    hnp.arrays(np.float64, (n,), elements=st.floats(-3, 3, allow_subnormal=False)))))
def test_hessian_of_a_quadratic_form(Ax):
    A, x = Ax
    quad = lambda x: x @ A @ x
    H = tj.hessian(quad)(x)
    np.testing.assert_allclose(H, A + A.T, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(tj.grad(quad)(x), (A + A.T) @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tj.jacfwd(tj.grad(quad))(x), A + A.T, rtol=1e-14, atol=1e-14)


def test_jacobians_of_several_arguments_and_shapes():
    # f(x, y) = x[:, None] * y[None, :] (outer product): d f_ij / d x_k = δ_ik y_j
    x, y = f64([1.0, 2.0]), f64([3.0, 4.0, 5.0])
    f = lambda x, y: x[:, None] * y[None, :]
    for jac in (tj.jacfwd, tj.jacrev):
        jx, jy = jac(f, argnums=(0, 1))(x, y)
        assert jx.shape == (2, 3, 2) and jy.shape == (2, 3, 3)
        np.testing.assert_array_equal(jx, np.einsum("ik,j->ijk", np.eye(2), y))
        np.testing.assert_array_equal(jy, np.einsum("i,jk->ijk", x, np.eye(3)))
    # scalar in, vector out, and vector in, scalar out
    np.testing.assert_allclose(tj.jacfwd(lambda t: cnp.stack([t, t * t]))(f64(3.0)), [1.0, 6.0])
    np.testing.assert_allclose(tj.jacrev(lambda v: cnp.sum(v * v))(x), 2 * x)
