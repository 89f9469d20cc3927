"""Full benchmark: tracejit (LLVM and numpy backends) against numpy eager, jax.jit (CPU) and PyTorch eager.

    python bench/run.py [--quick] [--write] [--repeat N]

One process times every workload on every runner and prints a markdown table of best-of-N wall
times (after a warm-up call) and the ratios of the others to tracejit's LLVM backend (> 1: tracejit is
faster). It also measures the machine: memory bandwidth (numpy copy and triad on large arrays) and
numpy BLAS GFLOP/s with one thread and with all threads (threadpoolctl), and checks the performance
targets of DESIGN.md. tracejit's native kernels run on ``runtime.llvm.get_num_threads()`` threads
(TRACEJIT_NUM_THREADS, default: the CPUs this process may use); each row notes how many threads its
kernel was compiled for, and matmul is compared with BLAS limited to that same thread count. ``--write`` replaces bench/RESULTS.md (keeping its "Remat" section);
``--quick`` uses small sizes and few repeats (a smoke run, < 60 s).

jax and torch are optional: a missing one leaves its column empty with a note. OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE (set in some environments for old OpenBLAS builds, halving BLAS speed) are removed by
re-executing the script without them, so BLAS runs at full speed here only.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import time
import traceback
import warnings

from benchutil import BLAS_VARS as _BLAS_VARS, full_speed_blas  # noqa: E402

if __name__ == "__main__":
    full_speed_blas()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
from compiler import nn  # noqa: E402
from runtime import llvm  # noqa: E402

try:
    import jax
    import jax.numpy as jnp
    jax.config.update("jax_enable_x64", True)      # for the f64 matmul; f32 inputs stay f32
    JAX_NOTE = f"jax {jax.__version__} ({jax.devices()[0].platform})"
except Exception as e:  # pragma: no cover - depends on the environment
    jax = jnp = None
    JAX_NOTE = f"jax not available ({type(e).__name__}): its column is empty; `pip install jax jaxlib`"

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # torch's OpenMP threads must not spin against BLAS's
try:
    import torch
    TORCH_NOTE = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
except Exception as e:  # pragma: no cover
    torch = None
    TORCH_NOTE = f"torch not available ({type(e).__name__}): its column is empty"

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_info = threadpool_limits = None

RUNNERS = ("tj llvm", "tj numpy", "numpy", "jax.jit", "torch")


# ----------------------------------------------------------------------------------------- timing

MIN_SECONDS = 0.25      # keep sampling a cheap call for this long (at most MAX_SAMPLES): on a shared
MAX_SAMPLES = 300       # 2-core machine a 2-thread call waits out a scheduler slice when a core is taken


def best_of(fn, repeat: int, inner: int = 1) -> tuple[float, float]:
    """(best, median) seconds per call of fn after a warm-up call; ``inner`` calls per sample.

    At least ``repeat`` samples, more (up to MAX_SAMPLES) while less than MIN_SECONDS has been spent.
    """
    fn()
    ts = []
    start = time.perf_counter()
    while len(ts) < repeat or (time.perf_counter() - start < MIN_SECONDS and len(ts) < MAX_SAMPLES):
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t) / inner)
    return min(ts), statistics.median(ts)


def _jax_block(out):
    for leaf in jax.tree_util.tree_leaves(out):
        leaf.block_until_ready()
    return out


class Row:
    def __init__(self, name: str):
        self.name = name
        self.t: dict[str, float | None] = {r: None for r in RUNNERS}
        self.notes: list[str] = []


class Bench:
    def __init__(self, quick: bool, repeat: int):
        self.quick, self.repeat = quick, repeat
        self.rows: list[Row] = []
        self.extra: dict = {}

    def time(self, row: Row, runner: str, fn, repeat: int | None = None, inner: int = 1, blas_both: bool = True):
        """Time one cell; an exception becomes a note instead of stopping the run.

        numpy eager is timed with its BLAS on all threads and on one (threadpoolctl) and keeps the
        better: on a shared 2-core machine a 2-thread BLAS call stalls whenever a core is taken.
        """
        try:
            row.t[runner] = best_of(fn, repeat or self.repeat, inner)[0]
            if runner == "numpy" and blas_both and threadpool_limits is not None:
                with threadpool_limits(1, user_api="blas"):
                    t1 = best_of(fn, repeat or self.repeat, inner)[0]
                if t1 < row.t[runner] * 0.8:
                    row.notes.append(f"numpy best with 1 BLAS thread ({t1 * 1e3:.3g} ms; all threads "
                                     f"{row.t[runner] * 1e3:.3g} ms)")
                row.t[runner] = min(row.t[runner], t1)
        except Exception as e:  # noqa: BLE001
            row.notes.append(f"{runner} failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")

    def tj_pair(self, row: Row, f, args, repeat: int | None = None, check=None, slow_repeat: int | None = None):
        """tracejit's two backends; notes which backend ran (a fallback warning is caught)."""
        jl = tj.jit(f)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                lowered = jl.lower(*args)
                lowered.compile()
                out = jl(*args)
            used = getattr(lowered, "backend_used", "llvm")
            fell = [w for w in caught if issubclass(w.category, RuntimeWarning)]
            if used != "llvm" or fell:
                msg = str(fell[0].message) if fell else "fell back"
                row.notes.append(f"tj llvm FELL BACK to the interpreter: {msg[:110]}")
            else:
                k = getattr(getattr(lowered, "_compiled", None), "kernel", None)
                threads = getattr(k, "threads", 1)
                row.notes.append(f"tj llvm compiled natively ({lowered.compile_seconds * 1e3:.0f} ms compile, "
                                 f"{threads} thread{'s' if threads > 1 else ''})")
            if check is not None:
                check(out)
            self.time(row, "tj llvm", lambda: jl(*args), repeat)
        except Exception as e:  # noqa: BLE001
            row.notes.append(f"tj llvm failed: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
        jn = tj.jit(f, backend="numpy")
        self.time(row, "tj numpy", lambda: jn(*args), slow_repeat or max(2, (repeat or self.repeat) // 3))

    def add(self, row: Row):
        self.rows.append(row)
        cells = ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in row.t.items() if v is not None)
        print(f"  {row.name}: {cells}" + (f"  [{'; '.join(row.notes)}]" if row.notes else ""), flush=True)


# --------------------------------------------------------------------------------------- workloads

def chain_tj(x):
    return tj.lax.logistic(0.75 * cnp.log(x / 2) + x + cnp.log(3 * x))


def chain_np(x):
    y = np.float32(0.75) * np.log(x / np.float32(2)) + x + np.log(np.float32(3) * x)
    return 1 / (1 + np.exp(-y))


def chain_grad_np(x):
    s = chain_np(x)
    return s * (1 - s) * (np.float32(0.75) / x + 1 + 1 / x)     # d/dx log(x/2) = d/dx log(3x) = 1/x


def bench_chain(b: Bench, logn: int):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 5.0, 1 << logn).astype(np.float32)
    ref = chain_np(x)
    row = Row(f"chain sigmoid(0.75*log(x/2)+x+log(3x)), f32 2^{logn}")
    b.tj_pair(row, chain_tj, (x,), check=lambda out: np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6))
    b.time(row, "numpy", lambda: chain_np(x))
    if jax:
        jf = jax.jit(lambda x: jax.nn.sigmoid(0.75 * jnp.log(x / 2) + x + jnp.log(3 * x)))
        xj = jnp.asarray(x)
        b.time(row, "jax.jit", lambda: jf(xj).block_until_ready())
    if torch:
        xt = torch.from_numpy(x)
        b.time(row, "torch", lambda: torch.sigmoid(0.75 * torch.log(xt / 2) + xt + torch.log(3 * xt)))
    b.add(row)

    gref = chain_grad_np(x)
    grow = Row(f"grad of sum(chain), f32 2^{logn}")
    b.tj_pair(grow, tj.grad(lambda x: cnp.sum(chain_tj(x))), (x,),
              check=lambda g: np.testing.assert_allclose(g, gref, rtol=1e-4, atol=1e-6))
    b.time(grow, "numpy", lambda: chain_grad_np(x))
    grow.notes.append("numpy: hand-written derivative")
    if jax:
        jg = jax.jit(jax.grad(lambda x: jnp.sum(jax.nn.sigmoid(0.75 * jnp.log(x / 2) + x + jnp.log(3 * x)))))
        xj = jnp.asarray(x)
        b.time(grow, "jax.jit", lambda: jg(xj).block_until_ready())
    if torch:
        def tg():
            xt = torch.from_numpy(x).requires_grad_()
            torch.sigmoid(0.75 * torch.log(xt / 2) + xt + torch.log(3 * xt)).sum().backward()
            return xt.grad
        b.time(grow, "torch", tg)
    if row.t["tj llvm"] and grow.t["tj llvm"]:
        r = grow.t["tj llvm"] / row.t["tj llvm"]
        grow.notes.append(f"tj llvm grad/f = {r:.2f}")
        b.extra.setdefault("grad_over_f", []).append((f"chain 2^{logn}", r))
    b.add(grow)


