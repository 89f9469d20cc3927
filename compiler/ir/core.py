"""The one data structure: a typed SSA program (Jaxpr) and the types inside it.

Everything downstream -- printer, parser, verifier, transforms, passes, backends -- reads and writes
these plain objects. Vars are compared by identity; their printed names are assigned by the printer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import ml_dtypes
import numpy as np


# ----------------------------------------------------------------------------------------------
# Element types
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DType:
    """An element type: its short IR name (``f32``) and the numpy dtype that stores it."""
    name: str
    np: np.dtype = field(compare=False, repr=False)

    @property
    def kind(self) -> str:
        """'b' (bool), 'i' (signed), 'u' (unsigned) or 'f' (floating), including ml_dtypes' types."""
        if self.name == "bool":
            return "b"
        return "f" if self.name == "bf16" else self.name[0]

    @property
    def itemsize(self) -> int:
        return self.np.itemsize

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_int(self) -> bool:
        return self.kind in "iu"

    def __str__(self) -> str:
        return self.name


_DTYPE_LIST = [
    ("f64", np.float64), ("f32", np.float32), ("f16", np.float16), ("bf16", ml_dtypes.bfloat16),
    ("f8_e4m3fn", ml_dtypes.float8_e4m3fn), ("f8_e5m2", ml_dtypes.float8_e5m2),
    ("i64", np.int64), ("i32", np.int32), ("i16", np.int16), ("i8", np.int8), ("i4", ml_dtypes.int4),
    ("u64", np.uint64), ("u32", np.uint32), ("u16", np.uint16), ("u8", np.uint8),
    ("bool", np.bool_),
]
DTYPES: dict[str, DType] = {name: DType(name, np.dtype(t)) for name, t in _DTYPE_LIST}
_BY_NUMPY = {d.np: d for d in DTYPES.values()}

f64, f32, f16, bf16 = DTYPES["f64"], DTYPES["f32"], DTYPES["f16"], DTYPES["bf16"]
i64, i32, i8, u8, u32 = DTYPES["i64"], DTYPES["i32"], DTYPES["i8"], DTYPES["u8"], DTYPES["u32"]
bool_ = DTYPES["bool"]
DEFAULT_FLOAT, DEFAULT_INT = f32, i32   # what a bare Python float / int becomes (as in JAX)


def dtype(x: Any) -> DType:
    """The DType of a name ('f32'), a numpy dtype or type (np.float32, 'float32'), or a DType."""
    if isinstance(x, DType):
        return x
    if isinstance(x, str) and x in DTYPES:
        return DTYPES[x]
    try:
        npd = np.dtype(x)
    except TypeError:
        raise TypeError(f"expected a dtype, got {x!r}") from None
    if npd not in _BY_NUMPY:
        raise TypeError(f"dtype {npd} is not supported; supported: {', '.join(DTYPES)}")
    return _BY_NUMPY[npd]


_KIND_ORDER = {"b": 0, "u": 1, "i": 1, "f": 2}


def promote(a: "ShapedArray", b: "ShapedArray") -> tuple[DType, bool]:
    """Result dtype (and weakness) of a binary op, numpy rules with weakly typed Python scalars.

    A weak operand (a Python scalar) adopts the other operand's dtype unless it is of a higher kind
    (a float scalar with an int array gives the default float), as in JAX and NumPy's NEP 50.
    """
    if a.weak_type and b.weak_type:
        hi = a if _KIND_ORDER[a.dtype.kind] >= _KIND_ORDER[b.dtype.kind] else b
        return hi.dtype, True
    if a.weak_type or b.weak_type:
        weak, strong = (a, b) if a.weak_type else (b, a)
        if _KIND_ORDER[weak.dtype.kind] <= _KIND_ORDER[strong.dtype.kind]:
            return strong.dtype, False
        return (DEFAULT_FLOAT if weak.dtype.kind == "f" else DEFAULT_INT), False
    if a.dtype == b.dtype:
        return a.dtype, False
    return promote_types(a.dtype, b.dtype), False


def promote_types(a: DType, b: DType) -> DType:
    """numpy's promotion; the ml_dtypes types that numpy cannot join meet at f32."""
    try:
        return dtype(np.promote_types(a.np, b.np))
    except TypeError:
        return f32 if max(a.itemsize, b.itemsize) <= 4 else f64


