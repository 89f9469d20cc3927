"""compiler.nn: neural-network functions with PyTorch's signatures and conventions, built from
compiler.numpy and lax, so they trace, differentiate, vectorize and jit like anything else.

Layouts follow torch: conv2d is NCHW with OIHW weights (cross-correlation); linear layers use
``y = x @ w.T + b`` with w of shape (out_features, in_features).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from . import lax, numpy as cnp, random
from .ir.core import DEFAULT_FLOAT, dtype as to_dtype
from .tree_util import tree_leaves


def _typed(value, like):
    return np.asarray(value, cnp.result_type(like).np)[()]


# ---- activations -------------------------------------------------------------------------------

def relu(x):
    """max(x, 0); relu'(0) = 0 as in PyTorch."""
    return cnp.maximum(x, _typed(0, x))


def sigmoid(x):
    return lax.logistic(x)


def tanh(x):
    return cnp.tanh(x)


def gelu(x, approximate: str = "none"):
    """x * Phi(x) (exact, with erf) or torch's tanh approximation (approximate="tanh")."""
    if approximate == "tanh":
        inner = cnp.multiply(cnp.add(x, cnp.multiply(_typed(0.044715, x), cnp.power(x, 3))),
                             _typed(math.sqrt(2 / math.pi), x))
        return cnp.multiply(cnp.multiply(x, _typed(0.5, x)), cnp.add(cnp.tanh(inner), _typed(1, x)))
    if approximate != "none":
        raise ValueError(f"gelu approximate must be 'none' or 'tanh', got {approximate!r}")
    phi = cnp.multiply(cnp.add(lax.erf(cnp.multiply(x, _typed(1 / math.sqrt(2), x))), _typed(1, x)),
                       _typed(0.5, x))
    return cnp.multiply(x, phi)


def softplus(x, beta: float = 1.0, threshold: float = 20.0):
    """log(1 + exp(beta x)) / beta, linear above ``threshold`` (as torch); written as
    max(z, 0) + log1p(exp(-|z|)) so that value and gradient stay finite for any x (the selects keep
    the derivative at 0 equal to sigmoid(0) = 1/2)."""
    z = cnp.multiply(x, _typed(beta, x))
    positive = cnp.greater(z, _typed(0, x))
    smooth = cnp.add(cnp.where(positive, z, _typed(0, x)),
                     cnp.log1p(cnp.exp(cnp.where(positive, cnp.negative(z), z))))
    smooth = cnp.divide(smooth, _typed(beta, x))
    return cnp.where(cnp.greater(z, _typed(threshold, x)), x, smooth)


def leaky_relu(x, negative_slope: float = 0.01):
    """x for x > 0, negative_slope * x otherwise; the derivative at 0 is negative_slope (torch)."""
    return cnp.where(cnp.greater(x, _typed(0, x)), x, cnp.multiply(x, _typed(negative_slope, x)))


def logsumexp(x, axis=None, keepdims: bool = False):
    """log(sum(exp(x))) computed around the maximum: finite for large |x|, -inf for all -inf."""
    x = cnp.asarray(x)
    axes = tuple(range(cnp.ndim(x))) if axis is None else axis
    m = lax.stop_gradient(cnp.max(x, axis=axes, keepdims=True))
    m = cnp.where(cnp.isfinite(m), m, _typed(0, x))
    out = cnp.add(cnp.log(cnp.sum(cnp.exp(cnp.subtract(x, m)), axis=axes, keepdims=True)), m)
    return out if keepdims else cnp.squeeze(out, axis=axes)


def log_softmax(x, axis: int = -1):
    """(x - max) - log(sum(exp(x - max))): subtracting the maximum first keeps float32 precision
    when |x| is large (adding log(sum) back to a max of 1e4 would round it away)."""
    x = cnp.asarray(x)
    m = lax.stop_gradient(cnp.max(x, axis=axis, keepdims=True))
    m = cnp.where(cnp.isfinite(m), m, _typed(0, x))
    shifted = cnp.subtract(x, m)
    return cnp.subtract(shifted, cnp.log(cnp.sum(cnp.exp(shifted), axis=axis, keepdims=True)))


def softmax(x, axis: int = -1):
    m = lax.stop_gradient(cnp.max(x, axis=axis, keepdims=True))
    e = cnp.exp(cnp.subtract(x, m))
    return cnp.divide(e, cnp.sum(e, axis=axis, keepdims=True))


# ---- normalization -----------------------------------------------------------------------------

def _affine(y, weight, bias, shape):
    if weight is not None:
        y = cnp.multiply(y, cnp.reshape(weight, shape))
    if bias is not None:
        y = cnp.add(y, cnp.reshape(bias, shape))
    return y


