"""Worked problem: three hand backprop tables, computed by the compiler's reverse pass.

1. x**4 at x = 2 written as z1 = x, z2 = z1 * z1, z3 = z2 * z2: dz3/dx = 4 x**3 = 32.
2. log(exp(x * y)) at (2, 3): the gradient is (y, x) = (3, 2).
3. One RNN cell, out = wo * relu(wr * h0 + wi * x1) at x1 = 2, h0 = 3, wr = 4, wi = 5, wo = 6:
   d out / d (wr, wi, wo) = (wo h0, wo x1, relu(...)) = (18, 12, 22).

    python examples/scalar_backprop.py [--out DIR]
"""
from __future__ import annotations

import argparse
import os

import compiler as tj
import compiler.numpy as cnp
from compiler import nn


def power4(x):
    z1 = x
    z2 = z1 * z1
    z3 = z2 * z2
    return z3


def log_exp(x, y):
    return cnp.log(cnp.exp(x * y))


def rnn_cell(wr, wi, wo, x1, h0):
    h1 = nn.relu(wr * h0 + wi * x1)
    return wo * h1


def _table(title: str, fun, argnums, *args):
    print(f"\n=== {title} ===")
    expl = tj.explain_grad(fun, argnums=argnums)(*args)
    grads = expl.gradients if isinstance(expl.gradients, tuple) else (expl.gradients,)
    return expl, tuple(float(g) for g in grads)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for outputs (nothing is drawn here)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    e1, (d_power,) = _table("x**4 at x = 2 (z1 = x, z2 = z1*z1, z3 = z2*z2)", power4, 0, 2.0)
    out_name = list(e1.values)[-1]
    print(f"z3 = {float(e1.values[out_name]):g}; dz3/dx = {d_power:g}")

    e2, (dx, dy) = _table("log(exp(x*y)) at (x, y) = (2, 3)", log_exp, (0, 1), 2.0, 3.0)
    print(f"gradient (d/dx, d/dy) = ({dx:g}, {dy:g})")

    e3, (dwr, dwi, dwo) = _table("RNN cell wo * relu(wr*h0 + wi*x1) at x1=2, h0=3, wr=4, wi=5, wo=6",
                                 rnn_cell, (0, 1, 2), 4.0, 5.0, 6.0, 2.0, 3.0)
    print(f"gradient (d/dwr, d/dwi, d/dwo) = ({dwr:g}, {dwi:g}, {dwo:g})")
    return {"power4_value": float(e1.values[out_name]), "power4_grad": d_power,
            "log_exp_grad": (dx, dy), "rnn_grad": (dwr, dwi, dwo),
            "rnn_value": float(list(e3.values.values())[-1]), "explanations": (e1, e2, e3),
            "adjoints": {"power4": {k: float(v) for k, v in e1.adjoints.items()},
                         "log_exp": {k: float(v) for k, v in e2.adjoints.items()},
                         "rnn": {k: float(v) for k, v in e3.adjoints.items()}}}


if __name__ == "__main__":
    main()
