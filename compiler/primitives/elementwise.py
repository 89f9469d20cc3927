"""Elementwise primitives: unary math, binary arithmetic, comparisons, logic, select, casts.

Binary primitives take operands of one dtype and equal shapes, or a rank-0 operand against any
shape (so ``mul 3.0:f32[] b`` needs no broadcast); numpy-style broadcasting and dtype promotion
happen in compiler.numpy before these are bound.
"""
from __future__ import annotations

import math

from ..ir.core import DType, Primitive, ShapedArray, bool_, dtype as to_dtype
from ..ir.errors import ShapeError
from ._lazy import cnp
from ..transforms.batching import elementwise_batch_rule
from .derivatives import (MINUS_ONE, ONE, elementwise_rules, linear_rules, typed, zero_derivative_rules)

_FLOAT, _INT, _BOOL = "f", "iu", "b"


def _require_kind(name: str, aval: ShapedArray, kinds: str, what: str):
    if aval.dtype.kind not in kinds:
        raise ShapeError(f"{name} expects {what} operands, got {aval.dtype.name}")


def unary(name: str, partial=None, kinds: str = _FLOAT + _INT, what: str = "numeric",
          out_dtype: DType | None = None):
    """Declare a one-operand elementwise primitive; ``partial(x, out)`` is d out / d x (None: zero)."""
    prim = Primitive(name)

    def rule(x: ShapedArray) -> ShapedArray:
        _require_kind(name, x, kinds, what)
        return x if out_dtype is None else ShapedArray(x.shape, out_dtype)

    prim.shape_rule = rule
    elementwise_batch_rule(prim)
    if partial is None:
        return zero_derivative_rules(prim)
    return elementwise_rules(prim, lambda x, out: (partial(x, out),))


_F = (_FLOAT, "floating-point")

# name, d out / d x (derivatives at kinks follow PyTorch: abs'(0) = 0, sign' = 0)
neg = unary("neg", lambda x, y: MINUS_ONE)
sign = unary("sign")
abs_ = unary("abs", lambda x, y: cnp.sign(x))
exp = unary("exp", lambda x, y: y, *_F)
log = unary("log", lambda x, y: cnp.divide(1, x), *_F)
log1p = unary("log1p", lambda x, y: cnp.divide(1, cnp.add(x, 1)), *_F)
expm1 = unary("expm1", lambda x, y: cnp.add(y, 1), *_F)
tanh = unary("tanh", lambda x, y: cnp.subtract(1, cnp.multiply(y, y)), *_F)
logistic = unary("logistic", lambda x, y: cnp.multiply(y, cnp.subtract(1, y)), *_F)
sin = unary("sin", lambda x, y: cnp.cos(x), *_F)
cos = unary("cos", lambda x, y: cnp.negative(cnp.sin(x)), *_F)
sqrt = unary("sqrt", lambda x, y: cnp.divide(0.5, y), *_F)
rsqrt = unary("rsqrt", lambda x, y: cnp.multiply(cnp.divide(y, x), -0.5), *_F)
erf = unary("erf", lambda x, y: cnp.multiply(cnp.exp(cnp.negative(cnp.multiply(x, x))),
                                             2 / math.sqrt(math.pi)), *_F)
floor = unary("floor", None, *_F)
ceil = unary("ceil", None, *_F)
round_ = unary("round", None, *_F)      # half to even, as numpy.round
is_finite = unary("is_finite", None, *_F, out_dtype=bool_)
not_ = unary("not", None, _INT + _BOOL, "integer or boolean")
stop_gradient = unary("stop_gradient", None, _FLOAT + _INT + _BOOL, "any")


def _join(name: str, x: ShapedArray, y: ShapedArray) -> ShapedArray:
    if x.dtype != y.dtype:
        raise ShapeError(f"{name} expects operands of one dtype, got {x.dtype.name} and {y.dtype.name}")
    if x.shape != y.shape and x.shape != () and y.shape != ():
        raise ShapeError(f"{name} expects equal shapes (or a scalar operand), got {x.shape} and {y.shape}")
    shape = x.shape if x.shape != () else y.shape
    return ShapedArray(shape, x.dtype, x.weak_type and y.weak_type)


