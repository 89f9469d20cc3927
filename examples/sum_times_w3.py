"""Worked problem: L = (w1 + w2) * w3, one step of gradient descent, and the graph before and after.

explain_grad prints the forward values and the reverse pass (the backprop table); the gradients
dL/dw_i give one step w <- w - lr * dL/dw; the graph is rendered with its values and adjoints
before and after the step (graphviz; skipped with a message if it is missing).

    python examples/sum_times_w3.py [--out DIR] [--w 2,-3,4] [--lr 0.01]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import compiler as tj
from compiler import viz


def loss(w1, w2, w3):
    return (w1 + w2) * w3


def render_graph(explanation, path: str, title: str) -> str | None:
    """Draw the program with its forward values and adjoints; None (and a message) without graphviz."""
    try:
        return viz.render(explanation.jaxpr, path, values=explanation.values, grads=explanation.adjoints,
                          title=title)
    except viz.GraphvizMissing as exc:
        print(f"  (graph not rendered: {exc})")
        return None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".", help="folder for the graph pictures")
    parser.add_argument("--w", default="2,-3,4", help="w1,w2,w3")
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    w = [float(v) for v in args.w.split(",")]
    if len(w) != 3:
        parser.error("--w needs three numbers w1,w2,w3")

    print("program:")
    print(tj.make_jaxpr(loss)(*w))
    print(f"\nbackprop table at w = {tuple(w)}:")
    before = tj.explain_grad(loss, argnums=(0, 1, 2))(*w)
    grads = [float(g) for g in before.gradients]
    L0 = float(before.values[_output_name(before)])
    new_w = [wi - args.lr * gi for wi, gi in zip(w, grads)]
    print(f"\nL = {L0:g}; dL/dw1 = {grads[0]:g}, dL/dw2 = {grads[1]:g}, dL/dw3 = {grads[2]:g}")
    print(f"one step with lr {args.lr:g}: w <- w - lr * grad = "
          f"({new_w[0]:.6g}, {new_w[1]:.6g}, {new_w[2]:.6g})")
    print("\nbackprop table after the step:")
    after = tj.explain_grad(loss, argnums=(0, 1, 2))(*np.float32(new_w))
    L1 = float(after.values[_output_name(after)])
    print(f"\nnew L = {L1:.6g} (change {L1 - L0:+.6g}; first-order prediction "
          f"-lr * |grad|^2 = {-args.lr * sum(g * g for g in grads):+.6g})")

    pictures = []
    for name, expl, L in (("before", before, L0), ("after", after, L1)):
        path = render_graph(expl, os.path.join(args.out, f"sum_times_w3_{name}.png"),
                            f"L = (w1 + w2) * w3 (a=w1, b=w2, c=w3) {name} the step: L = {L:.6g}")
        if path:
            print(f"graph {name} the step written to {path}")
            pictures.append(path)
    return {"w": tuple(w), "L": L0, "grads": tuple(grads), "lr": args.lr, "new_w": tuple(new_w),
            "new_L": L1, "new_grads": tuple(float(g) for g in after.gradients), "pictures": pictures}


def _output_name(explanation) -> str:
    """The printed name of the program's output variable."""
    from compiler.ir.printer import var_names
    jaxpr = explanation.jaxpr.jaxpr
    return var_names(jaxpr)[jaxpr.outvars[0]]


if __name__ == "__main__":
    main()
