"""compiler.nn against PyTorch: values (float64 and float32) and gradients (float64).

Gradients are compared as d/dargs sum(f(args) * W) for a random W, computed by tj.grad and by torch
autograd. torch is a test-only dependency.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import array_shapes

import compiler as tj
import compiler.numpy as cnp
from compiler import nn, random

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL64, ATOL64 = 1e-10, 1e-12
FAST = settings(max_examples=12, deadline=None)
# jit's default simplify pass (compiler/passes/simplify.py, _fused) crashes with "not enough values to
# unpack" on an equation without operands (iota, from cnp.arange). Only that error is expected: a wrong
# number still fails the test.


def as_torch(a, grad=False):
    t = torch.tensor(np.asarray(a))
    if grad:
        t.requires_grad_(True)
    return t


def compare(tj_fn, torch_fn, args, argnums=None, seed=0, rtol=RTOL64, atol=ATOL64, jit=False):
    """Values of tj_fn(*args) vs torch_fn(*args) and gradients of sum(f * W) w.r.t. args[argnums]."""
    args = [np.asarray(a) for a in args]
    argnums = tuple(range(len(args))) if argnums is None else tuple(argnums)
    out = tj_fn(*args)
    targs = [as_torch(a, i in argnums) for i, a in enumerate(args)]
    tout = torch_fn(*targs)
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=rtol, atol=atol)
    assert np.shape(out) == tuple(tout.shape)
    if jit:
        np.testing.assert_allclose(tj.jit(tj_fn)(*args), tout.detach().numpy(), rtol=rtol, atol=atol)
    weights = np.random.default_rng(seed).standard_normal(np.shape(out))
    grads = tj.grad(lambda *a: cnp.sum(cnp.multiply(tj_fn(*a), weights)), argnums=argnums)(*args)
    (tout * torch.tensor(weights)).sum().backward()
    for i, g in zip(argnums, grads):
        expected = targs[i].grad.numpy()
        assert np.shape(g) == expected.shape
        np.testing.assert_allclose(g, expected, rtol=rtol, atol=atol, err_msg=f"gradient of argument {i}")
    return out, grads


def compare_f32(tj_fn, torch_fn, *args, rtol=2e-6, atol=1e-6):
    args32 = [np.asarray(a, np.float32) for a in args]
    out = np.asarray(tj_fn(*args32))
    assert out.dtype == np.float32
    expected = torch_fn(*[torch.tensor(a) for a in args32]).numpy()
    np.testing.assert_allclose(out, expected, rtol=rtol, atol=atol)


def randn(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale


# ---- activations -------------------------------------------------------------------------------

ACTIVATIONS = {
    "relu": (nn.relu, F.relu),
    "sigmoid": (nn.sigmoid, torch.sigmoid),
    "tanh": (nn.tanh, torch.tanh),
    "gelu": (nn.gelu, F.gelu),
    "gelu_tanh": (lambda x: nn.gelu(x, approximate="tanh"), lambda x: F.gelu(x, approximate="tanh")),
    "softplus": (nn.softplus, F.softplus),
    "softplus_beta2": (lambda x: nn.softplus(x, beta=2.0), lambda x: F.softplus(x, beta=2.0)),
    "softplus_beta_half_thr3": (lambda x: nn.softplus(x, beta=0.5, threshold=3.0),
                                lambda x: F.softplus(x, beta=0.5, threshold=3.0)),
    "softplus_thr1": (lambda x: nn.softplus(x, threshold=1.0), lambda x: F.softplus(x, threshold=1.0)),
    "leaky_relu": (nn.leaky_relu, F.leaky_relu),
    "leaky_relu_0.2": (lambda x: nn.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2)),
    "leaky_relu_neg": (lambda x: nn.leaky_relu(x, negative_slope=-0.5),
                       lambda x: F.leaky_relu(x, negative_slope=-0.5)),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
@FAST
@given(shape=array_shapes(min_dims=0, max_dims=3, max_side=5), seed=st.integers(0, 2**16))
def test_activation_values_and_gradients(name, shape, seed):
    ours, theirs = ACTIVATIONS[name]
    x = np.random.default_rng(seed).standard_normal(shape) * 4
    compare(ours, theirs, [x], seed=seed)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_float32_values_and_jit(name):
    ours, theirs = ACTIVATIONS[name]
    x = randn(4, 7, seed=3, scale=5.0)
    compare_f32(ours, theirs, x)
    compare(ours, theirs, [x], jit=True)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_at_kinks_matches_torch(name):
    """relu'(0) = 0, leaky_relu'(0) = negative_slope, softplus at its threshold, everything at 0."""
    ours, theirs = ACTIVATIONS[name]
    x = np.array([0.0, -0.0, 1.0, -1.0, 20.0, 10.0, 3.0, 6.0, 1.0, 0.5, 40.0, -40.0])
    compare(ours, theirs, [x])


def test_kink_derivatives_hand_values():
    zero = np.zeros(3)
    np.testing.assert_array_equal(tj.grad(lambda x: cnp.sum(nn.relu(x)))(zero), 0.0)
    np.testing.assert_array_equal(tj.grad(lambda x: cnp.sum(nn.leaky_relu(x, 0.3)))(zero), 0.3)
    np.testing.assert_array_equal(tj.grad(lambda x: cnp.sum(nn.softplus(x)))(zero), 0.5)
    np.testing.assert_allclose(tj.grad(lambda x: cnp.sum(nn.gelu(x)))(zero), 0.5, rtol=1e-15)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "softplus_beta2", "softplus_beta_half_thr3",
                                  "relu", "tanh", "gelu", "gelu_tanh", "leaky_relu"])
def test_activation_stable_at_large_inputs(name):
    ours, theirs = ACTIVATIONS[name]
    x = np.array([1e4, -1e4, 1e3, -1e3, 500.0, -500.0, 80.0, -80.0])
    out, (g,) = compare(ours, theirs, [x])
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    compare_f32(ours, theirs, x)


def test_softplus_large_beta_small_x_is_finite():
    # beta * x is large although x is moderate: the smooth branch must not overflow
    ours = lambda x: nn.softplus(x, beta=100.0, threshold=1e5)
    x = np.array([-300.0, -30.0, -3.0, 0.01])
    out, (g,) = compare(ours, lambda x: F.softplus(x, beta=100.0, threshold=1e5), [x])
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    # here torch's log1p(exp(3000)) overflows to inf; the exact value is 30 + log1p(exp(-3000)) / 100 = 30
    big = np.array([30.0])
    np.testing.assert_allclose(ours(big), [30.0], rtol=1e-15)
    np.testing.assert_allclose(tj.grad(lambda x: cnp.sum(ours(x)))(big), [1.0], rtol=1e-15)


# ---- softmax family -----------------------------------------------------------------------------

@FAST
@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=5), data=st.data())
def test_softmax_and_log_softmax(shape, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = np.random.default_rng(len(shape)).standard_normal(shape) * 3
    compare(lambda x: nn.softmax(x, axis=axis), lambda x: torch.softmax(x, dim=axis), [x])
    compare(lambda x: nn.log_softmax(x, axis=axis), lambda x: torch.log_softmax(x, dim=axis), [x])


def test_softmax_default_axis_and_float32():
    x = randn(3, 5, seed=1, scale=4)
    compare(nn.softmax, lambda x: torch.softmax(x, -1), [x], jit=True)
    compare(nn.log_softmax, lambda x: torch.log_softmax(x, -1), [x], jit=True)
    compare_f32(nn.softmax, lambda x: torch.softmax(x, -1), x)
    compare_f32(nn.log_softmax, lambda x: torch.log_softmax(x, -1), x)


LSE_AXES = [None, 0, 1, -1, (0, 2), (1, 2), (0, 1, 2), (-1, 0)]


@pytest.mark.parametrize("axis", LSE_AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_logsumexp_axes(axis, keepdims):
    x = randn(3, 4, 5, seed=2, scale=3)
    dims = tuple(range(3)) if axis is None else axis
    compare(lambda x: nn.logsumexp(x, axis=axis, keepdims=keepdims),
            lambda x: torch.logsumexp(x, dim=dims, keepdim=keepdims), [x])


def test_logsumexp_default_axis_is_all():
    x = randn(2, 3, seed=5)
    np.testing.assert_allclose(nn.logsumexp(x), np.log(np.exp(x).sum()), rtol=1e-14)
    assert np.shape(nn.logsumexp(x)) == ()


def test_logsumexp_with_infinities():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf], [1.0, 2.0]])
    np.testing.assert_array_equal(nn.logsumexp(x, axis=1), torch.logsumexp(torch.tensor(x), 1).numpy())
    g = tj.grad(lambda x: cnp.sum(nn.logsumexp(x, axis=1)[1:]))(x)
    np.testing.assert_allclose(g[1:], torch.softmax(torch.tensor(x[1:]), 1).numpy(), rtol=1e-14)


@pytest.mark.parametrize("fn", ["log_softmax", "logsumexp", "softmax"])
def test_softmax_family_stable_at_large_inputs(fn):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4], [3.0, 1e4, 2.0]])
    ours, theirs = {
        "log_softmax": (lambda x: nn.log_softmax(x), lambda x: torch.log_softmax(x, -1)),
        "softmax": (lambda x: nn.softmax(x), lambda x: torch.softmax(x, -1)),
        "logsumexp": (lambda x: nn.logsumexp(x, axis=-1), lambda x: torch.logsumexp(x, -1)),
    }[fn]
    out, (g,) = compare(ours, theirs, [x])
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(g))
    compare_f32(ours, theirs, x)


# ---- normalization -----------------------------------------------------------------------------

@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("axis,shape", [(-1, (4, 6)), (-1, (2, 3, 5)), (2, (2, 3, 5)),
                                        ((-2, -1), (2, 3, 5)), ((1, 2), (2, 3, 4))])
def test_layer_norm(axis, shape, affine):
    x = randn(*shape, seed=1, scale=2) + 0.5
    axes = (axis,) if isinstance(axis, int) else axis
    normalized = tuple(shape[a] for a in axes)
    args = [x]
    if affine:
        args += [randn(*normalized, seed=2), randn(*normalized, seed=3)]
        ours = lambda x, w, b: nn.layer_norm(x, axis=axis, weight=w, bias=b)
        theirs = lambda x, w, b: F.layer_norm(x, normalized, w, b, eps=1e-5)
    else:
        ours = lambda x: nn.layer_norm(x, axis=axis)
        theirs = lambda x: F.layer_norm(x, normalized, eps=1e-5)
    compare(ours, theirs, args, rtol=1e-9, atol=1e-11)
    compare_f32(ours, theirs, *args, rtol=1e-5, atol=1e-5)


def test_layer_norm_weight_only_and_eps():
    x = randn(3, 4, seed=4)
    w = randn(4, seed=5)
    compare(lambda x, w: nn.layer_norm(x, eps=0.1, weight=w), lambda x, w: F.layer_norm(x, (4,), w, None, eps=0.1),
            [x, w], rtol=1e-9, atol=1e-11)
    b = randn(4, seed=6)
    compare(lambda x, b: nn.layer_norm(x, bias=b), lambda x, b: F.layer_norm(x, (4,), None, b), [x, b],
            rtol=1e-9, atol=1e-11)


def test_layer_norm_non_trailing_axis_matches_numpy():
    x = randn(3, 4, 5, seed=7)
    w = randn(4, seed=8)
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    expected = (x - mean) / np.sqrt(var + 1e-5) * w[None, :, None]
    np.testing.assert_allclose(nn.layer_norm(x, axis=1, weight=w), expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5, 2), (2, 4, 6)])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batch_norm_training(shape, affine, momentum):
    c = shape[1]
    x = randn(*shape, seed=1, scale=2) + 1.5
    rm, rv = randn(c, seed=2), np.abs(randn(c, seed=3)) + 0.5
    w, b = randn(c, seed=4), randn(c, seed=5)
    trm, trv = torch.tensor(rm), torch.tensor(rv)
    expected = F.batch_norm(torch.tensor(x), trm, trv, torch.tensor(w) if affine else None,
                            torch.tensor(b) if affine else None, training=True, momentum=momentum, eps=1e-5)
    y, (nrm, nrv) = nn.batch_norm(x, rm, rv, w if affine else None, b if affine else None, training=True,
                                  momentum=momentum)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(nrm, trm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(nrv, trv.numpy(), rtol=1e-12, atol=1e-14)
    # the inputs are not modified in place
    np.testing.assert_array_equal(rm, randn(c, seed=2))
    if affine:
        compare(lambda x, w, b: nn.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum)[0],
                lambda x, w, b: F.batch_norm(x, torch.tensor(rm), torch.tensor(rv), w, b, True, momentum),
                [x, w, b], rtol=1e-9, atol=1e-11)
    else:
        compare(lambda x: nn.batch_norm(x, training=True)[0],
                lambda x: F.batch_norm(x, None, None, training=True), [x], rtol=1e-9, atol=1e-11)


def test_batch_norm_training_without_running_stats():
    x = randn(5, 2, 3, seed=9)
    y, (rm, rv) = nn.batch_norm(x)
    assert rm is None and rv is None
    np.testing.assert_allclose(y, F.batch_norm(torch.tensor(x), None, None, training=True).numpy(), rtol=1e-10)


def test_batch_norm_running_stats_over_several_steps_and_jit():
    c = 3
    trm, trv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    rm, rv = np.zeros(c), np.ones(c)
    step = tj.jit(lambda x, rm, rv: nn.batch_norm(x, rm, rv, training=True, momentum=0.2))
    for i in range(4):
        x = randn(6, c, 2, 2, seed=10 + i) * (i + 1) + i
        F.batch_norm(torch.tensor(x), trm, trv, training=True, momentum=0.2)
        _, (rm, rv) = step(x, rm, rv)
        np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)


def test_batch_norm_eval():
    c = 4
    x = randn(3, c, 2, 5, seed=1)
    rm, rv = randn(c, seed=2), np.abs(randn(c, seed=3)) + 0.3
    w, b = randn(c, seed=4), randn(c, seed=5)
    y, (nrm, nrv) = nn.batch_norm(x, rm, rv, w, b, training=False)
    np.testing.assert_array_equal(nrm, rm)
    np.testing.assert_array_equal(nrv, rv)
    compare(lambda x, w, b: nn.batch_norm(x, rm, rv, w, b, training=False)[0],
            lambda x, w, b: F.batch_norm(x, torch.tensor(rm), torch.tensor(rv), w, b, training=False),
            [x, w, b])
    # torch's batch_norm does not differentiate w.r.t. the running statistics: use its formula
    compare(lambda x, rm, rv: nn.batch_norm(x, rm, rv, training=False)[0],
            lambda x, rm, rv: (x - rm[None, :, None, None]) / torch.sqrt(rv[None, :, None, None] + 1e-5),
            [x, rm, rv])
    with pytest.raises(ValueError):
        nn.batch_norm(x, training=False)


# ---- convolution and pooling -------------------------------------------------------------------

CONV_CASES = [  # x shape, out channels, kernel, kwargs
    ((2, 3, 7, 6), 4, (3, 3), dict()),
    ((1, 3, 8, 7), 2, (3, 2), dict(stride=2, padding=1)),
    ((2, 2, 9, 9), 3, (3, 3), dict(stride=(2, 1), padding=(2, 0))),
    ((1, 2, 7, 8), 2, (3, 3), dict(padding="same")),
    ((1, 2, 7, 8), 3, (2, 4), dict(padding="same")),                      # even kernel: uneven padding
    ((1, 2, 9, 8), 2, (3, 2), dict(padding="same", dilation=(2, 3))),
    ((1, 3, 6, 6), 2, (2, 2), dict(padding="valid")),
    ((1, 2, 10, 9), 3, (3, 3), dict(dilation=2, padding=1)),
    ((2, 4, 6, 6), 6, (3, 3), dict(groups=2, padding=1)),
    ((2, 3, 7, 7), 3, (3, 3), dict(groups=3, stride=2)),                  # depthwise
    ((1, 3, 6, 5), 6, (3, 3), dict(groups=3, padding=(1, 2))),           # depthwise, multiplier 2
]


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case, bias):
    shape, out_c, kernel, kwargs = case
    groups = kwargs.get("groups", 1)
    x = randn(*shape, seed=1)
    w = randn(out_c, shape[1] // groups, *kernel, seed=2)
    args = [x, w] + ([randn(out_c, seed=3)] if bias else [])
    ours = lambda x, w, b=None: nn.conv2d(x, w, b, **kwargs)
    theirs = lambda x, w, b=None: F.conv2d(x, w, b, **kwargs)
    compare(ours, theirs, args, rtol=1e-9, atol=1e-11)
    compare_f32(ours, theirs, *args, rtol=1e-5, atol=1e-5)


def test_conv2d_same_rejects_stride():
    with pytest.raises(ValueError):
        nn.conv2d(randn(1, 1, 5, 5), randn(1, 1, 3, 3), padding="same", stride=2)


POOL_CASES = [  # x shape, kernel, stride, padding
    ((2, 3, 6, 6), 2, None, 0),
    ((1, 2, 7, 7), 3, 2, 1),
    ((1, 2, 7, 8), (3, 2), (1, 2), (1, 0)),
    ((2, 1, 9, 9), 3, 3, 0),
    ((1, 3, 5, 7), (2, 3), 1, (1, 1)),
    ((1, 1, 8, 5), 4, (2, 1), 2),
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool2d(case, kind):
    shape, k, s, p = case
    x = randn(*shape, seed=4)
    if kind == "max":
        ours, theirs = (lambda x: nn.max_pool2d(x, k, s, p)), (lambda x: F.max_pool2d(x, k, s, p))
    else:
        ours, theirs = (lambda x: nn.avg_pool2d(x, k, s, p)), (lambda x: F.avg_pool2d(x, k, s, p))
    compare(ours, theirs, [x])
    compare_f32(ours, theirs, x)


def test_max_pool_padding_is_negative_infinity():
    x = -1.0 - np.abs(randn(1, 1, 4, 4, seed=5))             # all negative: zero padding would win
    out = nn.max_pool2d(x, 3, 1, 1)
    np.testing.assert_allclose(out, F.max_pool2d(torch.tensor(x), 3, 1, 1).numpy())
    assert np.all(out < 0)


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (2, 1, 0), (3, 2, 1), (2, 2, 0)])
def test_max_pool_ties_route_gradient_like_torch(k, s, p):
    """Many equal values (small integers) in overlapping windows: each window's gradient goes to one
    maximum, the first in row-major order, as torch's CPU kernel does."""
    x = np.random.default_rng(k * 10 + s).integers(-2, 3, (2, 2, 7, 6)).astype(np.float64)
    compare(lambda x: nn.max_pool2d(x, k, s, p), lambda x: F.max_pool2d(x, k, s, p), [x])


