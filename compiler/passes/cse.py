"""Common-subexpression elimination: an equation that repeats an earlier one (same primitive, same
inputs, same params) reuses the earlier result."""
from __future__ import annotations

from ..ir.core import ClosedJaxpr, Eqn, Jaxpr, Literal, Var
from ..ir.printer import format_param


def _atom_key(a):
    if isinstance(a, Literal):
        return ("literal", a.aval.dtype.name, repr(a.value.item()))
    return ("var", id(a))


def _params_key(params: dict) -> str:
    return ", ".join(f"{k}={format_param(v, 0, None)}" for k, v in params.items())


def cse(closed: ClosedJaxpr) -> ClosedJaxpr:
    jaxpr = closed.jaxpr
    rename: dict = {}
    seen: dict = {}
    eqns = []
    for eqn in jaxpr.eqns:
        inputs = [rename.get(a, a) if isinstance(a, Var) else a for a in eqn.inputs]
        key = (eqn.primitive.name, tuple(_atom_key(a) for a in inputs), _params_key(eqn.params))
        earlier = seen.get(key)
        if earlier is not None:
            rename.update(zip(eqn.outvars, earlier.outvars))
            continue
        new = Eqn(eqn.primitive, inputs, eqn.outvars, eqn.params)
        seen[key] = new
        eqns.append(new)
    outvars = [rename.get(a, a) if isinstance(a, Var) else a for a in jaxpr.outvars]
    return ClosedJaxpr(Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, outvars), closed.consts)
