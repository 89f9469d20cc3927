"""The worked-problem examples (examples/*.py, one per exercise) print answers computed by the
compiler; these tests call each script's main() and check the numbers it returns against values
derived independently: closed forms worked out by hand, sympy, plain numpy / Python loops. Nothing
here compares a script with its own printout.
"""
from __future__ import annotations

import importlib.util
import itertools
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import sympy as sp  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = ["activations", "seed_function", "sum_times_w3", "matmul_exp_mse", "scalar_backprop",
           "normalization_and_conv", "remat_chain", "low_precision_facts", "reliability"]


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"worked_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name: str, out: Path, *argv: str) -> dict:
    return load(name).main(["--out", str(out), *argv])


def is_png(path) -> bool:
    p = Path(path)
    return p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---- 1. activations ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def activations(tmp_path_factory):
    return run_main("activations", tmp_path_factory.mktemp("activations"))


# closed-form derivatives, with PyTorch's conventions at the kink x = 0
CLOSED_FORM = {
    "sigmoid": lambda x: sigmoid(x) * (1 - sigmoid(x)),
    "softplus": lambda x: sigmoid(x),
    "leaky_relu(0.02)": lambda x: np.where(x > 0, 1.0, 0.02),
    "heaviside": lambda x: np.zeros_like(x),
    "abs": lambda x: np.sign(x),
}


@pytest.mark.parametrize("name", list(CLOSED_FORM))
def test_activation_derivatives(activations, name):
    x = sp.Symbol("x", real=True)
    formula = activations["formula"][name]
    for point in (-3.3, -0.7, 0.4, 2.9):          # away from the kink
        got = float(formula.subs(x, point))             # the symbol is named after f's parameter
        assert got == pytest.approx(float(CLOSED_FORM[name](np.float64(point))), abs=1e-12), (name, point)
    grid = activations["grid"].astype(np.float64)
    np.testing.assert_allclose(activations["derivative"][name], CLOSED_FORM[name](grid), atol=2e-6)
    expected_at_0 = {"sigmoid": 0.25, "softplus": 0.5, "leaky_relu(0.02)": 0.02, "heaviside": 0.0, "abs": 0.0}
    assert activations["grad_at_0"][name] == pytest.approx(expected_at_0[name], abs=1e-7)


@pytest.mark.parametrize("name", ["leaky_relu(0.02)", "heaviside", "abs", "sigmoid"])
def test_activation_nondifferentiable_points(activations, name):
    expected = [] if name == "sigmoid" else [0]
    assert [float(p) for p in activations["nondifferentiable"][name]] == expected


def test_softplus_is_differentiable_everywhere(activations):
    assert list(activations["nondifferentiable"]["softplus"]) == []


def test_activation_derivatives_batched_by_vmap(activations):
    assert set(activations["method"].values()) == {"vmap(grad(f))"}


def test_activation_plot(activations):
    assert is_png(activations["plot"])


# ---- 2. the seed function ----------------------------------------------------------------------

def _seed(x1, x2=0.5):
    return 1.0 / (1.0 + math.exp(-(0.75 * math.log(x1 / 2) + x1 + math.log(3 * x2))))