# ---- dropout -----------------------------------------------------------------------------------

def test_dropout_eval_and_p0_are_identity():
    x = randn(4, 5, seed=1)
    key = random.PRNGKey(0)
    np.testing.assert_array_equal(nn.dropout(key, x, 0.5, training=False), x)
    np.testing.assert_array_equal(nn.dropout(key, x, 0.0, training=True), x)
    np.testing.assert_array_equal(tj.grad(lambda x: cnp.sum(nn.dropout(key, x, 0.5, False)))(x), np.ones_like(x))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_training(p):
    n = 20000
    x = np.abs(randn(n, seed=2)) + 0.1
    key = random.PRNGKey(42)
    y = np.asarray(nn.dropout(key, x, p, training=True))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - p), rtol=1e-15)
    # keep rate: binomial, 5 standard deviations
    sd = math.sqrt(p * (1 - p) / n)
    assert abs(kept.mean() - (1 - p)) < 5 * sd
    # deterministic per key, different for another key, same under jit
    np.testing.assert_array_equal(nn.dropout(key, x, p, training=True), y)
    other = np.asarray(nn.dropout(random.PRNGKey(43), x, p, training=True))
    assert np.mean((other != 0) != kept) > 0.05
    # gradient: the mask scaled by 1 / (1 - p)
    g = tj.grad(lambda x: cnp.sum(nn.dropout(key, x, p, training=True)))(x)
    np.testing.assert_allclose(g, kept / (1 - p), rtol=1e-15)


