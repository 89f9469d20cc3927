"""Constant folding as partial evaluation: every equation whose inputs are all known (constvars with
values, literals) is evaluated now, and its result becomes a constant of the program.

With the primal inputs of a JVP program known and the tangents unknown, this is exactly
linearization: what remains is the linear map of the tangents, with the residuals as constants.
"""
from __future__ import annotations

import numpy as np

from ..ir.core import ClosedJaxpr, Jaxpr, Literal, Var
from ..tracing import Tracer, bind


def _expands(eqn) -> bool:
    """Results larger than every input (broadcasts of a literal, iota) stay as equations: storing them
    as constants would cost memory that computing them does not."""
    biggest_input = max((a.aval.size for a in eqn.inputs), default=1)
    return any(v.aval.size > max(biggest_input, 1) for v in eqn.outvars)


def fold_constants(closed: ClosedJaxpr) -> ClosedJaxpr:
    jaxpr = closed.jaxpr
    known: dict = dict(zip(jaxpr.constvars, closed.consts))
    kept = []
    for eqn in jaxpr.eqns:
        if all(isinstance(a, Literal) or a in known for a in eqn.inputs) and not _expands(eqn):
            outs = bind(eqn.primitive, [a.value if isinstance(a, Literal) else known[a] for a in eqn.inputs],
                        eqn.params)
            known.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))
        else:
            kept.append(eqn)
    used = {a for e in kept for a in e.inputs if isinstance(a, Var)} | {
        a for a in jaxpr.outvars if isinstance(a, Var)}

    def as_atom(v):
        value = known.get(v)
        if v in used and value is not None and not isinstance(value, Tracer) and np.shape(value) == ():
            return Literal(np.asarray(value), v.aval.strip_weak())
        return v

    constvars = [v for v in known if v in used and as_atom(v) is v]
    eqns = [type(e)(e.primitive, [as_atom(a) if isinstance(a, Var) else a for a in e.inputs],
                    e.outvars, e.params) for e in kept]
    outvars = [as_atom(a) if isinstance(a, Var) else a for a in jaxpr.outvars]
    return ClosedJaxpr(Jaxpr(constvars, jaxpr.invars, eqns, outvars), [known[v] for v in constvars])
