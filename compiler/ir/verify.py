"""verify(jaxpr): SSA (each variable defined once, before use) and types (each equation's declared
outputs equal what its primitive's shape rule computes from its inputs and params)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .core import PRIMITIVES, ClosedJaxpr, Eqn, Jaxpr, Literal, Var
from .errors import IRTypeError


def _describe(eqn: Eqn, index: int) -> str:
    ins = ", ".join(str(a.aval) for a in eqn.inputs)
    outs = " ".join(str(v.aval) for v in eqn.outvars)
    return f"equation {index} `{outs} = {eqn.primitive.name}({ins})`"


def _sub_jaxprs(value: Any):
    if isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def verify(jaxpr: Jaxpr | ClosedJaxpr) -> None:
    """Raise IRTypeError naming the first offending equation; return None for a well-typed program."""
    if isinstance(jaxpr, ClosedJaxpr):
        if jaxpr.consts is not None:
            if len(jaxpr.consts) != len(jaxpr.jaxpr.constvars):
                raise IRTypeError(f"{len(jaxpr.jaxpr.constvars)} constvars but {len(jaxpr.consts)} consts")
            for i, (v, c) in enumerate(zip(jaxpr.jaxpr.constvars, jaxpr.consts)):
                shape = getattr(c, "shape", np.shape(c))
                if tuple(shape) != v.aval.shape:
                    raise IRTypeError(f"const {i} has shape {tuple(shape)}, its constvar is {v.aval}")
        jaxpr = jaxpr.jaxpr
    if not isinstance(jaxpr, Jaxpr):
        raise IRTypeError(f"expected a Jaxpr, got {type(jaxpr).__name__}")
    defined: set[int] = set()

    def define(v, where: str):
        if not isinstance(v, Var):
            raise IRTypeError(f"{where}: expected a variable, got {v!r}")
        if id(v) in defined:
            raise IRTypeError(f"{where}: variable {v.aval} defined twice (not SSA)")
        defined.add(id(v))

    def use(a, where: str):
        if isinstance(a, Literal):
            if a.aval.shape != ():
                raise IRTypeError(f"{where}: literal of non-scalar type {a.aval}")
            return
        if not isinstance(a, Var) or id(a) not in defined:
            raise IRTypeError(f"{where}: uses a variable before it is defined")

    for v in jaxpr.constvars:
        define(v, "constvars")
    for v in jaxpr.invars:
        define(v, "invars")
    for i, eqn in enumerate(jaxpr.eqns):
        where = _describe(eqn, i)
        if PRIMITIVES.get(eqn.primitive.name) is not eqn.primitive:
            raise IRTypeError(f"{where}: unknown primitive {eqn.primitive.name!r}")
        for a in eqn.inputs:
            use(a, where)
        for sub in (s for value in eqn.params.values() for s in _sub_jaxprs(value)):
            try:
                verify(sub)
            except IRTypeError as e:
                raise IRTypeError(f"{where}: inside a sub-jaxpr: {e}") from None
        try:
            expected = eqn.primitive.abstract_eval([a.aval for a in eqn.inputs], eqn.params)
        except Exception as e:  # the shape rule is the checker: any complaint is a type error
            raise IRTypeError(f"{where}: {e}") from None
        if len(expected) != len(eqn.outvars):
            raise IRTypeError(f"{where}: declares {len(eqn.outvars)} outputs, the primitive gives "
                              f"{len(expected)}")
        for v, want in zip(eqn.outvars, expected):
            if not v.aval.same_type(want):
                raise IRTypeError(f"{where}: output declared {v.aval}, but the inputs give {want}")
            define(v, where)
    for a in jaxpr.outvars:
        use(a, "outputs")
