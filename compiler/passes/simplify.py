"""Algebraic simplification: fold constants, drop identities (x*1, x+0, x-0, x/1, x*0 for integers,
double negation, no-op casts/reshapes/transposes/broadcasts), fuse chains of reshapes, transposes
and broadcasts, and turn a dot_general with a splat operand (a broadcast scalar: the seed of grad of
a sum) into a sum of the other operand. Dead equations left behind are removed by dce."""
from __future__ import annotations

import numpy as np

from ..ir.core import PRIMITIVES, ClosedJaxpr, Eqn, Jaxpr, Literal, ShapedArray, Var
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


def _splat_value(x, producer: dict):
    """The scalar every element of x equals, when x is a broadcast scalar; else None."""
    inner = producer.get(x) if isinstance(x, Var) else None
    if inner is None or inner.primitive.name != "broadcast_in_dim" or inner.inputs[0].aval.shape != ():
        return None
    return inner.inputs[0]


def _dot_of_splat(eqn: Eqn, producer: dict) -> list[Eqn] | None:
    """dot_general(broadcast(s), B) as s * sum of B over the contracted axes, broadcast to the
    result: O(size of B) instead of a matrix product (grad of sum(x @ w) starts with a matrix of
    ones against w). Also with the splat on the right. None when it does not apply."""
    if eqn.primitive.name != "dot_general":
        return None
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    out = eqn.outvars[0]
    lhs, rhs = eqn.inputs
    if not (lhs.aval.dtype == rhs.aval.dtype == out.aval.dtype):
        return None                                  # (a widening product: left as it is)
    for side, (splat, other, oc, ob, nfree_before) in enumerate((
            (lhs, rhs, rc, rb, lhs.aval.ndim - len(lc) - len(lb)),
            (rhs, lhs, lc, lb, 0))):
        s = _splat_value(splat, producer)
        if s is None:
            continue
        eqns = []

        def emit(name, x, aval, **params):
            v = Var(aval)
            eqns.append(Eqn(PRIMITIVES[name], [x] if not isinstance(x, list) else x, [v], params))
            return v
        d = out.aval.dtype
        # sum `other` over its contracted axes; what is left is its batch and free axes, in its order
        kept = [a for a in range(other.aval.ndim) if a not in oc]
        r = other
        if oc:
            r = emit("reduce_sum", other, ShapedArray(tuple(other.aval.shape[a] for a in kept), d),
                     axes=tuple(sorted(oc)))
        # the result's order: batch axes (as the dot pairs them), then free ones
        free = [a for a in kept if a not in ob]
        perm = tuple(kept.index(a) for a in list(ob) + free)
        if perm != tuple(range(len(perm))):
            r = emit("transpose", r, ShapedArray(tuple(r.aval.shape[p] for p in perm), d), permutation=perm)
        nb = len(ob)
        # the splat's free axes: before other's free axes when it is the left operand, after when right
        first_free = nb + (nfree_before if side == 0 else 0)
        dims = tuple(range(nb)) + tuple(first_free + k for k in range(len(free)))
        r = emit("broadcast_in_dim", r, out.aval, shape=out.aval.shape, broadcast_dimensions=dims)
        if not (isinstance(s, Literal) and s.value == 1):
            r = emit("mul", [r, s], out.aval)
        last = eqns[-1]
        eqns[-1] = Eqn(last.primitive, last.inputs, [out], last.params)
        return eqns
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
            summed = _dot_of_splat(eqn, producer)
            if summed is not None:
                for e in summed:
                    for v in e.outvars:
                        producer[v] = e
                eqns.extend(summed)
                continue
        for v in eqn.outvars:
            producer[v] = eqn
        eqns.append(eqn)
    outvars = [rename.get(a, a) if isinstance(a, Var) else a for a in jaxpr.outvars]
    return dce(ClosedJaxpr(Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, outvars), closed.consts))
