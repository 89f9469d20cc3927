"""Control flow with sub-jaxprs: cond, while, scan, and checkpoint (a region to recompute).

Sub-jaxprs are closed: whatever a branch or body captured from outside is passed in explicitly as
leading operands (the ``*_nconsts`` / ``num_consts`` params say how many).
"""
from __future__ import annotations

from ..ir.core import Jaxpr, ShapedArray, bool_
from ..ir.errors import ShapeError
from ._lazy import cnp, lax
from .derivatives import aval, zeros_like_aval
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


# ---- derivatives: each rule re-enters lax with Python functions that differentiate the body, so
# the derivative of a loop is a loop and the derivative of a branch is a branch ----------------

def _split(xs, *sizes):
    out, start = [], 0
    for n in sizes:
        out.append(list(xs[start:start + n]))
        start += n
    out.append(list(xs[start:]))
    return out


def _float_zeros(values_or_avals, tangents=None):
    """Instantiate a tangent/cotangent for every float value (zeros where it is None); None elsewhere."""
    out = []
    for i, v in enumerate(values_or_avals):
        a = v if isinstance(v, ShapedArray) else aval(v)
        t = None if tangents is None else tangents[i]
        out.append((t if t is not None else zeros_like_aval(a)) if a.dtype.is_float else None)
    return out


def _present(xs):
    return [x for x in xs if x is not None]


def _refill(template, values):
    """Put ``values`` back at the non-None positions of ``template``."""
    it = iter(values)
    return [next(it) if t is not None else None for t in template]


def _cond_jvp(primals, tangents, *, branches):
    from ..transforms.ad import jvp_eval
    index, ops = primals[0], list(primals[1:])
    tops = list(tangents[1:])
    out_avals = branches[0].out_avals

    def branch_fn(b):
        def f(*args):
            ps, ts = args[:len(ops)], _refill(tops, args[len(ops):])
            outs, touts = jvp_eval(b, [], ps, ts)
            return outs, _present(_float_zeros(out_avals, touts))
        return f

    outs, touts = lax.switch(index, [branch_fn(b) for b in branches], *ops, *_present(tops))
    return outs, _refill(_float_zeros(out_avals), touts)


def _cond_vjp(cts, primals, outs, *, branches):
    from ..transforms.ad import vjp_eval
    index, ops = primals[0], list(primals[1:])
    float_cts = _float_zeros(outs, cts)

    def branch_fn(b):
        def f(*args):
            ps, cs = args[:len(ops)], _refill(float_cts, args[len(ops):])
            _, backward = vjp_eval(b, [], ps)            # the backward branch recomputes its forward
            return _present(_float_zeros(ps, backward(cs)))
        return f

    grads = lax.switch(index, [branch_fn(b) for b in branches], *ops, *_present(float_cts))
    return [None] + _refill(_float_zeros(ops), grads)


cond.jvp_rule, cond.vjp_rule = _cond_jvp, _cond_vjp


def _scan_jvp(primals, tangents, *, jaxpr, num_consts, num_carry, length, reverse):
    from ..transforms.ad import jvp_eval
    consts, carry, xs = _split(primals, num_consts, num_carry)
    tconsts, tcarry, txs = _split(tangents, num_consts, num_carry)
    tcarry = _float_zeros(carry, tcarry)                     # a carry tangent may become non-zero later
    nc = num_carry

    def body(c, x):
        carry_p, carry_t = c
        x_p, x_t = x
        ts = tconsts + _refill(tcarry, carry_t) + _refill(txs, x_t)
        outs, touts = jvp_eval(jaxpr, [], consts + list(carry_p) + list(x_p), ts)
        touts = _float_zeros(jaxpr.out_avals, touts)
        return (outs[:nc], _present(touts[:nc])), (outs[nc:], _present(touts[nc:]))

    (carry_out, tcarry_out), (ys, tys) = lax.scan(body, (carry, _present(tcarry)), (xs, _present(txs)),
                                                  length=length, reverse=reverse)
    return (list(carry_out) + list(ys),
            _refill(tcarry, tcarry_out) + _refill(_float_zeros(jaxpr.out_avals[nc:]), tys))


