"""sparse_dot: ``x @ W`` (or ``x @ W.T``) with a weight W[K, N] stored compressed, so that a backend
multiplies by the kept weights only. compiler.passes.sparsify creates it from a dot_general whose
weight is a pruned constant; the formats, and the numpy functions that build and read them, live here.

Operands after the dense ``x`` (its last axis is contracted):

* ``format="N:M"`` (e.g. "2:4", groups of M consecutive rows of W along the contraction axis K, at
  most N kept per group and column): ``values[K*N/M, Ncols]`` (x's dtype) and ``indices[K*N/M, Ncols]``
  (u8): the j-th kept weight of group g in column c is ``W[g*M + indices[g*N + j, c], c] =
  values[g*N + j, c]`` (zeros are stored as kept values of 0).
* ``format="csr"``: W.T (one row per output column, as torch stores a Linear weight) in compressed
  sparse rows: ``indptr[Ncols + 1]`` (i32), ``indices[nnz]`` (i32, the k of each entry), ``values[nnz]``.

Indices are clamped as gather clamps them (an N:M position to M-1, a CSR column into [0, K), indptr
into [0, nnz] with an empty row where it decreases): every backend agrees, and no index can make
native code read out of bounds. Duplicate CSR entries add up.

``transpose=True`` computes ``x @ W.T`` (x's last axis has size Ncols): the cotangent of x.
The cotangent of the CSR values assumes a non-decreasing indptr (as compress_csr makes): with a
decreasing one, an entry shared by several rows gets the gradient of one of them.
"""
from __future__ import annotations

import re

import numpy as np

from ..ir.core import Primitive, ShapedArray, dtype as to_dtype
from ..ir.errors import ShapeError
from ..transforms.batching import Decline, move_to_front
from ._lazy import cnp
from .derivatives import add_all, aval

sparse_dot = Primitive("sparse_dot")


def parse_format(fmt) -> tuple[int, int] | None:
    """(N, M) for "N:M", None for "csr"; anything else is a ShapeError."""
    if fmt == "csr":
        return None
    m = re.fullmatch(r"(\d+):(\d+)", fmt) if isinstance(fmt, str) else None
    if m is None or not 0 < int(m[1]) <= int(m[2]) or int(m[2]) > 255:
        raise ShapeError(f"format must be 'csr' or 'N:M' with 0 < N <= M <= 255 "
                         f"(e.g. '2:4'), got {fmt!r}")
    return int(m[1]), int(m[2])


def _shape_rule(x: ShapedArray, *w: ShapedArray, format, dense_shape, transpose=False) -> ShapedArray:
    nm = parse_format(format)
    if (not isinstance(dense_shape, tuple) or len(dense_shape) != 2
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dense_shape)):
        raise ShapeError(f"dense_shape must be a pair (K, N) of sizes, got {dense_shape!r}")
    if not isinstance(transpose, bool):
        raise ShapeError(f"transpose must be True or False, got {transpose!r}")
    k, n = dense_shape
    if not x.dtype.is_float or x.ndim < 1:
        raise ShapeError(f"x must be a floating-point array of rank >= 1, got {x}")
    inner, outer = (n, k) if transpose else (k, n)
    if x.shape[-1] != inner:
        raise ShapeError(f"x's last axis must have size {inner} (dense weight {k}x{n}"
                         f"{', transposed' if transpose else ''}), got {x}")

    def expect(what, got, shape, dt):
        if got.shape != shape or got.dtype != dt:
            raise ShapeError(f"format {format}: {what} must be {ShapedArray(shape, dt)}, got {got}")

    if nm is not None:
        if len(w) != 2:
            raise ShapeError(f"format {format} takes x, values, indices: got {1 + len(w)} operands")
        if k % nm[1]:
            raise ShapeError(f"K={k} must be divisible by M={nm[1]} for format {format}")
        rows = k // nm[1] * nm[0]
        expect("values", w[0], (rows, n), x.dtype)
        expect("indices", w[1], (rows, n), to_dtype("u8"))
    else:
        if len(w) != 3:
            raise ShapeError(f"format csr takes x, indptr, indices, values: got {1 + len(w)} operands")
        indptr, indices, values = w
        expect("indptr", indptr, (n + 1,), to_dtype("i32"))
        if indices.ndim != 1:
            raise ShapeError(f"format csr: indices must be i32[nnz], got {indices}")
        expect("indices", indices, indices.shape, to_dtype("i32"))
        expect("values", values, indices.shape, x.dtype)
    return ShapedArray(x.shape[:-1] + (outer,), x.dtype)


sparse_dot.shape_rule = _shape_rule


# ---- the formats in numpy (the pass, the interpreter and the tests use these) ------------------

def compress_n_m(w: np.ndarray, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of a W[K, N] with at most n non-zeros in each group of m rows of a column."""
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[0] % m:
        raise ValueError(f"{n}:{m} compression needs a 2-D weight whose first (contraction) axis is "
                         f"divisible by {m}, got shape {w.shape}")
    k, cols = w.shape
    groups = w.reshape(k // m, m, cols)
    nonzero = groups != 0
    if (nonzero.sum(axis=1) > n).any():
        g, c = np.argwhere(nonzero.sum(axis=1) > n)[0]
        raise ValueError(f"weight is not {n}:{m} sparse along its contraction axis: group {g} of column "
                         f"{c} has {int(nonzero[g, :, c].sum())} non-zeros (at most {n} allowed)")
    # the positions of the non-zeros first (in order), then zero positions to fill up to n
    order = np.argsort(~nonzero, axis=1, kind="stable")[:, :n, :]
    values = np.take_along_axis(groups, order, axis=1).reshape(k // m * n, cols)
    return np.ascontiguousarray(values), np.ascontiguousarray(order.reshape(k // m * n, cols).astype(np.uint8))


def compress_csr(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indptr, indices, values) of W[K, N] stored as CSR of W.T (one row per output column)."""
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"CSR compression needs a 2-D weight, got shape {w.shape}")
    wt = w.T
    rows, cols = np.nonzero(wt)
    indptr = np.zeros(wt.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=wt.shape[0]), out=indptr[1:])
    if indptr[-1] > np.iinfo(np.int32).max:
        raise ValueError("CSR compression: more than 2**31 - 1 non-zeros")
    return indptr.astype(np.int32), cols.astype(np.int32), np.ascontiguousarray(wt[rows, cols])


