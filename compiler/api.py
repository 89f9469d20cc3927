"""The public transformations: make_jaxpr and jit (the AD and batching transforms live beside them).

Each takes a Python function and returns a Python function, so they compose. jit is the one place
where the compiler hands a Jaxpr to a backend (runtime/).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable, Sequence

import numpy as np

import runtime
from runtime.interpreter import apply_primitive

from . import tracing
from .ir.core import ClosedJaxpr
from .tracing import Tracer, aval_of, trace
from .tree_util import tree_flatten, tree_unflatten

tracing.eager_apply = apply_primitive      # outside any trace, a primitive runs on the interpreter

# The LLVM backend is not built yet (see README); until it is, jit runs on the numpy interpreter.
DEFAULT_BACKEND = "numpy"


def _normalize_argnums(static_argnums, nargs: int) -> tuple[int, ...]:
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    out = []
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"static_argnums {n} out of range for {nargs} positional arguments")
        out.append(n % nargs)
    return tuple(sorted(set(out)))


def _split_static(fun: Callable, args: Sequence[Any], static: tuple[int, ...]):
    """A function of the dynamic arguments only, with the static ones fixed."""
    static_vals = {i: args[i] for i in static}
    dynamic = [a for i, a in enumerate(args) if i not in static_vals]

    def dyn_fun(*dyn, **kwargs):
        it = iter(dyn)
        full = [static_vals[i] if i in static_vals else next(it) for i in range(len(args))]
        return fun(*full, **kwargs)

    return dyn_fun, dynamic, tuple((i, _hashable(static_vals[i])) for i in static)


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        raise TypeError(f"static arguments must be hashable, got {type(x).__name__}") from None


def make_jaxpr(fun: Callable, static_argnums=()) -> Callable[..., ClosedJaxpr]:
    """``make_jaxpr(f)(*args)`` traces f at the types of args and returns the ClosedJaxpr."""
    @functools.wraps(fun)
    def traced(*args, **kwargs):
        static = _normalize_argnums(static_argnums, len(args))
        dyn_fun, dynamic, _ = _split_static(fun, args, static)
        closed, _, _ = trace(dyn_fun, dynamic, kwargs)
        return closed
    return traced


class Lowered:
    """A function traced and prepared for one input signature: inspect it, then compile it."""

    def __init__(self, closed: ClosedJaxpr, in_tree, out_tree, backend: str):
        self.closed, self.in_tree, self.out_tree, self.backend = closed, in_tree, out_tree, backend
        self._compiled = None
        self.compile_seconds: float | None = None

    def as_text(self, dialect: str = "jaxpr") -> str:
        if dialect == "jaxpr":
            return str(self.closed)
        if dialect == "llvm":
            from runtime.llvm import llvm_ir
            return llvm_ir(self.closed)
        raise ValueError(f"as_text: unknown dialect {dialect!r}; expected 'jaxpr' or 'llvm'")

    def compile(self) -> Callable:
        if self._compiled is None:
            start = time.perf_counter()
            self._compiled = runtime.compile(self.closed, self.backend)
            self.compile_seconds = time.perf_counter() - start
        return self._compiled

    def __call__(self, *flat_args):
        return self.compile()(*flat_args)


class Jitted:
    """The result of ``jit(f)``: traces once per input signature, caches, and runs on a backend."""

    def __init__(self, fun: Callable, backend: str | None, static_argnums):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.backend = backend or DEFAULT_BACKEND
        if self.backend not in runtime.BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected 'numpy' or 'llvm'")
        self.static_argnums = static_argnums
        self._cache: dict = {}
        self.trace_count = 0

    def _key_and_dynamic(self, args, kwargs):
        static = _normalize_argnums(self.static_argnums, len(args))
        dyn_fun, dynamic, static_key = _split_static(self.fun, args, static)
        leaves, in_tree = tree_flatten((tuple(dynamic), dict(kwargs)))
        signature = tuple((a.shape, a.dtype, a.weak_type) for a in map(aval_of, leaves))
        return (in_tree, signature, static_key), dyn_fun, dynamic, leaves

    def lower(self, *args, **kwargs) -> Lowered:
        key, dyn_fun, dynamic, _ = self._key_and_dynamic(args, kwargs)
        lowered = self._cache.get(key)
        if lowered is None:
            closed, in_tree, out_tree = trace(dyn_fun, dynamic, kwargs)
            self.trace_count += 1
            lowered = Lowered(closed, in_tree, out_tree, self.backend)
            self._cache[key] = lowered
        return lowered

    def __call__(self, *args, **kwargs):
        key, dyn_fun, dynamic, leaves = self._key_and_dynamic(args, kwargs)
        if any(isinstance(x, Tracer) for x in leaves):
            return self.fun(*args, **kwargs)     # inside another trace: inline into it
        lowered = self._cache.get(key) or self.lower(*args, **kwargs)
        outs = lowered(*leaves)
        return tree_unflatten(lowered.out_tree, outs)


def jit(fun: Callable | None = None, *, backend: str | None = None, static_argnums=()):
    """Compile ``fun`` for each new input signature (shapes, dtypes, static values) and cache it.

    Usable as ``@jit``, ``@jit(backend="numpy")`` or ``jit(f, static_argnums=(1,))``.
    """
    if fun is None:
        return lambda f: Jitted(f, backend, static_argnums)
    return Jitted(fun, backend, static_argnums)
