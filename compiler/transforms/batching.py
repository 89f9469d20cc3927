"""vmap as an interpreter over the Jaxpr: every value carries the position of its batch axis (or None).

Each primitive's ``batch_rule(args, dims, **params) -> (outs, out_dims)`` says how to apply it to
batched operands with one primitive call; family rules are built here and attached beside each
primitive. A primitive without a rule (or a case its rule declines) is mapped sequentially with a
scan over the batch axis: slower, but always correct.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..ir.core import Jaxpr, Literal
from ..primitives._lazy import cnp, lax
from ..tracing import aval_of, bind

NOT_BATCHED = None


class Decline(Exception):
    """Raised by a batch rule for a case it does not handle; the sequential fallback takes over."""


def move_to_front(x, dim):
    return x if dim in (0, None) else cnp.moveaxis(x, dim, 0)


def batched_at_front(x, dim, size: int):
    """x with its batch axis first; an unbatched x is broadcast along a new first axis."""
    if dim is None:
        return cnp.broadcast_to(x, (size,) + tuple(aval_of(x).shape))
    return move_to_front(x, dim)


def batch_eval(jaxpr: Jaxpr, consts: Sequence[Any], args: Sequence[Any], dims: Sequence[int | None],
               size: int) -> tuple[list, list]:
    env: dict = {}
    dim_env: dict = {}

    def read(a):
        return (a.value, None) if isinstance(a, Literal) else (env[a], dim_env.get(a))

    for v, c in zip(jaxpr.constvars, consts):
        env[v] = c
    for v, a, d in zip(jaxpr.invars, args, dims):
        env[v], dim_env[v] = a, d
    for eqn in jaxpr.eqns:
        vals, ds = zip(*[read(a) for a in eqn.inputs]) if eqn.inputs else ((), ())
        if all(d is None for d in ds):
            outs = bind(eqn.primitive, vals, eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
            out_dims = [None] * len(outs)
        else:
            outs, out_dims = apply_batched(eqn.primitive, list(vals), list(ds), size, eqn.params)
        for v, o, d in zip(eqn.outvars, outs, out_dims):
            env[v], dim_env[v] = o, d
    results = [read(a) for a in jaxpr.outvars]
    return [r[0] for r in results], [r[1] for r in results]


def apply_batched(prim, vals, dims, size, params) -> tuple[list, list]:
    rule = prim.batch_rule
    if rule is not None:
        try:
            outs, out_dims = rule(vals, dims, size, **params)
            if not prim.multiple_results:
                outs, out_dims = [outs], [out_dims]
            return list(outs), list(out_dims)
        except Decline:
            pass
    return sequential(prim, vals, dims, size, params)


def sequential(prim, vals, dims, size, params):
    """Map the primitive over the batch axis with a scan (the fallback for any primitive)."""
    batched = [i for i, d in enumerate(dims) if d is not None]
    xs = [move_to_front(vals[i], dims[i]) for i in batched]

    def step(_, x_slices):
        args = list(vals)
        for i, x in zip(batched, x_slices):
            args[i] = x
        out = bind(prim, args, params)
        return None, list(out) if prim.multiple_results else [out]

    _, ys = lax.scan(step, None, xs, length=size)
    return ys, [0] * len(ys)


# ---- family rules -----------------------------------------------------------------------------

def elementwise_batch_rule(prim, scalar_operands=None):
    """Elementwise primitives: batch axes first, every operand at the full batched shape. Unbatched
    rank-0 operands stay scalars where the primitive takes them (``scalar_operands``: positions that
    may stay rank-0; default all)."""
    def rule(vals, dims, size, **params):
        out_shape = ()
        for v, d in zip(vals, dims):
            s = tuple(aval_of(v).shape)
            if d is not None:
                s = s[:d] + s[d + 1:]
            out_shape = s if len(s) > len(out_shape) else out_shape
        full = (size,) + out_shape
        args = []
        for i, (v, d) in enumerate(zip(vals, dims)):
            if d is None and aval_of(v).shape == () and (scalar_operands is None or i in scalar_operands):
                args.append(v)
                continue
            v = batched_at_front(v, d, size)
            if tuple(aval_of(v).shape) != full:          # a batched scalar against a larger operand
                v = cnp.broadcast_to(cnp.reshape(v, (size,) + (1,) * len(out_shape)), full)
            args.append(v)
        return bind(prim, args, params), 0
    prim.batch_rule = rule
    return prim


def unary_axes_rule(prim, shift_params):
    """One-operand primitives whose params name axes: batch axis first, params shifted past it.

    ``shift_params(params, ndim) -> params`` rewrites the params for the operand with a leading
    batch axis (ndim is the unbatched rank)."""
    def rule(vals, dims, size, **params):
        x = move_to_front(vals[0], dims[0])
        ndim = len(aval_of(x).shape) - 1
        return bind(prim, [x] + list(vals[1:]), shift_params(params, ndim)), 0
    prim.batch_rule = rule
    return prim


def shift(axes, by: int = 1):
    return tuple(a + by for a in axes)


def batch_jaxpr_call(jaxpr: Jaxpr, args, dims, size, force_batched=True):
    """Evaluate a sub-jaxpr batched; outputs batched at axis 0 (all of them if force_batched)."""
    outs, out_dims = batch_eval(jaxpr, [], args, dims, size)
    if force_batched:
        return [batched_at_front(o, d, size) for o, d in zip(outs, out_dims)]
    return outs, out_dims
