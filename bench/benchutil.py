"""What the benchmark scripts share: a BLAS at full speed, and best / median timing.

Each script runs as ``python bench/<script>.py`` (this folder is then first on sys.path) and calls
``full_speed_blas()`` before importing numpy.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time

BLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def full_speed_blas() -> None:
    """OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (set in some environments for old OpenBLAS builds,
    halving BLAS speed) are read once when BLAS loads: re-execute this script without them."""
    if any(v in os.environ for v in BLAS_VARS) and not os.environ.get("_BENCH_REEXEC"):
        env = {k: v for k, v in os.environ.items() if k not in BLAS_VARS}
        env["_BENCH_REEXEC"] = "1"
        os.execve(sys.executable, [sys.executable] + sys.argv, env)


def best_and_median(fn, repeat: int) -> tuple[float, float]:
    """Seconds of the fastest and the median of ``repeat`` calls, after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts)


@contextlib.contextmanager
def llvm_threads(n: int):
    """tracejit's native kernels on ``n`` threads inside the block (the low-precision and sparse
    benches compare with one-thread BLAS)."""
    from runtime import llvm
    old = llvm.get_num_threads()
    llvm.set_num_threads(n)
    try:
        yield
    finally:
        llvm.set_num_threads(old)
