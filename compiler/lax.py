"""compiler.lax: structured control flow (JAX's signatures) and direct access to primitives.

Python ``if``/``for`` on traced values cannot be recorded; these functions trace their bodies into
sub-jaxprs instead, so the loop or branch becomes one equation of the program.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from . import numpy as cnp
from .ir.core import DEFAULT_INT, Jaxpr, ShapedArray, Var, bool_, dtype as to_dtype, i32
from .primitives import control as _c, elementwise as _e, linalg as _l, reductions as _r, structural as _s
from .tracing import aval_of, shape_error, trace_flat
from .tree_util import tree_flatten, tree_unflatten


def _trace_body(fun: Callable, in_tree, in_avals: Sequence[ShapedArray], what: str):
    """Trace ``fun`` on pytree inputs; returns (jaxpr taking consts then inputs, consts, out_tree)."""
    box = []

    def flat_fun(*tracers):
        out = fun(*tree_unflatten(in_tree, list(tracers)))
        leaves, tree = tree_flatten(out)
        for leaf in leaves:
            try:
                aval_of(leaf)
            except TypeError as e:
                raise TypeError(f"{what} must return arrays: {e}") from None
        box.append(tree)
        return leaves

    closed = trace_flat(flat_fun, in_avals)
    j = closed.jaxpr
    return Jaxpr([], j.constvars + j.invars, j.eqns, j.outvars), closed.consts, box[0]


def _leaves_and_avals(tree):
    leaves, td = tree_flatten(tree)
    leaves = [cnp._operand(x) for x in leaves]
    return leaves, td, [aval_of(x) for x in leaves]


def _describe_types(tree, avals) -> str:
    return f"{tree} with types ({', '.join(map(str, avals))})"


def switch(index, branches: Sequence[Callable], *operands):
    """Apply ``branches[index](*operands)``; index is clamped into range."""
    if not branches:
        raise ValueError("switch needs at least one branch")
    leaves, in_tree, avals = _leaves_and_avals(tuple(operands))
    traced = [_trace_body(lambda *a, f=f: f(*a), in_tree, avals, "a cond branch") for f in branches]
    out_tree = traced[0][2]
    for i, (j, _, tree) in enumerate(traced[1:], 1):
        if tree != out_tree or not all(a.same_type(b) for a, b in zip(j.out_avals, traced[0][0].out_avals)):
            raise shape_error(f"cond/switch branches must return the same structure and types: branch 0 "
                             f"returns {_describe_types(out_tree, traced[0][0].out_avals)}, branch {i} "
                             f"returns {_describe_types(tree, j.out_avals)}")
    # every branch takes all branches' captured constants (each once), then the operands
    all_consts, position = [], {}
    for _, consts, _ in traced:
        for c in consts:
            if id(c) not in position:
                position[id(c)] = len(all_consts)
                all_consts.append(c)
    const_avals = [aval_of(c) for c in all_consts]
    jaxprs = []
    for j, consts, _ in traced:
        const_in = [Var(a) for a in const_avals]
        for k, c in enumerate(consts):
            const_in[position[id(c)]] = j.invars[k]
        jaxprs.append(Jaxpr([], const_in + j.invars[len(consts):], j.eqns, j.outvars))
    index = cnp._operand(index)
    if aval_of(index).shape != ():
        raise shape_error(f"cond/switch index must be a scalar, got {aval_of(index)}")
    index = cnp.astype(index, i32)
    outs = _c.cond.bind(index, *all_consts, *leaves, branches=tuple(jaxprs))
    return tree_unflatten(out_tree, outs)


def cond(pred, true_fun: Callable, false_fun: Callable, *operands):
    """``true_fun(*operands) if pred else false_fun(*operands)``, both branches traced."""
    pred = cnp._operand(pred)
    if aval_of(pred).shape != ():
        raise shape_error(f"cond predicate must be a scalar, got {aval_of(pred)}")
    if aval_of(pred).dtype != bool_:
        pred = cnp.not_equal(pred, 0)
    return switch(pred, [false_fun, true_fun], *operands)


def while_loop(cond_fun: Callable, body_fun: Callable, init_val):
    """``while cond_fun(val): val = body_fun(val)``; the carry keeps its structure and types."""
    leaves, tree, avals = _leaves_and_avals(init_val)
    args_tree = tree_flatten((init_val,))[1]          # the functions take the carry as one argument
    cj, cconsts, ctree = _trace_body(cond_fun, args_tree, avals, "while_loop's cond_fun")
    if len(cj.outvars) != 1 or cj.out_avals[0].shape != () or cj.out_avals[0].dtype != bool_:
        raise shape_error(f"while_loop's cond_fun must return a boolean scalar, got "
                          f"{_describe_types(ctree, cj.out_avals)}")
    bj, bconsts, btree = _trace_body(body_fun, args_tree, avals, "while_loop's body_fun")
    promoted = _promote_weak_carry(leaves, avals, bj.out_avals)
    if promoted is not None:                 # a weakly typed init adopts the body's carry type
        leaves, avals = promoted
        cj, cconsts, ctree = _trace_body(cond_fun, args_tree, avals, "while_loop's cond_fun")
        bj, bconsts, btree = _trace_body(body_fun, args_tree, avals, "while_loop's body_fun")
    _check_carry("while_loop's body_fun", tree, avals, btree, bj.out_avals)
    outs = _c.while_.bind(*cconsts, *bconsts, *leaves, cond_jaxpr=cj, body_jaxpr=bj,
                          cond_nconsts=len(cconsts), body_nconsts=len(bconsts))
    return tree_unflatten(tree, outs)


def _promote_weak_carry(leaves, avals, out_avals):
    """Like JAX: an initial carry that is a weakly typed Python scalar takes the dtype the body gives
    it (0.0 as the start of a float64 sum). Returns new (leaves, avals), or None if nothing changes."""
    if len(out_avals) != len(avals):
        return None
    changed = False
    new_leaves, new_avals = list(leaves), list(avals)
    for i, (a, o) in enumerate(zip(avals, out_avals)):
        if a.weak_type and a.shape == o.shape and a.dtype != o.dtype:
            new_leaves[i] = cnp.astype(leaves[i], o.dtype)
            new_avals[i] = ShapedArray(a.shape, o.dtype)
            changed = True
    return (new_leaves, new_avals) if changed else None


def _check_carry(what: str, tree, avals, out_tree, out_avals):
    if out_tree != tree or len(out_avals) != len(avals) or not all(
            a.same_type(b) for a, b in zip(avals, out_avals)):
        raise shape_error(f"{what} must return the carry's structure and types: expected "
                         f"{_describe_types(tree, avals)}, got {_describe_types(out_tree, out_avals)}")


def fori_loop(lower, upper, body_fun: Callable, init_val):
    """``for i in range(lower, upper): val = body_fun(i, val)``. Python-int bounds make it a scan
    (reverse-differentiable); traced bounds make it a while loop. With Python-int bounds the index
    is weakly typed (like a Python int), so ``v * 2 + i`` keeps v's float type."""
    if isinstance(lower, (int, np.integer)) and isinstance(upper, (int, np.integer)):
        lower, upper = int(lower), int(upper)

        def step(carry, _):
            i, val = carry
            return (cnp.add(i, 1), body_fun(i, val)), None

        (_, val), _ = scan(step, (lower, init_val), None, length=max(upper - lower, 0))
        return val

    def cond_fun(carry):
        return cnp.less(carry[0], upper)

    def body(carry):
        i, val = carry
        return cnp.add(i, 1), body_fun(i, val)

    start = int(lower) if isinstance(lower, (int, np.integer)) else cnp.astype(lower, DEFAULT_INT)
    return while_loop(cond_fun, body, (start, init_val))[1]


