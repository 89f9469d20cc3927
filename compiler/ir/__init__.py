"""The IR: types, the Jaxpr, its text form (printer and lark parser) and the verifier."""
from .core import (DTYPES, ClosedJaxpr, DType, Eqn, Jaxpr, Literal, Primitive, PRIMITIVES,
                   ShapedArray, Var, dtype)
from .errors import ConcretizationError, IRSyntaxError, IRTypeError, ShapeError
from .printer import print_jaxpr
from .parser import parse
from .verify import verify