def to_dense(format: str, dense_shape, *w) -> np.ndarray:
    """The dense W[K, N] that compressed operands stand for (with the clamping rules above)."""
    nm = parse_format(format)
    k, n = dense_shape
    if nm is not None:
        values, indices = (np.asarray(a) for a in w)
        rows = values.shape[0]
        group = np.arange(rows)[:, None] // nm[0]
        kk = group * nm[1] + np.minimum(indices.astype(np.int64), nm[1] - 1)
        out = np.zeros((k, n), values.dtype)
        np.add.at(out, (kk, np.broadcast_to(np.arange(n), kk.shape)), values)
        return out
    indptr, indices, values = (np.asarray(a) for a in w)
    nnz = values.shape[0]
    out = np.zeros((k, n), values.dtype)
    if nnz == 0 or k == 0:
        return out
    ptr = np.clip(indptr.astype(np.int64), 0, nnz)
    lo, hi = ptr[:-1], np.maximum(ptr[1:], ptr[:-1])
    row = np.repeat(np.arange(n), hi - lo)
    pos = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(row) else np.zeros(0, np.int64)
    np.add.at(out, (np.clip(indices[pos].astype(np.int64), 0, k - 1), row), values[pos])
    return out


# ---- derivatives: linear in x; the values' cotangent picks the dense one at the stored places ----

def _weights(w, values):
    """The compressed operands with the values replaced."""
    return (values, w[1]) if len(w) == 2 else (w[0], w[1], values)


def _jvp(primals, tangents, **params):
    x, *w = primals
    tx, *tw = tangents
    out = sparse_dot.bind(x, *w, **params)
    tv = tw[0] if len(w) == 2 else tw[2]
    terms = [sparse_dot.bind(tx, *w, **params) if tx is not None else None,
             sparse_dot.bind(x, *_weights(w, tv), **params) if tv is not None else None]
    return out, add_all(terms)


def _vjp(cts, primals, outs, *, format, dense_shape, transpose=False):
    x, *w = primals
    ct = cts[0]
    params = dict(format=format, dense_shape=dense_shape)
    ct_x = sparse_dot.bind(ct, *w, **params, transpose=not transpose)
    # d values: the dense weight gradient G = x^T ct (as [K, N]), read at the stored positions
    k, n = dense_shape
    lead = int(np.prod(aval(x).shape[:-1], dtype=np.int64))
    x2, ct2 = cnp.reshape(x, (lead, aval(x).shape[-1])), cnp.reshape(ct, (lead, aval(ct).shape[-1]))
    g = cnp.matmul(cnp.transpose(ct2), x2) if transpose else cnp.matmul(cnp.transpose(x2), ct2)
    flat = cnp.reshape(g, (k * n,))
    nm = parse_format(format)
    from .structural import gather, scatter_add
    if nm is not None:
        indices = w[1]
        rows = aval(indices).shape[0]
        group = cnp.reshape(cnp.arange(rows, dtype="int32") // nm[0], (rows, 1))
        kk = group * nm[1] + cnp.minimum(cnp.astype(indices, "int32"), nm[1] - 1)
        where = kk * n + cnp.reshape(cnp.arange(n, dtype="int32"), (1, n))
    else:
        indptr, indices = w[0], w[1]
        nnz = aval(indices).shape[0]
        # the row of entry p: how many rows (after the first) start at or before p
        starts = cnp.clip(indptr[1:n], 0, nnz)
        marks = scatter_add.bind(cnp.zeros((nnz + 1,), "int32"), starts, cnp.ones((max(n - 1, 0),), "int32"),
                                 axis=0)
        row = cnp.minimum(cnp.cumsum(marks)[:nnz], max(n - 1, 0))
        where = cnp.clip(indices, 0, max(k - 1, 0)) * n + row
        # entries outside every row (before indptr[0], after indptr[-1]) get no gradient
        p = cnp.arange(nnz, dtype="int32")
        lo = cnp.clip(gather.bind(indptr, row, axis=0), 0, nnz)
        hi = cnp.clip(gather.bind(indptr, row + 1, axis=0), 0, nnz)
        inside = cnp.logical_and(p >= lo, p < hi)
    g_values = gather.bind(flat, where, axis=0) if k * n else cnp.zeros(aval(w[0 if nm else 2]).shape, aval(x).dtype)
    if nm is None and k * n:
        g_values = cnp.where(inside, g_values, cnp.zeros((), aval(x).dtype))
    result = [ct_x] + [None] * len(w)
    result[1 if nm is not None else 3] = g_values
    return result


sparse_dot.jvp_rule, sparse_dot.vjp_rule = _jvp, _vjp


def _batch(vals, dims, size, **params):
    """A batched x: its batch axis is one more leading axis. Batched weights: sequential fallback."""
    x, *w = vals
    dx, *dw = dims
    if any(d is not None for d in dw):
        raise Decline
    return sparse_dot.bind(move_to_front(x, dx), *w, **params), 0


sparse_dot.batch_rule = _batch
