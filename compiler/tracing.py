"""Tracing: run a Python function on Tracers and record every primitive it applies into a Jaxpr.

A stack of JaxprBuilders (one per nested trace: make_jaxpr inside grad inside jit ...) decides where an
operation goes: ``bind`` always records into the innermost builder. A tracer of an outer builder that
appears in an inner trace is captured as a constvar of the inner jaxpr, so inner jaxprs stay closed and
their ClosedJaxpr.consts may themselves be outer tracers (this is how nested transforms compose).
Outside any trace, ``bind`` evaluates eagerly with the numpy interpreter.
"""
from __future__ import annotations

import os
import traceback
from typing import Any, Callable, Sequence

import numpy as np

from .ir.core import (DEFAULT_FLOAT, DEFAULT_INT, ClosedJaxpr, Eqn, Jaxpr, Literal, Primitive,
                      ShapedArray, Var, bool_, dtype as to_dtype, i64)
from .ir.errors import ConcretizationError, ShapeError
from .tree_util import tree_flatten, tree_unflatten


class UnexpectedTracerError(TypeError):
    """A tracer was used after the trace that made it had finished (it leaked out of a transform)."""


class Tracer:
    """A stand-in for an array while a function is traced: it knows only its type (shape, dtype).

    Operators, ``np.*`` functions (``__array_ufunc__``/``__array_function__``) and methods are
    attached by compiler.numpy, so they all lead to the same primitives.
    """
    __slots__ = ("builder", "ir_var")
    __array_priority__ = 1000

    def __init__(self, builder: "JaxprBuilder", var: Var):
        self.builder = builder
        self.ir_var = var

    @property
    def aval(self) -> ShapedArray:
        return self.ir_var.aval

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ir_var.aval.shape

    @property
    def dtype(self) -> np.dtype:
        return self.ir_var.aval.dtype.np

    @property
    def ndim(self) -> int:
        return len(self.ir_var.aval.shape)

    @property
    def size(self) -> int:
        return self.ir_var.aval.size

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Tracer<{self.aval}>"

    def _concrete(self, what: str):
        raise ConcretizationError(
            f"{what} needs a concrete value, but got a traced array {self.aval} (its value is not known "
            f"while the function is being traced, e.g. under jit). Python control flow cannot depend on "
            f"it: use tj.lax.cond(pred, true_fun, false_fun, *operands) for if/else, "
            f"tj.lax.while_loop / tj.lax.fori_loop for loops, or cnp.where to select elementwise; or mark "
            f"the argument static with static_argnums.")

    def __bool__(self):
        self._concrete("`if`/`while`/`bool()` on an array")

    def __int__(self):
        self._concrete("int()")

    def __float__(self):
        self._concrete("float()")

    def __index__(self):
        self._concrete("using an array as a Python index")

    def __array__(self, *args, **kwargs):
        self._concrete("converting to a numpy array (np.asarray)")

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __hash__(self):
        return id(self)


# ----------------------------------------------------------------------------------------------
# The builder stack
# ----------------------------------------------------------------------------------------------

_STACK: list["JaxprBuilder"] = []


def _python_scalar_aval(x: Any) -> ShapedArray | None:
    if isinstance(x, np.generic):          # np.float64 subclasses float, but it is strongly typed
        return None
    if isinstance(x, bool):
        return ShapedArray((), bool_, True)
    if isinstance(x, int) and not isinstance(x, bool):
        return ShapedArray((), DEFAULT_INT if -2**31 <= x < 2**31 else i64, True)
    if isinstance(x, float):
        return ShapedArray((), DEFAULT_FLOAT, True)
    return None


def aval_of(x: Any) -> ShapedArray:
    """The type of a value that may enter a traced program (array, numpy/Python scalar, Tracer)."""
    if isinstance(x, Tracer):
        return x.aval
    if isinstance(x, bool):
        return ShapedArray((), bool_, True)
    scalar = _python_scalar_aval(x)
    if scalar is not None:
        return scalar
    if isinstance(x, (np.ndarray, np.generic)):
        return ShapedArray(tuple(x.shape), to_dtype(x.dtype))
    raise TypeError(f"expected an array or a scalar, got {type(x).__name__}: {x!r:.80}")


class JaxprBuilder:
    """Collects the equations of one trace, and the constants it captures from outside."""

    def __init__(self):
        self.eqns: list[Eqn] = []
        self.constvars: list[Var] = []
        self.consts: list[Any] = []
        self._const_index: dict[int, Var] = {}
        self.alive = True

    def new_tracer(self, aval: ShapedArray) -> Tracer:
        return Tracer(self, Var(aval))

    def _capture(self, x: Any, aval: ShapedArray) -> Var:
        var = self._const_index.get(id(x))
        if var is None:
            var = Var(aval.strip_weak())
            self._const_index[id(x)] = var
            self.constvars.append(var)
            self.consts.append(x)            # keeps x alive, so id(x) stays unique
        return var

    def to_atom(self, x: Any) -> Var | Literal:
        if isinstance(x, Tracer):
            if x.builder is self:
                return x.ir_var
            if not x.builder.alive:
                raise UnexpectedTracerError(
                    f"a traced value {x.aval} escaped the transformation that created it (was it "
                    f"stored in a global or returned through a side channel?)")
            return self._capture(x, x.aval)
        aval = aval_of(x)
        if aval.shape == ():
            return Literal(x, aval)
        return self._capture(x, aval)

    def build(self, invars: list[Var], outs: Sequence[Any]) -> ClosedJaxpr:
        outvars = [self.to_atom(o) for o in outs]
        jaxpr = Jaxpr(list(self.constvars), invars, self.eqns, outvars)
        return ClosedJaxpr(jaxpr, list(self.consts))


