"""Jaxpr -> text. The parser (parser.py + jaxpr.lark) is its mirror image: print(parse(t)) == t."""
from __future__ import annotations

import itertools
import math
import re
from typing import Any

import numpy as np

from .core import ClosedJaxpr, DType, Jaxpr, Literal, Var

# Names the grammar reserves (keywords and literal spellings) are never given to a variable.
RESERVED_NAMES = {"in", "let", "lambda", "inf", "nan", "True", "False", "None"}


def _names():
    """a, b, ..., z, ba, bb, ..., bz, ca, ... (the JAX convention), skipping reserved words."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    for n in itertools.count(1):
        for combo in itertools.product(letters, repeat=n):
            if n > 1 and combo[0] == "a":
                continue
            name = "".join(combo)
            if name not in RESERVED_NAMES:
                yield name


def format_literal(lit: Literal) -> str:
    v, d = lit.value, lit.aval.dtype
    if d.name == "bool":
        text = "True" if bool(v) else "False"
    elif d.is_int:
        text = str(int(v))
    elif math.isnan(f := float(v)):
        text = "nan"
    elif math.isinf(f):
        text = "inf" if f > 0 else "-inf"
    elif d.np.type in (np.float16, np.float32, np.float64):
        text = str(v)                      # shortest text that reads back to the same value
    else:
        text = repr(float(v))              # ml_dtypes floats: the exact value
    return f"{text}:{lit.aval}"


def format_param(value: Any, indent: int, namer) -> str:
    if isinstance(value, Jaxpr):
        return _print(value, indent + 4)
    if isinstance(value, ClosedJaxpr):
        if value.consts:       # the text has no place for their values: it would not read back
            raise TypeError("cannot print a ClosedJaxpr parameter that has consts; pass them as "
                            "operands (sub-jaxprs are closed over nothing)")
        return _print(value.jaxpr, indent + 4)
    if isinstance(value, DType):
        return value.name
    if isinstance(value, (tuple, list)):
        items = [format_param(v, indent, namer) for v in value]
        return "(" + items[0] + ",)" if len(items) == 1 else "(" + ", ".join(items) + ")"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if value is None:
        return "None"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return "nan" if f != f else ("inf" if f == float("inf") else "-inf" if f == -float("inf") else repr(f))
    raise TypeError(f"cannot print parameter value {value!r} of type {type(value).__name__}")


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _param_name(key: Any) -> str:
    """A parameter's name, which the parser reads as a NAME: refuse what it could not read back."""
    if not isinstance(key, str) or not _IDENTIFIER.fullmatch(key) or key in RESERVED_NAMES:
        raise TypeError(f"cannot print parameter name {key!r}: it must be an identifier other than "
                        f"{', '.join(sorted(RESERVED_NAMES))}")
    return key


def _print(jaxpr: Jaxpr, indent: int) -> str:
    names: dict[Var, str] = {}
    fresh = _names()

    def bind(v: Var) -> str:
        names[v] = next(fresh)
        return f"{names[v]}:{v.aval}"

    def use(a) -> str:
        if isinstance(a, Literal):
            return format_literal(a)
        return names.get(a, "?" + str(a.aval))   # '?' marks an unbound var; the verifier rejects it

    pad = " " * indent
    head = "{ lambda " + " ".join(bind(v) for v in jaxpr.constvars)
    head += ("; " if not jaxpr.constvars else " ; ") + " ".join(bind(v) for v in jaxpr.invars) + ". let"
    lines = [head]
    for eqn in jaxpr.eqns:
        ins = " ".join(use(a) for a in eqn.inputs)
        params = ""
        if eqn.params:
            params = "[" + ", ".join(f"{_param_name(k)}={format_param(v, indent, None)}"
                                     for k, v in eqn.params.items()) + "]"
        outs = " ".join(bind(v) for v in eqn.outvars)     # (none: the line starts with "=")
        lines.append(f"{pad}    {outs + ' ' if outs else ''}= {eqn.primitive.name}{params}"
                     + (f" {ins}" if ins else ""))
    outs = ", ".join(use(a) for a in jaxpr.outvars)
    outs = f"({outs},)" if len(jaxpr.outvars) == 1 else f"({outs})"
    lines.append(f"{pad}  in {outs} }}")
    return "\n".join(lines)


def print_jaxpr(jaxpr: Jaxpr | ClosedJaxpr) -> str:
    if isinstance(jaxpr, ClosedJaxpr):
        jaxpr = jaxpr.jaxpr
    return _print(jaxpr, 0)


def var_names(jaxpr: Jaxpr) -> dict:
    """The names print_jaxpr gives a jaxpr's own (top-level) variables, for messages that refer to it."""
    fresh = _names()
    names = {v: next(fresh) for v in jaxpr.constvars + jaxpr.invars}
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            names[v] = next(fresh)
    return names
