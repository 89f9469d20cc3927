"""compiler.symbolic: read a traced program as sympy expressions, and check tracejit's derivatives
against sympy's.

The traced jaxpr is interpreted with each primitive's sympy rule (declared beside the primitive),
so what is checked is the program tracejit actually runs, not a separate formula.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from .ir.core import ClosedJaxpr, Jaxpr, Literal
from .tracing import trace

# Shape-only primitives that are the identity on a single element.
_ONE_ELEMENT_IDENTITY = {"broadcast_in_dim", "reshape", "squeeze", "expand_dims", "transpose",
                         "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "rev", "slice",
                         "cumsum"}


def _symbols_for(fun: Callable, n: int) -> list[sp.Symbol]:
    try:
        names = [p.name for p in inspect.signature(fun).parameters.values()
                 if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:n]
    except (TypeError, ValueError):
        names = []
    names += [f"x{i}" for i in range(len(names), n)]
    return [sp.Symbol(name, real=True) for name in names]


def _scalar_args(fun: Callable, args: Sequence[Any]) -> list:
    """The points to trace at: given scalars, or float64 scalars (one per positional parameter)."""
    if args:
        return [np.float64(a) if isinstance(a, (int, float)) else a for a in args]
    n = len([p for p in inspect.signature(fun).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty])
    return [np.float64(1.0)] * n


def jaxpr_to_sympy(jaxpr: Jaxpr, consts: Sequence[Any], symbols: Sequence[sp.Expr]) -> list[sp.Expr]:
    """Interpret a scalar (or one-element) jaxpr with the primitives' sympy rules."""
    env: dict = {}

    def read(a):
        if isinstance(a, Literal):
            v = a.value
            return sp.true if v is np.True_ else sp.false if v is np.False_ else sp.nsimplify(
                v.item(), rational=True) if a.aval.dtype.is_float else sp.Integer(int(v))
        return env[a]

    for v, c in zip(jaxpr.constvars, consts):
        c = np.asarray(c)
        if c.size != 1:
            raise TypeError(f"to_sympy handles scalar programs; a captured constant has shape {c.shape}")
        env[v] = sp.nsimplify(c.item(), rational=True)
    for v, s in zip(jaxpr.invars, symbols):
        env[v] = s
    for eqn in jaxpr.eqns:
        ins = [read(a) for a in eqn.inputs]
        name = eqn.primitive.name
        if eqn.primitive.sympy_rule is not None:
            out = eqn.primitive.sympy_rule(sp, *ins, **eqn.params)
        elif name == "cond":                 # a branch per index value: a Piecewise per output
            index, ops = ins[0], ins[1:]
            branches = [jaxpr_to_sympy(b, [], ops) for b in eqn.params["branches"]]
            out = [sp.Piecewise(*[(b[k], sp.Eq(index, i)) for i, b in enumerate(branches[:-1])],
                                (branches[-1][k], True)) for k in range(len(branches[0]))]
        elif name in _ONE_ELEMENT_IDENTITY and all(o.aval.size == 1 for o in eqn.outvars) and \
                all(a.aval.size == 1 for a in eqn.inputs):
            out = ins[0]
        else:
            raise TypeError(f"to_sympy handles scalar and elementwise programs; primitive {name!r} "
                            f"with operands ({', '.join(str(a.aval) for a in eqn.inputs)}) is not one")
        eqn_outs = out if eqn.primitive.multiple_results else [out]
        for v, o in zip(eqn.outvars, eqn_outs):
            env[v] = o
    return [read(a) for a in jaxpr.outvars]


def _trace_scalar(fun: Callable, args: Sequence[Any]) -> ClosedJaxpr:
    closed, _, _ = trace(fun, list(args))
    for a in closed.in_avals + closed.out_avals:
        if a.size != 1:
            raise TypeError(f"to_sympy handles scalar and elementwise programs: trace it at scalar "
                            f"arguments (got a value of type {a})")
    return closed


def to_sympy(fun: Callable, *args):
    """sympy expression(s) of fun's output(s) in symbols named after its parameters."""
    args = _scalar_args(fun, args)
    closed = _trace_scalar(fun, args)
    symbols = _symbols_for(fun, len(closed.jaxpr.invars))
    outs = jaxpr_to_sympy(closed.jaxpr, closed.consts, symbols)
    return outs[0] if len(outs) == 1 else tuple(outs)


def derivative(fun: Callable, argnum: int = 0, *args) -> sp.Expr:
    """d fun / d (argument argnum), by sympy from the traced program, simplified."""
    args = _scalar_args(fun, args)
    expr = to_sympy(fun, *args)
    symbol = _symbols_for(fun, len(args))[argnum]
    return sp.simplify(sp.diff(expr, symbol))