def bench_mlp(b: Bench):
    rng = np.random.default_rng(1)
    B, D, H, C = 256, 64, 128, 10
    x = rng.standard_normal((B, D)).astype(np.float32)
    y = rng.integers(0, C, B).astype(np.int32)
    params = {"w1": (rng.standard_normal((H, D)) * 0.1).astype(np.float32), "b1": np.zeros(H, np.float32),
              "w2": (rng.standard_normal((C, H)) * 0.1).astype(np.float32), "b2": np.zeros(C, np.float32)}

    def loss(p, x, y):
        h = nn.relu(nn.linear(x, p["w1"], p["b1"]))
        return nn.cross_entropy(nn.linear(h, p["w2"], p["b2"]), y)

    def np_grad(p, x, y):
        h = x @ p["w1"].T + p["b1"]
        a = np.maximum(h, 0)
        z = a @ p["w2"].T + p["b2"]
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        prob = e / e.sum(1, keepdims=True)
        prob[np.arange(B), y] -= 1
        dz = prob / B
        da = dz @ p["w2"]
        dh = da * (h > 0)
        return {"w1": dh.T @ x, "b1": dh.sum(0), "w2": dz.T @ a, "b2": dz.sum(0)}

    ref = np_grad(params, x, y)
    row = Row(f"MLP training-step gradient {D}-{H}-{C}, batch {B}, f32")
    b.tj_pair(row, tj.grad(loss), (params, x, y),
              check=lambda g: [np.testing.assert_allclose(g[k], ref[k], rtol=1e-3, atol=1e-5) for k in ref])
    b.time(row, "numpy", lambda: np_grad(params, x, y))
    row.notes.append("numpy: hand-written backprop")
    if jax:
        def jloss(p, x, y):
            h = jax.nn.relu(x @ p["w1"].T + p["b1"])
            z = h @ p["w2"].T + p["b2"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], 1))
        jg = jax.jit(jax.grad(jloss))
        pj = {k: jnp.asarray(v) for k, v in params.items()}
        xj, yj = jnp.asarray(x), jnp.asarray(y)
        b.time(row, "jax.jit", lambda: _jax_block(jg(pj, xj, yj)))
    if torch:
        F = torch.nn.functional
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

        def tg():
            pt = {k: torch.from_numpy(v).requires_grad_() for k, v in params.items()}
            h = F.relu(F.linear(xt, pt["w1"], pt["b1"]))
            F.cross_entropy(F.linear(h, pt["w2"], pt["b2"]), yt).backward()
            return [v.grad for v in pt.values()]
        b.time(row, "torch", tg)
    b.add(row)