def binary(name: str, partials=None, kinds: str = _FLOAT + _INT, what: str = "numeric",
           compare: bool = False):
    """Declare a two-operand elementwise primitive (a comparison if ``compare``: bool result).
    ``partials(x, y, out)`` gives (d out / d x, d out / d y)."""
    prim = Primitive(name)

    def rule(x: ShapedArray, y: ShapedArray) -> ShapedArray:
        _require_kind(name, x, kinds, what)
        out = _join(name, x, y)
        return ShapedArray(out.shape, bool_) if compare else out

    prim.shape_rule = rule
    elementwise_batch_rule(prim)
    return zero_derivative_rules(prim) if partials is None else elementwise_rules(prim, partials)


def _trunc(q):
    return cnp.where(cnp.less(q, 0), cnp.ceil(q), cnp.floor(q))


def _where_nonzero(cond, value, like):
    """value where cond holds, else 0 (keeps NaN/inf of the unused side out of the derivative)."""
    return cnp.where(cond, value, typed(0, like))


def _pow_partials(x, y, out):
    # d/dx x^y = y x^(y-1) (0 at x == y == 0, not 0 * inf; multiplying by y, not masking where
    # y == 0, keeps d2/dxdy = 1/x there); d/dy x^y = x^y log x (0 where x == 0), as JAX does
    base = cnp.where(cnp.logical_and(cnp.equal(x, 0), cnp.equal(y, 0)), typed(1, x), x)
    dx = cnp.multiply(y, cnp.power(base, cnp.subtract(y, 1)))
    dy = _where_nonzero(cnp.not_equal(x, 0), cnp.multiply(out, cnp.log(cnp.where(
        cnp.equal(x, 0), typed(1, x), x))), out)
    return dx, dy


def _max_partials(x, y, out):
    # one side gets the whole gradient; ties go to the second operand, so relu(x) = max(x, 0) has
    # relu'(0) = 0 as in PyTorch
    pick_x = cnp.greater(x, y)
    return cnp.astype(pick_x, cnp.result_type(out)), cnp.astype(cnp.logical_not(pick_x), cnp.result_type(out))


def _min_partials(x, y, out):
    pick_x = cnp.less(x, y)
    return cnp.astype(pick_x, cnp.result_type(out)), cnp.astype(cnp.logical_not(pick_x), cnp.result_type(out))


add = binary("add", lambda x, y, out: (ONE, ONE))
sub = binary("sub", lambda x, y, out: (ONE, MINUS_ONE))
mul = binary("mul", lambda x, y, out: (y, x))
div = binary("div", lambda x, y, out: (cnp.divide(1, y), cnp.negative(cnp.divide(out, y))))
# integers: div is floor division as numpy's //, x // 0 == 0.  rem: numpy's % for integers, C fmod
# for floats (sign of the dividend); x % 0 == 0 for integers
rem = binary("rem", lambda x, y, out: (ONE, cnp.negative(_trunc(cnp.divide(x, y)))))
pow_ = binary("pow", _pow_partials, *_F)
max_ = binary("max", _max_partials)
min_ = binary("min", _min_partials)
and_ = binary("and", None, _INT + _BOOL, "integer or boolean")
or_ = binary("or", None, _INT + _BOOL, "integer or boolean")
xor = binary("xor", None, _INT + _BOOL, "integer or boolean")
# shifts by counts outside [0, bits) give 0 (numpy's are undefined there); right shift is logical
shift_left = binary("shift_left", None, _INT, "integer")
shift_right_logical = binary("shift_right_logical", None, _INT, "integer")
eq = binary("eq", None, _FLOAT + _INT + _BOOL, "any", compare=True)
ne = binary("ne", None, _FLOAT + _INT + _BOOL, "any", compare=True)
lt = binary("lt", None, compare=True)
le = binary("le", None, compare=True)
gt = binary("gt", None, compare=True)
ge = binary("ge", None, compare=True)


integer_pow = Primitive("integer_pow")


def _integer_pow_rule(x: ShapedArray, *, y: int) -> ShapedArray:
    if not isinstance(y, int) or isinstance(y, bool):
        raise ShapeError(f"integer_pow expects an integer exponent y, got {y!r}")
    _require_kind("integer_pow", x, _FLOAT + _INT, "numeric")
    if x.dtype.is_int and y < 0:
        raise ShapeError("integer_pow of an integer array needs y >= 0")
    return x


