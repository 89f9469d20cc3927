"""Control flow with sub-jaxprs: cond, while, scan, and checkpoint (a region to recompute).

Sub-jaxprs are closed: whatever a branch or body captured from outside is passed in explicitly as
leading operands (the ``*_nconsts`` / ``num_consts`` params say how many).
"""
from __future__ import annotations

from ..ir.core import Jaxpr, ShapedArray, bool_
from ..ir.errors import ShapeError
from .structural import declare


def _check_call(name: str, jaxpr, args: list[ShapedArray], what: str) -> None:
    if not isinstance(jaxpr, Jaxpr):
        raise ShapeError(f"{name}: {what} must be a jaxpr, got {type(jaxpr).__name__}")
    if jaxpr.constvars:
        raise ShapeError(f"{name}: {what} must not have constvars (pass them as operands)")
    if len(jaxpr.invars) != len(args):
        raise ShapeError(f"{name}: {what} takes {len(jaxpr.invars)} inputs, given {len(args)}")
    for i, (v, a) in enumerate(zip(jaxpr.invars, args)):
        if not v.aval.same_type(a):
            raise ShapeError(f"{name}: {what} input {i} is {v.aval}, given {a}")


def _same_types(name: str, got: list[ShapedArray], want: list[ShapedArray], what: str) -> None:
    if len(got) != len(want) or any(not g.same_type(w) for g, w in zip(got, want)):
        raise ShapeError(f"{name}: {what}: expected ({', '.join(map(str, want))}), "
                         f"got ({', '.join(map(str, got))})")


def _cond(index: ShapedArray, *ops: ShapedArray, branches) -> list[ShapedArray]:
    """``cond[branches=(b0, b1, ...)] index ops``: runs branches[index] (index clamped into range)."""
    if not isinstance(branches, tuple) or not branches:
        raise ShapeError("cond: branches must be a non-empty tuple of jaxprs")
    if index.shape != () or not (index.dtype.is_int or index.dtype == bool_):
        raise ShapeError(f"cond: index must be an integer or boolean scalar, got {index}")
    for i, b in enumerate(branches):
        _check_call("cond", b, list(ops), f"branch {i}")
    outs = branches[0].out_avals
    for i, b in enumerate(branches[1:], 1):
        _same_types("cond", b.out_avals, outs, f"branch {i} returns different types than branch 0")
    return [a.strip_weak() for a in outs]


def _while(*ops: ShapedArray, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts) -> list[ShapedArray]:
    """``while[...] cond_consts body_consts init``: loop body while cond(carry) holds."""
    if not (isinstance(cond_nconsts, int) and isinstance(body_nconsts, int)
            and 0 <= cond_nconsts and 0 <= body_nconsts and cond_nconsts + body_nconsts <= len(ops)):
        raise ShapeError(f"while: bad const counts {cond_nconsts}, {body_nconsts} for {len(ops)} operands")
    cconsts, rest = list(ops[:cond_nconsts]), list(ops[cond_nconsts:])
    bconsts, carry = rest[:body_nconsts], rest[body_nconsts:]
    _check_call("while", cond_jaxpr, cconsts + carry, "cond_jaxpr")
    _check_call("while", body_jaxpr, bconsts + carry, "body_jaxpr")
    _same_types("while", cond_jaxpr.out_avals, [ShapedArray((), bool_)], "cond_jaxpr must return one bool")
    _same_types("while", body_jaxpr.out_avals, carry, "body_jaxpr must return the carry's types")
    return [a.strip_weak() for a in carry]


def _scan(*ops: ShapedArray, jaxpr, num_consts, num_carry, length, reverse) -> list[ShapedArray]:
    """``scan[...] consts carry xs``: body(consts, carry, x[i]) -> (carry, y[i]); outputs carry, ys."""
    if not (isinstance(num_consts, int) and isinstance(num_carry, int) and isinstance(length, int)
            and num_consts >= 0 and num_carry >= 0 and length >= 0 and num_consts + num_carry <= len(ops)):
        raise ShapeError(f"scan: bad counts num_consts={num_consts} num_carry={num_carry} length={length}")
    if not isinstance(reverse, bool):
        raise ShapeError(f"scan: reverse must be True or False, got {reverse!r}")
    consts, carry, xs = (list(ops[:num_consts]), list(ops[num_consts:num_consts + num_carry]),
                         list(ops[num_consts + num_carry:]))
    for x in xs:
        if x.ndim == 0 or x.shape[0] != length:
            raise ShapeError(f"scan: every xs needs a leading axis of length {length}, got {x}")
    x_avals = [ShapedArray(x.shape[1:], x.dtype) for x in xs]
    _check_call("scan", jaxpr, consts + carry + x_avals, "body")
    outs = jaxpr.out_avals
    if len(outs) < num_carry:
        raise ShapeError(f"scan: body returns {len(outs)} values, fewer than the {num_carry} carries")
    _same_types("scan", outs[:num_carry], carry, "body must return the carry's types")
    ys = [ShapedArray((length,) + y.shape, y.dtype) for y in outs[num_carry:]]
    return [a.strip_weak() for a in carry] + ys


def _checkpoint(*ops: ShapedArray, jaxpr, policy=None) -> list[ShapedArray]:
    """``checkpoint[jaxpr, policy] ops``: computes jaxpr(ops); reverse mode recomputes its insides."""
    _check_call("checkpoint", jaxpr, list(ops), "body")
    return [a.strip_weak() for a in jaxpr.out_avals]


cond = declare("cond", _cond, multiple_results=True)
while_ = declare("while", _while, multiple_results=True)
scan = declare("scan", _scan, multiple_results=True)
checkpoint = declare("checkpoint", _checkpoint, multiple_results=True)