def layer_norm(x, axis=-1, eps: float = 1e-5, weight=None, bias=None):
    """Normalize over ``axis`` (an int or a tuple of trailing axes), then scale and shift."""
    x = cnp.asarray(x)
    nd = cnp.ndim(x)
    axes = tuple(a % nd for a in ((axis,) if isinstance(axis, int) else axis))
    mean = cnp.mean(x, axis=axes, keepdims=True)
    var = cnp.mean(cnp.square(cnp.subtract(x, mean)), axis=axes, keepdims=True)
    y = cnp.multiply(cnp.subtract(x, mean), lax.rsqrt(cnp.add(var, _typed(eps, x))))
    shape = tuple(cnp.shape(x)[a] if a in axes else 1 for a in range(nd))
    return _affine(y, weight, bias, shape)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5):
    """Normalize each channel (axis 1) over the batch and spatial axes.

    training: batch statistics (biased variance), and the running statistics updated as torch does
    (unbiased variance); eval: the running statistics. Returns (y, (new_running_mean, new_running_var)).
    """
    x = cnp.asarray(x)
    nd = cnp.ndim(x)
    axes = (0,) + tuple(range(2, nd))
    shape = (1, cnp.shape(x)[1]) + (1,) * (nd - 2)
    if training:
        mean = cnp.mean(x, axis=axes)
        var = cnp.mean(cnp.square(cnp.subtract(x, cnp.reshape(mean, shape))), axis=axes)
        count = int(np.prod([cnp.shape(x)[a] for a in axes]))
        if running_mean is not None:
            unbiased = cnp.multiply(var, _typed(count / max(count - 1, 1), x))
            running_mean = cnp.add(cnp.multiply(running_mean, _typed(1 - momentum, x)),
                                   cnp.multiply(lax.stop_gradient(mean), _typed(momentum, x)))
            running_var = cnp.add(cnp.multiply(running_var, _typed(1 - momentum, x)),
                                  cnp.multiply(lax.stop_gradient(unbiased), _typed(momentum, x)))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm in eval mode (training=False) needs running_mean and running_var")
        mean, var = running_mean, running_var
    y = cnp.multiply(cnp.subtract(x, cnp.reshape(mean, shape)),
                     lax.rsqrt(cnp.add(cnp.reshape(var, shape), _typed(eps, x))))
    return _affine(y, weight, bias, shape), (running_mean, running_var)


# ---- convolution and pooling -------------------------------------------------------------------