def bench_matmul(b: Bench, n: int, dtype):
    rng = np.random.default_rng(2)
    a, c = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
    tag = "f32" if dtype == np.float32 else "f64"
    row = Row(f"matmul {n}x{n}x{n} {tag}")
    ref = a @ c
    tol = 1e-3 if dtype == np.float32 else 1e-9
    b.tj_pair(row, lambda a, c: a @ c, (a, c), check=lambda o: np.testing.assert_allclose(o, ref, rtol=tol, atol=tol * n ** 0.5),
              slow_repeat=max(2, b.repeat // 3))
    b.time(row, "numpy", lambda: a @ c, blas_both=False)
    flops = 2 * n ** 3
    if threadpool_limits is not None:
        nt = llvm.get_num_threads()
        with threadpool_limits(1, user_api="blas"):
            t1 = best_of(lambda: a @ c, b.repeat)[0]
        with threadpool_limits(nt, user_api="blas"):
            t_same = best_of(lambda: a @ c, b.repeat)[0]
        t_all = row.t["numpy"] or t1
        row.t["numpy"] = min(t_all, t1, t_same)     # numpy's column: its best, whichever thread count
        row.notes.append(f"numpy BLAS 1 thread {flops / t1 / 1e9:.0f} GFLOP/s, {nt} threads {flops / t_same / 1e9:.0f}, "
                         f"all threads {flops / t_all / 1e9:.0f}")
        if row.t["tj llvm"]:
            gf = flops / row.t["tj llvm"] / 1e9
            row.notes.append(f"tj llvm ({nt} thread{'s' if nt > 1 else ''}) {gf:.0f} GFLOP/s = "
                             f"{t_same / row.t['tj llvm'] * 100:.0f}% of {nt}-thread BLAS "
                             f"({t1 / row.t['tj llvm'] * 100:.0f}% of 1-thread BLAS)")
            b.extra.setdefault("matmul", []).append((row.name, t_same / row.t["tj llvm"], nt))
    if jax:
        jf = jax.jit(lambda a, c: a @ c)
        aj, cj = jnp.asarray(a), jnp.asarray(c)
        b.time(row, "jax.jit", lambda: jf(aj, cj).block_until_ready())
    if torch:
        at, ct = torch.from_numpy(a), torch.from_numpy(c)
        b.time(row, "torch", lambda: at @ ct)
    b.add(row)


def bench_matmul_chain(b: Bench, n: int, layers: int = 10):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, n)).astype(np.float32)
    ws = [(rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32) for _ in range(layers)]

    def f(ws, x):
        for w in ws:
            x = x @ w
        return cnp.sum(x)

    def np_grad(ws, x):
        acts = [x]
        for w in ws[:-1]:
            acts.append(acts[-1] @ w)
        g = np.ones((x.shape[0], ws[-1].shape[1]), np.float32)
        grads = [None] * len(ws)
        for i in reversed(range(len(ws))):
            grads[i] = acts[i].T @ g
            g = g @ ws[i].T
        return grads

    ref = np_grad(ws, x)
    row = Row(f"{layers}-layer matmul chain gradient (w.r.t. all W), {n}x{n} f32")
    b.tj_pair(row, tj.grad(f), (ws, x),
              check=lambda g: [np.testing.assert_allclose(gi, ri, rtol=2e-2, atol=2e-2 * float(np.abs(ri).max()))
                               for gi, ri in zip(g, ref)])
    b.time(row, "numpy", lambda: np_grad(ws, x))
    row.notes.append("numpy: hand-written backprop")
    if jax:
        def jf(ws, x):
            for w in ws:
                x = x @ w
            return jnp.sum(x)
        jg = jax.jit(jax.grad(jf))
        wj, xj = [jnp.asarray(w) for w in ws], jnp.asarray(x)
        b.time(row, "jax.jit", lambda: _jax_block(jg(wj, xj)))
    if torch:
        xt = torch.from_numpy(x)

        def tg():
            wt = [torch.from_numpy(w).requires_grad_() for w in ws]
            h = xt
            for w in wt:
                h = h @ w
            h.sum().backward()
            return [w.grad for w in wt]
        b.time(row, "torch", tg)
    b.add(row)


