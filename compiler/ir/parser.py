"""Text -> ClosedJaxpr, with the lark grammar in jaxpr.lark (the printer's mirror image).

Every failure is an IRSyntaxError (with line and column) or, once the text is read, an IRTypeError
from the verifier. No lark or Python internal exception escapes.
"""
from __future__ import annotations

import functools
import os
import sys
from typing import Any, Sequence

import lark
import numpy as np

from .core import DTYPES, PRIMITIVES, ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from .errors import IRSyntaxError, IRTypeError


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    with open(os.path.join(os.path.dirname(__file__), "jaxpr.lark")) as f:
        return lark.Lark(f.read(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _fail(message: str, node) -> IRSyntaxError:
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return IRSyntaxError(message, meta.line, meta.column)
    if isinstance(node, lark.Token):
        return IRSyntaxError(message, node.line, node.column)
    return IRSyntaxError(message)


def _type(node) -> ShapedArray:
    name, *dims = node.children
    if str(name) not in DTYPES:
        raise _fail(f"unknown dtype {str(name)!r}; expected one of {', '.join(DTYPES)}", name)
    shape = []
    for d in dims:
        if len(d) > 12:
            raise _fail(f"dimension {d} is too large", d)
        shape.append(int(d))
    return ShapedArray(tuple(shape), DTYPES[str(name)])


def _scalar(node) -> Any:
    kind = node.data
    if kind == "number":
        text = str(node.children[0])
        return float(text) if any(c in text for c in ".eE") else int(text)
    if kind == "inf":
        return -np.inf if node.children else np.inf   # the optional "-" is kept as a child if present
    return {"nan": np.nan, "true": True, "false": False}[kind]


def _literal(node) -> Literal:
    scalar_node, type_node = node.children
    value, aval = _scalar(scalar_node), _type(type_node)
    if aval.shape != ():
        raise _fail(f"a literal must be a scalar, got type {aval}", node)
    kind = aval.dtype.kind
    ok = (isinstance(value, bool) if kind == "b" else
          isinstance(value, int) and not isinstance(value, bool) if kind in "iu" else
          not isinstance(value, bool))
    if not ok:
        raise _fail(f"literal {value!r} does not fit type {aval}", node)
    if kind in "iu":
        info = np.iinfo(aval.dtype.np) if aval.dtype.name != "i4" else None
        lo, hi = (info.min, info.max) if info else (-8, 7)
        if not lo <= value <= hi:
            raise _fail(f"literal {value} out of range for {aval.dtype.name}", node)
    return Literal(value, aval)


class _Reader:
    """Turns one jaxpr's parse tree into a Jaxpr; each (sub-)jaxpr has its own variable scope."""

    def __init__(self):
        self.scope: dict[str, Var] = {}

    def define(self, node) -> Var:
        def_token, type_node = node.children
        name = str(def_token)[:-1]
        if name in self.scope:
            raise _fail(f"variable {name!r} is defined twice", def_token)
        var = Var(_type(type_node))
        self.scope[name] = var
        return var

    def atom(self, node):
        if node.data == "literal":
            return _literal(node)
        token = node.children[0]
        if str(token) not in self.scope:
            raise _fail(f"variable {str(token)!r} is used before it is defined", token)
        return self.scope[str(token)]

    def value(self, node) -> Any:
        if isinstance(node, lark.Token):       # only reached for malformed trees; keep it an error
            raise _fail(f"unexpected {str(node)!r}", node)
        kind = node.data
        if kind in ("number", "inf", "nan", "true", "false"):
            return _scalar(node)
        if kind == "string":
            text = str(node.children[0])[1:-1]
            return text.replace('\\"', '"').replace("\\\\", "\\")
        if kind == "none":
            return None
        if kind == "name":
            name = str(node.children[0])
            if name not in DTYPES:
                raise _fail(f"unknown name {name!r} in parameters (expected a dtype, a number, a "
                            f"string, a tuple or a jaxpr)", node.children[0])
            return DTYPES[name]
        if kind == "tuple":
            return tuple(self.value(c) for c in node.children)
        if kind == "jaxpr":
            return _Reader().jaxpr(node)
        raise _fail(f"unexpected {kind}", node)

    def eqn(self, node) -> Eqn:
        children = list(node.children)
        binders = [c for c in children if isinstance(c, lark.Tree) and c.data == "binder"]
        rest = children[len(binders):]
        prim_token, rest = rest[0], rest[1:]
        params: dict[str, Any] = {}
        if rest and isinstance(rest[0], lark.Tree) and rest[0].data == "params":
            for p in rest[0].children:
                key_token, value_node = p.children
                key = str(key_token)
                if key in params:
                    raise _fail(f"parameter {key!r} given twice", key_token)
                params[key] = self.value(value_node)
            rest = rest[1:]
        name = str(prim_token)
        if name not in PRIMITIVES:
            raise _fail(f"unknown primitive {name!r}", prim_token)
        inputs = [self.atom(a) for a in rest]
        outvars = [self.define(b) for b in binders]   # defined after the inputs are read: SSA
        return Eqn(PRIMITIVES[name], inputs, outvars, params)

    def jaxpr(self, node) -> Jaxpr:
        const_node, in_node, eqns_node, outs_node = node.children
        constvars = [self.define(b) for b in const_node.children]
        invars = [self.define(b) for b in in_node.children]
        eqns = [self.eqn(e) for e in eqns_node.children]
        outvars = [self.atom(a) for a in outs_node.children]
        return Jaxpr(constvars, invars, eqns, outvars)


def parse(text: str, consts: Sequence[Any] | None = None) -> ClosedJaxpr:
    """Read jaxpr text back into a ClosedJaxpr (verified). ``consts`` gives the constvars' values."""
    from .. import primitives  # noqa: F401  (registers every primitive)
    from .verify import verify
    if not isinstance(text, str):
        raise IRSyntaxError(f"expected IR text (str), got {type(text).__name__}")
    old_limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old_limit, 10000))
        tree = _parser().parse(text)
        jaxpr = _Reader().jaxpr(tree.children[0])
    except lark.exceptions.UnexpectedInput as e:
        raise IRSyntaxError(_describe(e), getattr(e, "line", None), getattr(e, "column", None)) from None
    except lark.exceptions.LarkError as e:
        raise IRSyntaxError(str(e).splitlines()[0]) from None
    except RecursionError:
        raise IRSyntaxError("IR text nested too deeply") from None
    finally:
        sys.setrecursionlimit(old_limit)
    closed = ClosedJaxpr(jaxpr, None if consts is None else list(consts))
    verify(closed)
    return closed


def _describe(e: lark.exceptions.UnexpectedInput) -> str:
    if isinstance(e, lark.exceptions.UnexpectedEOF):
        return "unexpected end of text (is a '}' or ')' missing?)"
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        return f"unexpected character {e.char!r}"
    if isinstance(e, lark.exceptions.UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            return "unexpected end of text (is a '}' or ')' missing?)"
        expected = sorted(e.expected)[:8]
        return f"unexpected {str(tok)!r}; expected one of {', '.join(expected)}"
    return str(e).splitlines()[0]