def test_dropout_under_jit_is_the_eager_mask():
    x = randn(1000, seed=3)
    key = random.PRNGKey(5)
    np.testing.assert_array_equal(tj.jit(lambda k, x: nn.dropout(k, x, 0.3, training=True))(key, x),
                                  nn.dropout(key, x, 0.3, training=True))


def test_dropout_float32_keeps_dtype():
    x = np.ones((100,), np.float32)
    y = np.asarray(nn.dropout(random.PRNGKey(1), x, 0.25))
    assert y.dtype == np.float32
    assert set(np.unique(y)) <= {np.float32(0), np.float32(1 / 0.75)}


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError):
        nn.dropout(random.PRNGKey(0), np.ones(3), 1.0, training=True)


# ---- losses and linear ---------------------------------------------------------------------------

@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(5, 3), (8, 10), (1, 2)])
def test_cross_entropy(shape, label_dtype):
    logits = randn(*shape, seed=1, scale=3)
    labels = np.random.default_rng(2).integers(0, shape[1], shape[0]).astype(label_dtype)
    compare(lambda z: nn.cross_entropy(z, labels), lambda z: F.cross_entropy(z, torch.tensor(labels).long()),
            [logits])
    compare_f32(lambda z: nn.cross_entropy(z, labels),
                lambda z: F.cross_entropy(z, torch.tensor(labels).long()), logits)


