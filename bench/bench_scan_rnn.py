"""A 1000-step scan: the Elman RNN of examples/rnn_scan.py (hidden 16, batch 64, one input), forward
and training-step gradient, on tracejit's LLVM backend, its numpy interpreter, and jax.jit.

    python bench/bench_scan_rnn.py [--steps 1000] [--repeat 5]

Prints a markdown table of best (and median) wall times after a warm-up call (compile excluded;
the LLVM compile time is printed separately). jax is optional.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
from compiler import lax, nn  # noqa: E402

from benchutil import best_and_median as times  # noqa: E402


def rnn(p, xs):
    def step(h, x):
        h = nn.tanh(nn.linear(x, p["w_x"]) + nn.linear(h, p["w_h"], p["b"]))
        return h, nn.linear(h, p["w_o"], p["b_o"])[:, 0]
    h0 = cnp.zeros((cnp.shape(xs)[1], cnp.shape(p["b"])[0]), np.float32)
    return lax.scan(step, h0, xs)[1]


def loss(p, xs, ys):
    z = rnn(p, xs)
    return cnp.mean(nn.softplus(z) - ys * z)


def jax_fns():
    try:
        import jax
        import jax.numpy as jnp
    except Exception:                                    # pragma: no cover - optional
        return None

    def jrnn(p, xs):
        def step(h, x):
            h = jnp.tanh(x @ p["w_x"].T + h @ p["w_h"].T + p["b"])
            return h, (h @ p["w_o"].T + p["b_o"])[:, 0]
        return jax.lax.scan(step, jnp.zeros((xs.shape[1], p["b"].shape[0]), jnp.float32), xs)[1]

    def jloss(p, xs, ys):
        z = jrnn(p, xs)
        return jnp.mean(jax.nn.softplus(z) - ys * z)
    return jax.jit(jrnn), jax.jit(jax.value_and_grad(jloss)), jax.block_until_ready


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    H, N, T = args.hidden, args.batch, args.steps
    p = {"w_x": rng.normal(size=(H, 1)).astype(np.float32), "w_h": (rng.normal(size=(H, H)) / 4).astype(np.float32),
         "b": np.zeros(H, np.float32), "w_o": rng.normal(size=(1, H)).astype(np.float32),
         "b_o": np.zeros(1, np.float32)}
    xs = rng.normal(size=(T, N, 1)).astype(np.float32)
    ys = (np.cumsum(xs[..., 0], axis=0) > 0).astype(np.float32)
    rows = []
    for what, fn, fargs in (("forward", rnn, (p, xs)), ("value_and_grad", tj.value_and_grad(loss), (p, xs, ys))):
        native = tj.jit(fn, backend="llvm")
        interp = tj.jit(fn, backend="numpy")
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)     # the LLVM run must not fall back
            t = time.perf_counter()
            ref = native(*fargs)
            first = time.perf_counter() - t
        row = {"what": what, "llvm": times(lambda: native(*fargs), args.repeat),
               "numpy": times(lambda: interp(*fargs), max(1, args.repeat // 2)), "first_call": first}
        got = interp(*fargs)
        a, b = (ref, got) if what == "forward" else (ref[1]["w_h"], got[1]["w_h"])
        row["max_diff"] = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        rows.append(row)
    jx = jax_fns()
    if jx is not None:
        jf, jg, ready = jx
        for row, fn, fargs in ((rows[0], jf, (p, xs)), (rows[1], jg, (p, xs, ys))):
            ready(fn(*fargs))
            row["jax"] = times(lambda: ready(fn(*fargs)), args.repeat)
    print(f"scan RNN: {T} steps, hidden {H}, batch {N} (ms, best / median)")
    print("| workload | tracejit llvm | tracejit numpy interpreter | jax.jit | llvm first call (compile) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        cell = (lambda k: f"{r[k][0] * 1e3:.2f} / {r[k][1] * 1e3:.2f}" if k in r else "-")
        print(f"| {r['what']} | {cell('llvm')} | {cell('numpy')} | {cell('jax')} | {r['first_call'] * 1e3:.0f} |")
    for r in rows:
        print(f"{r['what']}: max |llvm - interpreter| = {r['max_diff']:.2e}")


if __name__ == "__main__":
    main()
