"""sparsify: matmuls by pruned constant weights become sparse_dot on the compressed weight.

prune() zeroes weights but leaves them dense, so the dense GEMM still multiplies by every zero. This
pass finds each dot_general whose weight is a 2-D f32/f64 constvar (one contraction axis, no batch
axes) and, when the weight is N:M sparse along its contraction axis (2:4 by default) or at least
``min_sparsity`` zeros, replaces it with ``sparse_dot`` on the compressed weight (N:M values and
indices, or CSR); transposes keep the operand and result axis orders of the original.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.core import PRIMITIVES, ClosedJaxpr, Eqn, Jaxpr, ShapedArray, Var, dtype as to_dtype
from ..primitives.sparse import compress_csr, compress_n_m, parse_format
from ..ir.errors import ShapeError
from .dce import dce

FORMATS = ("auto", "csr")


@dataclass
class SparsifyReport:
    """One line per matmul looked at: its weight's shape, sparsity and the format chosen (or why none)."""
    rows: list

    def __str__(self) -> str:
        return "\n".join(f"{r['shape']} sparsity {r['sparsity']:.1%}: {r['format'] or r['reason']}"
                         for r in self.rows)


def _candidate(eqn: Eqn, consts: dict, producers: dict):
    """(weight var, weight's contraction axis, x, x's contraction axis, weight is lhs) or None.

    A weight broadcast over leading batch axes (what ``x @ w`` traces to for x of rank 3+) counts
    too, when x's batch axes are its leading ones and it is contracted on its last axis: then the
    batch axes are just more rows of x."""
    if eqn.primitive.name != "dot_general":
        return None
    (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
    if len(ca) != 1 or eqn.params.get("preferred_element_type") not in (None, eqn.inputs[0].aval.dtype):
        return None
    if ba or bb:
        x, wb = eqn.inputs
        src = producers.get(wb)
        nb = len(ba)
        if (src is None or src.primitive.name != "broadcast_in_dim" or src.inputs[0] not in consts
                or tuple(ba) != tuple(range(nb)) or tuple(bb) != tuple(range(nb))
                or src.params["broadcast_dimensions"] != (nb, nb + 1) or ca[0] != x.aval.ndim - 1
                or cb[0] < nb):
            return None
        w = src.inputs[0]
        if w.aval.ndim == 2 and w.aval.dtype.name in ("f32", "f64") and x not in consts:
            return w, cb[0] - nb, x, ca[0], False
        return None
    for side, (w, x) in enumerate([(eqn.inputs[1], eqn.inputs[0]), (eqn.inputs[0], eqn.inputs[1])]):
        if w in consts and w.aval.ndim == 2 and w.aval.dtype.name in ("f32", "f64") and x not in consts:
            cw, cx = (cb[0], ca[0]) if side == 0 else (ca[0], cb[0])
            return w, cw, x, cx, side == 1
    return None


def sparsify(closed: ClosedJaxpr, format: str = "auto", min_sparsity: float = 0.85,
             report: bool = False):
    """Rewrite matmuls by sparse constant weights as sparse_dot.

    format: "auto" (N:M "2:4" when the weight is 2:4 along its contraction axis, else CSR when at
    least ``min_sparsity`` of it is zero, else left dense), "N:M" (only N:M) or "csr". With an
    explicit format, a program where no weight qualifies is a ValueError that says why.
    With report=True returns (program, SparsifyReport).
    """
    if not isinstance(closed, ClosedJaxpr):
        raise TypeError(f"sparsify expects a ClosedJaxpr (e.g. from make_jaxpr), got {type(closed).__name__}")
    if format not in FORMATS:
        try:
            parse_format(format)
        except ShapeError:
            raise ValueError(f"format must be 'auto', 'csr' or 'N:M' (e.g. '2:4'), got {format!r}") from None
    if not 0 <= min_sparsity < 1:
        raise ValueError(f"min_sparsity must be in [0, 1), got {min_sparsity}")
    jaxpr = closed.jaxpr
    consts = dict(zip(jaxpr.constvars, closed.consts))
    new_consts: list = []                 # (var, value) appended after the kept constvars
    eqns, rows = [], []
    nm_wanted = parse_format("2:4" if format in ("auto", "csr") else format)
    producers = {v: e for e in jaxpr.eqns for v in e.outvars}
    for eqn in jaxpr.eqns:
        cand = _candidate(eqn, consts, producers)
        if cand is None:
            eqns.append(eqn)
            continue
        w_var, cw, x, cx, w_is_lhs = cand
        w = np.asarray(consts[w_var])
        w = w if cw == 0 else w.T                 # as W[K, N]
        sparsity = float((w == 0).mean()) if w.size else 0.0
        row = {"shape": tuple(w.shape), "sparsity": sparsity, "format": None, "reason": ""}
        rows.append(row)
        chosen = None
        if format != "csr" and w.shape[0] % nm_wanted[1] == 0 and _is_n_m(w, *nm_wanted):
            chosen = f"{nm_wanted[0]}:{nm_wanted[1]}"
        elif format in ("auto", "csr") and sparsity >= min_sparsity:
            chosen = "csr"
        if chosen is None:
            why = [] if format == "csr" else [f"not {nm_wanted[0]}:{nm_wanted[1]} along its contraction axis"]
            if format in ("auto", "csr"):
                why.append(f"sparsity {sparsity:.1%} < min_sparsity {min_sparsity:.0%}")
            row["reason"] = "kept dense: " + ", ".join(why)
            eqns.append(eqn)
            continue
        row["format"] = chosen
        arrays = compress_csr(w) if chosen == "csr" else compress_n_m(w, *nm_wanted)
        w_ops = []
        for a in arrays:
            v = Var(ShapedArray(a.shape, to_dtype(a.dtype)))
            new_consts.append((v, a))
            w_ops.append(v)
        eqns.extend(_rewrite(eqn, x, cx, w_ops, chosen, tuple(int(s) for s in w.shape), w_is_lhs))
    if format != "auto" and not any(r["format"] for r in rows):
        found = "; ".join(f"weight {r['shape']}: {r['reason']}" for r in rows) or "no matmul by a constant weight"
        raise ValueError(f"sparsify(format={format!r}): no weight qualifies ({found})")
    kept = list(zip(jaxpr.constvars, closed.consts)) + new_consts
    out = dce(ClosedJaxpr(Jaxpr([v for v, _ in kept], jaxpr.invars, eqns, jaxpr.outvars), [c for _, c in kept]))
    return (out, SparsifyReport(rows)) if report else out


def _is_n_m(w: np.ndarray, n: int, m: int) -> bool:
    return bool(((w.reshape(w.shape[0] // m, m, -1) != 0).sum(axis=1) <= n).all())


def _rewrite(eqn: Eqn, x, cx: int, w_ops: list, fmt: str, dense_shape, w_is_lhs: bool) -> list[Eqn]:
    """x (contraction axis moved last) -> sparse_dot -> the original output axis order."""
    out_eqns = []
    nd = x.aval.ndim
    if cx != nd - 1:
        perm = tuple(i for i in range(nd) if i != cx) + (cx,)
        xt = Var(ShapedArray(tuple(x.aval.shape[p] for p in perm), x.aval.dtype))
        out_eqns.append(Eqn(PRIMITIVES["transpose"], [x], [xt], {"permutation": perm}))
        x = xt
    out = eqn.outvars[0]
    params = {"format": fmt, "dense_shape": dense_shape, "transpose": False}
    if not w_is_lhs:
        out_eqns.append(Eqn(PRIMITIVES["sparse_dot"], [x, *w_ops], [out], params))
        return out_eqns
    # the weight was the lhs: the output is (N, x's free axes); sparse_dot gives (x's free axes, N)
    shape = x.aval.shape[:-1] + (dense_shape[1],)
    tmp = Var(ShapedArray(shape, x.aval.dtype))
    out_eqns.append(Eqn(PRIMITIVES["sparse_dot"], [x, *w_ops], [tmp], params))
    perm = (len(shape) - 1,) + tuple(range(len(shape) - 1))
    out_eqns.append(Eqn(PRIMITIVES["transpose"], [tmp], [out], {"permutation": perm}))
    return out_eqns