def scan(f: Callable, init, xs=None, length: int | None = None, reverse: bool = False):
    """``carry, y = f(carry, x)`` over the leading axis of xs; returns (final carry, stacked ys)."""
    carry_leaves, carry_tree, carry_avals = _leaves_and_avals(init)
    x_leaves, x_tree = tree_flatten(xs)
    x_leaves = [cnp.asarray(x) for x in x_leaves]
    lengths = {aval_of(x).shape[0] if aval_of(x).shape else None for x in x_leaves}
    if None in lengths:
        raise shape_error("scan: every leaf of xs needs a leading axis to scan over")
    if length is not None:
        lengths.add(int(length))
    if len(lengths) != 1:
        raise shape_error(f"scan: xs leaves have different leading lengths {sorted(lengths)}"
                         + (" (and length=)" if length is not None else ""))
    n = lengths.pop() if lengths else None
    if n is None:
        raise ValueError("scan: give xs or length")
    x_avals = [ShapedArray(aval_of(x).shape[1:], aval_of(x).dtype) for x in x_leaves]
    box = []

    def flat_body(*leaves):
        c = tree_unflatten(carry_tree, list(leaves[:len(carry_avals)]))
        x = tree_unflatten(x_tree, list(leaves[len(carry_avals):]))
        out = f(c, x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError("scan's f must return a pair (new_carry, y)")
        c_leaves, c_tree = tree_flatten(out[0])
        y_leaves, y_tree = tree_flatten(out[1])
        box.append((c_tree, y_tree, len(c_leaves)))
        return c_leaves + [cnp._operand(y) for y in y_leaves]

    closed = trace_flat(flat_body, carry_avals + x_avals)
    c_tree, y_tree, nc = box[-1]
    promoted = _promote_weak_carry(carry_leaves, carry_avals, closed.jaxpr.out_avals[:nc])
    if promoted is not None:                 # a weakly typed init adopts the body's carry type
        carry_leaves, carry_avals = promoted
        closed = trace_flat(flat_body, carry_avals + x_avals)
        c_tree, y_tree, nc = box[-1]
    j = closed.jaxpr
    _check_carry("scan's f", carry_tree, carry_avals, c_tree, j.out_avals[:nc])
    jaxpr = Jaxpr([], j.constvars + j.invars, j.eqns, j.outvars)
    outs = _c.scan.bind(*closed.consts, *carry_leaves, *x_leaves, jaxpr=jaxpr,
                        num_consts=len(closed.consts), num_carry=len(carry_leaves), length=n,
                        reverse=bool(reverse))
    return tree_unflatten(carry_tree, outs[:nc]), tree_unflatten(y_tree, outs[nc:])


# ---- direct access to primitives --------------------------------------------------------------

def stop_gradient(x):
    return _e.stop_gradient.bind(cnp._operand(x) if not isinstance(x, (int, float)) else cnp.asarray(x))


def select(pred, on_true, on_false):
    return _e.select_n.bind(pred, on_false, on_true)


def convert_element_type(x, new_dtype):
    return _e.convert_element_type.bind(cnp.asarray(x), new_dtype=to_dtype(new_dtype))


def broadcast_in_dim(x, shape, broadcast_dimensions):
    return _s.broadcast_in_dim.bind(cnp.asarray(x), shape=tuple(shape),
                                    broadcast_dimensions=tuple(broadcast_dimensions))


def dynamic_slice(x, start_indices, slice_sizes):
    starts = [cnp.astype(s, i32) for s in start_indices]
    return _s.dynamic_slice.bind(cnp.asarray(x), *starts, slice_sizes=tuple(slice_sizes))


def dynamic_update_slice(x, update, start_indices):
    starts = [cnp.astype(s, i32) for s in start_indices]
    return _s.dynamic_update_slice.bind(cnp.asarray(x), cnp.asarray(update), *starts)


def dot_general(lhs, rhs, dimension_numbers, preferred_element_type=None):
    (ca, cb), (ba, bb) = dimension_numbers
    params = {"dimension_numbers": ((tuple(ca), tuple(cb)), (tuple(ba), tuple(bb)))}
    if preferred_element_type is not None:
        params["preferred_element_type"] = to_dtype(preferred_element_type)
    return _l.dot_general.bind(cnp.asarray(lhs), cnp.asarray(rhs), **params)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         feature_group_count: int = 1, preferred_element_type=None):
    """N-d convolution (cross-correlation), layouts NCHW / OIHW; padding: ((lo, hi), ...) pairs;
    ``preferred_element_type``: the result type (e.g. int32 for int8 operands)."""
    nsp = cnp.ndim(lhs) - 2
    extra = {} if preferred_element_type is None else {"preferred_element_type": to_dtype(preferred_element_type)}
    return _l.conv_general_dilated.bind(
        cnp.asarray(lhs), cnp.asarray(rhs), window_strides=tuple(window_strides),
        padding=tuple((int(lo), int(hi)) for lo, hi in padding),
        lhs_dilation=tuple(lhs_dilation or (1,) * nsp), rhs_dilation=tuple(rhs_dilation or (1,) * nsp),
        feature_group_count=int(feature_group_count), **extra)


def reduce_window(x, kind: str, window_dimensions, window_strides, padding):
    prim = {"max": _r.reduce_window_max, "sum": _r.reduce_window_sum}[kind]
    return prim.bind(cnp.asarray(x), window_dimensions=tuple(window_dimensions),
                     window_strides=tuple(window_strides), padding=tuple(tuple(p) for p in padding))


def cumsum(x, axis: int = 0, reverse: bool = False):
    x = cnp.asarray(x)
    return _r.cumsum.bind(x, axis=axis % max(cnp.ndim(x), 1), reverse=bool(reverse))


def integer_pow(x, y: int):
    return _e.integer_pow.bind(cnp.asarray(x), y=int(y))


def _unary(prim):
    return lambda x: prim.bind(cnp.asarray(x))


logistic, rsqrt, erf = _unary(_e.logistic), _unary(_e.rsqrt), _unary(_e.erf)
