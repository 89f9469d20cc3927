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


# ---- convolutions ------------------------------------------------------------------------------

from compiler import lax  # noqa: E402
from compiler.ir import parse  # noqa: E402
from compiler.ir.core import DTYPES  # noqa: E402
from compiler.ir.errors import ShapeError  # noqa: E402
from compiler.primitives import linalg  # noqa: E402

I32 = DTYPES["i32"]
K1 = (rng.standard_normal((6, 2, 3, 3)) * 0.4).astype(np.float32)     # groups=2: (O, C/2, kh, kw)
K2 = (rng.standard_normal((5, 6, 2, 2)) * 0.3).astype(np.float32)
XC = rng.uniform(-1, 1, (3, 4, 9, 8)).astype(np.float32)


def int_conv_reference(x, w, stride, pad, groups):
    """Direct int64 cross-correlation (NCHW / OIHW), independent of the interpreter."""
    x = np.pad(x.astype(np.int64), [(0, 0), (0, 0), pad[0], pad[1]])
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    out = np.zeros((n, o, oh, ow), np.int64)
    for oc in range(o):
        g = oc // (o // groups)
        for i in range(oh):
            for j in range(ow):
                patch = x[:, g * cg:(g + 1) * cg, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
                out[:, oc, i, j] = (patch * w[oc].astype(np.int64)).sum(axis=(1, 2, 3))
    return out


def cnn(x):
    h = nn.relu(nn.conv2d(x, K1, stride=(1, 2), padding=1, groups=2))
    return nn.conv2d(h, K2)


CNN = tj.make_jaxpr(cnn)(XC)


def test_int8_conv_shape_dtype_and_interpreter_are_exact():
    r = np.random.default_rng(7)
    x = r.integers(-128, 128, (2, 4, 7, 6)).astype(np.int8)
    w = r.integers(-128, 128, (6, 2, 3, 2)).astype(np.int8)
    closed = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(
        x, w, (2, 1), ((1, 1), (0, 2)), feature_group_count=2, preferred_element_type=np.int32))(x, w)
    assert closed.jaxpr.outvars[0].aval.dtype == I32
    got = runtime.eval_jaxpr(closed, x, w)[0]
    np.testing.assert_array_equal(got, int_conv_reference(x, w, (2, 1), ((1, 1), (0, 2)), 2).astype(np.int32))
    # without a preferred type the int64 sum wraps to int8, as a numpy cast does
    plain = tj.make_jaxpr(lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((0, 0), (0, 0))))(x[:, :2], w)
    np.testing.assert_array_equal(runtime.eval_jaxpr(plain, x[:, :2], w)[0],
                                  int_conv_reference(x[:, :2], w, (1, 1), ((0, 0), (0, 0)), 1).astype(np.int8))
    text = str(closed)
    assert "preferred_element_type=i32" in text and str(parse(text)) == text


def test_conv_result_type_errors_and_no_integer_derivatives():
    x8, w8 = np.zeros((1, 2, 4, 4), np.int8), np.zeros((3, 2, 3, 3), np.int8)
    xf, wf = x8.astype(np.float32), w8.astype(np.float32)
    def conv(t):
        return lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((0, 0), (0, 0)), preferred_element_type=t)
    with pytest.raises(ShapeError, match="integer operands need an integer result"):
        tj.make_jaxpr(conv(np.float32))(x8, w8)
    with pytest.raises(ShapeError, match="does not suit f32"):
        tj.make_jaxpr(conv(np.int32))(xf, wf)
    with pytest.raises(ShapeError, match="booleans"):
        tj.make_jaxpr(conv(None))(x8.astype(bool), w8.astype(bool))
    params = dict(window_strides=(1, 1), padding=((0, 0), (0, 0)), lhs_dilation=(1, 1), rhs_dilation=(1, 1),
                  feature_group_count=1, preferred_element_type=I32)
    with pytest.raises(TypeError, match="no JVP for integer operands"):
        linalg.conv_general_dilated.jvp_rule((x8, w8), (x8, None), **params)
    with pytest.raises(TypeError, match="no VJP for integer operands"):
        linalg.conv_general_dilated.vjp_rule([np.zeros((1, 3, 2, 2), np.int32)], (x8, w8), None, **params)