def _scan_vjp_fwd(ins, *, jaxpr, num_consts, num_carry, length, reverse):
    """Forward scan that also stacks the carry entering each step: the residuals of the backward scan."""
    from ..transforms.ad import eval_inline
    consts, carry, xs = _split(ins, num_consts, num_carry)

    def step(c, x):
        outs = eval_inline(jaxpr, [], consts + list(c) + list(x))
        return outs[:num_carry], (outs[num_carry:], list(c))

    final, (ys, carry_history) = lax.scan(step, carry, xs, length=length, reverse=reverse)
    return list(final) + list(ys), carry_history


def _scan_vjp(cts, ins, outs, carry_history, *, jaxpr, num_consts, num_carry, length, reverse):
    from ..transforms.ad import vjp_eval
    consts, carry, xs = _split(ins, num_consts, num_carry)
    ct_carry = _float_zeros(carry, cts[:num_carry])
    ct_ys = _float_zeros(outs[num_carry:], cts[num_carry:])
    ct_consts = _float_zeros(consts)

    def back(c, x):
        ct_c, ct_k = c
        carry_in, x_i, ct_y = x
        _, backward = vjp_eval(jaxpr, [], consts + list(carry_in) + list(x_i))  # recompute the step
        g_consts, g_carry, g_xs = _split(backward(_refill(ct_carry, ct_c) + _refill(ct_ys, ct_y)),
                                         num_consts, num_carry)
        ct_k = [cnp.add(a, g) if g is not None else a for a, g in zip(ct_k, _present_like(ct_consts, g_consts))]
        return (_present(_float_zeros(carry, g_carry)), ct_k), _present(_float_zeros(x_i, g_xs))

    (ct_carry0, ct_k), ct_xs = lax.scan(back, (_present(ct_carry), _present(ct_consts)),
                                        (carry_history, xs, _present(ct_ys)), length=length,
                                        reverse=not reverse)
    return (_refill(ct_consts, ct_k) + _refill(ct_carry, ct_carry0) + _refill(_float_zeros(xs), ct_xs))


def _present_like(template, values):
    """values at the non-None positions of template (None where a value is missing)."""
    return [v for t, v in zip(template, values) if t is not None]


scan.jvp_rule, scan.vjp_rule, scan.vjp_fwd = _scan_jvp, _scan_vjp, _scan_vjp_fwd