def _bisect(g, lo, hi, iters=200):
    """root of g on [lo, hi], g(lo) <= 0 < g(hi) (or the reverse)."""
    glo = g(lo)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if (g(mid) <= 0) == (glo <= 0):
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def test_seed_function(tmp_path):
    r = run_main("seed_function", tmp_path)
    s = _seed(1.0)
    assert r["value"] == pytest.approx(s, rel=1e-6)
    d1, d2 = s * (1 - s) * (0.75 / 1.0 + 1.0), s * (1 - s) / 0.5        # chain rule by hand
    assert r["grad"][0] == pytest.approx(d1, rel=1e-5)
    assert r["grad"][1] == pytest.approx(d2, rel=1e-5)
    assert r["jvp_dx1"] == pytest.approx(d1, rel=1e-5)
    assert r["check_ok"]
    # the same numbers from sympy directly
    x1, x2 = sp.symbols("x1 x2", positive=True)
    f = 1 / (1 + sp.exp(-(sp.Rational(3, 4) * sp.log(x1 / 2) + x1 + sp.log(3 * x2))))
    assert float(sp.diff(f, x1).subs({x1: 1, x2: sp.Rational(1, 2)})) == pytest.approx(d1, rel=1e-12)
    assert r["delta_first_order"] == pytest.approx(0.05 / d1, rel=1e-5)
    assert r["delta_first_order"] == pytest.approx(0.1382, abs=1e-4)
    up = _bisect(lambda d: _seed(1.0 + d) - s - 0.05, 0.0, 5.0)
    down = _bisect(lambda d: s - _seed(1.0 - d) - 0.05, 0.0, 1.0 - 1e-12)
    assert r["delta_up"] == pytest.approx(up, rel=1e-6)
    assert r["delta_down"] == pytest.approx(down, rel=1e-6)
    assert r["delta_exact"] == pytest.approx(min(up, down), rel=1e-6)
    assert "logistic" in r["ir"] and r["ir"].count("log") >= 3
    assert is_png(r["plot"])


# ---- 3. L = (w1 + w2) * w3 ---------------------------------------------------------------------

def _graphviz_available() -> bool:
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return shutil.which("dot") is not None


@pytest.mark.parametrize("w, lr", [((2.0, -3.0, 4.0), 0.01), ((0.5, 1.5, -2.0), 0.1)])
def test_sum_times_w3(tmp_path, w, lr):
    r = run_main("sum_times_w3", tmp_path, "--w", ",".join(map(str, w)), "--lr", str(lr))
    w1, w2, w3 = w
    assert r["L"] == pytest.approx((w1 + w2) * w3)
    grads = (w3, w3, w1 + w2)
    assert r["grads"] == pytest.approx(grads)
    new = tuple(wi - lr * gi for wi, gi in zip(w, grads))
    assert r["new_w"] == pytest.approx(new, rel=1e-6)
    assert r["new_L"] == pytest.approx((new[0] + new[1]) * new[2], rel=1e-5)
    assert r["new_L"] < r["L"]                                  # a descent step
    assert r["new_grads"] == pytest.approx((new[2], new[2], new[0] + new[1]), rel=1e-5)
    if _graphviz_available():
        assert len(r["pictures"]) == 2 and all(is_png(p) for p in r["pictures"])
    else:
        assert r["pictures"] == []


# ---- 4. matmul, exp, MSE -----------------------------------------------------------------------

