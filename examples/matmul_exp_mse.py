"""Worked problem: v4 = x @ W, v5 = exp(v4), v6 = v4 + v5, v7 = MSE(v6, y); the adjoints of v4..v7
and of W, by the compiler's reverse pass.

explain_grad runs the reverse pass on the traced program and keeps every variable's adjoint; tj.vjp
gives dW a second way (the vjp function applied to the seed 1).

    python examples/matmul_exp_mse.py [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import textwrap

import numpy as np

import compiler as tj
import compiler.numpy as cnp
from compiler import nn
from compiler.ir.printer import var_names

X = np.array([[1.0, 2.0],
              [0.5, -1.0]], np.float32)
W = np.array([[0.1, -0.2, 0.3],
              [0.0, 0.4, -0.1]], np.float32)
Y = np.array([[1.0, 0.0, 2.0],
              [0.5, 1.0, 0.0]], np.float32)


def program(x, w, y):
    v4 = x @ w
    v5 = cnp.exp(v4)
    v6 = v4 + v5
    v7 = nn.mse(v6, y)
    return v7


def _named_variables(closed) -> dict:
    """Printed names of v4 (the matmul), v5 (the exp), v6 (their sum), v7 (the output), and W."""
    jaxpr = closed.jaxpr
    names = var_names(jaxpr)
    producer = {e.primitive.name: e for e in jaxpr.eqns}
    v4 = producer["dot_general"].outvars[0]
    v5 = producer["exp"].outvars[0]
    v6 = next(e.outvars[0] for e in jaxpr.eqns
              if e.primitive.name == "add" and set(e.inputs) == {v4, v5})
    return {"v4": names[v4], "v5": names[v5], "v6": names[v6], "v7": names[jaxpr.outvars[0]],
            "W": names[jaxpr.invars[1]]}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for outputs (nothing is drawn here)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with np.printoptions(precision=5, suppress=True):
        return _run(args)


def _run(args) -> dict:

    print("x =\n", X, "\nW =\n", W, "\ny =\n", Y, sep="")
    print("\nprogram:")
    print(tj.make_jaxpr(program)(X, W, Y))
    print("\nreverse pass (explain_grad with respect to W):")
    expl = tj.explain_grad(program, argnums=1)(X, W, Y)
    names = _named_variables(expl.jaxpr)
    values = {k: np.asarray(expl.values[n]) for k, n in names.items()}
    adjoints = {k: np.asarray(expl.adjoints[n]) for k, n in names.items()}

    _, vjp_fn = tj.vjp(lambda w: program(X, w, Y), W)
    (dW_vjp,) = vjp_fn(np.float32(1.0))
    dW_vjp = np.asarray(dW_vjp)

    print("\nadjoints (d v7 / d v), as the compiler computed them:")
    for k in ("v7", "v6", "v5", "v4", "W"):
        print(f"  {k} (printed as {names[k]}):")
        print(textwrap.indent(f"value\n{values[k]}\nadjoint d v7 / d {k}\n{adjoints[k]}", "      "))
    print(f"\ndW by tj.vjp:\n{dW_vjp}\nequal to explain_grad's: "
          f"{np.allclose(dW_vjp, np.asarray(expl.gradients), rtol=1e-6, atol=1e-7)}")
    return {"x": X, "W": W, "y": Y, "names": names, "values": values, "adjoints": adjoints,
            "dW_explain": np.asarray(expl.gradients), "dW_vjp": dW_vjp}


if __name__ == "__main__":
    main()
