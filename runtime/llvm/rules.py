"""The LLVM backend's rule table: for each primitive, how it is lowered.

``KINDS`` says which machinery takes a primitive (the planner reads it); ``ELEMENTWISE`` holds the
per-element code of fusible primitives, each a function ``(cx, args, eqn) -> value`` that works on
scalars and on vectors alike (``cx`` is the lane context of codegen.Lanes). Semantics follow
runtime/interpreter.py exactly: integer division floors and x // 0 == 0, float -> int conversion
saturates with NaN -> 0, max/min propagate NaN as numpy does.
"""
from __future__ import annotations

from llvmlite import ir

SUPPORTED_DTYPES = {"f64", "f32", "f16", "bf16", "f8_e4m3fn", "f8_e5m2", "i64", "i32", "i16", "i8", "i4",
                    "u64", "u32", "u16", "u8", "bool"}
# Storage-only types: loaded into f32 / i8 registers (codegen.Lanes.from_storage) and rounded or wrapped
# back when stored or converted, so only primitives that move or convert values are exact on them.
# Arithmetic on them (which would have to round after every step) runs on the interpreter.
STORAGE_ONLY_DTYPES = {"f8_e4m3fn", "f8_e5m2", "i4"}
STORAGE_ONLY_PRIMITIVES = {"convert_element_type", "select_n", "stop_gradient", "broadcast_in_dim", "reshape",
                           "transpose", "squeeze", "expand_dims", "rev", "slice", "gather", "dynamic_slice",
                           "concatenate", "pad", "dynamic_update_slice", "cond", "checkpoint"}

ELEMENTWISE: dict = {}


def rule(*names):
    def register(fn):
        for n in names:
            ELEMENTWISE[n] = fn
        return fn
    return register


def _dt(eqn, i=0):
    return eqn.inputs[i].aval.dtype


def _out(eqn):
    return eqn.outvars[0].aval.dtype


# ---- arithmetic -------------------------------------------------------------------------------
@rule("add", "sub", "mul")
def _arith(cx, args, eqn):
    x, y = args
    op = eqn.primitive.name
    if _dt(eqn).is_float:
        return getattr(cx.b, {"add": "fadd", "sub": "fsub", "mul": "fmul"}[op])(x, y, flags=cx.fast)
    return getattr(cx.b, op)(x, y)


def _integer_division(cx, x, y, d):
    """Floor quotient and remainder as numpy's // and %, without the traps x86 raises on a zero
    divisor or MIN / -1 (both are computed with a safe divisor and fixed afterwards).
    Returns (quotient, remainder, zero, minus_one) for signed types."""
    b = cx.b
    zero = b.icmp_unsigned("==", y, cx.const(d, 0))
    minus1 = b.icmp_signed("==", y, cx.const(d, -1))
    safe = b.select(b.or_(zero, minus1), cx.const(d, 1), y)
    q, r = b.sdiv(x, safe), b.srem(x, safe)
    fix = b.and_(b.icmp_signed("!=", r, cx.const(d, 0)),
                 b.icmp_signed("<", b.xor(r, safe), cx.const(d, 0)))      # signs differ: floor
    return b.sub(q, b.zext(fix, q.type)), b.select(fix, b.add(r, safe), r), zero, minus1


def _unsigned_division(cx, op, x, y, d):
    b = cx.b
    zero = b.icmp_unsigned("==", y, cx.const(d, 0))
    return b.select(zero, cx.const(d, 0), op(x, b.select(zero, cx.const(d, 1), y)))


@rule("div")
def _div(cx, args, eqn):
    x, y = args
    d = _dt(eqn)
    b = cx.b
    if d.is_float:
        return b.fdiv(x, y)
    if d.kind == "u":
        return _unsigned_division(cx, b.udiv, x, y, d)
    q, _, zero, minus1 = _integer_division(cx, x, y, d)
    q = b.select(minus1, b.sub(cx.const(d, 0), x), q)                 # wraps for MIN, as numpy
    return b.select(zero, cx.const(d, 0), q)