def current_builder() -> "JaxprBuilder | None":
    return _STACK[-1] if _STACK else None


# Set by compiler.api: evaluates one primitive on concrete numpy values (the numpy interpreter).
eager_apply: Callable | None = None


def _user_frame() -> str:
    """file:line of the innermost stack frame that belongs to the user, not to tracejit."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(pkg)
    ours = (pkg + os.sep, os.path.join(root, "runtime") + os.sep)
    for frame in reversed(traceback.extract_stack()[:-1]):
        fname = os.path.abspath(frame.filename)
        if not fname.startswith(ours) and "importlib" not in fname:
            return f"{frame.filename}:{frame.lineno}" + (f" ({frame.line.strip()})" if frame.line else "")
    return "<unknown>"


def shape_error(message: str) -> ShapeError:
    """A ShapeError that points at the user's source line (for checks made outside shape rules)."""
    return ShapeError(f"{message}\n  at {_user_frame()}")


def check_types(prim: Primitive, avals: list[ShapedArray], params: dict) -> list[ShapedArray]:
    """Run the primitive's shape rule; on failure raise ShapeError naming it, the operand types, and
    the user's source line."""
    try:
        return prim.abstract_eval(avals, params)
    except ShapeError as e:
        msg = str(e)
    except (TypeError, ValueError, IndexError) as e:
        msg = f"{type(e).__name__}: {e}"
    operands = ", ".join(str(a) for a in avals)
    raise ShapeError(f"{prim.name}: {msg}\n  operands: ({operands})\n  at {_user_frame()}") from None


def bind(prim: Primitive, args: Sequence[Any], params: dict):
    """Apply a primitive: record it in the innermost trace, or evaluate it when nothing is traced."""
    builder = current_builder()
    if builder is None:
        for a in args:
            if isinstance(a, Tracer):
                raise UnexpectedTracerError(f"a traced value {a.aval} was used outside of its trace")
        concrete = [a if isinstance(a, (np.ndarray, np.generic)) else np.asarray(a, aval_of(a).dtype.np)
                    for a in args]
        check_types(prim, [aval_of(a) for a in args], params)
        out = eager_apply(prim, concrete, params)
        return out if prim.multiple_results else out[0]
    ins = [builder.to_atom(a) for a in args]
    out_avals = check_types(prim, [a.aval for a in ins], params)
    outs = [Var(aval) for aval in out_avals]
    builder.eqns.append(Eqn(prim, ins, outs, dict(params)))
    tracers = [Tracer(builder, v) for v in outs]
    return tracers if prim.multiple_results else tracers[0]


# ----------------------------------------------------------------------------------------------
# Tracing whole functions
# ----------------------------------------------------------------------------------------------

def trace_flat(flat_fun: Callable[..., Sequence[Any]], in_avals: Sequence[ShapedArray]) -> ClosedJaxpr:
    """Trace ``flat_fun`` (a list of arrays in, a list of arrays out) into a ClosedJaxpr."""
    builder = JaxprBuilder()
    _STACK.append(builder)
    try:
        tracers = [builder.new_tracer(aval) for aval in in_avals]
        outs = list(flat_fun(*tracers))
        return builder.build([t.ir_var for t in tracers], outs)
    finally:
        _STACK.pop()
        builder.alive = False


def trace(fun: Callable, args: Sequence[Any], kwargs: dict | None = None):
    """Trace ``fun(*args, **kwargs)`` on pytrees: returns (ClosedJaxpr, in_tree, out_tree).

    Leaves of ``args`` may be arrays, scalars or tracers; the jaxpr's invars are their flattened
    leaves (kwargs' leaves after args' leaves).
    """
    leaves, in_tree = tree_flatten((tuple(args), dict(kwargs or {})))
    in_avals = [aval_of(x) for x in leaves]
    out_tree_box = []

    def flat_fun(*tracers):
        a, k = tree_unflatten(in_tree, list(tracers))
        out = fun(*a, **k)
        out_leaves, out_tree = tree_flatten(out)
        for leaf in out_leaves:
            aval_of(leaf)            # a clear error for a non-array output
        out_tree_box.append(out_tree)
        return out_leaves

    closed = trace_flat(flat_fun, in_avals)
    return closed, in_tree, out_tree_box[0]
