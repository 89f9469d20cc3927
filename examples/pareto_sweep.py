"""Accuracy against speed for the MNIST MLP, swept over weight formats x sparsity, Pareto front marked.

    python examples/pareto_sweep.py                    # trains the 784-128-10 MLP, then sweeps
    python examples/pareto_sweep.py --quick            # fewer images and epochs (for tests)
    python examples/pareto_sweep.py --backend llvm     # time the programs on the LLVM backend

The trained forward program (parameters as constants) goes through compiler.passes: prune (none,
50% unstructured, 2:4, 75%, 90%) then quantize (f32, fp16, bf16, int8 weights, int8 weights and
activations, int4). Each configuration reports test accuracy, its loss against the float program,
the weight bytes, and the measured speed-up of one test-set forward pass against the float program
on the same backend. On the LLVM backend each program is also run through `sparsify` (unless
--no-sparse-kernels), so 2:4 and highly sparse f32 weights multiply with the sparse kernels; the
"kernels" column says which ran. Writes pareto_sweep.png and ends with a RESULT line.
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
import runtime  # noqa: E402
from compiler import random  # noqa: E402
from compiler.passes import pareto_front, prune, quantization_report, quantize, run_passes, sparsify  # noqa: E402
from datasets import mnist  # noqa: E402
from mnist_mlp import init_params, model  # noqa: E402
from training import train  # noqa: E402

FORMATS = [("f32", None, None), ("fp16", "fp16", None), ("bf16", "bf16", None), ("int8", "int8", None),
           ("int8xint8", "int8", "int8"), ("int4", "int4", None)]
SPARSITY = [("dense", None), ("50%", (0.5, "unstructured")), ("2:4", (0.5, "2:4")),
            ("75%", (0.75, "unstructured")), ("90%", (0.9, "unstructured"))]


def compiled(program, backend: str):
    """The program compiled for the backend, or on the numpy interpreter where the backend cannot
    lower it (e.g. int4 on LLVM); returns (callable, backend used)."""
    try:
        return runtime.compile(program, backend), backend
    except NotImplementedError:
        return runtime.compile(program, "numpy"), "numpy"


def best_time(fn, args, repeats: int) -> float:
    fn(*args)                                     # warm up (and compile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=".")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "llvm"])
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--no-sparse-kernels", action="store_true",
                        help="on llvm, keep pruned weights dense (do not run the sparsify pass)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 15)

    (x_train, y_train), (x_test, y_test) = mnist(train_size=2000 if args.quick else None)
    params = init_params(random.PRNGKey(0), (784, 128, 10))
    params, _, _ = train(model, params, (x_train, y_train), (x_test, y_test), 2 if args.quick else 10,
                         desc="training the MLP")
    float_program = run_passes(tj.make_jaxpr(lambda x: model(params, x))(x_test))

    def accuracy(program) -> float:
        logits = runtime.eval_jaxpr(program, x_test)[0]
        return float(np.mean(np.argmax(logits, axis=-1) == y_test))

    base_acc = accuracy(float_program)
    base_time = best_time(compiled(float_program, args.backend)[0], (x_test,), repeats)
    rows = []
    for s_name, s_opts in SPARSITY:
        pruned = float_program if s_opts is None else prune(float_program, s_opts[0], structure=s_opts[1])
        for f_name, weights, activations in FORMATS:
            program = pruned if weights is None else quantize(pruned, weights, activations=activations,
                                                              calibration=[(x_train[:len(x_test)],)])
            acc = accuracy(program)
            timed, kernels = program, "dense"
            if args.backend == "llvm" and not args.no_sparse_kernels:
                timed, found = sparsify(program, report=True)
                kernels = "+".join(r["format"] or "dense" for r in found.rows) or "dense"
            fn, used = compiled(timed, args.backend)
            seconds = best_time(fn, (x_test,), repeats)
            report = quantization_report(float_program, program, [(x_test,)])
            rows.append({"config": f"{f_name}/{s_name}", "accuracy": acc, "loss": base_acc - acc,
                         "speedup": base_time / seconds, "ms": seconds * 1e3,
                         "weight_bytes": report.weight_bytes_quantized, "error": report.relative_error,
                         "backend": used, "kernels": kernels})
    front = set(pareto_front([[r["accuracy"], r["speedup"]] for r in rows], maximize=(True, True),
                             return_indices=True).tolist())

    print(f"\nfloat program: test accuracy {base_acc:.4f}, {base_time * 1e3:.2f} ms per forward pass of "
          f"{len(x_test)} images on the {args.backend} backend (best of {repeats})")
    print(f"{'config':<16}{'accuracy':>9}{'loss':>8}{'ms':>9}{'speed-up':>10}{'weight B':>11}{'rel.err':>9}"
          f"  {'ran on':<7} {'kernels':<10} pareto")
    for i, r in enumerate(rows):
        print(f"{r['config']:<16}{r['accuracy']:>9.4f}{r['loss']:>8.4f}{r['ms']:>9.2f}{r['speedup']:>10.2f}"
              f"{r['weight_bytes']:>11,}{r['error']:>9.4f}  {r['backend']:<7} {r['kernels']:<10} "
              f"{'*' if i in front else ''}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "pareto_sweep.png")
    fig, ax = plt.subplots(figsize=(8, 5))
    xs, ys = [r["speedup"] for r in rows], [r["accuracy"] for r in rows]
    ax.scatter(xs, ys, c="lightgray", edgecolors="gray", label="configuration")
    fx = [xs[i] for i in sorted(front)]
    fy = [ys[i] for i in sorted(front)]
    order = np.argsort(fx)
    ax.plot(np.asarray(fx)[order], np.asarray(fy)[order], "o-", color="crimson", label="Pareto front")
    for i in front:
        ax.annotate(rows[i]["config"], (xs[i], ys[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel=f"speed-up vs float32 ({args.backend} backend)", ylabel="test accuracy",
           title="MNIST MLP: weight format x sparsity")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot: {path}")
    pareto_names = ",".join(rows[i]["config"] for i in sorted(front))
    print(f"RESULT base_accuracy={base_acc:.4f} configs={len(rows)} pareto={pareto_names}")
    return {"base_accuracy": base_acc, "rows": rows, "front": sorted(front)}


if __name__ == "__main__":
    main()