def test_cross_entropy_under_jit():
    logits = randn(6, 4, seed=1, scale=3)
    labels = np.array([0, 3, 1, 1, 2, 0], np.int32)
    expected = F.cross_entropy(torch.tensor(logits), torch.tensor(labels).long()).numpy()
    np.testing.assert_allclose(tj.jit(nn.cross_entropy)(logits, labels), expected, rtol=1e-12)
    g = tj.jit(tj.grad(nn.cross_entropy))(logits, labels)
    np.testing.assert_allclose(g, tj.grad(nn.cross_entropy)(logits, labels), rtol=1e-12)


def test_cross_entropy_stable_at_large_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, -1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, 1e4]])
    labels = np.array([1, 0, 2, 2])
    out, (g,) = compare(lambda z: nn.cross_entropy(z, labels),
                        lambda z: F.cross_entropy(z, torch.tensor(labels)), [logits])
    assert np.isfinite(out) and np.all(np.isfinite(g))
    compare_f32(lambda z: nn.cross_entropy(z, labels), lambda z: F.cross_entropy(z, torch.tensor(labels)), logits)


def test_cross_entropy_single_example():
    logits, label = randn(5, seed=3), np.array(2)
    compare(lambda z: nn.cross_entropy(z, label), lambda z: F.cross_entropy(z, torch.tensor(label)), [logits])


