"""Worked problem: facts about low precision, shown on arrays by the compiler's programs.

1. bf16 keeps float32's range (8 exponent bits) with less precision (8 significant bits: relative
   rounding error up to 2^-8); fp16 has more precision (11 bits: 2^-11) but a small range (max 65504).
2. fp16 overflows where bf16 does not (x*x at x = 300, exp(12), 1e38).
3. 2:4 structured sparsity: prune(..., structure="2:4") and the validity check is_n_m_sparse.
4. Weights vs activations: a random layer's weights are small and symmetric, its post-ReLU
   activations larger and one-sided; what per-channel int8 weight scales (quantize pass) look like.

    python examples/low_precision_facts.py [--out DIR]
"""
from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import compiler as tj  # noqa: E402
import compiler.numpy as cnp  # noqa: E402
from compiler import nn, passes, random  # noqa: E402


BACKEND = None          # tj.jit's default backend; --backend picks another


def round_trip(dtype: str):
    """float32 -> dtype -> float32, as one jitted program (convert_element_type twice)."""
    return tj.jit(lambda x: x.astype(dtype).astype("float32"), backend=BACKEND)


def in_dtype(dtype: str, fun):
    """fun computed in dtype: the inputs converted, fun applied, the result widened to float32."""
    return tj.jit(lambda x: fun(x.astype(dtype)).astype("float32"), backend=BACKEND)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for low_precision_facts.png")
    parser.add_argument("--backend", choices=("numpy", "llvm"), default=None,
                        help="backend of the jitted conversions (default: tj.jit's)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    global BACKEND
    BACKEND = args.backend
    result: dict = {}
    bf16, fp16 = round_trip("bfloat16"), round_trip("float16")
    print("the round trip float32 -> bf16 -> float32 is the program:")
    print(tj.make_jaxpr(lambda x: x.astype("bfloat16").astype("float32"))(np.ones(3, np.float32)))

    # 1. range ------------------------------------------------------------------------------------
    probe = np.array([1e38, 3e38, 1e5, 70000.0, 65520.0, 65519.0, 65504.0, 1e-8, 1e-40], np.float32)
    with np.errstate(over="ignore", under="ignore"):
        as_bf16, as_fp16 = np.asarray(bf16(probe)), np.asarray(fp16(probe))
    print("\nrange: value -> bf16 -> fp16")
    for v, b, h in zip(probe, as_bf16, as_fp16):
        print(f"  {v:>12.6g} -> {b:>12.6g} {h:>12.6g}")
    print("  bf16 keeps 1e38 (and anything below float32's max); fp16 turns everything from 65520 up into"
          " inf (its largest number is 65504) and flushes 1e-8 to 0")
    result.update(range_probe=probe, range_bf16=as_bf16, range_fp16=as_fp16)

    # 2. precision --------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    samples = (rng.uniform(1.0, 2.0, 200_000) * 2.0 ** rng.integers(-10, 10, 200_000)).astype(np.float32)
    rel_bf16 = float(np.max(np.abs(np.asarray(bf16(samples)) - samples) / samples))
    rel_fp16 = float(np.max(np.abs(np.asarray(fp16(samples)) - samples) / samples))
    eps = {}
    for name, rt in (("bf16", bf16), ("fp16", fp16)):
        powers = np.arange(1, 30)
        ones = (1.0 + 2.0 ** -powers.astype(np.float64)).astype(np.float32)
        kept = np.asarray(rt(ones)) != 1.0
        eps[name] = float(2.0 ** -powers[kept].max())         # the smallest 2^-k with 1 + 2^-k != 1
    print("\nprecision (largest relative rounding error over 200,000 values, and the spacing above 1):")
    print(f"  bf16: {rel_bf16:.6g} (2^{np.log2(rel_bf16):.2f}); 1 + {eps['bf16']:g} = 1 + 2^{int(np.log2(eps['bf16']))}"
          f" is the next number after 1")
    print(f"  fp16: {rel_fp16:.6g} (2^{np.log2(rel_fp16):.2f}); 1 + {eps['fp16']:g} = 1 + 2^{int(np.log2(eps['fp16']))}"
          f" is the next number after 1")
    result.update(rel_error_bf16=rel_bf16, rel_error_fp16=rel_fp16, eps_bf16=eps["bf16"], eps_fp16=eps["fp16"])

    # 3. overflow in arithmetic -------------------------------------------------------------------
    xs = np.array([300.0, 12.0], np.float32)
    with np.errstate(over="ignore"):
        sq = {d: np.asarray(in_dtype(d, lambda x: x * x)(xs[:1]))[0] for d in ("float16", "bfloat16", "float32")}
        ex = {d: np.asarray(in_dtype(d, cnp.exp)(xs[1:]))[0] for d in ("float16", "bfloat16", "float32")}
    print("\narithmetic: x*x at x = 300 (90000) and exp(12) (162754.8)")
    for d in sq:
        print(f"  {d:<9}: 300*300 = {sq[d]:<10g} exp(12) = {ex[d]:g}")
    print("  fp16 overflows to inf; bf16 gives the right magnitude, rounded to 8 significant bits")
    result.update(square_300={k: float(v) for k, v in sq.items()}, exp_12={k: float(v) for k, v in ex.items()})

    # 4. 2:4 sparsity -----------------------------------------------------------------------------
    w = rng.standard_normal((4, 8)).astype(np.float32)
    pruned = passes.prune(w, structure="2:4")
    print("\n2:4 pruning (keep the 2 largest magnitudes of every 4 consecutive weights in a row):")
    show = lambda a: np.array2string(a, precision=2, suppress_small=True, floatmode="fixed")
    print(f"  weights\n{show(w)}\n  pruned\n{show(pruned)}")
    valid_before, valid_after = passes.is_n_m_sparse(w, 2, 4), passes.is_n_m_sparse(pruned, 2, 4)
    bad = np.array([[1.0, 2.0, 3.0, 0.0, 1.0, 0.0, 0.0, 1.0]], np.float32)
    valid_bad = passes.is_n_m_sparse(bad, 2, 4)
    print(f"  is_n_m_sparse(weights, 2, 4) = {valid_before}; is_n_m_sparse(pruned, 2, 4) = {valid_after}; "
          f"sparsity {passes.sparsity_of(pruned):.2f}")
    print(f"  {bad[0]} is 2:4 sparse? {valid_bad} (its first group has 3 non-zeros)")
    result.update(w_dense=w, w_pruned=pruned, valid_before=valid_before, valid_after=valid_after,
                  valid_bad=valid_bad, bad_pattern=bad)

    # 5. weights vs activations, int8 scales ------------------------------------------------------
    k1, k2 = random.split(random.PRNGKey(0))
    fan_in, fan_out, batch = 128, 256, 512
    weight = np.asarray(nn.kaiming_normal(k1, (fan_out, fan_in)))
    x = np.asarray(random.normal(k2, (batch, fan_in)))
    layer = tj.make_jaxpr(lambda x: nn.relu(nn.linear(x, weight)))(x)
    act = np.asarray(tj.jaxpr_as_fun(layer)(x)[0])
    print(f"\na random layer: Linear({fan_in}, {fan_out}) with Kaiming-normal weights, inputs N(0, 1), ReLU")
    print(f"  weights:     std {weight.std():.4f} (Kaiming: sqrt(2/{fan_in}) = {np.sqrt(2 / fan_in):.4f}), "
          f"range [{weight.min():.3f}, {weight.max():.3f}]")
    print(f"  activations: mean {act.mean():.4f}, range [{act.min():.3f}, {act.max():.3f}], "
          f"{(act == 0).mean():.0%} exact zeros (post-ReLU: one-sided)")
    quantized = passes.quantize(layer, weights="int8", per_channel=True)
    per_tensor = passes.quantize(layer, weights="int8", per_channel=False)
    scales = next(np.asarray(c) for c in quantized.consts if np.asarray(c).dtype == np.float32)
    scale_t = float(next(np.asarray(c) for c in per_tensor.consts if np.asarray(c).dtype == np.float32).ravel()[0])
    rep_c = passes.quantization_report(layer, quantized, [(x,)])
    rep_t = passes.quantization_report(layer, per_tensor, [(x,)])
    act_scale = float(act.max()) / 127
    print(f"  per-channel int8 weight scales (amax of each output row / 127), shape {scales.shape}: "
          f"{np.array2string(scales.ravel()[:5], precision=5)} ... range [{scales.min():.5f}, {scales.max():.5f}]")
    print(f"  one per-tensor scale would be {scale_t:.5f}; int8 activations would need a scale of about "
          f"{act_scale:.4f} ({act_scale / scales.mean():.0f}x the weights')")
    print(f"  error of the layer: per-channel {rep_c}")
    print(f"                      per-tensor  {rep_t}")
    result.update(weight=weight, activations=act, int8_scales=scales, per_tensor_scale=scale_t,
                  act_scale=act_scale, rel_error_per_channel=rep_c.relative_error,
                  rel_error_per_tensor=rep_t.relative_error)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].hist(weight.ravel(), bins=80, color="C0")
    axes[0].set_title("weights (Kaiming normal)")
    axes[1].hist(act.ravel(), bins=80, color="C1", log=True)
    axes[1].set_title("post-ReLU activations (log count)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(args.out, "low_precision_facts.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"\nhistograms written to {path}")
    result["plot"] = path
    return result


if __name__ == "__main__":
    main()
