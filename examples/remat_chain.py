"""Worked problem: memory of the gradient of a 10-layer matmul chain, with and without checkpoints.

loss(x, W1..WL) = sum(x @ W1 @ W2 @ ... @ WL), x [n, d], Wi [d, d]. The gradient with respect to the
weights needs every layer's input h_{i-1} (dWi = h_{i-1}^T g_i), so without rematerialization it
keeps L - 1 activations of n*d elements alive. passes.remat wraps every k layers in a checkpoint:
only the segment boundaries are kept and each segment's insides are recomputed in the backward pass.

For each policy the gradient program is built (remat pass -> tj.jaxpr_as_fun -> tj.grad ->
make_jaxpr -> run_passes) and passes.memory_profile measures it: peak bytes, activation bytes at the
peak and the number of recomputed forward equations.

    python examples/remat_chain.py [--out DIR] [--layers 10] [--n 512] [--d 16]
"""
from __future__ import annotations

import argparse
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
from compiler import passes  # noqa: E402


def chain(x, *weights):
    h = x
    for w in weights:
        h = h @ w
    return h.sum()


def gradient_program(fwd_closed, num_layers: int, args):
    """The cleaned gradient program (w.r.t. the weights) of a forward program."""
    fn = tj.jaxpr_as_fun(fwd_closed)
    loss = lambda *a: fn(*a)[0]
    argnums = tuple(range(1, num_layers + 1))
    return passes.run_passes(tj.make_jaxpr(tj.grad(loss, argnums=argnums))(*args)), \
        tj.grad(loss, argnums=argnums)


def segments_of(num_layers: int, k: int) -> list[int]:
    return [min(k, num_layers - s) for s in range(0, num_layers, k)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for remat_chain.png")
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--n", type=int, default=512, help="rows of x (batch)")
    parser.add_argument("--d", type=int, default=16, help="width")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    L, n, d = args.layers, args.n, args.d

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    weights = [(rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32) for _ in range(L)]
    inputs = (x, *weights)
    unit = n * d * x.itemsize                       # one activation buffer
    print(f"chain of {L} matmuls, x [{n}, {d}], W [{d}, {d}] (float32): one activation = {unit:,} B, "
          f"one weight = {d * d * 4:,} B")

    fwd = tj.make_jaxpr(chain)(*inputs)
    baseline, baseline_grad = gradient_program(fwd, L, inputs)
    reference = [np.asarray(g) for g in baseline_grad(*inputs)]

    configs = [("none", None)] + [("every_k", k) for k in (1, 2, 3, 5)] + [("sqrt", None)]
    rows = []
    print(f"\n{'policy':<12}{'layers per segment':<20}{'peak B':>11}{'activations B':>15}{'= buffers':>10}"
          f"{'recomputed':>12}{'grad ok':>9}")
    for policy, k in configs:
        if policy == "none":
            program, grad_fn = baseline, baseline_grad
            segs = [1] * L
        else:
            remat_fwd = passes.remat(fwd, policy, k=k) if k else passes.remat(fwd, policy)
            program, grad_fn = gradient_program(remat_fwd, L, inputs)
            kk = k if k else max(1, round(math.sqrt(L)))
            segs = segments_of(L, kk)
        prof = passes.memory_profile(program)
        grads = [np.asarray(g) for g in grad_fn(*inputs)]
        same = all(np.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(grads, reference))
        label = policy if not k else f"every_k={k}"
        rows.append({"policy": policy, "k": k, "label": label, "segments": segs, "peak_bytes": prof.peak_bytes,
                     "activation_bytes": prof.activation_bytes, "input_bytes": prof.input_bytes,
                     "output_bytes": prof.output_bytes, "recomputed_eqns": prof.recomputed_eqns,
                     "grads_match": same, "eqns": len(program.jaxpr.eqns)})
        shown = "no checkpoints" if policy == "none" else "+".join(map(str, segs))
        print(f"{label:<12}{shown:<20}{prof.peak_bytes:>11,}{prof.activation_bytes:>15,}"
              f"{prof.activation_bytes / unit:>10.2f}{prof.recomputed_eqns:>12}{str(same):>9}")

    print("\nreading the table (buffers of n*d*4 bytes):")
    print(f"  without checkpoints the backward keeps h1..h{L - 1} ({L - 1} buffers) plus the cotangent"
          f" going in and the one coming out: {L + 1} buffers, about num_layers = {L}")
    print("  with a checkpoint every k layers: the boundaries before the segment being differentiated,"
          " that segment's k - 1 recomputed insides and 2 cotangents, about L/k + k buffers;"
          " each segment but the last recomputes k - 1 matmuls")
    best = min(rows, key=lambda r: (r["activation_bytes"], r["recomputed_eqns"]))
    print(f"  least activation memory: {best['label']} ({best['activation_bytes']:,} B vs "
          f"{rows[0]['activation_bytes']:,} B without checkpoints, "
          f"{best['recomputed_eqns']} recomputed equations)")

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        ax.scatter(r["recomputed_eqns"], r["activation_bytes"] / 1024, s=40)
        ax.annotate(r["label"], (r["recomputed_eqns"], r["activation_bytes"] / 1024), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("recomputed forward equations")
    ax.set_ylabel("activation memory at the peak (KiB)")
    ax.set_title(f"gradient of a {L}-layer matmul chain: memory vs recomputation")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(args.out, "remat_chain.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"plot written to {path}")
    return {"layers": L, "n": n, "d": d, "itemsize": x.itemsize, "unit_bytes": unit, "rows": rows, "plot": path}


if __name__ == "__main__":
    main()
