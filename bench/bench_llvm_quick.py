"""Quick LLVM-backend benchmark: a fused elementwise chain and a 512^3 matmul against numpy.

    python bench/bench_llvm_quick.py [--repeat 15]

Prints a markdown table of best (and median) wall times. Needs only numpy (threadpoolctl, if
installed, names the BLAS kernel and pins BLAS to one thread for the equal-thread comparison; the
LLVM kernels are set to one thread). OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set in some environments for
old OpenBLAS builds, halving BLAS speed) are removed by re-executing the script without them.
"""
from __future__ import annotations

import argparse
import os
import time

from benchutil import best_and_median as times, full_speed_blas  # noqa: E402

if __name__ == "__main__":
    full_speed_blas()

import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
import runtime  # noqa: E402
from runtime import llvm  # noqa: E402


def chain(x):
    return tj.lax.logistic(0.75 * cnp.log(x / 2) + x + cnp.log(3 * x))


def chain_numpy(x):
    y = np.float32(0.75) * np.log(x / np.float32(2)) + x + np.log(np.float32(3) * x)
    return 1 / (1 + np.exp(-y))


def blas_info() -> tuple[str, object]:
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return "BLAS kernel unknown (threadpoolctl not installed)", None
    info = [f"{i.get('internal_api')} {i.get('architecture', '')} x{i.get('num_threads')}" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    return "BLAS: " + (", ".join(info) or "none found"), threadpool_limits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    llvm.set_num_threads(1)          # the one-thread comparison this script is for (run.py does both)
    rows = []
    rng = np.random.default_rng(0)
    for logn in (20, 23):
        x = rng.uniform(0.1, 5.0, 1 << logn).astype(np.float32)
        closed = tj.make_jaxpr(chain)(x)
        t0 = time.perf_counter()
        native = runtime.compile(closed, "llvm")
        compile_ms = (time.perf_counter() - t0) * 1e3
        interp = runtime.compile(closed, "numpy")
        err = float(np.max(np.abs(native(x)[0] - chain_numpy(x)) / np.abs(chain_numpy(x))))
        t_llvm = times(lambda: native(x), args.repeat)
        t_np = times(lambda: chain_numpy(x), args.repeat)
        t_interp = times(lambda: interp(x), max(3, args.repeat // 3))
        label = f"sigmoid(0.75*log(x/2)+x+log(3x)), f32 2^{logn}"
        rows.append((label, "llvm (1 thread)", t_llvm, f"compile {compile_ms:.0f} ms, max rel err {err:.1e}"))
        rows.append((label, "numpy eager", t_np, f"llvm speed-up {t_np[0] / t_llvm[0]:.1f}x"))
        rows.append((label, "tracejit numpy backend", t_interp, f"llvm speed-up {t_interp[0] / t_llvm[0]:.1f}x"))

    blas, limits = blas_info()
    n = 512
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    native = runtime.compile(tj.make_jaxpr(lambda a, b: a @ b)(a, b), "llvm")
    np.testing.assert_allclose(native(a, b)[0], a @ b, rtol=1e-3, atol=1e-3)
    flops = 2 * n ** 3
    t_llvm = times(lambda: native(a, b), args.repeat)
    t_np = times(lambda: a @ b, args.repeat)
    label = f"matmul {n}^3 f32"
    rows.append((label, "llvm (1 thread)", t_llvm, f"{flops / t_llvm[0] / 1e9:.0f} GFLOP/s"))
    rows.append((label, "numpy (BLAS threads)", t_np, f"{flops / t_np[0] / 1e9:.0f} GFLOP/s"))
    if limits is not None:
        with limits(1, user_api="blas"):
            t_np1 = times(lambda: a @ b, args.repeat)
        rows.append((label, "numpy (BLAS 1 thread)", t_np1,
                     f"{flops / t_np1[0] / 1e9:.0f} GFLOP/s; llvm/BLAS = {t_np1[0] / t_llvm[0]:.2f}"))

    print(f"# tracejit LLVM quick benchmark ({os.cpu_count()} cpus; {blas})\n")
    print("| workload | runner | best ms | median ms | note |")
    print("|---|---|---:|---:|---|")
    for label, runner, (best, median), note in rows:
        print(f"| {label} | {runner} | {best * 1e3:.2f} | {median * 1e3:.2f} | {note} |")
    print(f"\nkernel cache: {llvm.cache_info()}")


if __name__ == "__main__":
    main()
