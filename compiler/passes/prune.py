"""Magnitude pruning: zero the smallest weights, unstructured or in N:M groups (e.g. 2:4, which
sparse tensor hardware and the LLVM backend's compressed kernels exploit)."""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..ir.core import ClosedJaxpr
from ..tree_util import tree_flatten, tree_unflatten


def _parse_structure(structure: str) -> tuple[int, int] | None:
    if structure == "unstructured":
        return None
    match = re.fullmatch(r"(\d+):(\d+)", structure)
    if not match or not 0 < int(match[1]) <= int(match[2]):
        raise ValueError(f"structure must be 'unstructured' or 'N:M' with 0 < N <= M (e.g. '2:4'), got "
                         f"{structure!r}")
    return int(match[1]), int(match[2])


def _prune_n_m(w: np.ndarray, n: int, m: int, axis: int = -1) -> np.ndarray:
    """Groups of m consecutive elements along ``axis`` (the last one unless given)."""
    if axis not in (-1, w.ndim - 1):
        return np.moveaxis(_prune_n_m(np.moveaxis(w, axis, -1), n, m), -1, axis)
    if w.shape[-1] % m:
        raise ValueError(f"N:M pruning needs the last axis ({w.shape[-1]}) divisible by M={m}")
    groups = w.reshape(-1, m)
    # keep the n largest magnitudes of each group (ties: the earlier element)
    order = np.argsort(-np.abs(groups), axis=1, kind="stable")
    keep = np.zeros_like(groups, dtype=bool)
    np.put_along_axis(keep, order[:, :n], True, axis=1)
    return np.where(keep, groups, 0).reshape(w.shape).astype(w.dtype)


def _threshold_mask(values: np.ndarray, sparsity: float) -> float:
    """The magnitude below which a fraction ``sparsity`` of the values lies."""
    k = int(round(sparsity * values.size))
    if k == 0:
        return -np.inf
    return np.partition(np.abs(values).ravel(), k - 1)[k - 1]


def _prune_unstructured(w: np.ndarray, threshold: float, budget: list) -> np.ndarray:
    out = w.copy()
    mask = np.abs(w) <= threshold
    # ties at the threshold: prune only as many as the budget allows, in order
    over = int(mask.sum()) - budget[0]
    if over > 0:
        tied = np.flatnonzero((np.abs(w) == threshold).ravel())
        mask.ravel()[tied[len(tied) - over:]] = False
    budget[0] -= int(mask.sum())
    out[mask] = 0
    return out


def _contraction_axis(jaxpr, w) -> int:
    """The axis a weight is summed over in its first matmul (the last axis if there is none)."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general" and w in eqn.inputs:
            (ca, cb), _ = eqn.params["dimension_numbers"]
            contract = ca if eqn.inputs[0] is w else cb
            if len(contract) == 1:
                return contract[0]
    return -1


def _prunable(x) -> bool:
    return isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.ndim >= 2


def prune(x: Any, sparsity: float = 0.5, structure: str = "unstructured", scope: str = "layer"):
    """Prune an array, a pytree of parameters, or a ClosedJaxpr's constvars by magnitude.

    unstructured: zero the fraction ``sparsity`` of smallest-magnitude weights, per array
    (scope="layer") or with one threshold across all of them (scope="global").
    "N:M": in every group of M consecutive weights along the last axis keep the N largest (for a
    jaxpr's constants: along the axis each weight is contracted over in its matmul).
    In pytrees and jaxprs only floating-point weights with 2 or more dimensions are pruned (biases
    and norms' scales are kept).
    """
    nm = _parse_structure(structure)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("layer", "global"):
        raise ValueError(f"scope must be 'layer' or 'global', got {scope!r}")
    if isinstance(x, ClosedJaxpr):
        if nm:     # N:M groups run along each weight's contraction axis (what sparse matmuls skip)
            consts = [_prune_n_m(c, *nm, axis=_contraction_axis(x.jaxpr, v)) if _prunable(c) else c
                      for v, c in zip(x.jaxpr.constvars, x.consts)]
            return ClosedJaxpr(x.jaxpr, consts)
        return ClosedJaxpr(x.jaxpr, prune(list(x.consts), sparsity, structure, scope))
    if isinstance(x, np.ndarray) or np.isscalar(x):
        arr = np.asarray(x)
        if nm:
            return _prune_n_m(arr, *nm)
        return _prune_unstructured(arr, _threshold_mask(arr, sparsity), [int(round(sparsity * arr.size))])
    leaves, tree = tree_flatten(x)
    leaves = [np.asarray(l) if not hasattr(l, "aval") else l for l in leaves]
    targets = [i for i, l in enumerate(leaves) if _prunable(l)]
    out = list(leaves)
    if nm:
        for i in targets:
            out[i] = _prune_n_m(leaves[i], *nm)
    elif scope == "global" and targets:
        everything = np.concatenate([np.abs(leaves[i]).ravel() for i in targets])
        threshold = _threshold_mask(everything, sparsity)
        budget = [int(round(sparsity * everything.size))]
        for i in targets:
            out[i] = _prune_unstructured(leaves[i], threshold, budget)
    else:
        for i in targets:
            w = leaves[i]
            out[i] = _prune_unstructured(w, _threshold_mask(w, sparsity), [int(round(sparsity * w.size))])
    return tree_unflatten(tree, out)


def is_n_m_sparse(array, n: int, m: int) -> bool:
    """Whether every group of m consecutive elements along the last axis has at most n non-zeros."""
    a = np.asarray(array)
    if a.ndim == 0 or a.shape[-1] % m:
        raise ValueError(f"the last axis ({a.shape[-1] if a.ndim else 'scalar'}) must be divisible by m={m}")
    return bool(((a.reshape(-1, m) != 0).sum(axis=1) <= n).all())


def sparsity_of(x) -> float:
    """Fraction of zeros among the prunable weights of an array or pytree."""
    leaves = [np.asarray(l) for l in tree_flatten(x)[0]]
    weights = [l for l in leaves if l.ndim >= 2] or leaves
    total = sum(l.size for l in weights)
    return float(sum((l == 0).sum() for l in weights) / total) if total else 0.0