def _conv_np(x, w):
    """NCHW x OIHW, stride 1, padding 1, via im2col + one GEMM."""
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))     # N C H W kh kw
    return np.einsum("nchwij,ocij->nohw", win, w, optimize=True)


def bench_conv(b: Bench, N: int, C: int, HW: int, O: int):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, C, HW, HW)).astype(np.float32)
    w = (rng.standard_normal((O, C, 3, 3)) * 0.1).astype(np.float32)
    ref = _conv_np(x, w)
    shape = f"N={N} C={C} {HW}x{HW}, 3x3, {O} out, pad 1, f32"
    row = Row(f"conv2d forward {shape}")
    b.tj_pair(row, lambda x, w: nn.conv2d(x, w, padding=1), (x, w),
              check=lambda o: np.testing.assert_allclose(o, ref, rtol=1e-3, atol=1e-3))
    b.time(row, "numpy", lambda: _conv_np(x, w))
    row.notes.append("numpy: im2col + einsum")
    if jax:
        jf = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1))))
        xj, wj = jnp.asarray(x), jnp.asarray(w)
        b.time(row, "jax.jit", lambda: jf(xj, wj).block_until_ready())
    if torch:
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        b.time(row, "torch", lambda: torch.nn.functional.conv2d(xt, wt, padding=1))
    b.add(row)

    grow = Row(f"conv2d gradient of sum(conv^2) w.r.t. x and w, {shape}")
    b.tj_pair(grow, tj.grad(lambda x, w: cnp.sum(nn.conv2d(x, w, padding=1) ** 2), argnums=(0, 1)), (x, w))
    if jax:
        jg = jax.jit(jax.grad(lambda x, w: jnp.sum(jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1))) ** 2),
                              argnums=(0, 1)))
        b.time(grow, "jax.jit", lambda: _jax_block(jg(xj, wj)))
    if torch:
        def tg():
            xt = torch.from_numpy(x).requires_grad_()
            wt = torch.from_numpy(w).requires_grad_()
            (torch.nn.functional.conv2d(xt, wt, padding=1) ** 2).sum().backward()
            return xt.grad, wt.grad
        b.time(grow, "torch", tg)
    grow.notes.append("numpy: not written")
    b.add(grow)


def bench_layernorm(b: Bench, rows: int, d: int):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((rows, d)).astype(np.float32)
    t = rng.standard_normal((rows, d)).astype(np.float32)
    gam = rng.uniform(0.5, 1.5, d).astype(np.float32)
    bet = rng.standard_normal(d).astype(np.float32)
    eps = 1e-5

    def np_grad(x, t, gam, bet):
        mu = x.mean(-1, keepdims=True)
        xc = x - mu
        rstd = 1 / np.sqrt((xc * xc).mean(-1, keepdims=True) + eps)
        xh = xc * rstd
        g = t * gam
        return rstd * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))

    ref = np_grad(x, t, gam, bet)
    row = Row(f"LayerNorm gradient of sum(LN(x)*t) w.r.t. x, {rows}x{d} f32")
    b.tj_pair(row, tj.grad(lambda x, t, g, bb: cnp.sum(nn.layer_norm(x, eps=eps, weight=g, bias=bb) * t)),
              (x, t, gam, bet), check=lambda o: np.testing.assert_allclose(o, ref, rtol=1e-3, atol=1e-4))
    b.time(row, "numpy", lambda: np_grad(x, t, gam, bet))
    row.notes.append("numpy: hand-written derivative")
    if jax:
        def jln(x, t, g, bb):
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            return jnp.sum(((x - mu) / jnp.sqrt(var + eps) * g + bb) * t)
        jg = jax.jit(jax.grad(jln))
        args = [jnp.asarray(a) for a in (x, t, gam, bet)]
        b.time(row, "jax.jit", lambda: jg(*args).block_until_ready())
    if torch:
        tt, gt, bt = (torch.from_numpy(a) for a in (t, gam, bet))

        def tg():
            xt = torch.from_numpy(x).requires_grad_()
            (torch.nn.functional.layer_norm(xt, (d,), gt, bt, eps) * tt).sum().backward()
            return xt.grad
        b.time(row, "torch", tg)
    b.add(row)


def bench_logsumexp(b: Bench, n: int):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((n, n)).astype(np.float32) * 3

    def np_lse(x):
        m = x.max(1, keepdims=True)
        return (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]

    ref = np_lse(x)
    row = Row(f"row-wise logsumexp {n}x{n} f32")
    b.tj_pair(row, lambda x: nn.logsumexp(x, axis=1), (x,),
              check=lambda o: np.testing.assert_allclose(o, ref, rtol=1e-5, atol=1e-5))
    b.time(row, "numpy", lambda: np_lse(x))
    if jax:
        jf = jax.jit(lambda x: jax.nn.logsumexp(x, axis=1))
        xj = jnp.asarray(x)
        b.time(row, "jax.jit", lambda: jf(xj).block_until_ready())
    if torch:
        xt = torch.from_numpy(x)
        b.time(row, "torch", lambda: torch.logsumexp(xt, 1))
    b.add(row)


