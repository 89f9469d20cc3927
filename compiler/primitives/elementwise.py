"""Elementwise primitives: unary math, binary arithmetic, comparisons, logic, select, casts.

Binary primitives take operands of one dtype and equal shapes, or a rank-0 operand against any
shape (so ``mul 3.0:f32[] b`` needs no broadcast); numpy-style broadcasting and dtype promotion
happen in compiler.numpy before these are bound.
"""
from __future__ import annotations

from ..ir.core import DType, Primitive, ShapedArray, bool_, dtype as to_dtype
from ..ir.errors import ShapeError

_FLOAT, _INT, _BOOL = "f", "iu", "b"


def _require_kind(name: str, aval: ShapedArray, kinds: str, what: str):
    if aval.dtype.kind not in kinds:
        raise ShapeError(f"{name} expects {what} operands, got {aval.dtype.name}")


def unary(name: str, kinds: str = _FLOAT + _INT, what: str = "numeric", out_dtype: DType | None = None):
    """Declare a one-operand elementwise primitive."""
    prim = Primitive(name)

    def rule(x: ShapedArray) -> ShapedArray:
        _require_kind(name, x, kinds, what)
        return x if out_dtype is None else ShapedArray(x.shape, out_dtype)

    prim.shape_rule = rule
    return prim


neg = unary("neg")
sign = unary("sign")
abs_ = unary("abs")
exp = unary("exp", _FLOAT, "floating-point")
log = unary("log", _FLOAT, "floating-point")
log1p = unary("log1p", _FLOAT, "floating-point")
expm1 = unary("expm1", _FLOAT, "floating-point")
tanh = unary("tanh", _FLOAT, "floating-point")
logistic = unary("logistic", _FLOAT, "floating-point")
sin = unary("sin", _FLOAT, "floating-point")
cos = unary("cos", _FLOAT, "floating-point")
sqrt = unary("sqrt", _FLOAT, "floating-point")
rsqrt = unary("rsqrt", _FLOAT, "floating-point")
erf = unary("erf", _FLOAT, "floating-point")
floor = unary("floor", _FLOAT, "floating-point")
ceil = unary("ceil", _FLOAT, "floating-point")
round_ = unary("round", _FLOAT, "floating-point")      # half to even, as numpy.round
is_finite = unary("is_finite", _FLOAT, "floating-point", out_dtype=bool_)
not_ = unary("not", _INT + _BOOL, "integer or boolean")
stop_gradient = unary("stop_gradient", _FLOAT + _INT + _BOOL, "any")


def _join(name: str, x: ShapedArray, y: ShapedArray) -> ShapedArray:
    if x.dtype != y.dtype:
        raise ShapeError(f"{name} expects operands of one dtype, got {x.dtype.name} and {y.dtype.name}")
    if x.shape != y.shape and x.shape != () and y.shape != ():
        raise ShapeError(f"{name} expects equal shapes (or a scalar operand), got {x.shape} and {y.shape}")
    shape = x.shape if x.shape != () else y.shape
    return ShapedArray(shape, x.dtype, x.weak_type and y.weak_type)


def binary(name: str, kinds: str = _FLOAT + _INT, what: str = "numeric", compare: bool = False):
    """Declare a two-operand elementwise primitive (a comparison if ``compare``: bool result)."""
    prim = Primitive(name)

    def rule(x: ShapedArray, y: ShapedArray) -> ShapedArray:
        _require_kind(name, x, kinds, what)
        out = _join(name, x, y)
        return ShapedArray(out.shape, bool_) if compare else out

    prim.shape_rule = rule
    return prim


add = binary("add")
sub = binary("sub")
mul = binary("mul")
div = binary("div")          # integers: floor division as numpy's //, x // 0 == 0
rem = binary("rem")          # integers: numpy's % (sign of the divisor), x % 0 == 0
pow_ = binary("pow", _FLOAT, "floating-point")
max_ = binary("max")
min_ = binary("min")
and_ = binary("and", _INT + _BOOL, "integer or boolean")
or_ = binary("or", _INT + _BOOL, "integer or boolean")
xor = binary("xor", _INT + _BOOL, "integer or boolean")
eq = binary("eq", _FLOAT + _INT + _BOOL, "any", compare=True)
ne = binary("ne", _FLOAT + _INT + _BOOL, "any", compare=True)
lt = binary("lt", compare=True)
le = binary("le", compare=True)
gt = binary("gt", compare=True)
ge = binary("ge", compare=True)


integer_pow = Primitive("integer_pow")


def _integer_pow_rule(x: ShapedArray, *, y: int) -> ShapedArray:
    if not isinstance(y, int) or isinstance(y, bool):
        raise ShapeError(f"integer_pow expects an integer exponent y, got {y!r}")
    _require_kind("integer_pow", x, _FLOAT + _INT, "numeric")
    if x.dtype.is_int and y < 0:
        raise ShapeError("integer_pow of an integer array needs y >= 0")
    return x


integer_pow.shape_rule = _integer_pow_rule


convert_element_type = Primitive("convert_element_type")


def _convert_rule(x: ShapedArray, *, new_dtype) -> ShapedArray:
    return ShapedArray(x.shape, to_dtype(new_dtype))


convert_element_type.shape_rule = _convert_rule


select_n = Primitive("select_n")


def _select_n_rule(which: ShapedArray, *cases: ShapedArray) -> ShapedArray:
    """``select_n(which, c0, c1, ...)`` picks ``cases[which]`` elementwise (bool which: c0 if False)."""
    if not cases:
        raise ShapeError("select_n needs at least one case")
    if which.dtype != bool_ and not which.dtype.is_int:
        raise ShapeError(f"select_n expects a boolean or integer selector, got {which.dtype.name}")
    if which.dtype == bool_ and len(cases) > 2:
        raise ShapeError("a boolean selector picks between at most 2 cases")
    first = cases[0]
    for c in cases[1:]:
        if not c.same_type(first):
            raise ShapeError(f"select_n cases must share one type, got {first} and {c}")
    if which.shape not in ((), first.shape):
        raise ShapeError(f"select_n selector shape {which.shape} must be () or the cases' {first.shape}")
    return ShapedArray(first.shape, first.dtype, all(c.weak_type for c in cases))


select_n.shape_rule = _select_n_rule
