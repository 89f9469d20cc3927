"""The main demo: trace a function, print its IR, read the IR back, and run it.

    python examples/demo.py
"""
import numpy as np

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler import ir


def f(x1, x2):
    return tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))


def main():
    closed = tj.make_jaxpr(f)(1.0, 0.5)
    text = str(closed)
    print("IR of sigmoid(0.75*log(x1/2) + x1 + log(3*x2)):")
    print(text)
    parsed = ir.parse(text)
    assert str(parsed) == text, "print -> parse -> print must be identical"
    value = runtime.eval_jaxpr(parsed, np.float32(1.0), np.float32(0.5))[0]
    print(f"f(1, 0.5) = {float(value):.6f}   (parsed IR on the numpy interpreter)")
    print(f"jit(f)(1, 0.5) = {float(tj.jit(f)(1.0, 0.5)):.6f}")
    reference = 1 / (1 + np.exp(-(0.75 * np.log(0.5) + 1.0 + np.log(1.5))))
    print(f"numpy reference = {reference:.6f}")


if __name__ == "__main__":
    main()