# ----------------------------------------------------------------------------------------------
# Types, variables, equations, programs
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShapedArray:
    """The type of a value: shape and dtype. ``weak_type`` marks Python scalars (not printed)."""
    shape: tuple[int, ...]
    dtype: DType
    weak_type: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def strip_weak(self) -> "ShapedArray":
        return ShapedArray(self.shape, self.dtype) if self.weak_type else self

    def update(self, shape=None, dtype=None, weak_type=None) -> "ShapedArray":
        return ShapedArray(self.shape if shape is None else tuple(shape),
                           self.dtype if dtype is None else dtype,
                           self.weak_type if weak_type is None else weak_type)

    def __str__(self) -> str:
        return f"{self.dtype.name}[{','.join(map(str, self.shape))}]"

    def same_type(self, other: "ShapedArray") -> bool:
        """Equal shape and dtype, ignoring weakness."""
        return self.shape == other.shape and self.dtype == other.dtype


class Var:
    """An SSA variable. Identity is the variable; the printer names it."""
    __slots__ = ("aval",)

    def __init__(self, aval: ShapedArray):
        self.aval = aval

    def __repr__(self) -> str:
        return f"Var({self.aval})"


class Literal:
    """A scalar constant written inline in the program, with its type."""
    __slots__ = ("value", "aval")

    def __init__(self, value: Any, aval: ShapedArray):
        assert aval.shape == (), "literals are scalars"
        self.aval = aval
        self.value = np.asarray(value, dtype=aval.dtype.np)[()]

    def __repr__(self) -> str:
        return f"Literal({self.value!r}:{self.aval})"


Atom = Var | Literal


@dataclass
class Eqn:
    """``outvars = primitive[params] inputs``."""
    primitive: "Primitive"
    inputs: list[Atom]
    outvars: list[Var]
    params: dict[str, Any]


@dataclass
class Jaxpr:
    """``{ lambda constvars ; invars. let eqns in (outvars,) }``. Sub-jaxprs (in params) have no constvars."""
    constvars: list[Var]
    invars: list[Var]
    eqns: list[Eqn]
    outvars: list[Atom]

    def __str__(self) -> str:
        from .printer import print_jaxpr
        return print_jaxpr(self)

    @property
    def in_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.invars]

    @property
    def out_avals(self) -> list[ShapedArray]:
        return [v.aval for v in self.outvars]


@dataclass
class ClosedJaxpr:
    """A Jaxpr together with the values of its constvars (captured arrays)."""
    jaxpr: Jaxpr
    consts: list[Any]

    def __str__(self) -> str:
        return str(self.jaxpr)

    def __repr__(self) -> str:
        return f"ClosedJaxpr(\n{self.jaxpr}\n)"

    @property
    def in_avals(self) -> list[ShapedArray]:
        return self.jaxpr.in_avals

    @property
    def out_avals(self) -> list[ShapedArray]:
        return self.jaxpr.out_avals

    @property
    def eqns(self) -> list[Eqn]:
        return self.jaxpr.eqns


# ----------------------------------------------------------------------------------------------
# Primitives: one object per operation, holding all of its rules side by side
# ----------------------------------------------------------------------------------------------

PRIMITIVES: dict[str, "Primitive"] = {}


class Primitive:
    """An operation of the IR. Its rules are attached where it is declared (compiler/primitives/).

    shape_rule(*avals, **params) -> ShapedArray | list[ShapedArray]   (raises on bad input)
    jvp_rule(primals, tangents, **params) -> (outs, out_tangents)      tangent None = symbolic zero
    vjp_rule(cts, primals, outs, **params) -> cotangent per input      ct None = zero / not differentiable
    batch_rule, sympy_rule: for vmap and compiler.symbolic.
    Rules are written with primitives (through compiler.numpy), so derivative programs are jaxprs too.
    """

    def __init__(self, name: str, *, multiple_results: bool = False):
        if name in PRIMITIVES:
            raise ValueError(f"primitive {name!r} declared twice")
        self.name = name
        self.multiple_results = multiple_results
        self.shape_rule: Callable | None = None
        self.jvp_rule: Callable | None = None
        self.vjp_rule: Callable | None = None
        self.vjp_fwd: Callable | None = None     # (ins, **params) -> (outs, residuals), optional
        self.batch_rule: Callable | None = None
        self.sympy_rule: Callable | None = None
        PRIMITIVES[name] = self

    def __repr__(self) -> str:
        return self.name

    def abstract_eval(self, avals: list[ShapedArray], params: dict) -> list[ShapedArray]:
        out = self.shape_rule(*avals, **params)
        return list(out) if self.multiple_results else [out]

    def bind(self, *args, **params):
        from ..tracing import bind
        return bind(self, args, params)