@dataclass
class GradCheck:
    """The result of check_grad: sympy's derivative vs the program tj.grad builds, symbolically and
    numerically at the given point."""
    point: tuple
    symbols: list
    sympy_gradient: list                  # sp.diff of the traced function
    traced_gradient: list                 # the gradient program tj.grad built, read back as sympy
    symbolic_difference: list             # simplify(sympy - traced): all zero when they agree
    numeric_sympy: list
    numeric_tracejit: list
    max_abs_error: float
    tolerance: float
    symbolic_ok: bool = field(init=False)
    numeric_ok: bool = field(init=False)
    ok: bool = field(init=False)

    def __post_init__(self):
        self.symbolic_ok = all(d == 0 for d in self.symbolic_difference)
        self.numeric_ok = self.max_abs_error <= self.tolerance
        self.ok = self.symbolic_ok and self.numeric_ok

    def __str__(self) -> str:
        lines = [f"check_grad at {self.point}: {'OK' if self.ok else 'MISMATCH'}"]
        for s, a, b, d, na, nb in zip(self.symbols, self.sympy_gradient, self.traced_gradient,
                                      self.symbolic_difference, self.numeric_sympy, self.numeric_tracejit):
            lines.append(f"  d/d{s}: sympy   {a}")
            lines.append(f"  {' ' * (len(str(s)) + 3)}tracejit {b}")
            lines.append(f"  {' ' * (len(str(s)) + 3)}difference {d}; at the point {na:.12g} vs {nb:.12g}")
        lines.append(f"  max |numeric difference| = {self.max_abs_error:.3g} (tolerance {self.tolerance:g})")
        return "\n".join(lines)


def _difference(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    """simplify(a - b), with kinks written as Piecewise and the pieces that apply only on a set of
    measure zero (the kink x = 0 itself, where conventions legitimately differ) dropped."""
    d = sp.simplify(a - b)
    if d != 0 and d.has(sp.exp, sp.cosh, sp.sinh, sp.tanh):
        d = sp.simplify(d.rewrite(sp.exp))
    if d == 0:
        return sp.Integer(0)
    d = sp.piecewise_fold(d.rewrite(sp.Piecewise))
    if not isinstance(d, sp.Piecewise) or len(d.free_symbols) != 1:
        return sp.simplify(d)
    (x,) = d.free_symbols
    covered, pieces = sp.EmptySet, []
    for expr, cond in d.args:
        where = (cond.as_set() if cond != sp.true else sp.Reals) - covered
        covered = covered | where
        if where.measure != 0:
            pieces.append((sp.simplify(expr), where.as_relational(x)))
    if all(e == 0 for e, _ in pieces):
        return sp.Integer(0)
    return sp.Piecewise(*pieces)


def check_grad(fun: Callable, *args, tolerance: float = 1e-9) -> GradCheck:
    """Compare tj.grad(fun) with sympy.diff, symbolically (simplified difference) and numerically."""
    from .api import grad
    args = [np.float64(a) for a in _scalar_args(fun, args)]
    n = len(args)
    symbols = _symbols_for(fun, n)
    expr = to_sympy(fun, *args)
    grad_fun = grad(fun, argnums=tuple(range(n)))
    closed, _, _ = trace(grad_fun, args)
    traced = jaxpr_to_sympy(closed.jaxpr, closed.consts, symbols)
    exact = [sp.diff(expr, s) for s in symbols]
    differences = [_difference(a, b) for a, b in zip(exact, traced)]
    subs = dict(zip(symbols, [sp.Float(float(a), 30) for a in args]))
    numeric_sympy = [float(sp.N(e.subs(subs), 20)) for e in exact]
    numeric_tj = [float(g) for g in grad_fun(*args)]
    err = max(abs(a - b) for a, b in zip(numeric_sympy, numeric_tj)) if n else 0.0
    return GradCheck(tuple(float(a) for a in args), symbols, exact, traced, differences,
                     numeric_sympy, numeric_tj, err, tolerance)


def _kink_candidates(expr: sp.Expr) -> list[sp.Expr]:
    """Expressions whose zeros may be kinks or jumps: arguments of Abs/sign/Heaviside/floor, the
    differences of Max/Min arguments, and the boundaries of Piecewise conditions."""
    found = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside, sp.floor, sp.ceiling)):
            found.append(node.args[0])
        elif isinstance(node, (sp.Max, sp.Min)):
            a = list(node.args)
            found += [a[i] - a[j] for i in range(len(a)) for j in range(i + 1, len(a))]
        elif isinstance(node, sp.Piecewise):
            for _, cond in node.args:
                for rel in sp.preorder_traversal(cond):
                    if isinstance(rel, sp.core.relational.Relational):
                        found.append(rel.lhs - rel.rhs)
    return found


def _one_sided_slopes(expr, x, p, h=sp.Rational(1, 10 ** 12)):
    """Slopes just left and right of p (from points beside p, not p itself, so that a jump below
    the tolerance does not masquerade as a kink) and the jump across p."""
    f = lambda v: sp.N(expr.subs(x, v), 40)
    left = (f(p - h) - f(p - 2 * h)) / h
    right = (f(p + 2 * h) - f(p + h)) / h
    jump = abs(f(p + h) - f(p - h))
    return left, right, jump


def nondifferentiable_points(fun: Callable, *args) -> list:
    """Where fun is not differentiable. One variable: the points (verified: the one-sided slopes
    differ or the value jumps there). Several variables: the conditions (sympy Eq) of the kinks."""
    args = _scalar_args(fun, args)
    expr = to_sympy(fun, *args)
    symbols = _symbols_for(fun, len(args))
    candidates = _kink_candidates(expr)
    if len(symbols) != 1:
        conditions = {sp.Eq(sp.simplify(c), 0) for c in candidates if c.free_symbols}
        return sorted(conditions, key=str)
    (x,) = symbols
    points = set()
    for c in candidates:
        try:
            solutions = sp.solve(sp.Eq(c, 0), x)
        except NotImplementedError:
            continue
        points.update(s for s in solutions if s.is_real)
    verdict = []
    for p in sorted(points, key=lambda v: float(v)):
        left, right, jump = _one_sided_slopes(expr, x, p)
        if abs(left - right) > 1e-6 or jump > 1e-6:
            verdict.append(p)
    return verdict