def _while_jvp(primals, tangents, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    from ..transforms.ad import eval_inline, jvp_eval
    cconsts, bconsts, carry = _split(primals, cond_nconsts, body_nconsts)
    _, tbconsts, tcarry = _split(tangents, cond_nconsts, body_nconsts)
    tcarry = _float_zeros(carry, tcarry)

    def cond_fn(c):
        return eval_inline(cond_jaxpr, [], cconsts + list(c[0]))[0]

    def body_fn(c):
        outs, touts = jvp_eval(body_jaxpr, [], bconsts + list(c[0]), tbconsts + _refill(tcarry, c[1]))
        return outs, _present(_float_zeros(outs, touts))

    out, tout = lax.while_loop(cond_fn, body_fn, (carry, _present(tcarry)))
    return list(out), _refill(tcarry, tout)


def _while_vjp(cts, primals, outs, **params):
    raise NotImplementedError(
        "reverse-mode differentiation of while_loop is not supported: its trip count is only known at "
        "run time, so the forward values cannot be saved. Use lax.fori_loop with Python-int bounds or "
        "lax.scan (both reverse-differentiable), or forward mode (jvp, jacfwd).")


while_.jvp_rule, while_.vjp_rule = _while_jvp, _while_vjp


def _checkpoint_jvp(primals, tangents, *, jaxpr, policy=None):
    from ..transforms.ad import jvp_eval
    return jvp_eval(jaxpr, [], primals, tangents)


def _checkpoint_vjp_fwd(ins, *, jaxpr, policy=None):
    """Forward: run the region and save only its inputs; everything inside is recomputed."""
    return checkpoint.bind(*ins, jaxpr=jaxpr, policy=policy), list(ins)


def _checkpoint_vjp(cts, ins, outs, saved, *, jaxpr, policy=None):
    from ..transforms.ad import vjp_eval
    _, backward = vjp_eval(jaxpr, [], saved)
    return backward(cts)


checkpoint.jvp_rule, checkpoint.vjp_rule, checkpoint.vjp_fwd = (_checkpoint_jvp, _checkpoint_vjp,
                                                                 _checkpoint_vjp_fwd)


# ---- batching ---------------------------------------------------------------------------------

def _cond_batch(vals, dims, size, *, branches):
    from ..transforms.batching import batch_jaxpr_call, batched_at_front
    index, ops, op_dims = vals[0], list(vals[1:]), list(dims[1:])
    if dims[0] is None:          # one branch for the whole batch: batch the branches themselves
        def branch_fn(b):
            return lambda *args: batch_jaxpr_call(b, args, op_dims, size)
        outs = lax.switch(index, [branch_fn(b) for b in branches], *ops)
        return outs, [0] * len(outs)
    # a different branch per example: compute every branch, then select elementwise
    results = [batch_jaxpr_call(b, ops, op_dims, size) for b in branches]
    index = cnp.clip(batched_at_front(index, dims[0], size), 0, len(branches) - 1)
    outs = []
    for k in range(len(results[0])):
        cases = [r[k] for r in results]
        which = cnp.reshape(index, (size,) + (1,) * (len(aval(cases[0]).shape) - 1))
        which = cnp.broadcast_to(which, aval(cases[0]).shape)
        outs.append(_select_among(which, cases))
    return outs, [0] * len(outs)


def _select_among(which, cases):
    from .elementwise import select_n
    return select_n.bind(which, *cases)


def _while_batch(vals, dims, size, *, cond_jaxpr, body_jaxpr, cond_nconsts, body_nconsts):
    """Every carry is batched; with a batched predicate the loop runs while any example continues,
    and finished examples keep their values."""
    from ..transforms.batching import batch_eval, batch_jaxpr_call, batched_at_front
    cconsts, bconsts, carry = _split(vals, cond_nconsts, body_nconsts)
    cdims, bdims, _ = _split(dims, cond_nconsts, body_nconsts)
    carry = [batched_at_front(c, d, size) for c, d in zip(carry, dims[cond_nconsts + body_nconsts:])]
    nc = len(carry)

    def predicate(c):
        (p,), (pd,) = batch_eval(cond_jaxpr, [], cconsts + list(c), cdims + [0] * nc, size)
        return p, pd

    def body(c):
        return batch_jaxpr_call(body_jaxpr, bconsts + list(c), bdims + [0] * nc, size)

    def cond_fn(c):
        p, pd = predicate(c)
        return cnp.any(p) if pd is not None else p

    def body_fn(c):
        p, pd = predicate(c)
        new = body(c)
        if pd is None:
            return new
        p = batched_at_front(p, pd, size)
        return [cnp.where(cnp.reshape(p, (size,) + (1,) * (len(aval(n).shape) - 1)), n, old)
                for n, old in zip(new, c)]

    outs = lax.while_loop(cond_fn, body_fn, carry)
    return list(outs), [0] * nc


def _scan_batch(vals, dims, size, *, jaxpr, num_consts, num_carry, length, reverse):
    """Carries batched at axis 0, xs and ys at axis 1 (axis 0 is the scanned one)."""
    from ..transforms.batching import batch_jaxpr_call, batched_at_front
    consts, carry, xs = _split(vals, num_consts, num_carry)
    kdims, cdims, xdims = _split(dims, num_consts, num_carry)
    carry = [batched_at_front(c, d, size) for c, d in zip(carry, cdims)]
    xs = [_batch_axis_to_1(x, d, size) for x, d in zip(xs, xdims)]

    def step(c, x):
        outs = batch_jaxpr_call(jaxpr, consts + list(c) + list(x), kdims + [0] * (len(c) + len(x)), size)
        return outs[:num_carry], outs[num_carry:]

    carry_out, ys = lax.scan(step, carry, xs, length=length, reverse=reverse)
    return list(carry_out) + list(ys), [0] * num_carry + [1] * len(ys)


def _batch_axis_to_1(x, d, size):
    """xs of a scan: scanned axis first, batch axis second."""
    if d is None:
        shape = aval(x).shape
        return cnp.broadcast_to(cnp.expand_dims(x, 1), (shape[0], size) + tuple(shape[1:]))
    return cnp.moveaxis(x, d, 1)


def _checkpoint_batch(vals, dims, size, *, jaxpr, policy=None):
    from ..api import checkpoint as checkpoint_fn
    from ..transforms.batching import batch_jaxpr_call
    outs = checkpoint_fn(lambda *args: batch_jaxpr_call(jaxpr, args, dims, size), policy)(*vals)
    return list(outs), [0] * len(outs)


cond.batch_rule, while_.batch_rule = _cond_batch, _while_batch
scan.batch_rule, checkpoint.batch_rule = _scan_batch, _checkpoint_batch