@rule("rem")
def _rem(cx, args, eqn):
    x, y = args
    d = _dt(eqn)
    b = cx.b
    if d.is_float:
        return b.frem(x, y)
    if d.kind == "u":
        return _unsigned_division(cx, b.urem, x, y, d)
    _, r, zero, minus1 = _integer_division(cx, x, y, d)
    return b.select(b.or_(zero, minus1), cx.const(d, 0), r)


@rule("max", "min")
def _maxmin(cx, args, eqn):
    x, y = args
    d = _dt(eqn)
    b = cx.b
    op = ">" if eqn.primitive.name == "max" else "<"
    if d.is_float:       # numpy: (x > y or isnan(x)) ? x : y   -- NaN wins, ties pick y
        pick = b.or_(b.fcmp_ordered(op, x, y), b.fcmp_unordered("uno", x, x))
    elif d.kind == "i":
        pick = b.icmp_signed(op, x, y)
    else:
        pick = b.icmp_unsigned(op, x, y)
    return b.select(pick, x, y)


@rule("pow")
def _pow(cx, args, eqn):
    return cx.math("pow", args, _dt(eqn))


@rule("and", "or", "xor")
def _logic(cx, args, eqn):
    name = {"and": "and_", "or": "or_", "xor": "xor"}[eqn.primitive.name]
    return getattr(cx.b, name)(*args)


@rule("shift_left", "shift_right_logical")
def _shift(cx, args, eqn):
    """Shifts of the bit pattern (right shifts are logical); counts outside [0, bits) give 0."""
    x, y = args
    d = _dt(eqn)
    b = cx.b
    bits = cx.const(d, 8 * d.itemsize)
    ok = b.icmp_unsigned("<", y, bits)           # unsigned: a negative count is huge, so not ok
    count = b.select(ok, y, cx.const(d, 0))
    shifted = (b.shl if eqn.primitive.name == "shift_left" else b.lshr)(x, count)
    return b.select(ok, shifted, cx.const(d, 0))


@rule("not")
def _not(cx, args, eqn):
    return cx.b.not_(args[0])


@rule("eq", "ne", "lt", "le", "gt", "ge")
def _compare(cx, args, eqn):
    op = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[eqn.primitive.name]
    d = _dt(eqn)
    b = cx.b
    if d.is_float:
        return (b.fcmp_unordered if op == "!=" else b.fcmp_ordered)(op, *args)
    if d.kind == "i":
        return b.icmp_signed(op, *args)
    return b.icmp_unsigned(op, *args)


# ---- unary ------------------------------------------------------------------------------------
@rule("neg")
def _neg(cx, args, eqn):
    x, = args
    return cx.b.fneg(x) if _dt(eqn).is_float else cx.b.sub(cx.const(_dt(eqn), 0), x)


@rule("abs")
def _abs(cx, args, eqn):
    x, = args
    d = _dt(eqn)
    if d.is_float:
        return cx.intrinsic("llvm.fabs", [x])
    if d.kind == "u":
        return x
    b = cx.b
    return b.select(b.icmp_signed("<", x, cx.const(d, 0)), b.sub(cx.const(d, 0), x), x)


@rule("sign")
def _sign(cx, args, eqn):
    x, = args
    d = _dt(eqn)
    b = cx.b
    one, zero, minus = cx.const(d, 1), cx.const(d, 0), cx.const(d, -1) if d.kind != "u" else None
    if d.is_float:
        inner = b.select(b.fcmp_ordered("<", x, zero), minus, b.select(b.fcmp_ordered("==", x, x), zero, x))
        return b.select(b.fcmp_ordered(">", x, zero), one, inner)
    if d.kind == "u":
        return b.zext(b.icmp_unsigned("!=", x, zero), x.type)
    return b.select(b.icmp_signed(">", x, zero), one, b.select(b.icmp_signed("<", x, zero), minus, zero))