def _fifty_ops(m, k: float):
    """A fresh function of about 50 primitive operations; m is the array module (cnp or jnp)."""
    def f(x):
        y = x
        for i in range(10):
            y = m.sin(y) * (k + i) + m.exp(-y * y) - y / (2.0 + i)    # sin mul add exp neg mul(sq) sub div ...
        return y
    return f


def bench_compile(b: Bench, trials: int):
    x = np.linspace(0.1, 1.0, 1024).astype(np.float32)
    row = Row("compile latency of a fresh ~50-op function (trace + compile + first call), f32[1024]")
    neqns = len(tj.make_jaxpr(_fifty_ops(cnp, 0.5))(x).jaxpr.eqns)
    row.notes.append(f"{neqns} equations")
    for runner, backend in (("tj llvm", "llvm"), ("tj numpy", "numpy")):
        ts = []
        try:
            for i in range(trials):
                llvm.clear_cache()
                f = tj.jit(_fifty_ops(cnp, 0.5 + 0.01 * (i + 1)), backend=backend)   # new constants: new kernel
                t = time.perf_counter()
                f(x)
                ts.append(time.perf_counter() - t)
            row.t[runner] = min(ts)
        except Exception as e:  # noqa: BLE001
            row.notes.append(f"{runner} failed: {type(e).__name__}: {e}")
    if jax:
        xj = jnp.asarray(x)
        ts = []
        for i in range(trials):
            jax.clear_caches()
            f = jax.jit(_fifty_ops(jnp, 0.5 + 0.01 * (i + 1)))
            t = time.perf_counter()
            f(xj).block_until_ready()
            ts.append(time.perf_counter() - t)
        row.t["jax.jit"] = min(ts)
        if row.t["tj llvm"]:
            b.extra["compile_ratio"] = row.t["tj llvm"] / row.t["jax.jit"]
            row.notes.append(f"tj llvm / jax.jit = {b.extra['compile_ratio']:.2f} (best of {trials}, caches cleared)")
    if torch and hasattr(torch, "compile"):
        row.notes.append("torch: eager, nothing to compile")
    b.add(row)


def _cnn_loss(np_, conv, pool, ce):
    """The MNIST CNN of examples/mnist_cnn.py (conv 3x3 1->8, relu, pool 2; conv 3x3 8->16, relu, pool 2;
    linear 400->10; cross-entropy), written once over an array namespace and its conv/pool/loss."""
    def loss(p, x, y):
        h = pool(np_.maximum(conv(x, p["w1"]) + p["b1"][None, :, None, None], 0))
        h = pool(np_.maximum(conv(h, p["w2"]) + p["b2"][None, :, None, None], 0))
        return ce(np_.reshape(h, (h.shape[0], -1)) @ p["w3"].T + p["b3"], y)
    return loss


def bench_compile_training(b: Bench, trials: int, batch: int):
    """Compile latency (trace + compile + first call, caches cleared) of two training-step
    gradients: the MLP step above and the MNIST CNN's step (batch ``batch``)."""
    rng = np.random.default_rng(7)
    cnn = {"w1": rng.standard_normal((8, 1, 3, 3)), "b1": np.zeros(8), "w2": rng.standard_normal((16, 8, 3, 3)) / 8,
           "b2": np.zeros(16), "w3": rng.standard_normal((10, 400)) / 20, "b3": np.zeros(10)}
    cnn = {k: v.astype(np.float32) for k, v in cnn.items()}
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    B, D, H, C = 256, 64, 128, 10
    mlp = {"w1": (rng.standard_normal((H, D)) * 0.1).astype(np.float32), "b1": np.zeros(H, np.float32),
           "w2": (rng.standard_normal((C, H)) * 0.1).astype(np.float32), "b2": np.zeros(C, np.float32)}
    xm, ym = rng.standard_normal((B, D)).astype(np.float32), rng.integers(0, C, B).astype(np.int32)

    def mlp_loss(np_, ce):
        return lambda p, x, y: ce((np_.maximum(x @ p["w1"].T + p["b1"], 0)) @ p["w2"].T + p["b2"], y)

    def jax_ce(z, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], axis=1))

    def jax_pool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def jax_conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID")

    cases = [("MLP step (64-128-10, batch 256)", mlp_loss(cnp, nn.cross_entropy),
              mlp_loss(jnp, jax_ce) if jax else None, (mlp, xm, ym)),
             (f"MNIST CNN step (batch {batch})", _cnn_loss(cnp, nn.conv2d, lambda h: nn.max_pool2d(h, 2), nn.cross_entropy),
              _cnn_loss(jnp, jax_conv, jax_pool, jax_ce) if jax else None, (cnn, x, y))]
    for name, tj_loss, jax_loss, args in cases:
        row = Row(f"compile latency of the {name} gradient (trace + compile + first call)")
        for runner, backend in (("tj llvm", "llvm"), ("tj numpy", "numpy")):
            ts = []
            for _ in range(trials):
                llvm.clear_cache()
                f = tj.jit(tj.grad(tj_loss), backend=backend)
                t = time.perf_counter()
                ours = f(*args)
                ts.append(time.perf_counter() - t)
            row.t[runner] = min(ts)
        if jax:
            jargs = [jax.tree_util.tree_map(jnp.asarray, a) for a in args]
            ts = []
            for _ in range(trials):
                jax.clear_caches()
                f = jax.jit(jax.grad(jax_loss))
                t = time.perf_counter()
                theirs = _jax_block(f(*jargs))
                ts.append(time.perf_counter() - t)
            row.t["jax.jit"] = min(ts)
            for k in ours:                        # the two compiled the same gradient
                np.testing.assert_allclose(ours[k], np.asarray(theirs[k]), rtol=2e-3, atol=2e-5)
            row.notes.append(f"tj llvm / jax.jit = {row.t['tj llvm'] / row.t['jax.jit']:.2f} (best of {trials})")
        b.add(row)


