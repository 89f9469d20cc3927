"""verify(jaxpr): SSA (each variable defined once, before use) and types (each equation's declared
outputs equal what its primitive's shape rule computes from its inputs and params)."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .core import PRIMITIVES, ClosedJaxpr, Eqn, Jaxpr, Literal, Primitive, ShapedArray, Var
from .core import dtype as to_dtype
from .errors import IRTypeError


def _short_param(value: Any) -> str:
    """A parameter as the printer writes it, with sub-jaxprs elided (messages stay one line)."""
    from .printer import format_param
    if isinstance(value, (Jaxpr, ClosedJaxpr)):
        return "{...}"
    if isinstance(value, (tuple, list)):
        items = [_short_param(v) for v in value]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    try:
        text = format_param(value, 0, None)
    except Exception:
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Namer:
    """Gives variables the names the printer would give them, as they are defined."""

    def __init__(self):
        from .printer import _names
        self._fresh = _names()
        self.names: dict[int, str] = {}

    def define(self, v: Var) -> None:
        if id(v) not in self.names:
            self.names[id(v)] = next(self._fresh)

    def atom(self, a: Any) -> str:
        from .printer import format_literal
        if isinstance(a, Literal):
            try:
                return format_literal(a)
            except Exception:
                return repr(a)
        if isinstance(a, Var):
            return f"{self.names.get(id(a), '?')}:{_aval_text(a)}"
        return f"<not a variable: {type(a).__name__}>"


def _aval_text(v: Any) -> str:
    aval = getattr(v, "aval", None)
    return str(aval) if isinstance(aval, ShapedArray) else "?"


def _describe(eqn: Eqn, index: int, namer: _Namer) -> str:
    prim = getattr(eqn.primitive, "name", repr(eqn.primitive))
    params = ""
    if isinstance(eqn.params, dict) and eqn.params:
        params = "[" + ", ".join(f"{k}={_short_param(v)}" for k, v in eqn.params.items()) + "]"
    outs = " ".join(namer.atom(v) if isinstance(v, Var) else f"?:{_aval_text(v)}"
                    for v in _as_list(eqn.outvars))
    ins = " ".join(namer.atom(a) for a in _as_list(eqn.inputs))
    return f"equation {index} `{outs} = {prim}{params}{' ' + ins if ins else ''}`"


def _text(where) -> str:
    return where() if callable(where) else where


def _as_list(xs: Any) -> list:
    return list(xs) if isinstance(xs, (list, tuple)) else []


def _sub_jaxprs(value: Any):
    if isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def _check_consts(closed: ClosedJaxpr) -> None:
    constvars = closed.jaxpr.constvars
    if len(closed.consts) != len(constvars):
        raise IRTypeError(f"{len(constvars)} constvars but {len(closed.consts)} consts")
    for i, (v, c) in enumerate(zip(constvars, closed.consts)):
        shape = getattr(c, "shape", None)
        if shape is None:
            try:
                shape = np.shape(c)
            except Exception:
                raise IRTypeError(f"const {i} ({type(c).__name__}) is not an array; its constvar "
                                  f"is {_aval_text(v)}") from None
        if tuple(shape) != v.aval.shape:
            raise IRTypeError(f"const {i} has shape {tuple(shape)}, its constvar is {v.aval}")
        np_dtype = getattr(c, "dtype", None)
        if np_dtype is not None:
            try:
                d = to_dtype(np_dtype)
            except TypeError:
                raise IRTypeError(f"const {i} has unsupported dtype {np_dtype}, its constvar is "
                                  f"{v.aval}") from None
            if d != v.aval.dtype:
                raise IRTypeError(f"const {i} has dtype {d.name}, its constvar is {v.aval}")


def verify(jaxpr: Jaxpr | ClosedJaxpr) -> None:
    """Raise IRTypeError naming the first offending equation; return None for a well-typed program."""
    if isinstance(jaxpr, ClosedJaxpr):
        if not isinstance(jaxpr.jaxpr, Jaxpr):
            raise IRTypeError(f"expected a Jaxpr inside the ClosedJaxpr, got {type(jaxpr.jaxpr).__name__}")
        _check_structure(jaxpr.jaxpr)
        if jaxpr.consts is not None:
            _check_consts(jaxpr)
        jaxpr = jaxpr.jaxpr
    if not isinstance(jaxpr, Jaxpr):
        raise IRTypeError(f"expected a Jaxpr, got {type(jaxpr).__name__}")
    _check_structure(jaxpr)
    defined: set[int] = set()
    namer = _Namer()

    def define(v, where):
        if not isinstance(v, Var):
            raise IRTypeError(f"{_text(where)}: expected a variable, got {v!r}")
        if not isinstance(v.aval, ShapedArray):
            raise IRTypeError(f"{_text(where)}: variable with a non-type aval {v.aval!r}")
        if id(v) in defined:
            raise IRTypeError(f"{_text(where)}: variable {namer.atom(v)} defined twice (not SSA)")
        defined.add(id(v))
        namer.define(v)     # (already named if it is an equation's output)

    def use(a, where):
        if isinstance(a, Literal):
            if not isinstance(a.aval, ShapedArray) or a.aval.shape != ():
                raise IRTypeError(f"{_text(where)}: literal of non-scalar type {a.aval}")
            return
        if not isinstance(a, Var):
            raise IRTypeError(f"{_text(where)}: expected a variable or a literal, got "
                              f"{type(a).__name__} {a!r:.40}")
        if id(a) not in defined:
            raise IRTypeError(f"{_text(where)}: uses a variable {_aval_text(a)} before it is defined")

    for v in jaxpr.constvars:
        define(v, "constvars")
    for v in jaxpr.invars:
        define(v, "invars")
    for i, eqn in enumerate(jaxpr.eqns):
        if not isinstance(eqn, Eqn):
            raise IRTypeError(f"equation {i}: expected an Eqn, got {type(eqn).__name__}")
        if not (isinstance(eqn.inputs, (list, tuple)) and isinstance(eqn.outvars, (list, tuple))
                and isinstance(eqn.params, dict)):
            raise IRTypeError(f"equation {i}: inputs and outvars must be lists, params a dict")
        for v in eqn.outvars:              # named as the printer names them, for the message
            if isinstance(v, Var):
                namer.define(v)
        where = functools.partial(_describe, eqn, i, namer)    # the text only when it is needed
        prim = eqn.primitive
        if not isinstance(prim, Primitive) or PRIMITIVES.get(getattr(prim, "name", None)) is not prim:
            raise IRTypeError(f"{where()}: unknown primitive {getattr(prim, 'name', prim)!r}")
        for a in eqn.inputs:
            use(a, where)
        for sub in (s for value in eqn.params.values() for s in _sub_jaxprs(value)):
            try:
                verify(sub)
            except IRTypeError as e:
                raise IRTypeError(f"{where()}: inside a sub-jaxpr: {e}") from None
        try:
            expected = prim.abstract_eval([a.aval for a in eqn.inputs], eqn.params)
        except Exception as e:  # the shape rule is the checker: any complaint is a type error
            raise IRTypeError(f"{where()}: {e}") from None
        if not all(isinstance(a, ShapedArray) for a in expected):
            raise IRTypeError(f"{where()}: the shape rule of {prim.name} gave {expected!r}")
        if len(expected) != len(eqn.outvars):
            raise IRTypeError(f"{where()}: declares {len(eqn.outvars)} outputs, {prim.name} gives "
                              f"{len(expected)}")
        for k, (v, want) in enumerate(zip(eqn.outvars, expected)):
            if isinstance(v, Var) and isinstance(v.aval, ShapedArray) and not v.aval.same_type(want):
                what = "output" if len(expected) == 1 else f"output {k}"
                raise IRTypeError(f"{where()}: {what} declared {v.aval}, but {prim.name} of the inputs "
                                  f"gives {want}")
            define(v, where)
    for a in jaxpr.outvars:
        use(a, "outputs")


def _check_structure(jaxpr: Jaxpr) -> None:
    for field in ("constvars", "invars", "eqns", "outvars"):
        if not isinstance(getattr(jaxpr, field, None), (list, tuple)):
            raise IRTypeError(f"jaxpr.{field} must be a list, got {type(getattr(jaxpr, field, None)).__name__}")
