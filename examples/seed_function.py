"""Worked problem: the seed function f(x1, x2) = sigmoid(0.75 ln(x1/2) + x1 + ln(3 x2)).

The compiler prints its IR, the forward-mode (jvp) and reverse-mode (grad) programs, computes the
gradient at (1, 0.5) and checks it against sympy. Then: how far may x1 move before f moves by 0.05?
To first order delta = 0.05 / |df/dx1|; exactly, by bisection on f itself (both directions).

    python examples/seed_function.py [--out DIR] [--x1 1.0] [--x2 0.5] [--tol 0.05]
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
from compiler import passes, symbolic  # noqa: E402


def f(x1, x2):
    return tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))


def bisect_delta(g, x1: float, x2: float, tol: float, direction: float, iterations: int = 200) -> float:
    """The largest d >= 0 with |f(x1 + direction*d, x2) - f(x1, x2)| <= tol, for f monotone in x1
    along the direction (bisection on f evaluated in float64 by the compiler's program)."""
    f0 = float(g(np.float64(x1), np.float64(x2)))
    moved = lambda d: abs(float(g(np.float64(x1 + direction * d), np.float64(x2))) - f0)
    lo, hi = 0.0, 1.0
    limit = x1 if direction < 0 else np.inf           # x1 must stay > 0 (log)
    while moved(hi) <= tol:
        if hi >= limit:
            return float(limit)
        hi = min(2 * hi, limit * (1 - 1e-12)) if direction < 0 else 2 * hi
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if moved(mid) <= tol:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * max(1.0, hi):
            break
    return lo


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for seed_function.png")
    parser.add_argument("--x1", type=float, default=1.0)
    parser.add_argument("--x2", type=float, default=0.5)
    parser.add_argument("--tol", type=float, default=0.05, help="allowed change of f")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    x1, x2, tol = args.x1, args.x2, args.tol

    print("IR of f:")
    print(tj.make_jaxpr(f)(x1, x2))
    print("\nforward mode, tj.jvp(f, (x1, x2), (1, 0)) (value and df/dx1 in one pass):")
    print(tj.make_jaxpr(lambda a, b: tj.jvp(f, (a, b), (1.0, 0.0)))(x1, x2))
    grad_program = tj.make_jaxpr(tj.grad(f, argnums=(0, 1)))(x1, x2)
    print("\nreverse mode, tj.grad(f, argnums=(0, 1)):")
    print(grad_program)
    cleaned = passes.run_passes(grad_program)
    print(f"\nafter simplify, cse, dce ({len(grad_program.jaxpr.eqns)} -> {len(cleaned.jaxpr.eqns)} equations):")
    print(cleaned)

    value, tangent = tj.jvp(f, (x1, x2), (1.0, 0.0))
    g1, g2 = (float(g) for g in tj.grad(f, argnums=(0, 1))(x1, x2))
    print(f"\nf({x1:g}, {x2:g}) = {float(value):.7f}")
    print(f"reverse mode: df/dx1 = {g1:.7f}, df/dx2 = {g2:.7f}")
    print(f"forward mode: df/dx1 = {float(tangent):.7f}")

    check = symbolic.check_grad(f, x1, x2)
    print("\ngradient vs sympy:")
    print(check)

    first_order = tol / abs(g1)
    g64 = lambda a, b: f(a, b)                        # float64 inputs trace a float64 program
    up = bisect_delta(g64, x1, x2, tol, +1.0)
    down = bisect_delta(g64, x1, x2, tol, -1.0)
    exact = min(up, down)
    print(f"\nlargest change of x1 keeping |f change| <= {tol:g}:")
    print(f"  first order: delta = {tol:g} / |df/dx1| = {tol:g} / {abs(g1):.6f} = {first_order:.6f}")
    print(f"  exact (bisection on f): increase x1 by at most {up:.6f}, decrease by at most {down:.6f}; "
          f"both ways: {exact:.6f}")

    # picture: f along x1 with the tolerance band and the two deltas
    xs = np.linspace(max(1e-3, x1 - 3 * first_order), x1 + 3 * first_order, 300)
    ys = np.asarray(tj.vmap(lambda a: f(a, np.float64(x2)))(xs))
    f0 = float(f(np.float64(x1), np.float64(x2)))
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, label="f(x1, x2)")
    ax.plot(xs, f0 + g1 * (xs - x1), ls="--", label="tangent (first order)")
    ax.axhspan(f0 - tol, f0 + tol, color="C2", alpha=0.15, label=f"|f - f0| <= {tol:g}")
    ax.axvspan(x1 - down, x1 + up, color="C1", alpha=0.15, label="exact x1 range")
    ax.axvline(x1 - first_order, color="C3", ls=":")
    ax.axvline(x1 + first_order, color="C3", ls=":", label="first-order delta")
    ax.set_xlabel("x1")
    ax.set_ylabel("f")
    ax.legend(fontsize=8)
    ax.set_title(f"f(x1, {x2:g}) near x1 = {x1:g}")
    fig.tight_layout()
    path = os.path.join(args.out, "seed_function.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"plot written to {path}")

    return {"ir": str(tj.make_jaxpr(f)(x1, x2)), "grad_program": str(grad_program), "value": float(value),
            "grad": (g1, g2), "jvp_dx1": float(tangent), "check_ok": check.ok,
            "check_max_abs_error": check.max_abs_error, "delta_first_order": first_order,
            "delta_up": up, "delta_down": down, "delta_exact": exact, "plot": path}


if __name__ == "__main__":
    main()