def test_per_example_gradients_with_vmap():
    """vmap(grad) over a batch of examples equals torch autograd run example by example."""
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    xs, ys = rng.standard_normal((5, 4)), rng.integers(0, 3, 5)

    def loss(w, x, y):
        return nn.cross_entropy(nn.linear(nn.gelu(x[None, :]), w, b), y[None])

    per_example = tj.vmap(tj.grad(loss), in_axes=(None, 0, 0))(w, xs, ys)
    for i in range(5):
        tw = as_torch(w, True)
        F.cross_entropy(F.linear(F.gelu(torch.tensor(xs[i:i + 1])), tw, torch.tensor(b)),
                        torch.tensor(ys[i:i + 1])).backward()
        np.testing.assert_allclose(per_example[i], tw.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_one_hot():
    np.testing.assert_array_equal(nn.one_hot(np.array([2, 0, 1]), 3),
                                  F.one_hot(torch.tensor([2, 0, 1]), 3).numpy())


@pytest.mark.parametrize("shape", [(), (4,), (3, 5)])
def test_mse(shape):
    a, b = randn(*shape, seed=1), randn(*shape, seed=2)
    compare(nn.mse, F.mse_loss, [a, b])
    compare_f32(nn.mse, F.mse_loss, a, b)


@pytest.mark.parametrize("xshape", [(5,), (3, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [False, True])
def test_linear(xshape, bias):
    args = [randn(*xshape, seed=1), randn(4, 5, seed=2)] + ([randn(4, seed=3)] if bias else [])
    compare(nn.linear, F.linear, args)
    compare_f32(nn.linear, F.linear, *args)


# ---- multi-head attention ------------------------------------------------------------------------

def _torch_mha(embed, heads, seed, bias=True):
    torch.manual_seed(seed)
    mha = torch.nn.MultiheadAttention(embed, heads, batch_first=True, bias=bias, dtype=torch.float64)
    with torch.no_grad():      # torch initializes biases to zero: make them non-trivial
        if bias:
            mha.in_proj_bias.normal_()
            mha.out_proj.bias.normal_()
    return mha


def _our_params(mha, embed, bias=True):
    wq, wk, wv = (w.detach().numpy().copy() for w in mha.in_proj_weight.split(embed))
    params = dict(w_q=wq, w_k=wk, w_v=wv, w_o=mha.out_proj.weight.detach().numpy().copy())
    if bias:
        bq, bk, bv = (b.detach().numpy().copy() for b in mha.in_proj_bias.split(embed))
        params.update(b_q=bq, b_k=bk, b_v=bv, b_o=mha.out_proj.bias.detach().numpy().copy())
    return params


@pytest.mark.parametrize("mask_kind", [None, "bool2d", "bool3d", "float"])
@pytest.mark.parametrize("dims", [(2, 3, 4, 8, 2), (3, 4, 4, 6, 3), (2, 5, 3, 4, 1), (2, 3, 5, 4, 2)])
def test_multi_head_attention_matches_torch(dims, mask_kind):
    batch, length, source, embed, heads = dims
    mha = _torch_mha(embed, heads, seed=sum(dims))
    params = _our_params(mha, embed)
    rng = np.random.default_rng(sum(dims))
    q, k, v = (rng.standard_normal((batch, n, embed)) for n in (length, source, source))
    torch_mask = None
    our_mask = None
    if mask_kind in ("bool2d", "bool3d"):
        shape = (length, source) if mask_kind == "bool2d" else (batch, length, source)
        our_mask = rng.random(shape) < 0.6
        our_mask[..., 0] = True                           # every query sees at least one key
        tm = torch.tensor(~our_mask)                      # torch: True = NOT allowed
        torch_mask = tm if mask_kind == "bool2d" else tm.repeat_interleave(heads, dim=0)
    elif mask_kind == "float":
        our_mask = rng.standard_normal((length, source))
        torch_mask = torch.tensor(our_mask)

    names = sorted(params)

    def ours(q, k, v, *ws):
        return nn.multi_head_attention(q, k, v, heads, **dict(zip(names, ws)), mask=our_mask)

    tq, tk, tv = (as_torch(a, True) for a in (q, k, v))
    expected, _ = mha(tq, tk, tv, attn_mask=torch_mask, need_weights=False)
    out = ours(q, k, v, *[params[n] for n in names])
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)

    weights = rng.standard_normal(out.shape)
    grads = tj.grad(lambda *a: cnp.sum(cnp.multiply(ours(*a), weights)), argnums=tuple(range(3 + len(names))))(
        q, k, v, *[params[n] for n in names])
    (expected * torch.tensor(weights)).sum().backward()
    for g, t in zip(grads[:3], (tq, tk, tv)):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-11)
    got = dict(zip(names, grads[3:]))
    wq, wk, wv = mha.in_proj_weight.grad.split(embed)
    bq, bk, bv = mha.in_proj_bias.grad.split(embed)
    torch_grads = dict(w_q=wq, w_k=wk, w_v=wv, w_o=mha.out_proj.weight.grad,
                       b_q=bq, b_k=bk, b_v=bv, b_o=mha.out_proj.bias.grad)
    for n in names:
        np.testing.assert_allclose(got[n], torch_grads[n].numpy(), rtol=1e-9, atol=1e-11, err_msg=n)


def test_multi_head_attention_self_attention_no_bias_float32():
    mha = _torch_mha(8, 4, seed=7, bias=False)
    params = _our_params(mha, 8, bias=False)
    x = randn(2, 5, 8, seed=8)
    causal = np.tril(np.ones((5, 5), bool))
    expected, _ = mha(torch.tensor(x), torch.tensor(x), torch.tensor(x), attn_mask=torch.tensor(~causal),
                      need_weights=False)
    out = nn.multi_head_attention(x, x, x, 4, **params, mask=causal)
    np.testing.assert_allclose(out, expected.detach().numpy(), rtol=1e-10, atol=1e-12)
    p32 = {n: a.astype(np.float32) for n, a in params.items()}
    out32 = np.asarray(nn.multi_head_attention(x.astype(np.float32), x.astype(np.float32), x.astype(np.float32),
                                               4, **p32, mask=causal))
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, expected.detach().numpy(), rtol=1e-4, atol=1e-5)
    jitted = tj.jit(lambda x: nn.multi_head_attention(x, x, x, 4, **params, mask=causal))
    np.testing.assert_allclose(jitted(x), expected.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_multi_head_attention_rejects_indivisible_heads():
    x = randn(1, 2, 6)
    w = np.eye(6)
    with pytest.raises(ValueError):
        nn.multi_head_attention(x, x, x, 4, w, w, w, w)


# ---- initialization -----------------------------------------------------------------------------

def test_fans_match_torch():
    from torch.nn.init import _calculate_fan_in_and_fan_out
    for shape in [(6, 4), (8, 3, 3, 3), (5, 2, 4, 1)]:
        assert nn._fans(shape) == _calculate_fan_in_and_fan_out(torch.empty(shape))


# ---- summary -------------------------------------------------------------------------------------

def test_summary_counts_and_shapes_match_torch():
    lin, ln, head = torch.nn.Linear(2, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 3)
    assert sum(p.numel() for p in lin.parameters()) == 18
    assert sum(p.numel() for p in ln.parameters()) == 12
    params = {
        "fc": {"w": lin.weight.detach().numpy().astype(np.float64), "b": lin.bias.detach().numpy().astype(np.float64)},
        "norm": {"weight": np.ones(6), "bias": np.zeros(6)},
        "head": {"w": head.weight.detach().numpy().astype(np.float64),
                 "b": head.bias.detach().numpy().astype(np.float64)},
    }

    def model(params, x):
        h = nn.relu(nn.linear(x, params["fc"]["w"], params["fc"]["b"]))
        h = nn.layer_norm(h, weight=params["norm"]["weight"], bias=params["norm"]["bias"])
        return nn.linear(h, params["head"]["w"], params["head"]["b"])

    x = randn(5, 2, seed=1)
    lines = []
    rows = nn.summary(model, params, x, print_fn=lines.append)
    torch_model = torch.nn.Sequential(lin, torch.nn.ReLU(), ln, head).double()
    shapes = []
    t = torch.tensor(x)
    for layer in (lin, torch.nn.ReLU(), ln, head):
        t = layer.double()(t)
        shapes.append(tuple(t.shape))
    assert [r[0] for r in rows] == ["fc", "norm", "head"]          # the order of params, not sorted
    assert [r[2] for r in rows] == [18, 12, 21]
    assert [tuple(r[1]) for r in rows] == [shapes[0], shapes[2], shapes[3]]
    assert any("51" in line for line in lines)                     # the total
    assert sum(p.numel() for p in torch_model.parameters()) == 51


def test_summary_with_list_of_layers():
    params = [{"w": randn(6, 2), "b": randn(6)}, {"w": randn(3, 6), "b": randn(3)}]

    def model(params, x):
        return nn.linear(nn.tanh(nn.linear(x, params[0]["w"], params[0]["b"])), params[1]["w"], params[1]["b"])

    rows = nn.summary(model, params, randn(4, 2), print_fn=lambda *_: None)
    assert [(r[0], tuple(r[1]), r[2]) for r in rows] == [("0", (4, 6), 18), ("1", (4, 3), 21)]