def bench_overhead(b: Bench, inner: int):
    x = np.array([1.0, 2.0, 3.0], np.float32)
    row = Row("per-call overhead, f(x) = 2x+1 on f32[3]")
    f = lambda x: x * 2 + 1  # noqa: E731
    b.tj_pair(row, f, (x,), repeat=b.repeat, slow_repeat=b.repeat)
    # re-time with many calls per sample (tj_pair timed one call per sample)
    for runner, fn in (("tj llvm", tj.jit(f)), ("tj numpy", tj.jit(f, backend="numpy"))):
        b.time(row, runner, lambda fn=fn: fn(x), inner=inner)
    try:
        low = tj.jit(f).lower(x)
        low.compile()
        t_low = best_of(lambda: low(x), b.repeat, inner)[0]
        row.notes.append(f"tj llvm without jit's dispatch (Lowered call): {t_low * 1e6:.2f} us")
    except Exception as e:  # noqa: BLE001
        row.notes.append(f"Lowered call failed: {type(e).__name__}")
    b.time(row, "numpy", lambda: f(x), inner=inner)
    if jax:
        jf = jax.jit(f)
        xj = jnp.asarray(x)
        b.time(row, "jax.jit", lambda: jf(xj).block_until_ready(), inner=inner)
    if torch:
        xt = torch.from_numpy(x)
        b.time(row, "torch", lambda: xt * 2 + 1, inner=inner)
    b.add(row)


def bench_scaling(b: Bench, sizes, trials: int = 2):
    """trace + grad transform + passes + LLVM compile time against program size (fresh kernels;
    the best of ``trials`` for each size, as every other timing here is a best of several)."""
    x = np.linspace(0.1, 1.0, 256).astype(np.float32)
    pts = []
    for n in sizes:
        def f(x, n=n):
            y = x
            for _ in range(n):
                y = cnp.sin(y) * 1.0001 + y * 0.5 - 0.25
            return cnp.sum(y)
        best = None
        try:
            for _ in range(trials):
                llvm.clear_cache()
                t0 = time.perf_counter()
                low = tj.jit(tj.grad(f)).lower(x)
                t1 = time.perf_counter()
                low.compile()
                t2 = time.perf_counter()
                if best is None or t2 - t0 < best[0] + best[1]:
                    best = (t1 - t0, t2 - t1)
        except Exception as e:  # noqa: BLE001
            print(f"  scaling at {n} failed: {type(e).__name__}: {e}", flush=True)
            break
        neq = len(low.closed.jaxpr.eqns)
        pts.append((neq, *best))
        print(f"  scaling: {neq} equations (grad program): trace+grad+passes {best[0]:.2f} s, "
              f"LLVM compile {best[1]:.2f} s, {sum(best) / neq * 1e6:.0f} us/eqn (best of {trials})", flush=True)
    b.extra["scaling"] = pts


