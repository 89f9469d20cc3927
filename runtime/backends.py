"""``runtime.compile(closed, backend)``: a callable over flat arrays for a ClosedJaxpr."""
from __future__ import annotations

from typing import Callable

from compiler.ir.core import ClosedJaxpr

BACKENDS = ("numpy", "llvm")


def compile(closed: ClosedJaxpr, backend: str = "llvm") -> Callable:
    """Compile for a backend; the result takes flat arrays and returns the list of flat outputs."""
    if backend == "numpy":
        from .interpreter import eval_jaxpr
        return lambda *args: eval_jaxpr(closed, *args)
    if backend == "llvm":
        from .llvm import compile_llvm
        return compile_llvm(closed)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
