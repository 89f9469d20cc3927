"""Dead-code elimination: drop equations (and constvars) whose results nothing uses.

Every primitive is pure, so an equation is needed only if an output or a needed equation reads it.
Sub-jaxprs (branches, loop bodies) are cleaned inside too.
"""
from __future__ import annotations

from ..ir.core import ClosedJaxpr, Eqn, Jaxpr, Var


def _clean_params(params: dict) -> dict:
    """The params with every sub-jaxpr cleaned (the same dict when there is none)."""
    if not any(isinstance(v, (Jaxpr, tuple)) for v in params.values()):
        return params

    def clean(value):
        if isinstance(value, Jaxpr):
            return _dce(value)[0]
        if isinstance(value, tuple):
            return tuple(clean(v) for v in value)
        return value
    return {k: clean(v) for k, v in params.items()}


def _dce(jaxpr: Jaxpr) -> tuple[Jaxpr, set]:
    """The same program without dead equations (inputs are kept: the signature does not change),
    and the set of variables still read."""
    live = {a for a in jaxpr.outvars if isinstance(a, Var)}
    kept = []
    for eqn in reversed(jaxpr.eqns):
        if any(v in live for v in eqn.outvars):
            params = _clean_params(eqn.params)
            kept.append(eqn if params is eqn.params else Eqn(eqn.primitive, eqn.inputs, eqn.outvars, params))
            live.update(a for a in eqn.inputs if isinstance(a, Var))
    return Jaxpr(jaxpr.constvars, jaxpr.invars, kept[::-1], jaxpr.outvars), live


def dce(closed: ClosedJaxpr) -> ClosedJaxpr:
    jaxpr, live = _dce(closed.jaxpr)
    keep = [i for i, v in enumerate(jaxpr.constvars) if v in live]
    return ClosedJaxpr(Jaxpr([jaxpr.constvars[i] for i in keep], jaxpr.invars, jaxpr.eqns, jaxpr.outvars),
                       [closed.consts[i] for i in keep] if closed.consts is not None else None)
