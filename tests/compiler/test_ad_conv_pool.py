"""Gradients of convolution and pooling against central finite differences (float64)."""
import numpy as np
import pytest

import compiler as tj
import compiler.numpy as cnp


def finite_difference(f, args, i, eps=1e-6):
    out = np.zeros_like(args[i])
    for idx in np.ndindex(args[i].shape):
        plus = [a.copy() for a in args]
        minus = [a.copy() for a in args]
        plus[i][idx] += eps
        minus[i][idx] -= eps
        out[idx] = (f(*plus) - f(*minus)) / (2 * eps)
    return out


CONV_CASES = [  # N, C, H, W, O, groups, kernel, strides, padding, lhs_dilation, rhs_dilation
    (2, 3, 5, 6, 4, 1, (3, 2), (1, 1), ((1, 1), (0, 1)), (1, 1), (1, 1)),
    (1, 4, 7, 7, 4, 2, (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1)),
    (1, 4, 7, 6, 8, 4, (2, 3), (2, 3), ((0, 0), (2, 1)), (1, 1), (2, 1)),
    (1, 2, 4, 5, 2, 1, (2, 2), (1, 2), ((1, 0), (0, 0)), (2, 1), (1, 1)),
    (2, 3, 8, 8, 3, 3, (3, 3), (3, 2), ((1, 2), (0, 0)), (1, 1), (1, 1)),   # depthwise, uneven stride
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_gradients_match_finite_differences(case):
    n, c, h, w_, o, groups, k, s, pad, ld, rd = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((o, c // groups) + k)

    def f(x, w):
        return cnp.sum(cnp.sin(tj.lax.conv_general_dilated(x, w, s, pad, ld, rd, groups)))

    gx, gw = tj.grad(f, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(gx, finite_difference(f, [x, w], 0), atol=1e-6)
    np.testing.assert_allclose(gw, finite_difference(f, [x, w], 1), atol=1e-6)
    tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    _, jv = tj.jvp(f, (x, w), (tx, tw))
    np.testing.assert_allclose(jv, (gx * tx).sum() + (gw * tw).sum(), rtol=1e-9)


POOL_CASES = [  # shape, window, strides, padding
    ((2, 3, 5, 6), (1, 1, 2, 2), (1, 1, 2, 2), ((0, 0), (0, 0), (0, 0), (0, 0))),
    ((1, 2, 7, 7), (1, 1, 3, 3), (1, 1, 2, 2), ((0, 0), (0, 0), (1, 1), (1, 1))),
    ((1, 1, 6, 5), (1, 1, 3, 2), (1, 1, 1, 3), ((0, 0), (0, 0), (2, 0), (0, 1))),
]


@pytest.mark.parametrize("kind", ["max", "sum"])
@pytest.mark.parametrize("case", POOL_CASES)
def test_pooling_gradients_match_finite_differences(kind, case):
    shape, k, s, pad = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)

    def f(x):
        return cnp.sum(cnp.sin(tj.lax.reduce_window(x, kind, k, s, pad)))

    g = tj.grad(f)(x)
    np.testing.assert_allclose(g, finite_difference(f, [x], 0), atol=1e-6)
    t = rng.standard_normal(shape)
    np.testing.assert_allclose(tj.jvp(f, (x,), (t,))[1], (g * t).sum(), rtol=1e-9)


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties():
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    g = tj.grad(lambda x: cnp.sum(tj.lax.reduce_window(x, "max", (1, 1, 2, 2), (1, 1, 2, 2),
                                                       ((0, 0),) * 4)))(x)
    np.testing.assert_array_equal(g, [[[[1.0, 0.0], [0.0, 0.0]]]])