def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v}")
    return v


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """torch.nn.functional.conv2d: x (N, C, H, W), w (O, C/groups, kH, kW); padding an int, a pair,
    'valid' or 'same' (stride 1)."""
    kh, kw = cnp.shape(w)[2:]
    dil = _pair(dilation, "dilation")
    if padding == "valid":
        pads = ((0, 0), (0, 0))
    elif padding == "same":
        if _pair(stride, "stride") != (1, 1):
            raise ValueError("padding='same' needs stride 1")
        pads = tuple(((k - 1) * d // 2, (k - 1) * d - (k - 1) * d // 2) for k, d in zip((kh, kw), dil))
    else:
        ph, pw = _pair(padding, "padding")
        pads = ((ph, ph), (pw, pw))
    y = lax.conv_general_dilated(x, w, _pair(stride, "stride"), pads, rhs_dilation=dil,
                                 feature_group_count=groups)
    if b is not None:
        y = cnp.add(y, cnp.reshape(b, (1, -1, 1, 1)))
    return y


def _pool_params(kernel_size, stride, padding):
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None else _pair(stride, "stride")
    p = _pair(padding, "padding")
    return (1, 1) + k, (1, 1) + s, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1]))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each window (padding counts as -inf); the gradient goes to each window's first max."""
    return lax.reduce_window(x, "max", *_pool_params(kernel_size, stride, padding))


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over each window, padding counted as zeros (torch's count_include_pad=True)."""
    window, strides, pads = _pool_params(kernel_size, stride, padding)
    total = lax.reduce_window(x, "sum", window, strides, pads)
    return cnp.divide(total, _typed(window[2] * window[3], x))


# ---- regularization and losses -----------------------------------------------------------------

def dropout(key, x, p: float, training: bool = True):
    """Zero each element with probability p and scale the rest by 1/(1-p); identity in eval mode."""
    if not training or p == 0:
        return x
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    keep = random.bernoulli(key, 1 - p, cnp.shape(x))
    return cnp.where(keep, cnp.divide(x, _typed(1 - p, x)), _typed(0, x))


def one_hot(labels, num_classes: int, dtype=None):
    d = to_dtype(dtype) if dtype is not None else DEFAULT_FLOAT
    classes = cnp.arange(num_classes, dtype=cnp.result_type(labels))
    return cnp.astype(cnp.equal(cnp.expand_dims(labels, -1), classes), d)


def cross_entropy(logits, labels):
    """Mean negative log-likelihood of integer labels under softmax(logits) (torch's default)."""
    logp = log_softmax(logits, axis=-1)
    picked = cnp.sum(cnp.multiply(logp, one_hot(labels, cnp.shape(logits)[-1], cnp.result_type(logits))),
                     axis=-1)
    return cnp.negative(cnp.mean(picked))


def mse(a, b):
    """Mean squared error."""
    d = cnp.subtract(a, b)
    return cnp.mean(cnp.multiply(d, d))


def linear(x, w, b=None):
    """torch.nn.functional.linear: x @ w.T + b, w of shape (out_features, in_features)."""
    y = cnp.matmul(x, cnp.transpose(w))
    return y if b is None else cnp.add(y, b)


def multi_head_attention(query, key, value, num_heads: int, w_q, w_k, w_v, w_o,
                         b_q=None, b_k=None, b_v=None, b_o=None, mask=None):
    """Scaled dot-product attention over ``num_heads`` heads, batch first: query (B, L, E), key and
    value (B, S, E); projections are linear layers (weights (E, E)). ``mask`` (L, S) or (B, L, S):
    True where attention is allowed, or an additive float mask. Returns (B, L, E)."""
    batch, length, embed = cnp.shape(query)
    if embed % num_heads:
        raise ValueError(f"embedding size {embed} is not divisible by num_heads {num_heads}")
    head = embed // num_heads

    def split_heads(t):
        b, n, _ = cnp.shape(t)
        return cnp.transpose(cnp.reshape(t, (b, n, num_heads, head)), (0, 2, 1, 3))

    q = split_heads(linear(query, w_q, b_q))
    k = split_heads(linear(key, w_k, b_k))
    v = split_heads(linear(value, w_v, b_v))
    scores = cnp.divide(cnp.matmul(q, cnp.swapaxes(k, -1, -2)), _typed(math.sqrt(head), q))
    if mask is not None:
        mask = cnp.asarray(mask)
        if cnp.ndim(mask) == 3:                   # (B, L, S): the same mask for every head
            mask = cnp.expand_dims(mask, 1)
        if cnp.result_type(mask).name == "bool":
            scores = cnp.where(mask, scores, _typed(-np.inf, scores))
        else:
            scores = cnp.add(scores, mask)
    attended = cnp.matmul(softmax(scores, axis=-1), v)
    merged = cnp.reshape(cnp.transpose(attended, (0, 2, 1, 3)), (batch, length, embed))
    return linear(merged, w_o, b_o)


# ---- initialization ----------------------------------------------------------------------------

def _fans(shape) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def kaiming_normal(key, shape, gain: float = math.sqrt(2.0), mode: str = "fan_in", dtype=None):
    """He initialization: normal with std gain / sqrt(fan), fan of a torch-layout weight."""
    fan_in, fan_out = _fans(tuple(shape))
    std = gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    return cnp.multiply(random.normal(key, shape, dtype), np.asarray(std, to_dtype(dtype or DEFAULT_FLOAT).np))


def xavier_uniform(key, shape, gain: float = 1.0, dtype=None):
    """Glorot initialization: uniform on +-gain * sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tuple(shape))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return random.uniform(key, shape, dtype, -bound, bound)


def xavier_normal(key, shape, gain: float = 1.0, dtype=None):
    fan_in, fan_out = _fans(tuple(shape))
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return cnp.multiply(random.normal(key, shape, dtype), np.asarray(std, to_dtype(dtype or DEFAULT_FLOAT).np))


# ---- inspection --------------------------------------------------------------------------------

def summary(fn: Callable, params: Any, *inputs, print_fn: Callable = print) -> list[tuple[str, tuple, int]]:
    """Print each layer's output shape and trainable parameter count, and return the rows.

    A layer is a top-level entry of ``params`` (a dict or a list of parameter pytrees); its output
    is the last value computed directly from its parameters (e.g. after the bias is added). Layers
    used inside lax.scan/cond/while are reported as "(inside scan)" etc."""
    from .tracing import trace
    names = list(params) if isinstance(params, dict) else list(range(len(params)))
    closed, _, _ = trace(fn, (params,) + tuple(inputs))
    invars = closed.jaxpr.invars
    owner = {}
    position = 0
    for name in (sorted(names) if isinstance(params, dict) else names):     # tree_flatten's order
        for _ in tree_leaves(params[name]):
            owner[invars[position]] = name
            position += 1
    rows = []
    for name in names:
        count = sum(int(np.size(leaf)) for leaf in tree_leaves(params[name]))
        mine = {v for v, o in owner.items() if o == name}
        shape = None
        for eqn in closed.jaxpr.eqns:
            if any(a in mine for a in eqn.inputs):
                # a layer used inside a loop or branch has no output of its own at this level
                shape = f"(inside {eqn.primitive.name})" if eqn.primitive.multiple_results else \
                    eqn.outvars[0].aval.shape
                mine |= set(eqn.outvars) if eqn.primitive.name in ("broadcast_in_dim", "reshape", "transpose") \
                    else set()
        rows.append((str(name), shape, count))
    total = sum(r[2] for r in rows)
    width = max([len(r[0]) for r in rows] + [5])
    print_fn(f"{'layer':<{width}}  {'output shape':<20} {'params':>10}")
    for name, shape, count in rows:
        print_fn(f"{name:<{width}}  {str(shape):<20} {count:>10,}")
    print_fn(f"{'total':<{width}}  {'':<20} {total:>10,}")
    return rows
