"""Automatic differentiation as interpreters over a Jaxpr.

``jvp_eval`` walks the equations forward carrying a tangent next to every value; ``vjp_eval`` walks
them forward, then backward accumulating cotangents (the adjoints of a hand backprop table). Both
apply each primitive's rule, and rules are written with primitives, so when they run inside a trace
the derivative program is recorded as an ordinary jaxpr: it prints, verifies, runs on any backend and
can be differentiated again. Run outside a trace, they simply compute numbers.

Tangents and cotangents that are known to be zero are ``None`` (symbolic zeros): integer and boolean
values never get any, and equations with no non-zero tangent are not differentiated at all.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from ..ir.core import Eqn, Jaxpr, Literal
from ..tracing import bind


def _read(env: dict, a):
    return a.value if isinstance(a, Literal) else env[a]


def _missing_rule(eqn: Eqn, kind: str):
    raise NotImplementedError(f"no {kind} rule for primitive {eqn.primitive.name!r}: tracejit cannot "
                              f"differentiate through it yet")


def jvp_eval(jaxpr: Jaxpr, consts: Sequence[Any], primals: Sequence[Any],
             tangents: Sequence[Any | None]) -> tuple[list, list]:
    """Evaluate jaxpr on primals, pushing tangents forward. Returns (outs, out_tangents)."""
    env: dict = {}
    tangent_env: dict = {}
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, p, t in zip(jaxpr.invars, primals, tangents):
        env[v] = p
        if t is not None and v.aval.dtype.is_float:
            tangent_env[v] = t
    for eqn in jaxpr.eqns:
        ins = [_read(env, a) for a in eqn.inputs]
        tins = [None if isinstance(a, Literal) else tangent_env.get(a) for a in eqn.inputs]
        if all(t is None for t in tins):
            outs = bind(eqn.primitive, ins, eqn.params)
            touts = None
        else:
            rule = eqn.primitive.jvp_rule or _missing_rule(eqn, "JVP")
            outs, touts = rule(ins, tins, **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
        touts = (touts if eqn.primitive.multiple_results else [touts]) if touts is not None else [None] * len(outs)
        for v, o, t in zip(eqn.outvars, outs, touts):
            env[v] = o
            if t is not None:
                tangent_env[v] = t
    outs = [_read(env, a) for a in jaxpr.outvars]
    out_tangents = [None if isinstance(a, Literal) else tangent_env.get(a) for a in jaxpr.outvars]
    return outs, out_tangents


def eval_inline(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list:
    """Evaluate jaxpr by binding each equation: records into the current trace, or computes."""
    env: dict = {}
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a in zip(jaxpr.invars, args):
        env[v] = a
    for eqn in jaxpr.eqns:
        outs = bind(eqn.primitive, [_read(env, a) for a in eqn.inputs], eqn.params)
        for v, o in zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]):
            env[v] = o
    return [_read(env, a) for a in jaxpr.outvars]


def vjp_eval(jaxpr: Jaxpr, consts: Sequence[Any], primals: Sequence[Any],
             observe: Callable | None = None) -> tuple[list, Callable]:
    """Evaluate jaxpr forward; return (outs, backward) with backward(out_cts) -> input cotangents.

    The forward values that backward reads are the residuals: under a trace they are the variables
    of the forward program that the backward program uses. A primitive with a ``vjp_fwd`` rule
    (scan, checkpoint) computes its outputs and its residuals explicitly in the forward pass, and
    its ``vjp_rule`` receives them. ``observe(eqn, outs, contributions)`` (for explain_grad) sees
    each equation's forward outputs (contributions None) and, in reverse, the (input, cotangent,
    input's adjoint so far) it contributes.
    """
    env: dict = {}
    residuals: dict[int, Any] = {}
    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, p in zip(jaxpr.invars, primals):
        env[v] = p
    for k, eqn in enumerate(jaxpr.eqns):
        ins = [_read(env, a) for a in eqn.inputs]
        if eqn.primitive.vjp_fwd is not None:
            outs, residuals[k] = eqn.primitive.vjp_fwd(ins, **eqn.params)
        else:
            outs = bind(eqn.primitive, ins, eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        for v, o in zip(eqn.outvars, outs):
            env[v] = o
        if observe:
            observe(eqn, outs, None)

    def backward(out_cts: Sequence[Any | None]) -> list:
        ct_env: dict = {}

        def accumulate(v, ct):
            if ct is None or isinstance(v, Literal) or not v.aval.dtype.is_float:
                return
            ct_env[v] = ct if v not in ct_env else _add(ct_env[v], ct)

        for v, ct in zip(jaxpr.outvars, out_cts):
            accumulate(v, ct)
        for k in reversed(range(len(jaxpr.eqns))):
            eqn = jaxpr.eqns[k]
            cts = [ct_env.pop(v, None) for v in eqn.outvars]
            if all(ct is None for ct in cts):
                continue
            rule = eqn.primitive.vjp_rule or _missing_rule(eqn, "VJP")
            ins = [_read(env, a) for a in eqn.inputs]
            outs = [env[v] for v in eqn.outvars]
            extra = (residuals[k],) if k in residuals else ()
            seen = []
            for a, ct in zip(eqn.inputs, rule(cts, ins, outs, *extra, **eqn.params)):
                accumulate(a, ct)
                if observe and ct is not None and a in ct_env:
                    seen.append((a, ct, ct_env[a]))          # the adjoint so far, after this term
            if observe:
                observe(eqn, outs, seen)
        return [ct_env.get(v) for v in jaxpr.invars]

    return [_read(env, a) for a in jaxpr.outvars], backward


def _add(a, b):
    from .. import numpy as cnp
    return cnp.add(a, b)
