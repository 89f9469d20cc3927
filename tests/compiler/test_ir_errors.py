"""Bad IR text and bad programs give IRSyntaxError (with line and column) or IRTypeError (naming the
equation) -- never a lark exception, a RecursionError, or any other Python internal error."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
from compiler.ir import (DTYPES, ClosedJaxpr, Eqn, IRSyntaxError, IRTypeError, Jaxpr, Literal,
                         PRIMITIVES, Primitive, ShapedArray, Var, parse, verify)

# IR_FUZZ_EXAMPLES=5000 runs a long fuzzing session
SETTINGS = settings(max_examples=int(os.environ.get("IR_FUZZ_EXAMPLES", 150)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALLOWED = (IRSyntaxError, IRTypeError)

W = np.arange(6, dtype=np.float32).reshape(2, 3)


def _nested(x, n):
    def body(i, c):
        return tj.lax.cond(c.sum() > 0, lambda a: a * 2.0, lambda a: a - W[0, :1], c)
    z = tj.lax.fori_loop(0, n, body, x)

    def step(c, xx):
        inner = tj.lax.cond(xx > 0, lambda q: tj.lax.while_loop(lambda t: t < 10.0, lambda t: t * 2.0, q),
                            lambda q: q, xx)
        return c + xx, inner
    c, ys = tj.lax.scan(step, np.float32(0.0), x, reverse=True)
    return z, c, ys


def _params(x, i):
    y = x @ W
    return (y.sum(axis=(0,)), cnp.max(y, axis=1, keepdims=True), x.astype(np.int8), x[::-1, 1:],
            cnp.argmax(y, axis=0), tj.lax.dynamic_slice(y, (i, 0), (1, 2)), cnp.where(x > 0, np.inf, -np.inf))


def _literals(x, n):
    return x + np.float32(np.nan), x * -1e-5, n + 2 ** 40, x > 0, n * -3, (x < 1) & True


PROGRAMS = {
    "spec": (lambda a, b: tj.lax.logistic(0.75 * cnp.log(a / 2) + a + cnp.log(3 * b)), (1.0, 0.5)),
    "params": (_params, (np.ones((4, 2), np.float32), np.int32(1))),
    "literals": (_literals, (np.ones(3, np.float32), np.int64(3))),
    "nested": (_nested, (np.ones(3, np.float32), np.int32(2))),
}
CLOSED = {k: tj.make_jaxpr(f)(*args) for k, (f, args) in PROGRAMS.items()}
TEXTS = {k: str(c) for k, c in CLOSED.items()}


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


def _assert_position_inside(e: IRSyntaxError, text: str):
    assert isinstance(e.line, int) and isinstance(e.column, int), e
    end_line, end_col = _end_position(text)
    assert 1 <= e.line <= end_line, (e, text)
    line = text.split("\n")[e.line - 1]
    assert 1 <= e.column <= len(line) + 1, (e, line)


def parse_or_error(text, consts=None):
    """Parse; the only acceptable failures are IRSyntaxError / IRTypeError. A program that parses
    must verify and print to a text that parses back to the same text."""
    try:
        closed = parse(text, consts=consts)
    except IRSyntaxError as e:
        if isinstance(text, str):
            _assert_position_inside(e, text)
        return e
    except IRTypeError as e:
        if consts is None:              # read from text, the only type errors are in equations
            assert re.search(r"equation \d+ `.* = \w+", str(e)), str(e)
        return e
    verify(closed)
    again = str(closed)
    assert str(parse(again)) == again
    return closed


# ----------------------------------------------------------------------------------------------
# Truncated text
# ----------------------------------------------------------------------------------------------

def _token_boundaries(text: str) -> list[int]:
    cuts = {0}
    for m in re.finditer(r"[A-Za-z_]\w*:?|[-+]?\d[\w.+-]*|\S", text):
        cuts.update((m.start(), m.end()))
    return sorted(c for c in cuts if c < len(text))


@pytest.mark.parametrize("name", ["spec", "params", "literals", "nested"])
def test_every_prefix_is_a_syntax_error_at_or_before_the_cut(name):
    text = TEXTS[name]
    # every prefix of the smaller programs; every token boundary (and one inside) of the big one
    cuts = range(len(text)) if len(text) < 800 else sorted(
        set(_token_boundaries(text)) | {c + 1 for c in _token_boundaries(text) if c + 1 < len(text)})
    for k in cuts:
        prefix = text[:k]
        with pytest.raises(IRSyntaxError) as info:
            parse(prefix)
        _assert_position_inside(info.value, prefix)


def test_whole_texts_parse_and_whitespace_is_free():
    for name, text in TEXTS.items():
        closed = CLOSED[name]
        assert str(parse(text, consts=closed.consts)) == text
        squashed = re.sub(r"\s+", " ", text)                   # one line
        assert str(parse(squashed, consts=closed.consts)) == text
        spread = re.sub(r"([\[\](){},=;])", r" \n \1 \t ", text)   # whitespace around punctuation
        assert str(parse(spread, consts=closed.consts)) == text


# ----------------------------------------------------------------------------------------------
# Hand-made syntax errors: the position is where the problem is
# ----------------------------------------------------------------------------------------------

GOOD = """{ lambda ; a:f32[3] b:f32[3]. let
    c:f32[3] = add a b
    d:f32[3] = exp c
  in (d,) }"""


def _at(text: str, line: int, column: int) -> str:
    return text.split("\n")[line - 1][column - 1:]


@pytest.mark.parametrize("bad,old,new,line,column,starts", [
    ("unknown primitive", "exp c", "frob c", 3, 16, "frob c"),
    ("unknown dtype", "b:f32[3]", "b:f33[3]", 1, 23, "f33[3]"),
    ("use before definition", "add a b", "add a e", 2, 22, "e\n"[0]),
    ("defined twice", "d:f32[3] = exp", "c:f32[3] = exp", 3, 5, "c:f32[3] = exp"),
    ("invar defined twice", "a:f32[3] b:f32[3]", "a:f32[3] a:f32[3]", 1, 21, "a:f32[3]."),
    ("float literal for an int type", "add a b", "add a 3.5:i32[]", 2, 22, "3.5:i32[]"),
    ("out-of-range int literal", "add a b", "add a 300:u8[]", 2, 22, "300:u8[]"),
    ("overflowing float literal", "add a b", "add a 1e39:f32[]", 2, 22, "1e39:f32[]"),
    ("non-scalar literal", "add a b", "add a 1.0:f32[3]", 2, 22, "1.0:f32[3]"),
    ("bool literal for a float type", "add a b", "add a True:f32[]", 2, 22, "True:f32[]"),
    ("stray character", "exp c", "exp @c", 3, 20, "@c"),
    # `in` ends the equations, so the parser notices only at the next equation
    ("keyword used as a variable", "add a b", "add a in", 3, 5, "d:f32[3]"),
    ("unknown name in params", "exp c", "exp[kind=fancy] c", 3, 25, "fancy"),
    ("parameter given twice", "exp c", "exp[p=1, p=2] c", 3, 25, "p=2"),
    ("trailing text", "(d,) }", "(d,) } x", 4, 13, "x"),
    ("second program", "(d,) }", "(d,) } { lambda ; . let in () }", 4, 13, "{ lambda"),
    ("negative dimension", "a:f32[3]", "a:f32[-3]", 1, 18, "-3]"),
    ("huge dimension", "a:f32[3]", "a:f32[" + "9" * 30 + "]", 1, 18, "9" * 30),
])
def test_syntax_error_points_at_the_problem(bad, old, new, line, column, starts):
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(IRSyntaxError) as info:
        parse(text)
    e = info.value
    assert (e.line, e.column) == (line, column), (bad, str(e))
    assert _at(text, e.line, e.column).startswith(starts), (bad, str(e))
    assert f"line {line}, column {column}" in str(e)


def test_unexpected_end_points_at_the_end():
    for text in ["{ lambda ; a:f32[3]. let\n  in (a,", "{ lambda ; a:f32[3]. let\n  in (a,) ", "", "  \n "]:
        with pytest.raises(IRSyntaxError) as info:
            parse(text)
        assert (info.value.line, info.value.column) == _end_position(text), text
        assert "end of text" in str(info.value)


def test_non_string_input():
    for bad in [None, b"{ lambda ; . let in () }", 3, ["{"], CLOSED["spec"]]:
        with pytest.raises(IRSyntaxError):
            parse(bad)


def test_two_equations_on_one_line_are_fine():
    one_line = GOOD.replace("\n    d:", " d:")
    assert str(parse(one_line)) == GOOD


# ----------------------------------------------------------------------------------------------
# Ill-typed but well-formed programs: IRTypeError naming the equation
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,must_mention", [
    ("{ lambda ; a:f32[3] b:f32[4]. let\n    c:f32[3] = add a b\n  in (c,) }", ["add", "f32[3]", "f32[4]"]),
    ("{ lambda ; a:f32[3] b:i32[3]. let\n    c:f32[3] = mul a b\n  in (c,) }", ["mul", "f32[3]", "i32[3]"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[4] = exp a\n  in (b,) }", ["exp", "f32[4]", "f32[3]"]),
    ("{ lambda ; a:f32[3]. let\n    b:i32[3] = exp a\n  in (b,) }", ["exp", "i32[3]", "f32[3]"]),
    ("{ lambda ; a:i32[3]. let\n    b:i32[3] = exp a\n  in (b,) }", ["exp", "i32[3]"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] c:f32[3] = exp a\n  in (b,) }", ["exp", "2", "1"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[] = reduce_sum[axes=(1,)] a\n  in (b,) }", ["reduce_sum", "f32[3]", "axes=(1,)"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[] = reduce_sum a\n  in (b,) }", ["reduce_sum", "axes"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] = exp[bogus=1] a\n  in (b,) }", ["exp", "bogus"]),
    ("{ lambda ; a:f32[2,3]. let\n    b:f32[6] = reshape[new_sizes=(5,)] a\n  in (b,) }", ["reshape", "f32[2,3]"]),
    ("{ lambda ; a:f32[3]. let\n    b:bf16[3] = convert_element_type[new_dtype=f16] a\n  in (b,) }",
     ["convert_element_type", "bf16[3]", "f16[3]"]),
    ("{ lambda ; a:f32[2,3] b:f32[4,5]. let\n    c:f32[2,5] = dot_general[dimension_numbers=(((1,), (0,)), ((), ()))] a b\n  in (c,) }",
     ["dot_general", "f32[2,3]", "f32[4,5]"]),
    ("{ lambda ; p:bool[] a:f32[3]. let\n    b:f32[3] = cond[branches=({ lambda ; a:f32[3]. let\n      in (a,) }, "
     "{ lambda ; a:f32[3]. let\n        b:f32[] = reduce_sum[axes=(0,)] a\n      in (b,) })] p a\n  in (b,) }",
     ["cond", "branch", "f32[]"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] = scan[jaxpr={ lambda ; a:f32[]. let\n        b:f32[] = mul a 2:i32[]\n"
     "      in (b,) }, num_consts=0, num_carry=0, length=3, reverse=False] a\n  in (b,) }",
     ["scan", "mul", "i32[]", "f32[]"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] = while[cond_jaxpr={ lambda ; a:f32[3]. let\n      in (a,) }, "
     "body_jaxpr={ lambda ; a:f32[3]. let\n      in (a,) }, cond_nconsts=0, body_nconsts=0] a\n  in (b,) }",
     ["while", "bool"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] = scan[jaxpr={ lambda ; a:f32[]. let\n      in (a,) }, num_consts=0, "
     "num_carry=0, length=4, reverse=False] a\n  in (b,) }", ["scan", "length", "4"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] = scan[jaxpr={ lambda ; a:f32[]. let\n      in (a,) }, num_consts=0, "
     "num_carry=0, length=3, reverse=1] a\n  in (b,) }", ["scan", "reverse"]),
    ("{ lambda ; a:f32[3]. let\n    b:f32[3] = cond[branches=(1, 2)] a a\n  in (b,) }", ["cond"]),
])
def test_ill_typed_program_names_the_equation(text, must_mention):
    with pytest.raises(IRTypeError) as info:
        parse(text)
    msg = str(info.value)
    for word in must_mention:
        assert word in msg, (word, msg)


def test_type_error_names_the_offending_equation_by_position():
    text = ("{ lambda ; a:f32[3] b:f32[4]. let\n    c:f32[3] = exp a\n    d:f32[4] = exp b\n"
            "    e:f32[3] = sub c d\n  in (e,) }")
    with pytest.raises(IRTypeError) as info:
        parse(text)
    msg = str(info.value)
    assert "equation 2" in msg and "sub" in msg and "c:f32[3]" in msg and "d:f32[4]" in msg, msg


def test_wrong_consts_are_type_errors():
    text, consts = TEXTS["params"], CLOSED["params"].consts
    assert len(consts) == 1
    parse(text, consts=consts)
    for bad in ([], [consts[0], consts[0]], [consts[0][:1]], [consts[0].astype(np.float64)], [object()], 5,
                [[1.0, 2.0]]):
        with pytest.raises(IRTypeError):
            parse(text, consts=bad)


# ----------------------------------------------------------------------------------------------
# Extremes: nesting, sizes, long tokens
# ----------------------------------------------------------------------------------------------

def _wrap_param(depth: int) -> str:
    return ("{ lambda ; a:f32[3]. let\n    b:f32[] = reduce_sum[axes=" + "(" * depth + "0," + ")," * (depth - 1)
            + ")] a\n  in (b,) }")


@pytest.mark.parametrize("depth", [50, 250, 300, 100_000])
def test_deeply_nested_tuples(depth):
    text = _wrap_param(depth)
    err = IRTypeError if depth <= 250 else IRSyntaxError      # well-formed (but wrong) vs too deep
    with pytest.raises(err):
        parse(text)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_brackets_of_every_kind(depth):
    for opener in "([{":
        with pytest.raises(IRSyntaxError) as info:
            parse("{ lambda ; a:f32[]. let b:f32[] = exp[x=" + opener * depth + "] a in (b,) }")
        assert info.value.line == 1


def test_deeply_nested_sub_jaxprs():
    def nest(k: int) -> str:
        if k == 0:
            return "{ lambda ; a:f32[]. let\n b:f32[] = neg a\n in (b,) }"
        return f"{{ lambda ; a:f32[]. let\n b:f32[] = checkpoint[jaxpr={nest(k - 1)}, policy=None] a\n in (b,) }}"
    ok = parse(nest(40))                              # deep, but within the limit: reads and prints
    assert str(parse(str(ok))) == str(ok)
    import runtime
    assert float(runtime.eval_jaxpr(ok, np.float32(2.0))[0]) == -2.0
    with pytest.raises(IRSyntaxError):
        parse(nest(200))


@pytest.mark.parametrize("literal", ["9" * 5000 + ":i64[]", "9" * 5000 + ":f32[]", "1e999999:f64[]",
                                     "-1e400:f64[]", "1" + "0" * 400 + ".0:f32[]", "18446744073709551616:u64[]",
                                     "-9223372036854775809:i64[]", "8:i4[]", "inf:f8_e4m3fn[]",
                                     "70000:f16[]", "-inf:i32[]", "nan:bool[]", "1:bool[]"])
def test_bad_literals_are_syntax_errors(literal):
    with pytest.raises(IRSyntaxError) as info:
        parse(f"{{ lambda ; . let\n  in ({literal},) }}")
    assert (info.value.line, info.value.column) == (2, 7)


@pytest.mark.parametrize("literal,value", [("18446744073709551615:u64[]", 2 ** 64 - 1),
                                           ("-9223372036854775808:i64[]", -2 ** 63), ("-8:i4[]", -8),
                                           ("-inf:f16[]", -np.inf), ("1e-400:f64[]", 0.0), ("65504:f16[]", 65504),
                                           ("-0.0:f32[]", -0.0), ("nan:f8_e4m3fn[]", np.nan)])
def test_extreme_but_valid_literals(literal, value):
    (lit,) = parse(f"{{ lambda ; . let\n  in ({literal},) }}").jaxpr.outvars
    assert isinstance(lit, Literal)
    v = lit.value
    if isinstance(value, float) and np.isnan(value):
        assert np.isnan(float(v))
    else:
        assert float(v) == value if isinstance(value, float) else int(v) == value
        if value == 0.0 and isinstance(value, float):
            assert np.signbit(float(v)) == np.signbit(value)


def test_huge_dimensions_are_types_not_allocations():
    big = "{ lambda ; a:f32[99999999999,99999999999]. let\n    b:f32[99999999999,99999999999] = exp a\n  in (b,) }"
    closed = parse(big)
    assert closed.jaxpr.invars[0].aval.shape == (99999999999, 99999999999)
    with pytest.raises(IRSyntaxError):
        parse(big.replace("99999999999", "9" * 40, 1))


# ----------------------------------------------------------------------------------------------
# Garbled text (hypothesis): character-level damage
# ----------------------------------------------------------------------------------------------

_ALPHABET = list("{}[]():;.,=-+ \n\"\\_abcdefxyz0123456789") + ["in", "let", "lambda", "inf", "nan", "True",
                                                                 "None", "f32", "i8", "é", "\x00", "𝛼"]


@SETTINGS
@given(st.sampled_from(sorted(TEXTS)), st.lists(st.tuples(st.sampled_from(["sub", "ins", "del"]),
                                                          st.floats(0, 1, exclude_max=True),
                                                          st.sampled_from(_ALPHABET)), min_size=1, max_size=4))
def test_garbled_text_raises_only_ir_errors(name, edits):
    text = TEXTS[name]
    for op, where, piece in edits:
        k = int(where * len(text)) if text else 0
        if op == "sub":
            text = text[:k] + piece + text[k + 1:]
        elif op == "ins":
            text = text[:k] + piece + text[k:]
        else:
            text = text[:k] + text[k + 1:]
    parse_or_error(text)


# ----------------------------------------------------------------------------------------------
# Token-level mutations (hypothesis): each kind of damage, with what it must give
# ----------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"(?P<def>(?!(True|False|inf|nan|None)\b)[A-Za-z_]\w*:)|(?P<name>[A-Za-z_]\w*)|(?P<num>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)"
                    r"|(?P<ws>\s+)|(?P<string>\"([^\"\\]|\\.)*\")|(?P<punct>.)", re.S)


class Tokens:
    def __init__(self, text: str):
        self.toks = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(text)]
        self.analyse()

    def text(self) -> str:
        return "".join(t for _, t in self.toks)

    def next_sig(self, i: int) -> int | None:
        for j in range(i + 1, len(self.toks)):
            if self.toks[j][0] != "ws":
                return j
        return None

    def prev_sig(self, i: int) -> int | None:
        for j in range(i - 1, -1, -1):
            if self.toks[j][0] != "ws":
                return j
        return None

    def analyse(self):
        """Find, per scope ({ ... }), binders, variable uses, primitives, literals, dtypes in types."""
        self.binders, self.uses, self.prims, self.literals, self.type_dtypes, self.dims = [], [], [], [], [], []
        self.scope_of: dict[int, int] = {}
        stack, scopes, nscopes = [], [], 0
        defined: list[dict] = []
        for i, (kind, tok) in enumerate(self.toks):
            if tok == "{":
                stack.append(nscopes)
                defined.append({})
                nscopes += 1
            elif tok == "}":
                stack.pop()
                defined.pop()
            if not stack:
                continue
            scope = stack[-1]
            nxt, prv = self.next_sig(i), self.prev_sig(i)
            nxt_tok = self.toks[nxt][1] if nxt is not None else ""
            prv_tok = self.toks[prv][1] if prv is not None else ""
            if kind == "def":
                self.binders.append(i)
                defined[-1][tok[:-1]] = i
                self.scope_of[i] = scope
            elif kind == "name" and prv_tok == "=" and nxt_tok != "=" and tok in PRIMITIVES:
                self.prims.append(i)
            elif kind == "name" and tok in defined[-1] and nxt_tok not in ("=", "[") and prv_tok != ":":
                self.uses.append(i)
                self.scope_of[i] = scope
            elif kind == "name" and tok in DTYPES and prv_tok == ":" and nxt_tok == "[":
                self.type_dtypes.append(i)
                pp = self.prev_sig(prv)
                if pp is not None and self.toks[pp][0] in ("num", "name") and self.toks[pp][1] in (
                        "inf", "nan", "True", "False") or pp is not None and self.toks[pp][0] == "num":
                    start = pp
                    before = self.prev_sig(pp)
                    if before is not None and self.toks[before][1] == "-" and self.toks[pp][1] == "inf":
                        start = before
                    end = self.next_sig(nxt)
                    while end is not None and self.toks[end][1] != "]":
                        end = self.next_sig(end)
                    self.literals.append((start, end))
            elif kind == "num" and prv_tok in ("[", ",") and self._in_type(i):
                self.dims.append(i)

    def _in_type(self, i: int) -> bool:
        j = self.prev_sig(i)
        while j is not None and self.toks[j][1] not in ("[", "="):
            if self.toks[j][0] != "num" and self.toks[j][1] != ",":
                return False
            j = self.prev_sig(j)
        if j is None or self.toks[j][1] != "[":
            return False
        k = self.prev_sig(j)
        return k is not None and self.toks[k][1] in DTYPES

    def replace(self, i: int, new: str):
        self.toks[i] = (self.toks[i][0], new)

    def replace_span(self, i: int, j: int, new: str):
        self.toks[i:j + 1] = [("punct", new)]


def _defined_later(t: Tokens, use: int) -> list[str]:
    """Names bound in the same scope after the equation that contains the use."""
    scope = t.scope_of[use]
    return [t.toks[b][1][:-1] for b in t.binders if b > use and t.scope_of[b] == scope]


BAD_LITERALS = ["3.5:i32[]", "1e999:f32[]", "True:f32[]", "300:u8[]", "-1:u8[]", "99999999999999999999:i64[]",
                "nan:i32[]", "1.0:f32[2]", "1.0:q32[]", "inf:bool[]", "1.0:f32[", "1.0:", ":f32[]", "1..0:f32[]"]


@SETTINGS
@given(st.sampled_from(sorted(TEXTS)), st.data())
def test_token_mutations_raise_only_ir_errors(name, data):
    t = Tokens(TEXTS[name])
    kind = data.draw(st.sampled_from(["unknown_primitive", "other_primitive", "duplicate_def", "use_before_def",
                                      "bad_literal", "unknown_dtype", "other_dtype", "change_dim", "huge_dim",
                                      "swap_uses", "drop_param", "deep_param", "drop_token", "repeat_token"]))
    must_fail = None                          # the error class the mutation must give, when it is certain
    if kind == "unknown_primitive":
        i = data.draw(st.sampled_from(t.prims))
        t.replace(i, data.draw(st.sampled_from(["frobnicate", "Add", "add_", "lambda_", "reduce_summ"])))
        must_fail = IRSyntaxError
    elif kind == "other_primitive":
        i = data.draw(st.sampled_from(t.prims))
        t.replace(i, data.draw(st.sampled_from(sorted(PRIMITIVES))))
    elif kind == "duplicate_def":
        candidates = [b for b in t.binders if any(c < b and t.scope_of[c] == t.scope_of[b] for c in t.binders)]
        b = data.draw(st.sampled_from(candidates))
        earlier = [c for c in t.binders if c < b and t.scope_of[c] == t.scope_of[b]]
        t.replace(b, t.toks[data.draw(st.sampled_from(earlier))][1])
        must_fail = IRSyntaxError
    elif kind == "use_before_def":
        uses = [u for u in t.uses if _defined_later(t, u)]
        if not uses:
            return
        u = data.draw(st.sampled_from(uses))
        t.replace(u, data.draw(st.sampled_from(_defined_later(t, u))))
        must_fail = IRSyntaxError
    elif kind == "bad_literal":
        if not t.literals:
            return
        start, end = data.draw(st.sampled_from(t.literals))
        t.replace_span(start, end, data.draw(st.sampled_from(BAD_LITERALS)))
        must_fail = IRSyntaxError
    elif kind == "unknown_dtype":
        i = data.draw(st.sampled_from(t.type_dtypes))
        t.replace(i, data.draw(st.sampled_from(["f31", "float32", "F32", "i", "bool_", "b16"])))
        must_fail = IRSyntaxError
    elif kind == "other_dtype":
        i = data.draw(st.sampled_from(t.type_dtypes))
        t.replace(i, data.draw(st.sampled_from(sorted(DTYPES))))
    elif kind == "change_dim":
        if not t.dims:
            return
        i = data.draw(st.sampled_from(t.dims))
        t.replace(i, str(data.draw(st.sampled_from([0, 1, 2, 5, 7, 99999999999]))))
    elif kind == "huge_dim":
        if not t.dims:
            return
        t.replace(data.draw(st.sampled_from(t.dims)), "9" * data.draw(st.integers(13, 5000)))
        must_fail = IRSyntaxError
    elif kind == "swap_uses":
        if len(t.uses) < 2:
            return
        i, j = data.draw(st.lists(st.sampled_from(t.uses), min_size=2, max_size=2, unique=True))
        a, b = t.toks[i][1], t.toks[j][1]
        t.replace(i, b)
        t.replace(j, a)
    elif kind == "drop_param":
        text = t.text()
        params = list(re.finditer(r"(\w+)=(\([^\[\]{}]*?\)|[^,\]\[{}()]+)(, )?", text))
        if not params:
            return
        m = data.draw(st.sampled_from(params))
        text = text[:m.start()] + text[m.end():]
        parse_or_error(text)
        return
    elif kind == "deep_param":
        text = t.text()
        params = list(re.finditer(r"(\w+)=(\([^\[\]{}]*?\)|[^,\]\[{}()]+)", text))
        if not params:
            return
        m = data.draw(st.sampled_from(params))
        depth = data.draw(st.sampled_from([10, 100, 257, 5000]))
        value = "(" * depth + "1," + ")" * depth
        text = text[:m.start(2)] + value + text[m.end(2):]
        must_fail = IRSyntaxError if depth > 250 else None
        result = parse_or_error(text)
        if must_fail:
            assert isinstance(result, must_fail), result
        return
    elif kind in ("drop_token", "repeat_token"):
        sig = [i for i, (k, _) in enumerate(t.toks) if k != "ws"]
        i = data.draw(st.sampled_from(sig))
        t.replace(i, "" if kind == "drop_token" else t.toks[i][1] + " " + t.toks[i][1])
        if kind == "drop_token" and t.toks[i][0] == "punct" and i == sig[-1]:
            must_fail = IRSyntaxError
    result = parse_or_error(t.text())
    if must_fail is not None:
        assert isinstance(result, must_fail), (kind, result, t.text())


def test_token_analysis_finds_what_the_mutations_need():
    """The mutation test above depends on this tokenizer; make sure it sees real structure."""
    t = Tokens(TEXTS["nested"])
    assert len(t.prims) >= 10 and len(t.binders) >= 20 and len(t.uses) >= 15 and len(t.literals) >= 4
    assert {t.toks[i][1] for i in t.prims} >= {"cond", "while", "scan", "add", "mul"}
    t = Tokens(TEXTS["literals"])
    spans = ["".join(tok for _, tok in t.toks[s:e + 1]) for s, e in t.literals]
    assert "nan:f32[]" in spans and "1099511627776:i64[]" in spans and "True:bool[]" in spans


# ----------------------------------------------------------------------------------------------
# verify() on hand-built programs
# ----------------------------------------------------------------------------------------------

F3 = ShapedArray((3,), DTYPES["f32"])
F4 = ShapedArray((4,), DTYPES["f32"])
ADD, EXP, RSUM = PRIMITIVES["add"], PRIMITIVES["exp"], PRIMITIVES["reduce_sum"]


def _ok():
    a, b, c = Var(F3), Var(F3), Var(F3)
    return a, b, c, Jaxpr([], [a, b], [Eqn(ADD, [a, b], [c], {})], [c])


def test_verify_accepts_good_hand_built_program():
    *_, j = _ok()
    assert verify(j) is None
    assert verify(ClosedJaxpr(j, [])) is None


def _bad_programs():
    a, b, c, d = Var(F3), Var(F3), Var(F3), Var(F3)
    yield "invar twice", Jaxpr([], [a, a], [], [a]), ["defined twice"]
    yield "constvar and invar", Jaxpr([a], [a], [], [a]), ["defined twice"]
    yield "output redefines an input", Jaxpr([], [a, b], [Eqn(ADD, [a, b], [a], {})], [a]), ["add", "defined twice"]
    yield "two equations define one var", Jaxpr([], [a], [Eqn(EXP, [a], [c], {}), Eqn(EXP, [a], [c], {})], [c]), \
        ["equation 1", "exp", "defined twice"]
    yield "used before definition", Jaxpr([], [a], [Eqn(ADD, [a, d], [c], {}), Eqn(EXP, [a], [d], {})], [c]), \
        ["equation 0", "add", "before"]
    yield "never defined output", Jaxpr([], [a], [], [d]), ["outputs", "before"]
    yield "uses its own output", Jaxpr([], [a], [Eqn(ADD, [a, c], [c], {})], [c]), ["add", "before"]
    yield "wrong out shape", Jaxpr([], [a, b], [Eqn(ADD, [a, b], [Var(F4)], {})], []), ["add", "f32[4]", "f32[3]"]
    yield "wrong out dtype", Jaxpr([], [a], [Eqn(EXP, [a], [Var(ShapedArray((3,), DTYPES["f16"]))], {})], []), \
        ["exp", "f16[3]", "f32[3]"]
    yield "wrong operand shapes", Jaxpr([], [a, Var(F4)], [], []), None      # fine: no equation
    e = Var(F4)
    yield "operand mismatch", Jaxpr([], [a, e], [Eqn(ADD, [a, e], [c], {})], [c]), ["add", "f32[3]", "f32[4]"]
    yield "wrong params", Jaxpr([], [a], [Eqn(RSUM, [a], [Var(ShapedArray((), DTYPES["f32"]))], {"axes": (5,)})],
                                []), ["reduce_sum", "axes=(5,)"]
    yield "missing params", Jaxpr([], [a], [Eqn(RSUM, [a], [Var(ShapedArray((), DTYPES["f32"]))], {})], []), \
        ["reduce_sum"]
    yield "extra params", Jaxpr([], [a], [Eqn(EXP, [a], [c], {"axes": (0,)})], [c]), ["exp", "axes"]
    yield "garbage params", Jaxpr([], [a], [Eqn(RSUM, [a], [Var(ShapedArray((), DTYPES["f32"]))],
                                                {"axes": object()})], []), ["reduce_sum"]
    fake = Primitive.__new__(Primitive)
    fake.name, fake.multiple_results, fake.shape_rule = "add", False, lambda x, y: x
    yield "unregistered primitive", Jaxpr([], [a, b], [Eqn(fake, [a, b], [c], {})], [c]), ["unknown primitive"]
    yield "not a primitive", Jaxpr([], [a], [Eqn("exp", [a], [c], {})], [c]), ["unknown primitive"]
    yield "input not an atom", Jaxpr([], [a], [Eqn(ADD, [a, 1.0], [c], {})], [c]), ["add", "float"]
    yield "outvar is a literal", Jaxpr([], [a], [Eqn(EXP, [a], [Literal(1.0, ShapedArray((), DTYPES["f32"]))], {})],
                                       []), ["exp"]
    big = Literal.__new__(Literal)
    big.value, big.aval = np.zeros(3, np.float32), F3
    yield "non-scalar literal", Jaxpr([], [a], [Eqn(ADD, [a, big], [c], {})], [c]), ["add", "literal"]
    yield "not an equation", Jaxpr([], [a], ["c = exp a"], [a]), ["equation 0"]
    yield "too many outputs", Jaxpr([], [a], [Eqn(EXP, [a], [c, d], {})], [c]), ["exp", "2"]
    inner_a, inner_c = Var(F3), Var(F3)
    bad_branch = Jaxpr([], [inner_a], [Eqn(ADD, [inner_a, inner_c], [Var(F3)], {})], [inner_a])
    p = Var(ShapedArray((), DTYPES["bool"]))
    yield "bad sub-jaxpr", Jaxpr([], [p, a], [Eqn(PRIMITIVES["cond"], [p, a], [c], {"branches": (bad_branch,
                                                                                                 bad_branch)})], [c]), \
        ["cond", "sub-jaxpr", "add"]
    yield "sub-jaxpr sees outer variable", Jaxpr([], [p, a, b], [Eqn(PRIMITIVES["cond"], [p, a], [c], {
        "branches": (Jaxpr([], [d], [], [b]), Jaxpr([], [Var(F3)], [], [a]))})], [c]), ["cond", "before"]
    yield "not a jaxpr", "{ lambda ; . let in () }", None
    yield "consts count", ClosedJaxpr(Jaxpr([a], [], [], [a]), []), ["const"]
    yield "const shape", ClosedJaxpr(Jaxpr([a], [], [], [a]), [np.zeros(4, np.float32)]), ["const", "f32[3]"]
    yield "const dtype", ClosedJaxpr(Jaxpr([a], [], [], [a]), [np.zeros(3, np.int32)]), ["const", "f32[3]"]


@pytest.mark.parametrize("name,program,words", list(_bad_programs()), ids=[p[0] for p in _bad_programs()])
def test_verify_rejects_bad_programs(name, program, words):
    if name == "wrong operand shapes":
        assert verify(program) is None
        return
    with pytest.raises(IRTypeError) as info:
        verify(program)
    for w in words or []:
        assert w in str(info.value), (w, str(info.value))
