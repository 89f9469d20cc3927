"""Sparse matmul on the LLVM backend: 2:4 (permute kernel) and CSR (row-axpy kernel) against the
dense blocked GEMM on the same pruned weight, with numpy BLAS (dense) for reference.

    python bench/bench_sparse.py [--quick]

``run(quick) -> str`` returns the markdown section (bench/RESULTS.md holds the full run). Every
time is the best of several calls, one thread (tracejit's kernels limited to one thread, like BLAS
with threadpoolctl). Error: max |sparse - dense| / max |dense| against a float64
matmul of the pruned weight.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__":        # BLAS at its real speed (notes/llvmlite.md): unset before numpy loads
    for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(_var, None)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import runtime  # noqa: E402
from compiler.passes import prune, sparsify  # noqa: E402
from runtime.llvm.engine import host  # noqa: E402
from runtime.llvm.sparse import sparse_spec  # noqa: E402

from benchutil import best_and_median, llvm_threads  # noqa: E402


def _best(fn, args, repeat: int) -> float:
    return best_and_median(lambda: fn(*args), repeat)[0]


def _blas_one_thread():
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(1)
    except ImportError:                      # pragma: no cover - threadpoolctl ships with the deps
        import contextlib
        return contextlib.nullcontext()


def _blas_name() -> str:
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return f"{info[0].get('internal_api')} {info[0].get('version')} ({info[0].get('architecture')})" if info else "?"
    except ImportError:                      # pragma: no cover
        return "?"


def _case(m: int, k: int, n: int, structure: str, sparsity: float, repeat: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((k, n)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    dense = tj.make_jaxpr(lambda x: x @ w)(x)
    dense = prune(dense, sparsity, structure=structure)
    sparse = sparsify(dense, format="2:4" if structure == "2:4" else "csr", min_sparsity=0.0)
    wd = np.asarray(dense.consts[0])
    f_dense, f_sparse = runtime.compile(dense, "llvm"), runtime.compile(sparse, "llvm")
    truth = x.astype(np.float64) @ wd.astype(np.float64)
    err = float(np.abs(f_sparse(x)[0] - truth).max() / np.abs(truth).max())
    t_dense, t_sparse = _best(f_dense, (x,), repeat), _best(f_sparse, (x,), repeat)
    with llvm_threads(2):                    # the sparse kernel cut into chunks (plan.parallelize)
        f_two = runtime.compile(sparse, "llvm")
        assert f_two(x)[0].tobytes() == f_sparse(x)[0].tobytes()
        t_two = _best(f_two, (x,), repeat)
    with _blas_one_thread():
        t_blas = _best(lambda x: x @ wd, (x,), repeat)
    kernel = sparse_spec(next(e for e in sparse.eqns if e.primitive.name == "sparse_dot"), host().vector_bytes).kernel
    return {"sparsity": float((wd == 0).mean()), "err": err, "dense": t_dense, "sparse": t_sparse, "blas": t_blas,
            "two": t_two,
            "kernel": kernel, "gflops": 2 * m * k * n / t_dense / 1e9}


def run(quick: bool = False) -> str:
    """The markdown section, with tracejit's kernels on one thread like BLAS."""
    with llvm_threads(1):
        return _section(quick)


def _section(quick: bool) -> str:
    repeat = 3 if quick else 15
    sizes = [(64, 128, 128)] if quick else [(256, 512, 512), (256, 1024, 1024), (512, 2048, 2048)]
    csr_size = (64, 128, 128) if quick else (256, 1024, 1024)
    lines = ["## Sparse matmul (LLVM backend, 1 thread, f32; last column: 2 threads)", "",
             f"BLAS: {_blas_name()}, one thread. x[M,K] @ W[K,N], W pruned by magnitude; 'dense' is the "
             "backend's blocked GEMM on the pruned (still dense) weight, 'sparse' the same program after "
             "`sparsify`. Best of {} calls.".format(repeat), "",
             "| M x K x N | format | sparsity | kernel | dense ms (GFLOP/s) | sparse ms | speed-up vs dense | "
             "numpy BLAS ms | rel. error | sparse ms, 2 threads |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def row(size, fmt, r):
        m, k, n = size
        lines.append(f"| {m}x{k}x{n} | {fmt} | {r['sparsity']:.0%} | {r['kernel']} | {r['dense'] * 1e3:.2f} "
                     f"({r['gflops']:.0f}) | {r['sparse'] * 1e3:.2f} | {r['dense'] / r['sparse']:.2f}x | "
                     f"{r['blas'] * 1e3:.2f} | {r['err']:.1e} | {r['two'] * 1e3:.2f} |")

    for size in sizes:
        row(size, "2:4", _case(*size, "2:4", 0.5, repeat))
    for sparsity in (0.5, 0.75, 0.9, 0.95):
        row(csr_size, "CSR", _case(*csr_size, "unstructured", sparsity, repeat))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