def scaling_text(pts) -> str:
    if not pts:
        return "(not measured)"
    out = ["| equations (gradient program) | trace + grad + passes s | LLVM compile s | total us / equation |",
           "|---:|---:|---:|---:|"]
    for neq, tt, tc in pts:
        out.append(f"| {neq} | {tt:.2f} | {tc:.2f} | {(tt + tc) / neq * 1e6:.0f} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- machine

def measure_machine(quick: bool, repeat: int) -> dict:
    m: dict = {"cpus": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
               "load": os.getloadavg() if hasattr(os, "getloadavg") else None, "tj_threads": llvm.get_num_threads()}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = (1 << 22) if quick else (1 << 25)       # f64: 32 MiB / 256 MiB per array, far above the caches
    a = np.ones(n)
    c = np.full(n, 2.0)
    d = np.empty(n)
    t_copy = best_of(lambda: np.copyto(d, a), repeat)[0]
    m["copy_GBs"] = 2 * 8 * n / t_copy / 1e9

    def triad():                                  # d = a + 3 * c, numpy's two passes over d
        np.multiply(c, 3.0, out=d)
        np.add(d, a, out=d)
    t_triad = best_of(triad, repeat)[0]
    m["triad_GBs"] = 3 * 8 * n / t_triad / 1e9    # STREAM counting (3 arrays); numpy moves 5 passes
    a = c = d = None      # free the large arrays

    k = 256 if quick else 1024
    rng = np.random.default_rng(7)
    for tag, dt in (("f32", np.float32), ("f64", np.float64)):
        a, c = (rng.standard_normal((k, k)).astype(dt) for _ in range(2))
        flops = 2 * k ** 3
        m[f"blas_{tag}_all"] = flops / best_of(lambda: a @ c, repeat)[0] / 1e9
        if threadpool_limits is not None:
            with threadpool_limits(1, user_api="blas"):
                m[f"blas_{tag}_1"] = flops / best_of(lambda: a @ c, repeat)[0] / 1e9
    m["blas_n"] = k
    if threadpool_info is not None:
        m["blas"] = ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')} "
                              f"x{i.get('num_threads')}" for i in threadpool_info() if i.get("user_api") == "blas")
    else:
        m["blas"] = "unknown (threadpoolctl not installed: no 1-thread figure)"
    m["openblas_env"] = "unset" if not any(v in os.environ for v in _BLAS_VARS) else "SET"
    return m


# ----------------------------------------------------------------------------------------- reports

def fmt_ms(t: float | None) -> str:
    if t is None:
        return "-"
    ms = t * 1e3
    return f"{ms:.4f}" if ms < 0.01 else f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(other: float | None, mine: float | None) -> str:
    return "-" if other is None or mine is None else f"{other / mine:.2f}x"