@rule("exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "erf")
def _libm(cx, args, eqn):
    return cx.math(eqn.primitive.name, args, _dt(eqn))


@rule("sqrt")
def _sqrt(cx, args, eqn):
    return cx.intrinsic("llvm.sqrt", args)


@rule("rsqrt")
def _rsqrt(cx, args, eqn):
    return cx.b.fdiv(cx.const(_dt(eqn), 1.0), cx.intrinsic("llvm.sqrt", args))


@rule("floor", "ceil", "round")
def _rounding(cx, args, eqn):
    name = {"floor": "llvm.floor", "ceil": "llvm.ceil", "round": "llvm.roundeven"}[eqn.primitive.name]
    return cx.intrinsic(name, args)


@rule("is_finite")
def _is_finite(cx, args, eqn):
    return cx.b.fcmp_ordered("<", cx.intrinsic("llvm.fabs", args), cx.const(_dt(eqn), float("inf")))


@rule("logistic")
def _logistic(cx, args, eqn):
    """numpy's stable form: 1/(1+e) for x >= 0 and e/(1+e) below, with e = exp(-|x|); one division."""
    x, = args
    d = _dt(eqn)
    b = cx.b
    e = cx.math("exp", [b.fneg(cx.intrinsic("llvm.fabs", [x]))], d)
    one = cx.const(d, 1.0)
    num = b.select(b.fcmp_unordered(">=", x, cx.const(d, 0.0)), one, e)
    return b.fdiv(num, b.fadd(one, e))


@rule("stop_gradient")
def _identity(cx, args, eqn):
    return args[0]


@rule("integer_pow")
def _integer_pow(cx, args, eqn):
    x, = args
    d = _dt(eqn)
    y = eqn.params["y"]
    b = cx.b
    mul = (lambda p, q: b.fmul(p, q)) if d.is_float else b.mul
    n = abs(y)
    if d.is_float and n > 4:
        p = cx.math("pow", [x, cx.const(d, float(n))], d)
    else:
        p, base = cx.const(d, 1), x
        first = True
        while n:
            if n & 1:
                p = base if first else mul(p, base)
                first = False
            n >>= 1
            if n:
                base = mul(base, base)
    return b.fdiv(cx.const(d, 1.0), p) if y < 0 else p


@rule("select_n")
def _select_n(cx, args, eqn):
    which, *cases = args
    d = _dt(eqn)
    b = cx.b
    if d.kind == "b":
        return b.select(which, cases[1], cases[0]) if len(cases) > 1 else cases[0]
    out = cases[0]
    cmp = b.icmp_signed if d.kind == "i" else b.icmp_unsigned
    for k, c in enumerate(cases[1:], 1):
        out = b.select(cmp(">=", which, cx.const(d, k)), c, out)
    return out


@rule("convert_element_type")
def _convert(cx, args, eqn):
    return cx.convert(args[0], _dt(eqn), _out(eqn))


# ---- everything else is lowered by a machine of its own --------------------------------------
KINDS: dict[str, str] = {name: "elementwise" for name in ELEMENTWISE}
KINDS.update({name: "generator" for name in ("iota", "gather", "dynamic_slice")})
KINDS.update({name: "view" for name in ("broadcast_in_dim", "reshape", "transpose", "squeeze", "expand_dims",
                                         "rev", "slice")})
KINDS.update({name: "reduce" for name in ("reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "argmax",
                                           "cumsum")})
KINDS.update({"dot_general": "dot", "checkpoint": "inline"})
KINDS.update({name: "seq" for name in ("concatenate", "pad", "dynamic_update_slice", "scatter_add",
                                        "reduce_window_max", "reduce_window_sum")})
KINDS.update({"conv_general_dilated": "conv"})
KINDS.update({"sparse_dot": "sparse"})          # runtime/llvm/sparse.py
# control flow runs natively: cond as branches (plan.Planner._branch, codegen.emit_cond), while and
# scan as loops calling their bodies' plans (plan.Planner._while_loop/_scan_loop, codegen.emit_loop)
NATIVE_CONTROL_FLOW = {"cond": "branch", "while": "while_loop", "scan": "scan_loop"}
KINDS.update(NATIVE_CONTROL_FLOW)

LOWERED = frozenset(KINDS)


def int_constant(ty: ir.IntType, value: int) -> ir.Constant:
    """An integer constant in two's complement (LLVM reads iN literals as signed)."""
    value = int(value) & ((1 << ty.width) - 1)
    if ty.width > 1 and value >= 1 << (ty.width - 1):
        value -= 1 << ty.width
    return ir.Constant(ty, value)