integer_pow.shape_rule = _integer_pow_rule
elementwise_batch_rule(integer_pow)
elementwise_rules(integer_pow, lambda x, out, *, y: (
    None if y == 0 else ONE if y == 1 else cnp.multiply(cnp.power(x, y - 1), typed(y, x)),))


convert_element_type = Primitive("convert_element_type")


def _convert_rule(x: ShapedArray, *, new_dtype) -> ShapedArray:
    return ShapedArray(x.shape, to_dtype(new_dtype))


convert_element_type.shape_rule = _convert_rule
elementwise_batch_rule(convert_element_type)
# linear between float types; an integer or boolean on either side has no derivative
linear_rules(convert_element_type, lambda ct, x, *, new_dtype: [cnp.astype(ct, cnp.result_type(x))])


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
elementwise_batch_rule(select_n, scalar_operands=(0,))     # cases must share one shape


def _select_n_transpose(ct, which, *cases):
    zero = cnp.zeros_like(ct)
    if len(cases) == 2 and cnp.result_type(which) == bool_:
        return [select_n.bind(which, ct, zero), select_n.bind(which, zero, ct)]
    return [select_n.bind(which, *[ct if j == i else zero for j in range(len(cases))])
            for i in range(len(cases))]


linear_rules(select_n, _select_n_transpose, linear_args=range(1, 256))


# ---- sympy: each rule gets the sympy module and the operands' expressions ------------------------

def _piecewise_select(sp, which, *cases):
    if len(cases) == 2:
        cond = which if isinstance(which, sp.logic.boolalg.Boolean) else sp.Ne(which, 0)
        return sp.Piecewise((cases[1], cond), (cases[0], True))
    return sp.Piecewise(*[(c, sp.Eq(which, i)) for i, c in enumerate(cases[:-1])], (cases[-1], True))


def _sympy_convert(sp, x, *, new_dtype):
    if isinstance(x, sp.logic.boolalg.Boolean):
        return sp.Piecewise((1, x), (0, True))
    return sp.floor(x) if to_dtype(new_dtype).is_int else x


_SYMPY_RULES = {
    neg: lambda sp, x: -x, sign: lambda sp, x: sp.sign(x), abs_: lambda sp, x: sp.Abs(x),
    exp: lambda sp, x: sp.exp(x), log: lambda sp, x: sp.log(x), log1p: lambda sp, x: sp.log(1 + x),
    expm1: lambda sp, x: sp.exp(x) - 1, tanh: lambda sp, x: sp.tanh(x),
    logistic: lambda sp, x: 1 / (1 + sp.exp(-x)), sin: lambda sp, x: sp.sin(x),
    cos: lambda sp, x: sp.cos(x), sqrt: lambda sp, x: sp.sqrt(x), rsqrt: lambda sp, x: 1 / sp.sqrt(x),
    erf: lambda sp, x: sp.erf(x), floor: lambda sp, x: sp.floor(x), ceil: lambda sp, x: sp.ceiling(x),
    stop_gradient: lambda sp, x: x, not_: lambda sp, x: sp.Not(x),
    add: lambda sp, x, y: x + y, sub: lambda sp, x, y: x - y, mul: lambda sp, x, y: x * y,
    div: lambda sp, x, y: x / y, pow_: lambda sp, x, y: x ** y, max_: lambda sp, x, y: sp.Max(x, y),
    min_: lambda sp, x, y: sp.Min(x, y), rem: lambda sp, x, y: sp.Mod(x, y),
    and_: lambda sp, x, y: sp.And(x, y), or_: lambda sp, x, y: sp.Or(x, y),
    xor: lambda sp, x, y: sp.Xor(x, y), is_finite: lambda sp, x: sp.true,
    eq: lambda sp, x, y: sp.Eq(x, y), ne: lambda sp, x, y: sp.Ne(x, y), lt: lambda sp, x, y: x < y,
    le: lambda sp, x, y: x <= y, gt: lambda sp, x, y: x > y, ge: lambda sp, x, y: x >= y,
    integer_pow: lambda sp, x, *, y: x ** y,
    convert_element_type: _sympy_convert,
    select_n: _piecewise_select,
}
for _prim, _rule in _SYMPY_RULES.items():
    _prim.sympy_rule = _rule
