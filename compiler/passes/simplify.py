"""Algebraic simplification: fold constants, drop identities (x*1, x+0, x-0, x/1, x*0 for integers,
double negation, no-op casts/reshapes/transposes/broadcasts) and fuse chains of reshapes, transposes
and broadcasts. Dead equations left behind are removed by dce."""
from __future__ import annotations

import numpy as np

from ..ir.core import ClosedJaxpr, Eqn, Jaxpr, Literal, Var
from .dce import dce
from .fold import fold_constants


def _is_literal(a, value) -> bool:
    return isinstance(a, Literal) and a.value.size == 1 and bool(a.value == value) and not (
        a.aval.dtype.is_float and np.isnan(float(a.value)))


def _same_type(a, out: Var) -> bool:
    return not isinstance(a, Literal) and a.aval.same_type(out.aval)


def _identity_operand(eqn: Eqn):
    """The input an equation merely passes through, or None."""
    name, ins, out, p = eqn.primitive.name, eqn.inputs, eqn.outvars[0], eqn.params
    if name == "mul":
        for keep, other in ((ins[0], ins[1]), (ins[1], ins[0])):
            if _is_literal(other, 1) and _same_type(keep, out):
                return keep
    if name == "add":
        for keep, other in ((ins[0], ins[1]), (ins[1], ins[0])):
            if _is_literal(other, 0) and _same_type(keep, out):
                return keep
    if name in ("sub", "div") and _is_literal(ins[1], 0 if name == "sub" else 1) and _same_type(ins[0], out):
        return ins[0]
    if name in ("convert_element_type", "reshape", "broadcast_in_dim", "transpose", "squeeze",
                "expand_dims", "reduce_sum", "rev", "stop_gradient", "integer_pow") and _same_type(ins[0], out):
        if name == "transpose" and tuple(p["permutation"]) != tuple(range(out.aval.ndim)):
            return None
        if name == "rev" and p["dimensions"]:
            return None
        if name == "integer_pow" and p["y"] != 1:
            return None
        if name == "stop_gradient":
            return None                       # keeps its meaning for later differentiation
        return ins[0]
    return None


def _fused(eqn: Eqn, producer: dict) -> Eqn | None:
    """A reshape of a reshape (or transpose of a transpose, broadcast of a broadcast) as one."""
    if not eqn.inputs:
        return None
    name, x = eqn.primitive.name, eqn.inputs[0]
    inner = producer.get(x) if isinstance(x, Var) else None
    if inner is None or inner.primitive.name != name:
        return None
    src = inner.inputs[0]
    if name == "reshape":
        return Eqn(eqn.primitive, [src], eqn.outvars, eqn.params)
    if name == "transpose":
        perm = tuple(inner.params["permutation"][i] for i in eqn.params["permutation"])
        return Eqn(eqn.primitive, [src], eqn.outvars, {"permutation": perm})
    if name == "broadcast_in_dim":
        dims = tuple(eqn.params["broadcast_dimensions"][d] for d in inner.params["broadcast_dimensions"])
        params = {"shape": eqn.params["shape"], "broadcast_dimensions": dims}
        try:
            eqn.primitive.abstract_eval([src.aval], params)
        except Exception:  # the composed broadcast is not expressible: keep both
            return None
        return Eqn(eqn.primitive, [src], eqn.outvars, params)
    return None


def simplify(closed: ClosedJaxpr) -> ClosedJaxpr:
    closed = fold_constants(closed)
    jaxpr = closed.jaxpr
    rename: dict = {}
    producer: dict = {}
    eqns = []
    for eqn in jaxpr.eqns:
        eqn = Eqn(eqn.primitive, [rename.get(a, a) if isinstance(a, Var) else a for a in eqn.inputs],
                  eqn.outvars, eqn.params)
        if len(eqn.outvars) == 1:
            out = eqn.outvars[0]
            eqn = _fused(eqn, producer) or eqn
            passthrough = _identity_operand(eqn)
            if passthrough is not None:
                rename[out] = passthrough
                continue
            x = eqn.inputs[0] if eqn.inputs else None
            if eqn.primitive.name == "neg" and isinstance(x, Var) and x in producer and \
                    producer[x].primitive.name == "neg":
                rename[out] = producer[x].inputs[0]
                continue
            if eqn.primitive.name == "mul" and out.aval.dtype.is_int and out.aval.shape == () and any(
                    _is_literal(a, 0) for a in eqn.inputs):
                rename[out] = Literal(0, out.aval)
                continue
        for v in eqn.outvars:
            producer[v] = eqn
        eqns.append(eqn)
    outvars = [rename.get(a, a) if isinstance(a, Var) else a for a in jaxpr.outvars]
    return dce(ClosedJaxpr(Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, outvars), closed.consts))