def test_matmul_exp_mse(tmp_path):
    r = run_main("matmul_exp_mse", tmp_path)
    x, W, y = (np.asarray(r[k], np.float64) for k in ("x", "W", "y"))
    v4 = x @ W
    v5 = np.exp(v4)
    v6 = v4 + v5
    N = v6.size
    v7 = np.mean((v6 - y) ** 2)
    d6 = 2 * (v6 - y) / N
    d4 = d6 * (1 + np.exp(v4))
    dW = x.T @ d4
    vals, adj = r["values"], r["adjoints"]
    np.testing.assert_allclose(vals["v4"], v4, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(vals["v6"], v6, rtol=1e-6)
    assert float(vals["v7"]) == pytest.approx(v7, rel=1e-6)
    assert float(adj["v7"]) == 1.0
    np.testing.assert_allclose(adj["v6"], d6, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adj["v5"], d6, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adj["v4"], d4, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(adj["W"], dW, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r["dW_explain"], dW, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r["dW_vjp"], dW, rtol=1e-5, atol=1e-7)


# ---- 5. scalar backprop ------------------------------------------------------------------------

def test_scalar_backprop(tmp_path, capsys):
    r = run_main("scalar_backprop", tmp_path)
    printed = capsys.readouterr().out
    assert r["power4_value"] == 2.0 ** 4
    assert r["power4_grad"] == 4 * 2.0 ** 3 == 32
    assert sorted(r["adjoints"]["power4"].values()) == [1.0, 2 * 4.0, 32.0]   # z3̄, z2̄ = 2 z2, x̄
    assert r["log_exp_grad"] == (3.0, 2.0)
    x1, h0, wr, wi, wo = 2.0, 3.0, 4.0, 5.0, 6.0
    pre = wr * h0 + wi * x1
    assert r["rnn_value"] == wo * max(pre, 0.0) == 132
    assert r["rnn_grad"] == (wo * h0, wo * x1, max(pre, 0.0)) == (18, 12, 22)
    assert "reverse pass" in printed and printed.count("(seed)") == 3


def test_scalar_backprop_table_running_totals(tmp_path):
    """z3 = z2 * z2 sends 4 to z2-bar twice: the table's running total must read 4, then 8."""
    r = run_main("scalar_backprop", tmp_path)
    power4 = r["explanations"][0]
    rows = [[float(total) for _, _, total in step.contributions] for step in power4.backward if step.contributions]
    assert rows == [[4.0, 8.0], [16.0, 32.0]]


# ---- 6. normalization, convolution, pooling, im2col, parameter counts --------------------------

def _naive_conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, o, oh, ow))
    for a in range(n):
        for f in range(o):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[a, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
                    y[a, f, i, j] = np.sum(patch * w[f]) + (b[f] if b is not None else 0.0)
    return y


def _naive_im2col(x, kh, kw, stride, pad):
    n, c, h, wd = x.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    rows = [xp[a, :, i * stride:i * stride + kh, j * stride:j * stride + kw].ravel()
            for a in range(n) for i in range(oh) for j in range(ow)]
    return np.array(rows)


def _naive_max_pool(x, k, s):
    oh, ow = (x.shape[0] - k) // s + 1, (x.shape[1] - k) // s + 1
    return np.array([[x[i * s:i * s + k, j * s:j * s + k].max() for j in range(ow)] for i in range(oh)])


def test_normalization_and_conv(tmp_path):
    r = run_main("normalization_and_conv", tmp_path)
    X = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 9.0]])
    eps = 1e-5
    # LayerNorm: per row
    mu, var = X.mean(axis=1, keepdims=True), X.var(axis=1, keepdims=True)
    ln = (X - mu) / np.sqrt(var + eps)
    np.testing.assert_allclose(r["layer_norm"], ln, rtol=1e-5, atol=1e-6)
    assert r["layer_norm"][0] == pytest.approx([-math.sqrt(1.5), 0.0, math.sqrt(1.5)], abs=1e-4)
    np.testing.assert_allclose(r["layer_norm_affine"], ln * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0], rtol=1e-5,
                               atol=1e-6)
    # BatchNorm: per column over the batch; a batch of two gives +-sqrt(var/(var+eps))
    mu_c, var_c = X.mean(axis=0), X.var(axis=0)
    bn = (X - mu_c) / np.sqrt(var_c + eps)
    np.testing.assert_allclose(r["batch_norm"], bn, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r["running_mean"], 0.1 * mu_c, rtol=1e-6)
    np.testing.assert_allclose(r["running_var"], 0.9 + 0.1 * X.var(axis=0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(r["batch_norm_eval"], (X - 0.1 * mu_c) / np.sqrt(0.9 + 0.1 * X.var(axis=0, ddof=1)
                                                                                  + eps), rtol=1e-5)
    # conv2d with padding and stride
    x, w, b = r["conv_x"], r["conv_w"], r["conv_b"]
    s, p = r["conv_stride"], r["conv_padding"]
    expected = _naive_conv(x.astype(np.float64), w.astype(np.float64), b, s, p)
    assert r["conv_y"].shape == (1, 2, (5 + 2 * p - 3) // s + 1, (5 + 2 * p - 3) // s + 1) == expected.shape
    assert r["conv_out_size"] == 3
    np.testing.assert_allclose(r["conv_y"], expected, rtol=1e-6, atol=1e-5)
    # max pooling
    grid = r["pool_input"][0, 0]
    np.testing.assert_array_equal(r["pooled"][0, 0], _naive_max_pool(grid, 2, 2))
    np.testing.assert_array_equal(r["pooled3"][0, 0], _naive_max_pool(grid, 3, 1))
    mask = np.zeros_like(grid)
    for i in range(2):
        for j in range(2):
            win = grid[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            a, c = np.unravel_index(np.argmax(win), win.shape)
            mask[2 * i + a, 2 * j + c] = 1
    np.testing.assert_array_equal(r["pool_grad"][0, 0], mask)
    # im2col
    xi, wi = r["im2col_x"], r["im2col_w"]
    n, c, h, _ = xi.shape
    o, _, k, _ = wi.shape
    oh = (h + 2 - k) // 1 + 1
    assert r["im2col_shape"] == (n * oh * oh, c * k * k) == (72, 27)
    np.testing.assert_allclose(r["im2col_cols"], _naive_im2col(xi, k, k, 1, 1), rtol=1e-6, atol=1e-6)
    direct = _naive_conv(xi.astype(np.float64), wi.astype(np.float64), None, 1, 1)
    np.testing.assert_allclose(r["im2col_y"], direct, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r["im2col_direct"], direct, rtol=1e-4, atol=1e-4)
    # parameter counts: Linear(i, o) has i*o + o; LayerNorm(f) 2f; Conv(c, o, k) o*c*k*k + o
    assert [(n_, c_) for n_, _, c_ in r["mlp_summary"]] == [("fc1", 2 * 6 + 6), ("norm", 2 * 6), ("fc2", 6 + 1)]
    assert [(n_, c_) for n_, _, c_ in r["cnn_summary"]] == [("conv1", 4 * 1 * 9 + 4), ("conv2", 8 * 4 * 9 + 8),
                                                           ("fc", 32 * 10 + 10)]
    assert [tuple(s_) for _, s_, _ in r["cnn_summary"]] == [(2, 4, 8, 8), (2, 8, 4, 4), (2, 10)]
    assert is_png(r["plot"])


# ---- 7. rematerialization of a matmul chain ----------------------------------------------------

def _hand_activation_buffers(num_layers: int, k: int | None) -> int:
    """Buffers of n*d the backward of the chain keeps at its worst point. Without checkpoints:
    h1..h_{L-1} plus the incoming and outgoing cotangent. With segments of k layers: while segment j
    is differentiated, the j-1 boundaries before it, its own k-1 recomputed insides, 2 cotangents."""
    if k is None:
        return (num_layers - 1) + 2
    segments = [min(k, num_layers - s) for s in range(0, num_layers, k)]
    return max(j + (size - 1) for j, size in enumerate(segments)) + 2


def _hand_recomputed(num_layers: int, k: int | None) -> int:
    """Each segment but the last repeats its first k-1 matmuls (the last one's forward is dead)."""
    if k is None:
        return 0
    segments = [min(k, num_layers - s) for s in range(0, num_layers, k)]
    return sum(size - 1 for size in segments[:-1])


@pytest.mark.parametrize("layers, n, d", [(10, 512, 16), (8, 256, 8)])
def test_remat_chain(tmp_path, layers, n, d):
    r = run_main("remat_chain", tmp_path, "--layers", str(layers), "--n", str(n), "--d", str(d))
    unit = n * d * 4
    assert r["unit_bytes"] == unit
    rows = {row["label"]: row for row in r["rows"]}
    for row in r["rows"]:
        assert row["grads_match"], row["label"]
        assert row["input_bytes"] == (n * d + layers * d * d) * 4
        assert row["output_bytes"] == layers * d * d * 4
        assert row["input_bytes"] + row["activation_bytes"] <= row["peak_bytes"] \
            <= row["input_bytes"] + row["activation_bytes"] + row["output_bytes"]
    none = rows["none"]
    # about num_layers activations without checkpoints, within a few buffers
    assert abs(none["activation_bytes"] - layers * unit) <= 2 * unit
    assert abs(none["activation_bytes"] - _hand_activation_buffers(layers, None) * unit) <= unit
    assert none["recomputed_eqns"] == 0
    for k in (1, 2, 3, 5):
        row = rows[f"every_k={k}"]
        # about num_layers / k boundaries (+ one segment's insides), within a few buffers
        assert abs(row["activation_bytes"] - (layers / k) * unit) <= (k + 2) * unit, k
        assert abs(row["activation_bytes"] - _hand_activation_buffers(layers, k) * unit) <= unit, k
        assert row["recomputed_eqns"] == _hand_recomputed(layers, k), k
    k_sqrt = round(math.sqrt(layers))
    assert abs(rows["sqrt"]["activation_bytes"] - _hand_activation_buffers(layers, k_sqrt) * unit) <= unit
    assert rows["sqrt"]["activation_bytes"] < none["activation_bytes"]
    assert is_png(r["plot"])


# ---- 8. low precision ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def low_precision(tmp_path_factory):
    return run_main("low_precision_facts", tmp_path_factory.mktemp("low_precision"))


def test_low_precision_facts(low_precision):
    r = low_precision
    probe, b, h = r["range_probe"], r["range_bf16"], r["range_fp16"]
    fp16_max = (2 - 2.0 ** -10) * 2.0 ** 15                 # 5 exponent bits, 10 fraction bits
    assert fp16_max == 65504
    for v, vb, vh in zip(probe.astype(np.float64), b.astype(np.float64), h.astype(np.float64)):
        if v >= 1e-38:                                      # bf16: float32's exponent range
            assert np.isfinite(vb) and abs(vb - v) / v <= 2.0 ** -8, v
        if v >= fp16_max + 2.0 ** 4:                        # rounds past the largest fp16
            assert np.isinf(vh), v
        elif v >= 6.2e-5:                                   # fp16 normal range
            assert abs(vh - v) / v <= 2.0 ** -11, v
    assert h[list(probe).index(np.float32(65504.0))] == 65504.0
    assert h[list(probe).index(np.float32(1e-8))] == 0.0     # below fp16's smallest subnormal 2^-24 / 2
    assert 2.0 ** -8 * 0.99 <= r["rel_error_bf16"] <= 2.0 ** -8       # 8 significant bits
    assert 2.0 ** -11 * 0.99 <= r["rel_error_fp16"] <= 2.0 ** -11     # 11 significant bits
    assert r["eps_bf16"] == 2.0 ** -7 and r["eps_fp16"] == 2.0 ** -10
    assert np.isinf(r["square_300"]["float16"]) and np.isinf(r["exp_12"]["float16"])
    assert r["square_300"]["bfloat16"] == pytest.approx(90000, rel=2.0 ** -8)
    assert r["exp_12"]["bfloat16"] == pytest.approx(math.exp(12), rel=2.0 ** -8)
    assert r["square_300"]["float32"] == 90000
    # 2:4: every group of 4 keeps exactly its 2 largest magnitudes
    w, pw = r["w_dense"], r["w_pruned"]
    assert not r["valid_before"] and r["valid_after"] and not r["valid_bad"]
    for g, pg in zip(w.reshape(-1, 4), pw.reshape(-1, 4)):
        keep = set(np.argsort(-np.abs(g))[:2])
        assert {i for i in range(4) if pg[i] != 0} == keep
        assert all(pg[i] == g[i] for i in keep)
    # weights vs activations
    weight, act = r["weight"], r["activations"]
    assert weight.std() == pytest.approx(math.sqrt(2 / weight.shape[1]), rel=0.05)   # Kaiming
    assert act.min() == 0.0 and act.max() > 4 * np.abs(weight).max()
    scales = np.abs(weight).max(axis=1) / 127                                          # per output channel
    np.testing.assert_allclose(np.asarray(r["int8_scales"]).ravel(), scales, rtol=1e-6)
    assert r["per_tensor_scale"] == pytest.approx(np.abs(weight).max() / 127, rel=1e-6)
    assert r["act_scale"] == pytest.approx(act.max() / 127, rel=1e-6)
    assert r["rel_error_per_channel"] < r["rel_error_per_tensor"]
    assert is_png(r["plot"])


def test_low_precision_activations_match_numpy(low_precision):
    """The layer's activations are relu(x @ W.T): recompute them with numpy from the same key-drawn x."""
    from compiler import random as jr
    r = low_precision
    _, k2 = jr.split(jr.PRNGKey(0))
    x = np.asarray(jr.normal(k2, (512, 128)), np.float64)
    np.testing.assert_allclose(r["activations"], np.maximum(x @ r["weight"].T.astype(np.float64), 0), atol=1e-4)


# ---- 9. reliability ----------------------------------------------------------------------------

def _brute_force(q):
    """Enumerate every outcome with plain Python: (A or B) and C and (D or E)."""
    n = len(q)
    p_ok = 0.0
    ok_and_reliable = [0.0] * n
    fail_and_failed = [0.0] * n
    for state in itertools.product((True, False), repeat=n):
        p = 1.0
        for s, qi in zip(state, q):
            p *= (1 - qi) if s else qi
        a, b, c, d, e = state
        if (a or b) and c and (d or e):
            p_ok += p
            for i in range(n):
                ok_and_reliable[i] += p if state[i] else 0.0
        else:
            for i in range(n):
                fail_and_failed[i] += p if not state[i] else 0.0
    return p_ok, [v / p_ok for v in ok_and_reliable], [v / (1 - p_ok) for v in fail_and_failed]


@pytest.mark.parametrize("q", [(0.1, 0.2, 0.05, 0.3, 0.15), (0.5, 0.01, 0.2, 0.05, 0.4)])
def test_reliability(tmp_path, q):
    r = run_main("reliability", tmp_path, "--q", ",".join(map(str, q)))
    p_ok, given_ok, given_fail = _brute_force(q)
    qa, qb, qc, qd, qe = q
    assert p_ok == pytest.approx((1 - qa * qb) * (1 - qc) * (1 - qd * qe), rel=1e-12)
    assert r["p_system"] == pytest.approx(p_ok, rel=1e-12)
    np.testing.assert_allclose(r["p_reliable_given_ok"], given_ok, rtol=1e-12)
    np.testing.assert_allclose(r["p_failed_given_failed"], given_fail, rtol=1e-12)
    assert r["inspect_first"] == "ABCDE"[int(np.argmin(given_ok))]
    assert r["likely_failed"] == "ABCDE"[int(np.argmax(given_fail))]
    # Birnbaum importance dP/dr_i by central differences on the brute force
    h = 1e-6
    for i in range(5):
        up, dn = list(q), list(q)
        up[i] -= h
        dn[i] += h
        assert r["birnbaum"][i] == pytest.approx((_brute_force(up)[0] - _brute_force(dn)[0]) / (2 * h), rel=1e-6)
    assert r["p_reliable_given_ok"][2] == pytest.approx(1.0)    # C is in series: the system works => C works
    assert is_png(r["plot"])


# ---- every script runs as a user runs it ------------------------------------------------------

@pytest.mark.parametrize("name", ["scalar_backprop", "reliability", "remat_chain"])
def test_script_runs_from_the_command_line(tmp_path, name):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--out", str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip()


def test_matmul_benchmark_measures_correct_products(tmp_path):
    pytest.importorskip("matplotlib")
    import importlib
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    try:
        rows = importlib.import_module("matmul_benchmark").main(["--quick", "--out", str(tmp_path)])
    finally:
        sys.path.pop(0)
    assert [r[0] for r in rows] == [32, 64, 128]
    assert all(r[1] > 0 and r[2] > 0 for r in rows)          # both throughputs measured
    assert max(r[3] for r in rows) < 1e-5                    # the kernel computed the right product
    assert (tmp_path / "matmul_benchmark.png").exists()
