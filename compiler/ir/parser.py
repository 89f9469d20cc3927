"""Text -> ClosedJaxpr, with the lark grammar in jaxpr.lark (the printer's mirror image).

Every failure is an IRSyntaxError (with line and column) or, once the text is read, an IRTypeError
from the verifier. No lark or Python internal exception escapes.
"""
from __future__ import annotations

import functools
import math
import os
import re
import sys
import warnings
from typing import Any, Sequence

import lark
import ml_dtypes
import numpy as np

from .core import DTYPES, PRIMITIVES, ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
from .errors import IRSyntaxError, IRTypeError

# Brackets ({[( together) may nest this deep. Real programs stay far below (each level of control
# flow adds about three); the limit keeps the reader, the verifier and the printer, which recurse
# once per level, well inside Python's recursion limit.
MAX_NESTING = 256
# Largest number of decimal digits a dimension may have (dimensions are abstract: nothing is
# allocated, but they must fit the int64 arithmetic of shape rules and backends).
MAX_DIM_DIGITS = 12
# Longest integer token read (Python refuses to convert digit strings longer than 4300 by default).
MAX_INT_DIGITS = 4000


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    with open(os.path.join(os.path.dirname(__file__), "jaxpr.lark")) as f:
        return lark.Lark(f.read(), parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _fail(message: str, node) -> IRSyntaxError:
    meta = getattr(node, "meta", None)
    if meta is not None and not getattr(meta, "empty", True):
        return IRSyntaxError(message, meta.line, meta.column)
    if isinstance(node, lark.Token) and node.line is not None:
        return IRSyntaxError(message, node.line, node.column)
    return IRSyntaxError(message)


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset (offset == len(text): just past the end)."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


_BRACKETS = re.compile(r'[\[\](){}"]')
_STRING = re.compile(r'"([^"\\]|\\.)*"', re.S)


def _check_nesting(text: str) -> None:
    """Reject text whose brackets nest deeper than MAX_NESTING (strings are skipped)."""
    depth, pos = 0, 0
    while True:
        m = _BRACKETS.search(text, pos)
        if m is None:
            return
        c, pos = m.group(), m.end()
        if c == '"':
            s = _STRING.match(text, m.start())
            if s is None:
                return                      # an unterminated string: the lexer reports it
            pos = s.end()
        elif c in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise IRSyntaxError(f"brackets nested deeper than {MAX_NESTING} levels",
                                    *_position(text, m.start()))
        else:
            depth = max(depth - 1, 0)


def _program_end(text: str) -> int | None:
    """Offset just past the '}' that closes the text's first '{' (None if it is never closed)."""
    depth, pos = 0, 0
    while True:
        m = _BRACKETS.search(text, pos)
        if m is None:
            return None
        c, pos = m.group(), m.end()
        if c == '"':
            s = _STRING.match(text, m.start())
            if s is None:
                return None
            pos = s.end()
        elif c in "([{":
            depth += 1
        else:
            depth -= 1
            if depth <= 0:
                return pos if c == "}" and depth == 0 else None


def _int(token) -> int:
    text = str(token)
    if len(text.lstrip("+-")) > MAX_INT_DIGITS:
        raise _fail(f"integer {text[:20]}... has more than {MAX_INT_DIGITS} digits", token)
    return int(text)


def _type(node) -> ShapedArray:
    name, *dims = node.children
    if str(name) not in DTYPES:
        raise _fail(f"unknown dtype {str(name)!r}; expected one of {', '.join(DTYPES)}", name)
    shape = []
    for d in dims:
        if len(str(d).lstrip("0")) > MAX_DIM_DIGITS:
            raise _fail(f"dimension {str(d)[:20]}{'...' if len(d) > 20 else ''} is too large "
                        f"(at most {MAX_DIM_DIGITS} digits)", d)
        shape.append(int(str(d).lstrip("0") or "0"))
    return ShapedArray(tuple(shape), DTYPES[str(name)])


def _scalar(node) -> Any:
    kind = node.data
    if kind == "number":
        token = node.children[0]
        text = str(token)
        if any(c in text for c in ".eE"):
            value = float(text)         # the regex admits only valid float spellings
            if math.isinf(value):
                raise _fail(f"number {text[:20]} is out of range (write inf or -inf)", token)
            return value
        return _int(token)
    if kind == "inf":
        return math.inf
    if kind == "neg_inf":
        return -math.inf
    return {"nan": math.nan, "true": True, "false": False}[kind]


def _int_range(dtype) -> tuple[int, int]:
    try:
        info = np.iinfo(dtype.np)
    except ValueError:
        info = ml_dtypes.iinfo(dtype.np)
    return int(info.min), int(info.max)


def _kind(dtype) -> str:
    """'b', 'i', 'u' or 'f' from the IR name (bf16 and f8_* are floats, i4 a signed int)."""
    name = dtype.name
    return "b" if name == "bool" else "f" if name.startswith(("f", "bf")) else name[0]


def _literal(node) -> Literal:
    scalar_node, type_node = node.children
    value, aval = _scalar(scalar_node), _type(type_node)
    if aval.shape != ():
        raise _fail(f"a literal must be a scalar, got type {aval}", node)
    kind, name = _kind(aval.dtype), aval.dtype.name
    is_bool = isinstance(value, bool)
    if kind == "b":
        if not is_bool:
            raise _fail(f"literal {value!r} does not fit type {aval} (expected True or False)", node)
    elif kind in "iu":
        if is_bool or not isinstance(value, int):
            raise _fail(f"literal {value!r} does not fit type {aval} (expected an integer)", node)
        lo, hi = _int_range(aval.dtype)
        if not lo <= value <= hi:
            raise _fail(f"literal {value} out of range for {name} [{lo}, {hi}]", node)
    else:
        if is_bool:
            raise _fail(f"literal {value!r} does not fit type {aval} (expected a number)", node)
        try:
            value = float(value)
        except OverflowError:
            raise _fail(f"literal {str(scalar_node.children[0])[:20]}... out of range for {name}",
                        node) from None
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = float(np.asarray(value, aval.dtype.np)[()])
        if not math.isnan(value) and not math.isfinite(stored) and stored != value:
            what = "inf" if math.isinf(value) else f"literal {value!r}"
            raise _fail(f"{what} is out of range for {name}", node)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Literal(value, aval)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: m.group(1), text, flags=re.S)


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
        if kind in ("number", "inf", "neg_inf", "nan", "true", "false"):
            return _scalar(node)
        if kind == "string":
            return _unescape(str(node.children[0])[1:-1])
        if kind == "none":
            return None
        if kind == "name":
            name = str(node.children[0])
            if name not in DTYPES:
                raise _fail(f"unknown name {name!r} in parameters (expected a dtype, a number, a "
                            f"string, None, a tuple or a jaxpr)", node.children[0])
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
        name = str(prim_token)
        if name not in PRIMITIVES:
            raise _fail(f"unknown primitive {name!r}", prim_token)
        params: dict[str, Any] = {}
        if rest and isinstance(rest[0], lark.Tree) and rest[0].data == "params":
            for p in rest[0].children:
                key_token, value_node = p.children
                key = str(key_token)
                if key in params:
                    raise _fail(f"parameter {key!r} given twice", key_token)
                params[key] = self.value(value_node)
            rest = rest[1:]
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
    _check_nesting(text)
    old_limit = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old_limit, 10000))
        try:
            tree = _parser().parse(text)
            jaxpr = _Reader().jaxpr(tree.children[0])
        except lark.exceptions.UnexpectedInput as e:
            raise _syntax_error(e, text) from None
        except lark.exceptions.LarkError as e:
            raise IRSyntaxError(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        except RecursionError:
            raise IRSyntaxError("IR text nested too deeply") from None
        except (ValueError, TypeError, OverflowError, KeyError, IndexError, AttributeError) as e:
            if isinstance(e, (IRSyntaxError, IRTypeError)):
                raise
            raise IRSyntaxError(f"cannot read the IR text ({type(e).__name__}: {e})") from None
        if consts is not None:
            try:
                consts = list(consts)
            except TypeError:
                raise IRTypeError(f"consts must be a sequence of arrays (one per constvar), got "
                                  f"{type(consts).__name__}") from None
        closed = ClosedJaxpr(jaxpr, consts)
        try:
            verify(closed)
        except RecursionError:
            raise IRTypeError("program nested too deeply to verify") from None
    finally:
        sys.setrecursionlimit(old_limit)
    return closed


# How the grammar's terminals read in a message.
_TERMINAL_TEXT = {
    "NAME": "a name", "DEF": "a variable with its type (like a:f32[3])", "INT": "an integer",
    "SIGNED_NUMBER": "a number", "STRING": "a string", "$END": "the end of the text",
}


def _describe_expected(names) -> str:
    out = []
    for n in sorted(set(names)):
        if n in _TERMINAL_TEXT:
            out.append(_TERMINAL_TEXT[n])
            continue
        try:
            pattern = _parser().get_terminal(n).pattern
        except KeyError:
            out.append(n)
            continue
        out.append(f"'{pattern.value}'" if pattern.type == "str" else n)
    return ", ".join(out)


def _syntax_error(e: lark.exceptions.UnexpectedInput, text: str) -> IRSyntaxError:
    end = _position(text, len(text))
    eof = "unexpected end of text (is a '}' or ')' missing?)"
    if isinstance(e, lark.exceptions.UnexpectedEOF):
        return IRSyntaxError(eof, *end)
    if isinstance(e, lark.exceptions.UnexpectedToken) and e.token.type == "$END":
        return IRSyntaxError(eof, *end)
    line, column = getattr(e, "line", None), getattr(e, "column", None)
    if not isinstance(line, int) or not isinstance(column, int) or line < 1 or column < 1:
        pos = getattr(e, "pos_in_stream", None)
        line, column = _position(text, pos) if isinstance(pos, int) and pos >= 0 else end
    offset = getattr(getattr(e, "token", None), "start_pos", None)
    if not isinstance(offset, int):
        offset = getattr(e, "pos_in_stream", None)
    end_of_program = _program_end(text)
    if isinstance(offset, int) and end_of_program is not None and offset >= end_of_program:
        what = e.char if isinstance(e, lark.exceptions.UnexpectedCharacters) else str(e.token)[:40]
        return IRSyntaxError(f"unexpected {what!r} after the end of the program (the '}}' that closes "
                             f"it is at line {_position(text, end_of_program - 1)[0]}, column "
                             f"{_position(text, end_of_program - 1)[1]})", line, column)
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        c = e.char
        msg = f"unexpected character {c!r}"
        if c == '"':
            msg += " (an unterminated string?)"
        allowed = getattr(e, "allowed", None)
        if allowed:
            msg += f"; expected {_describe_expected(allowed)}"
        return IRSyntaxError(msg, line, column)
    if isinstance(e, lark.exceptions.UnexpectedToken):
        return IRSyntaxError(f"unexpected {str(e.token)[:40]!r}; expected "
                             f"{_describe_expected(e.expected)}", line, column)
    return IRSyntaxError(str(e).splitlines()[0] if str(e) else "malformed IR text", line, column)