def test_float_conv_with_a_wider_result_type_differentiates():
    """f32 x f32 -> f64: the gradient is the f32 program's (the cotangent is cast to the operands' type)."""
    r = np.random.default_rng(8)
    x, w = r.standard_normal((2, 3, 6, 6)).astype(np.float32), r.standard_normal((4, 3, 3, 3)).astype(np.float32)
    conv = lambda t: lambda x, w: lax.conv_general_dilated(  # noqa: E731
        x, w, (1, 1), ((1, 1), (1, 1)), preferred_element_type=t).sum()
    gw = tj.grad(conv(np.float64), argnums=(0, 1))(x, w)
    g32 = tj.grad(conv(None), argnums=(0, 1))(x, w)
    for a, b in zip(gw, g32):
        assert np.asarray(a).dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_int8_conv_batches_under_vmap():
    r = np.random.default_rng(9)
    xs = r.integers(-128, 128, (3, 2, 4, 5, 5)).astype(np.int8)
    w = r.integers(-128, 128, (6, 4, 2, 2)).astype(np.int8)
    f = lambda x: lax.conv_general_dilated(x, w, (1, 1), ((1, 0), (0, 1)), preferred_element_type=np.int32)  # noqa: E731
    got = runtime.eval_jaxpr(tj.make_jaxpr(tj.vmap(f))(xs), xs)[0]
    assert got.dtype == np.int32 and got.shape == (3, 2, 6, 5, 5)
    for b in range(3):
        np.testing.assert_array_equal(got[b], int_conv_reference(xs[b], w, (1, 1), ((1, 0), (0, 1)), 1))


def test_integer_conv_matches_a_numpy_integer_reference():
    """Static scales: per output channel (the kernel's axis 0) for weights, calibrated max for inputs."""
    q = quantize(CNN, "int8", activations="int8", calibration=[(XC,)])
    verify(q)
    convs = [e for e in q.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 2 and all(e.params["preferred_element_type"] == I32 for e in convs)
    assert all(e.inputs[0].aval.dtype.name == "i8" and e.inputs[1].aval.dtype.name == "i8" for e in convs)
    scales = [np.asarray(c) for c in q.consts if np.asarray(c).dtype == np.float32 and np.asarray(c).ndim == 4]
    assert [s.shape for s in scales] == [(6, 1, 1, 1), (5, 1, 1, 1)]

    def int_layer(x, w, amax_x, stride, pad, groups):
        sw = np.abs(w).max(axis=(1, 2, 3), keepdims=True) / 127
        wq = np.clip(np.round(w / sw), -127, 127).astype(np.int64)
        sx = np.float32(amax_x / 127)
        xq = np.clip(np.round(x / sx), -127, 127).astype(np.int64)
        acc = int_conv_reference(xq, wq, stride, pad, groups)
        return acc.astype(np.float32) * sx * sw.reshape(1, -1, 1, 1).astype(np.float32)

    h = np.maximum(int_layer(XC, K1, np.abs(XC).max(), (1, 2), ((1, 1), (1, 1)), 2), 0)
    h_float = runtime.eval_jaxpr(tj.make_jaxpr(lambda x: nn.relu(nn.conv2d(x, K1, stride=(1, 2), padding=1,
                                                                            groups=2)))(XC), XC)[0]
    expected = int_layer(h, K2, np.abs(h_float).max(), (1, 1), ((0, 0), (0, 0)), 1)
    np.testing.assert_allclose(run(q, XC), expected, rtol=1e-4, atol=1e-5)


def test_dynamic_conv_quantization_is_close_and_per_tensor_works():
    for per_channel in (True, False):
        q = quantize(CNN, "int8", activations="int8", per_channel=per_channel)
        verify(q)
        assert sum(e.primitive.name == "conv_general_dilated" and e.outvars[0].aval.dtype == I32 for e in q.eqns) == 2
        assert quantization_report(CNN, q, [(XC,)]).relative_error < 0.05
    # weights only: the conv stays float, reading dequantized weights
    q = quantize(CNN, "int8")
    assert all(e.outvars[0].aval.dtype.name == "f32" for e in q.eqns if e.primitive.name == "conv_general_dilated")
