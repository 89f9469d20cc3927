"""Worked problem: five activation functions, their derivatives and where they are not differentiable.

For sigmoid, softplus, leaky_relu(0.02), heaviside and abs the compiler
  * reads the traced program back as sympy and differentiates it (symbolic.derivative),
  * finds the points where the function is not differentiable (symbolic.nondifferentiable_points),
  * evaluates the derivative on a grid with one batched program, tj.vmap(tj.grad(f)),
and the derivatives are plotted to activations.png.

    python examples/activations.py [--out DIR]
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
from compiler import nn, symbolic  # noqa: E402


def sigmoid(x):
    return nn.sigmoid(x)


def softplus(x):
    return nn.softplus(x)


def leaky_relu(x):
    return nn.leaky_relu(x, negative_slope=0.02)


def heaviside(x):
    return cnp.heaviside(x, 0.5)


def absolute(x):
    return cnp.abs(x)


ACTIVATIONS = {"sigmoid": sigmoid, "softplus": softplus, "leaky_relu(0.02)": leaky_relu,
               "heaviside": heaviside, "abs": absolute}


def derivative_on_grid(f, grid: np.ndarray) -> tuple[np.ndarray, str]:
    """f' on the grid as one batched program, tj.vmap(tj.grad(f)). If vmap cannot batch the
    gradient program, fall back to the gradient of sum(f(grid)) (equal for an elementwise f) and
    say so."""
    try:
        return np.asarray(tj.vmap(tj.grad(f))(grid)), "vmap(grad(f))"
    except Exception as exc:  # a library limitation: report it, still draw the picture
        print(f"    note: tj.vmap(tj.grad(f)) failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
              f"using tj.grad(lambda xs: sum(f(xs))) instead")
        return np.asarray(tj.grad(lambda xs: cnp.sum(f(xs)))(grid)), "grad(sum(f))"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for activations.png")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    grid = np.linspace(-4.0, 4.0, 401).astype(np.float32)     # contains x = 0 exactly
    result = {"grid": grid, "formula": {}, "nondifferentiable": {}, "derivative": {}, "method": {},
              "grad_at_0": {}}
    fig, axes = plt.subplots(1, len(ACTIVATIONS), figsize=(4 * len(ACTIVATIONS), 3.4))
    for ax, (name, f) in zip(axes, ACTIVATIONS.items()):
        print(f"{name}:")
        expr = symbolic.to_sympy(f)
        formula = symbolic.derivative(f)
        points = symbolic.nondifferentiable_points(f)
        values, method = derivative_on_grid(f, grid)
        at0 = float(tj.grad(f)(np.float32(0.0)))
        at_kinks = {float(p): float(tj.grad(f)(np.float32(float(p)))) for p in points}
        print(f"    f(x)  = {expr}")
        print(f"    f'(x) = {formula}")
        if points:
            conventions = ", ".join(f"f'({p:g}) = {g:g}" for p, g in at_kinks.items())
            print(f"    not differentiable at x = {', '.join(str(p) for p in points)} "
                  f"(tracejit's value there, PyTorch's convention: {conventions})")
        else:
            print("    differentiable everywhere")
        result["formula"][name] = formula
        result["nondifferentiable"][name] = points
        result["derivative"][name] = values
        result["method"][name] = method
        result["grad_at_0"][name] = at0
        ax.plot(grid, np.asarray(f(grid)), color="0.6", lw=1, label="f(x)")
        ax.plot(grid, values, color="C0", lw=2, label="f'(x)")
        for p in (p for p in points if grid[0] <= float(p) <= grid[-1]):
            ax.axvline(float(p), color="C3", ls=":", lw=1, label=f"kink x={p}")
        ax.set_title(name)
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(-1.2, 2.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("derivatives by tj.vmap(tj.grad(f))")
    fig.tight_layout()
    path = os.path.join(args.out, "activations.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"derivative plot written to {path}")
    result["plot"] = path
    return result


if __name__ == "__main__":
    main()