def table(rows: list[Row]) -> str:
    out = ["| workload | tj llvm ms | tj numpy ms | numpy ms | jax.jit ms | torch ms "
           "| numpy / tj | jax / tj | torch / tj | notes |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        t = r.t
        out.append(f"| {r.name} | " + " | ".join(fmt_ms(t[k]) for k in RUNNERS) + " | "
                   + " | ".join(fmt_ratio(t[k], t["tj llvm"]) for k in ("numpy", "jax.jit", "torch"))
                   + " | " + "; ".join(n for n in r.notes if n) + " |")
    return "\n".join(out)


def machine_text(m: dict) -> str:
    load = f"; load average at start {m['load'][0]:.2f} (other work on the machine)" if m.get("load") else ""
    lines = [f"- CPU: {m['cpu']}, {m['cpus']} logical cpus{load}; {JAX_NOTE}; {TORCH_NOTE}; numpy {np.__version__}",
             f"- memory bandwidth (f64 arrays of {'32' if m.get('quick') else '256'} MiB): numpy copy "
             f"{m['copy_GBs']:.1f} GB/s (read+write), triad a+3c {m['triad_GBs']:.1f} GB/s (STREAM counting)",
             f"- BLAS: {m['blas']}; OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE {m['openblas_env']} in this process",
             f"- numpy BLAS {m['blas_n']}^3: f32 {m.get('blas_f32_1', float('nan')):.0f} GFLOP/s on 1 thread, "
             f"{m['blas_f32_all']:.0f} on all; f64 {m.get('blas_f64_1', float('nan')):.0f} / {m['blas_f64_all']:.0f}",
             f"- tracejit LLVM kernels: up to {m['tj_threads']} threads (runtime.llvm.set_num_threads / "
             f"TRACEJIT_NUM_THREADS); large loops, reductions and GEMMs run threaded, small programs on one"]
    return "\n".join(lines)


def targets(b: Bench) -> list[str]:
    out = []

    def ok(flag):
        return "MET" if flag else "MISSED"
    for r in b.rows:
        if r.name.startswith("chain ") and r.t["tj llvm"]:
            vs_np = r.t["numpy"] / r.t["tj llvm"] if r.t["numpy"] else None
            vs_jax = r.t["jax.jit"] / r.t["tj llvm"] if r.t["jax.jit"] else None
            s = f"- elementwise chain ({r.name.split(', ')[-1]}): >= 4x numpy eager: {vs_np:.2f}x {ok(vs_np >= 4)}"
            s += f"; >= 2x jax.jit: {vs_jax:.2f}x {ok(vs_jax >= 2)}" if vs_jax else "; jax.jit: not measured"
            out.append(s)
    for r in b.rows:
        if r.name.startswith("conv2d") and r.t["tj llvm"] and r.t["torch"]:
            ratio = r.t["torch"] / r.t["tj llvm"]
            what = "gradient" if "gradient" in r.name else "forward"
            out.append(f"- conv2d {what}: at least as fast as PyTorch eager ({TORCH_NOTE.split('(')[-1].rstrip(')')}): "
                       f"{ratio:.2f}x {ok(ratio >= 1)}")
    for name, r, nt in b.extra.get("matmul", []):
        out.append(f"- {name}: >= 90% of BLAS at equal threads ({nt}): {r * 100:.0f}% {ok(r >= 0.9)}")
    for name, r in b.extra.get("grad_over_f", []):
        out.append(f"- grad(f) <= 3x f ({name}): {r:.2f}x {ok(r <= 3)}")
    if "compile_ratio" in b.extra:
        cr = b.extra["compile_ratio"]
        out.append(f"- compile latency <= 1/4 of jax.jit's (50-op function): {cr:.2f} of jax's {ok(cr <= 0.25)}")
    ov = next((r for r in b.rows if r.name.startswith("per-call overhead")), None)
    if ov and ov.t["tj llvm"]:
        us = ov.t["tj llvm"] * 1e6
        out.append(f"- per-call overhead < 2 us: {us:.2f} us {ok(us < 2)}")
    pts = b.extra.get("scaling")
    if pts and len(pts) > 1:
        (n0, a0, c0), (n1, a1, c1) = pts[0], pts[-1]
        growth = ((a1 + c1) / n1) / ((a0 + c0) / n0)
        out.append(f"- trace+transform+compile time linear in program size (to {n1} equations): time per equation "
                   f"grows {growth:.1f}x from {n0} to {n1} equations {ok(growth <= 1.5)} (linear: ~1x)")

    return out


def write_results(text: str, path: str) -> None:
    remat = ""
    if os.path.exists(path):
        with open(path) as fh:
            old = fh.read()
        i = old.find("\n## Remat")
        if i >= 0:
            remat = old[i + 1:]
    with open(path, "w") as fh:
        fh.write(text.rstrip() + "\n\n" + remat)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (smoke run)")
    ap.add_argument("--write", action="store_true", help="write bench/RESULTS.md (keeps its Remat section)")
    ap.add_argument("--repeat", type=int, default=None, help="samples per timing (best is reported)")
    args = ap.parse_args(argv)
    global MIN_SECONDS
    quick = args.quick
    repeat = args.repeat or (3 if quick else 20)
    MIN_SECONDS = 0.03 if quick else 1.0
    started = time.perf_counter()
    b = Bench(quick, repeat)

    print(f"# tracejit benchmark ({'quick' if quick else 'full'}, best of {repeat})", flush=True)
    print(f"{JAX_NOTE}; {TORCH_NOTE}", flush=True)
    print("measuring the machine ...", flush=True)
    m = measure_machine(quick, repeat)
    m["quick"] = quick
    print(machine_text(m), flush=True)

    print("workloads ...", flush=True)
    steps = [
        lambda: bench_chain(b, 16 if quick else 20),
        lambda: bench_chain(b, 18 if quick else 23),
        lambda: bench_mlp(b),
        *[(lambda n=n: bench_matmul(b, n, np.float32)) for n in ((64, 128) if quick else (256, 512, 1024))],
        lambda: bench_matmul(b, 128 if quick else 1024, np.float64),
        lambda: bench_matmul_chain(b, 64 if quick else 256),
        lambda: bench_conv(b, 2 if quick else 8, 4 if quick else 16, 8 if quick else 32, 8 if quick else 32),
        lambda: bench_layernorm(b, 64 if quick else 1024, 128 if quick else 1024),
        lambda: bench_logsumexp(b, 128 if quick else 1024),
        lambda: bench_compile(b, 2 if quick else 10),
        lambda: bench_compile_training(b, 1 if quick else 3, 8 if quick else 32),
        lambda: bench_overhead(b, 200 if quick else 2000),
        lambda: bench_scaling(b, (20, 80) if quick else (100, 400, 1000)),
    ]
    for step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - one broken workload must not hide the others
            print(f"  workload failed: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=3, file=sys.stdout) if os.environ.get("BENCH_DEBUG") else None

    elapsed = time.perf_counter() - started
    cmd = "python bench/run.py" + (" --quick" if quick else "") + (f" --repeat {args.repeat}" if args.repeat else "") \
        + (" --write" if args.write else "")
    tab = table(b.rows)
    tgt = "\n".join(targets(b))
    scal = scaling_text(b.extra.get("scaling"))
    print("\n" + tab + "\n\nCompile-time scaling:\n" + scal + "\n\nTargets (DESIGN.md):\n" + tgt)
    from runtime.llvm import threads as _threads
    print(f"\nkernel cache: {llvm.cache_info()}; thread pool: {_threads.stats()}; run took {elapsed:.0f} s")

    if args.write:
        today = datetime.date.today().isoformat()
        text = f"""# Benchmark results

Measured on this project's machine, shared with other work while it ran, so figures move by up to 2x
between runs. Times are the best of {repeat} calls after a warm-up call (wall clock, ms); ratios are
the other runner's time over tracejit's LLVM time (> 1: tracejit is faster). "tj numpy" is tracejit's
numpy interpreter backend. jax.jit runs on the CPU, PyTorch eagerly; their gradients include the
forward pass, as tracejit's do.

## Full benchmark ({today})

`{cmd}` ({elapsed:.0f} s; needs jax and torch for their columns: `pip install jax jaxlib torch`)

### Machine (same run)

{machine_text(m)}

### Workloads

{tab}

### Compile-time scaling (a chain of sin/mul/add/sub, its gradient, trace to machine code)

{scal}

### Performance targets (DESIGN.md)

{tgt}
"""
        path = os.path.join(ROOT, "bench", "RESULTS.md")
        write_results(text, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
