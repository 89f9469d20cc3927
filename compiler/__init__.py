"""tracejit: trace Python functions into a typed SSA IR (a jaxpr), transform it, and run it.

    import compiler as tj
    import compiler.numpy as cnp
"""
from . import ir, lax, primitives  # noqa: F401
from . import numpy  # noqa: F401  (attaches operators and numpy dispatch to tracers)
from . import nn, optim, random  # noqa: F401
from .api import (Jitted, Lowered, checkpoint, grad, jaxpr_as_fun, remat, hessian, jacfwd, jacrev, jit, jvp, linearize, make_jaxpr,
                  value_and_grad, vjp, vmap)
from .explain import explain_grad
from .ir.errors import ConcretizationError, ShapeError
from .lax import stop_gradient
from .tracing import Tracer, UnexpectedTracerError
from .tree_util import tree_flatten, tree_leaves, tree_map, tree_structure, tree_unflatten

__all__ = ["jit", "make_jaxpr", "grad", "value_and_grad", "jvp", "vjp", "linearize", "jacfwd",
           "jacrev", "hessian", "checkpoint", "remat", "vmap", "explain_grad", "jaxpr_as_fun", "stop_gradient", "lax", "ir", "numpy", "Jitted", "Lowered",
           "ConcretizationError", "ShapeError", "Tracer", "UnexpectedTracerError",
           "tree_flatten", "tree_unflatten", "tree_map", "tree_leaves", "tree_structure"]
