"""Builders for the AD rules of whole families of primitives, so each primitive states only its math.

- elementwise primitives state their local partial derivatives d out / d input_i;
  JVP is  sum_i t_i * d_i  and VJP is  ct * d_i  (summed back over broadcast scalars).
- linear primitives state their transpose (the VJP of a linear map); their JVP applies the
  primitive itself to the tangents.
Everything is written with compiler.numpy on tracers, so derivative programs are ordinary jaxprs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..ir.core import Primitive, ShapedArray
from ._lazy import cnp

ONE, MINUS_ONE = "d=1", "d=-1"        # constant partials: emit t or -t, not a multiplication


def aval(x) -> ShapedArray:
    from ..tracing import aval_of
    return aval_of(x)


def is_float(x) -> bool:
    return aval(x).dtype.is_float


def zeros_like_aval(a: ShapedArray):
    return cnp.zeros(a.shape, a.dtype)


def unbroadcast(ct, target: ShapedArray):
    """Cotangent for an operand that a binary primitive broadcast from rank 0."""
    if target.shape == () and aval(ct).shape != ():
        ct = cnp.sum(ct, dtype=target.dtype)
    return ct


def _scale(t, d):
    if d is ONE:
        return t
    if d is MINUS_ONE:
        return cnp.negative(t)
    return cnp.multiply(t, d)


def add_all(terms: Sequence):
    """Sum of tangent/cotangent contributions, skipping symbolic zeros (None)."""
    terms = [t for t in terms if t is not None]
    if not terms:
        return None
    total = terms[0]
    for t in terms[1:]:
        total = cnp.add(total, t)
    return total


def elementwise_rules(prim: Primitive, partials: Callable) -> Primitive:
    """``partials(*primals, out, **params)`` returns d out / d primal_i for each input (None: zero)."""
    def jvp(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        if not is_float(out):
            return out, None
        ds = partials(*primals, out, **params)
        t = add_all([_scale(t, d) for t, d in zip(tangents, ds) if t is not None and d is not None])
        if t is not None and aval(t).shape != aval(out).shape:
            t = cnp.broadcast_to(t, aval(out).shape)
        return out, t

    def vjp(cts, primals, outs, **params):
        ds = partials(*primals, outs[0], **params)
        return [unbroadcast(_scale(cts[0], d), aval(x)) if d is not None and is_float(x) else None
                for x, d in zip(primals, ds)]

    prim.jvp_rule, prim.vjp_rule = jvp, vjp
    return prim


def linear_rules(prim: Primitive, transpose: Callable, linear_args: Sequence[int] | None = (0,)) -> Primitive:
    """A primitive linear in the operands ``linear_args`` (None: all; the others, e.g. indices, are
    fixed).

    ``transpose(ct, *primals, **params)`` returns one cotangent per linear operand.
    """
    def _linear(primals):
        n = len(primals)
        return list(range(n)) if linear_args is None else [i for i in linear_args if i < n]

    def jvp(primals, tangents, **params):
        linear = _linear(primals)
        out = prim.bind(*primals, **params)
        if all(tangents[i] is None for i in linear) or not is_float(out):
            return out, None
        args = [(tangents[i] if tangents[i] is not None else zeros_like_aval(aval(primals[i])))
                if i in linear else primals[i] for i in range(len(primals))]
        return out, prim.bind(*args, **params)

    def vjp(cts, primals, outs, **params):
        ct_linear = transpose(cts[0], *primals, **params)
        result = [None] * len(primals)
        for i, ct in zip(_linear(primals), ct_linear):
            result[i] = ct if is_float(primals[i]) else None
        return result

    prim.jvp_rule, prim.vjp_rule = jvp, vjp
    return prim


def zero_derivative_rules(prim: Primitive) -> Primitive:
    """Outputs that do not vary with the inputs (comparisons, integer results, argmax, ...)."""
    def jvp(primals, tangents, **params):
        out = prim.bind(*primals, **params)
        return out, None

    def vjp(cts, primals, outs, **params):
        return [None] * len(primals)

    prim.jvp_rule, prim.vjp_rule = jvp, vjp
    return prim


def typed(value, like):
    """A scalar constant of the dtype of ``like`` (rules must not change dtypes)."""
    return np.asarray(value, aval(like).dtype.np)[()]
