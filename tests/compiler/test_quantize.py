"""quantize: weights in fewer bits, integer matmuls; checked against numpy re-implementations."""
import ml_dtypes
import numpy as np
import pytest

import compiler as tj
import runtime
from compiler import nn
from compiler.ir import verify
from compiler.passes import quantization_report, quantize

rng = np.random.default_rng(0)
W1 = (rng.standard_normal((16, 32)) * 0.3).astype(np.float32)
B1 = (rng.standard_normal(32) * 0.1).astype(np.float32)
W2 = (rng.standard_normal((32, 10)) * 0.3).astype(np.float32)
X = rng.standard_normal((8, 16)).astype(np.float32)


def mlp(x):
    return nn.relu(x @ W1 + B1) @ W2


FLOAT = tj.make_jaxpr(mlp)(X)


def run(closed, x=X):
    return runtime.eval_jaxpr(closed, x)[0]


def weights_of(closed, dtype):
    return [c for c in closed.consts if np.asarray(c).dtype == dtype]


def test_int8_per_channel_dequantizes_within_half_a_step():
    q = quantize(FLOAT, "int8")
    verify(q)
    # the program reads w_hat = q * scale: rebuild it by hand from the stored constants
    stored = weights_of(q, np.int8)
    scales = [c for c in q.consts if np.asarray(c).dtype == np.float32 and np.asarray(c).ndim == 2]
    for w, s, qw in zip((W1, W2), scales, stored):
        assert s.shape == (1, w.shape[1])                               # one scale per output channel
        np.testing.assert_allclose(s[0], np.abs(w).max(axis=0) / 127, rtol=1e-6)
        assert np.all(np.abs(qw.astype(np.float32) * s - w) <= s / 2 + 1e-7)
    y = run(q)
    w1 = stored[0].astype(np.float32) * scales[0]
    w2 = stored[1].astype(np.float32) * scales[1]
    np.testing.assert_allclose(y, np.maximum(X @ w1 + B1, 0) @ w2, rtol=1e-5, atol=1e-6)


def test_affine_int8_and_int4_ranges():
    for kind, (lo, hi) in (("int8", (-128, 127)), ("int4", (-8, 7))):
        q = quantize(FLOAT, kind, symmetric=False)
        verify(q)
        stored = [np.asarray(c).astype(np.int32) for c in q.consts
                  if np.asarray(c).dtype in (np.int8, ml_dtypes.int4) and np.asarray(c).ndim == 2 and np.asarray(c).shape[0] > 1]
        assert stored and all(s.min() >= lo and s.max() <= hi for s in stored)


@pytest.mark.parametrize("kind, np_type", [("fp16", np.float16), ("bf16", ml_dtypes.bfloat16)])
def test_float_weight_types_are_exact_casts(kind, np_type):
    q = quantize(FLOAT, kind)
    w1 = W1.astype(np_type).astype(np.float32)
    w2 = W2.astype(np_type).astype(np.float32)
    np.testing.assert_allclose(run(q), np.maximum(X @ w1 + B1, 0) @ w2, rtol=1e-6, atol=1e-6)


def test_integer_matmul_matches_a_numpy_integer_reference():
    q = quantize(FLOAT, "int8", activations="int8", calibration=[(X,)])
    verify(q)
    names = [e.primitive.name for e in q.eqns]
    assert names.count("dot_general") == 2
    assert all(e.params.get("preferred_element_type") is not None for e in q.eqns if e.primitive.name == "dot_general")

    def int_layer(x, w, amax_x):
        sw = np.abs(w).max(axis=0, keepdims=True) / 127
        wq = np.clip(np.round(w / sw), -127, 127).astype(np.int64)
        sx = amax_x / 127
        xq = np.clip(np.round(x / sx), -127, 127).astype(np.int64)
        return (xq @ wq).astype(np.float32) * np.float32(sx) * sw.astype(np.float32)

    h = np.maximum(int_layer(X, W1, np.abs(X).max()) + B1, 0)
    h_float = np.maximum(X @ W1 + B1, 0)
    expected = int_layer(h, W2, np.abs(h_float).max())          # static scale from the float program
    np.testing.assert_allclose(run(q), expected, rtol=1e-4, atol=1e-5)


def test_errors_order_by_precision_and_weights_shrink():
    reports = {k: quantization_report(FLOAT, quantize(FLOAT, k), [(X,)]) for k in ("fp16", "bf16", "int8", "int4")}
    errors = [reports[k].relative_error for k in ("fp16", "bf16", "int8", "int4")]
    assert errors == sorted(errors) and errors[0] < 1e-3 and errors[-1] < 0.5
    assert reports["int4"].weight_bytes_quantized < reports["int8"].weight_bytes_quantized < reports["int8"].weight_bytes_float


def test_dynamic_activation_quantization_and_bad_options():
    q = quantize(FLOAT, "int8", activations="int8")                # no calibration: per-batch scales
    assert quantization_report(FLOAT, q, [(X,)]).relative_error < 0.05
    with pytest.raises(ValueError, match="weights must be"):
        quantize(FLOAT, "int3")
    with pytest.raises(ValueError, match="symmetric int8"):
        quantize(FLOAT, "int4", activations="int8")
