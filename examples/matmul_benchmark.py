"""GFLOP/s of float32 matmul against size: tracejit's LLVM kernel vs numpy's BLAS.

    python examples/matmul_benchmark.py            # sizes 64 ... 1024
    python examples/matmul_benchmark.py --quick    # small sizes, for the test

tracejit's kernel runs on one thread; numpy's BLAS is timed on all threads as configured. Writes
matmul_benchmark.png and ends with a RESULT line.
"""
from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402


def best_seconds(fn, *args, repeats: int) -> float:
    fn(*args)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=".")
    args = parser.parse_args(argv)
    sizes = [32, 64, 128] if args.quick else [64, 128, 256, 384, 512, 768, 1024]
    repeats = 3 if args.quick else 10
    rng = np.random.default_rng(0)
    matmul = tj.jit(lambda a, b: a @ b)
    rows = []
    print(f"{'n':>6}{'tracejit GFLOP/s':>18}{'numpy GFLOP/s':>15}{'max rel err':>13}")
    for n in sizes:
        a = rng.standard_normal((n, n)).astype(np.float32)
        b = rng.standard_normal((n, n)).astype(np.float32)
        err = float(np.max(np.abs(matmul(a, b) - a @ b)) / np.max(np.abs(a @ b)))
        flops = 2.0 * n ** 3
        ours = flops / best_seconds(matmul, a, b, repeats=repeats) / 1e9
        blas = flops / best_seconds(np.matmul, a, b, repeats=repeats) / 1e9
        rows.append((n, ours, blas, err))
        print(f"{n:>6}{ours:>18.1f}{blas:>15.1f}{err:>13.2e}")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "matmul_benchmark.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="tracejit LLVM kernel (1 thread)")
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "s--", label="numpy BLAS")
    ax.set(xlabel="n (n x n @ n x n, float32)", ylabel="GFLOP/s", title="matmul throughput", xscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot: {path}")
    print("RESULT " + " ".join(f"n{n}={ours:.1f}" for n, ours, _, _ in rows) +
          f" max_rel_err={max(r[3] for r in rows):.2e}")
    return rows


if __name__ == "__main__":
    main()
