"""Low-precision benchmark: the int8 x int8 -> int32 VNNI GEMM against the f32 GEMM, and quantized
MNIST-style MLP and CNN forwards against the float ones (error and speed).

    python bench/bench_lowp.py [--quick] [--write]

Every runner uses one thread: tracejit's LLVM kernels are single-threaded, and numpy's BLAS is pinned
to one thread with threadpoolctl (when installed; otherwise the table says so). ``--write`` puts the
section into bench/RESULTS.md (after its Remat section, which bench/run.py --write keeps).
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are removed by re-executing, as in bench/run.py.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from benchutil import best_and_median as best, full_speed_blas, llvm_threads  # noqa: E402

if __name__ == "__main__":
    full_speed_blas()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import runtime  # noqa: E402
from compiler import lax, nn  # noqa: E402
from compiler.ir.core import DTYPES  # noqa: E402
from compiler.passes import quantization_report, quantize  # noqa: E402
from runtime import llvm  # noqa: E402
from runtime.llvm import engine, intgemm  # noqa: E402

SECTION = "## Low precision (bench/bench_lowp.py)"


def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext(), "numpy BLAS threads not pinned (threadpoolctl missing)"
    return threadpool_limits(1, user_api="blas"), "numpy BLAS pinned to 1 thread"


def gemm_rows(sizes, repeat):
    rows = []
    rng = np.random.default_rng(0)
    dims = (((1,), (0,)), ((), ()))
    for n in sizes:
        a8, b8 = (rng.integers(-128, 128, (n, n)).astype(np.int8) for _ in range(2))
        af, bf = a8.astype(np.float32), b8.astype(np.float32)
        k_int = runtime.compile(tj.make_jaxpr(
            lambda a, b: lax.dot_general(a, b, dims, preferred_element_type=DTYPES["i32"]))(a8, b8), "llvm")
        k_f32 = runtime.compile(tj.make_jaxpr(lambda a, b: a @ b)(af, bf), "llvm")
        exact = np.array_equal(k_int(a8, b8)[0], a8.astype(np.int64) @ b8.astype(np.int64))
        ops = 2 * n ** 3
        t_int = best(lambda: k_int(a8, b8), repeat)
        t_f32 = best(lambda: k_f32(af, bf), repeat)
        limit, _ = one_blas_thread()
        with limit:
            t_np = best(lambda: af @ bf, repeat)
        label = f"{n}x{n}x{n}"
        rows.append(f"| {label} | tracejit int8 x int8 -> int32 | {t_int[0] * 1e3:.3f} | {ops / t_int[0] / 1e9:.0f} GOP/s "
                    f"| {t_f32[0] / t_int[0]:.2f}x | {t_np[0] / t_int[0]:.2f}x | exact: {exact} |")
        rows.append(f"| {label} | tracejit f32 | {t_f32[0] * 1e3:.3f} | {ops / t_f32[0] / 1e9:.0f} GFLOP/s | 1.00x "
                    f"| {t_np[0] / t_f32[0]:.2f}x | |")
        rows.append(f"| {label} | numpy f32 BLAS | {t_np[0] * 1e3:.3f} | {ops / t_np[0] / 1e9:.0f} GFLOP/s "
                    f"| {t_f32[0] / t_np[0]:.2f}x | 1.00x | |")
    return rows


def measured(closed, variants, x, repeat):
    """For each (name, program) on the LLVM backend: (name, program, (best, median) s, speed-up over
    the first (float) program, quantization_report against ``closed``, argmax agreement with the
    interpreter's float result, the matmul kernel it runs)."""
    ref = runtime.eval_jaxpr(closed, x)[0]
    t_float = None
    for name, prog in variants:
        fn = runtime.compile(prog, "llvm")
        out = fn(x)[0]
        t = best(lambda: fn(x), repeat)
        t_float = t_float or t
        agree = float(np.mean(out.argmax(1) == ref.argmax(1)))
        kernel = "int8 VNNI" if "vpdpbusd" in llvm.llvm_ir(prog) else "f32 GEMM"
        yield name, prog, t, t_float[0] / t[0], quantization_report(closed, prog, [(x,)]), agree, kernel


def mlp_rows(batch, repeat):
    """784-128-10 MLP, Kaiming-initialised weights, pixel-like inputs in [0, 1] (synthetic)."""
    rng = np.random.default_rng(1)
    w1 = (rng.standard_normal((784, 128)) * np.sqrt(2 / 784)).astype(np.float32)
    b1 = np.zeros(128, np.float32)
    w2 = (rng.standard_normal((128, 10)) * np.sqrt(2 / 128)).astype(np.float32)
    x = rng.uniform(0, 1, (batch, 784)).astype(np.float32)
    calib = [(rng.uniform(0, 1, (batch, 784)).astype(np.float32),)]
    closed = tj.make_jaxpr(lambda x: nn.relu(x @ w1 + b1) @ w2)(x)
    variants = [("f32 (float program)", closed),
                ("int8 weights + int8 activations (static scales)",
                 quantize(closed, "int8", "int8", calibration=calib)),
                ("int8 weights + int8 activations (dynamic scales)", quantize(closed, "int8", "int8")),
                ("int8 weights, f32 compute", quantize(closed, "int8")),
                ("int4 weights, f32 compute", quantize(closed, "int4")),
                ("fp8 e4m3 weights, f32 compute", quantize(closed, "fp8"))]
    rows = []
    for name, prog, t, speedup, rep, agree, kernel in measured(closed, variants, x, repeat):
        rows.append(f"| {name} | {t[0] * 1e3:.3f} | {speedup:.2f}x | {rep.relative_error:.2e} "
                    f"| {rep.max_abs_error:.2e} | {agree:.3f} | {rep.weight_bytes_quantized:,} | {kernel} |")
    return rows


def cnn_rows(batch, repeat):
    """MNIST-style CNN: conv 1->16 3x3, relu, maxpool 2, conv 16->32 3x3, relu, maxpool 2, dense
    800->10; Kaiming-initialised weights, synthetic pixel-like inputs in [0, 1]."""
    rng = np.random.default_rng(2)
    w1 = (rng.standard_normal((16, 1, 3, 3)) * np.sqrt(2 / 9)).astype(np.float32)
    b1 = np.zeros(16, np.float32)
    w2 = (rng.standard_normal((32, 16, 3, 3)) * np.sqrt(2 / 144)).astype(np.float32)
    b2 = np.zeros(32, np.float32)
    w3 = (rng.standard_normal((800, 10)) * np.sqrt(2 / 800)).astype(np.float32)
    x = rng.uniform(0, 1, (batch, 1, 28, 28)).astype(np.float32)
    calib = [(rng.uniform(0, 1, (batch, 1, 28, 28)).astype(np.float32),)]

    def cnn(x):
        h = nn.max_pool2d(nn.relu(nn.conv2d(x, w1, b1)), 2)
        h = nn.max_pool2d(nn.relu(nn.conv2d(h, w2, b2)), 2)
        return h.reshape(x.shape[0], -1) @ w3
    closed = tj.make_jaxpr(cnn)(x)
    variants = [("f32 (float program)", closed),
                ("int8 weights + int8 activations (static scales)",
                 quantize(closed, "int8", "int8", calibration=calib)),
                ("int8 weights + int8 activations (dynamic scales)", quantize(closed, "int8", "int8")),
                ("int8 weights, f32 compute", quantize(closed, "int8"))]
    rows = []
    for name, prog, t, speedup, rep, agree, kernel in measured(closed, variants, x, repeat):
        n_int = sum(e.primitive.name == "conv_general_dilated" and e.outvars[0].aval.dtype == DTYPES["i32"]
                    for e in prog.eqns)
        rows.append(f"| {name} | {t[0] * 1e3:.3f} | {t[1] * 1e3:.3f} | {speedup:.2f}x | "
                    f"{rep.relative_error:.2e} | {rep.max_abs_error:.2e} | {agree:.3f} | "
                    f"{kernel} ({n_int}/2 convs int8) |")
    return rows


def run(quick: bool) -> str:
    """The benchmark as a markdown section (quick: small sizes and few repeats, a smoke run), with
    tracejit's kernels on one thread like every other runner."""
    with llvm_threads(1):
        return _section(quick)


def _section(quick: bool) -> str:
    sizes, repeat, batch = ((128, 256), 3, 64) if quick else ((256, 512, 1024), 20, 256)
    host = engine.host()
    _, blas_note = one_blas_thread()
    lines = [SECTION, "",
             f"`python bench/bench_lowp.py{' --quick' if quick else ''}` on {host.cpu} ({os.cpu_count()} cpus, "
             f"shared with other work: figures move by up to 2x); avx512vnni: {intgemm.has_vnni(host)}. "
             f"Best of {repeat} calls after a warm-up, one thread each ({blas_note}; tracejit kernels are "
             f"single-threaded).", "",
             "### int8 vs f32 GEMM", "",
             "| size | runner | best ms | rate | speed-up over tracejit f32 | over numpy f32 BLAS | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    lines += gemm_rows(sizes, repeat)
    lines += ["", f"### Quantized MLP forward (784-128-10, batch {batch}, synthetic inputs in [0, 1])", "",
              "Error against the float program (interpreter) on the same batch; speed-up over the float "
              "program, both on the LLVM backend.", "",
              "| program | best ms | speed-up | relative error | max abs error | argmax agreement | weight bytes "
              "| matmul kernel |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += mlp_rows(batch, repeat)
    lines += ["", f"### Quantized CNN forward (conv 1->16 3x3, relu, maxpool 2, conv 16->32 3x3, relu, maxpool 2, "
              f"dense 800->10; batch {batch}, synthetic inputs in [0, 1])", "",
              "Convolutions run as im2col + GEMM; with int8 activations the columns are int8 and the GEMM is "
              "the VNNI kernel. Error against the float program (interpreter) on the same batch; speed-up over "
              "the float program, both on the LLVM backend.", "",
              "| program | best ms | median ms | speed-up | relative error | max abs error | argmax agreement "
              "| kernel |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += cnn_rows(batch, repeat)
    return "\n".join(lines) + "\n"


def write(section: str) -> None:
    path = os.path.join(ROOT, "bench", "RESULTS.md")
    old = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    i = old.find("\n" + SECTION)
    if i >= 0:                                   # replace the section where it stands
        j = old.find("\n## ", i + 1)
        new = old[:i + 1] + section + ("\n" + old[j + 1:] if j >= 0 else "")
    else:
        new = old.rstrip("\n") + "\n\n" + section
    with open(path, "w") as f:
        f.write(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats (a smoke run)")
    ap.add_argument("--write", action="store_true", help="put the section into bench/RESULTS.md")
    args = ap.parse_args()
    section = run(args.quick)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
