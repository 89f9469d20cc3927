"""remat: rematerialization as a pass over a forward program.

The pass cuts the program into segments and wraps each chosen segment in a ``checkpoint`` equation.
Reverse mode keeps only a checkpoint's inputs and recomputes its insides during the backward pass,
so the memory a gradient needs drops from "every intermediate" to "the segment boundaries plus one
segment's intermediates", for one extra forward computation of the checkpointed segments.

Segments are counted in layers: a layer ends at each matmul or convolution (every equation counts
when there are none). Policies:
- ``every_k`` (option k): a checkpoint every k layers.
- ``sqrt``: k = sqrt(number of layers) (Chen et al. 2016: O(sqrt n) memory for one extra forward).
- ``memory_budget`` (option budget_bytes): checkpoint the segments that save the most bytes per
  recomputed equation until the estimated activation memory fits the budget.
- ``nothing_saveable``: one checkpoint around everything (only the inputs are kept).
- ``dots_saveable``: keep matmul/conv outputs, recompute everything between them.
"""
from __future__ import annotations

import math

from ..ir.core import ClosedJaxpr, Eqn, Jaxpr, Var
from ..primitives.control import checkpoint as checkpoint_p

ANCHORS = ("dot_general", "conv_general_dilated")
POLICIES = ("every_k", "sqrt", "memory_budget", "nothing_saveable", "dots_saveable")


def _layers(jaxpr: Jaxpr) -> list[list[int]]:
    """Equation indices grouped into layers, each ending at an anchor (matmul or convolution)."""
    anchored = any(e.primitive.name in ANCHORS for e in jaxpr.eqns)
    layers, current = [], []
    for i, eqn in enumerate(jaxpr.eqns):
        current.append(i)
        if not anchored or eqn.primitive.name in ANCHORS:
            layers.append(current)
            current = []
    if current:
        if layers:
            layers[-1].extend(current)
        else:
            layers.append(current)
    return layers


def _wrap(jaxpr: Jaxpr, indices: list[int], used_after: set) -> Eqn:
    """One checkpoint equation computing the equations at ``indices``."""
    eqns = [jaxpr.eqns[i] for i in indices]
    defined = {v for e in eqns for v in e.outvars}
    inputs, seen = [], set()
    for e in eqns:
        for a in e.inputs:
            if isinstance(a, Var) and a not in defined and a not in seen:
                seen.add(a)
                inputs.append(a)
    outputs = [v for e in eqns for v in e.outvars if v in used_after]
    inner_in = {v: Var(v.aval) for v in inputs}
    inner_out = {v: Var(v.aval) for e in eqns for v in e.outvars}
    sub = lambda a: inner_in.get(a, inner_out.get(a, a)) if isinstance(a, Var) else a
    body = Jaxpr([], [inner_in[v] for v in inputs],
                 [Eqn(e.primitive, [sub(a) for a in e.inputs], [inner_out[v] for v in e.outvars], e.params)
                  for e in eqns],
                 [inner_out[v] for v in outputs])
    return Eqn(checkpoint_p, list(inputs), outputs, {"jaxpr": body, "policy": None})


def _uses_after(jaxpr: Jaxpr, end: int) -> set:
    used = {a for a in jaxpr.outvars if isinstance(a, Var)}
    for e in jaxpr.eqns[end:]:
        used.update(a for a in e.inputs if isinstance(a, Var))
    return used


def _apply_segments(closed: ClosedJaxpr, segments: list[list[int]]) -> ClosedJaxpr:
    """Wrap each segment (a run of consecutive equation indices) in a checkpoint."""
    jaxpr = closed.jaxpr
    starts = {seg[0]: seg for seg in segments if seg}
    eqns, i = [], 0
    while i < len(jaxpr.eqns):
        seg = starts.get(i)
        if seg is None:
            eqns.append(jaxpr.eqns[i])
            i += 1
            continue
        wrapped = _wrap(jaxpr, seg, _uses_after(jaxpr, seg[-1] + 1))
        if wrapped.outvars:                   # a segment nothing reads afterwards is dead code
            eqns.append(wrapped)
        i = seg[-1] + 1
    return ClosedJaxpr(Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, jaxpr.outvars), closed.consts)


def _chunks(layers: list[list[int]], k: int) -> list[list[int]]:
    return [sum(layers[j:j + k], []) for j in range(0, len(layers), k)]


def _intermediate_bytes(jaxpr: Jaxpr, indices) -> int:
    return sum(v.aval.nbytes for i in indices for v in jaxpr.eqns[i].outvars)


def _estimate(jaxpr: Jaxpr, segments: list[list[int]]) -> int:
    """Activation bytes a gradient keeps (an upper estimate): every intermediate outside checkpoints,
    the outputs of each checkpoint, the intermediates of the largest checkpoint while it is
    recomputed, and two cotangents of the largest intermediate's size in flight."""
    inside = {i for s in segments for i in s}
    kept = _intermediate_bytes(jaxpr, [i for i in range(len(jaxpr.eqns)) if i not in inside])
    boundaries = 0
    for s in segments:
        used = _uses_after(jaxpr, s[-1] + 1)
        boundaries += sum(v.aval.nbytes for i in s for v in jaxpr.eqns[i].outvars if v in used)
    transient = max((_intermediate_bytes(jaxpr, s) for s in segments), default=0)
    in_flight = 2 * max((v.aval.nbytes for e in jaxpr.eqns for v in e.outvars), default=0)
    return kept + boundaries + transient + in_flight


def remat(closed: ClosedJaxpr, policy: str = "sqrt", k: int | None = None,
          budget_bytes: int | None = None) -> ClosedJaxpr:
    """Insert checkpoint regions into a forward program (see the module docstring for policies)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown remat policy {policy!r}; expected one of {', '.join(POLICIES)}")
    jaxpr = closed.jaxpr
    if not jaxpr.eqns:
        return closed
    layers = _layers(jaxpr)
    if policy == "nothing_saveable":
        return _apply_segments(closed, [list(range(len(jaxpr.eqns)))])
    if policy == "dots_saveable":
        # recompute what lies between the anchors; the anchors' outputs are kept
        between = [[i for i in layer if jaxpr.eqns[i].primitive.name not in ANCHORS] for layer in layers]
        runs = []
        for layer in between:
            run = []
            for i in layer:
                if run and i != run[-1] + 1:
                    runs.append(run)
                    run = []
                run.append(i)
            if run:
                runs.append(run)
        return _apply_segments(closed, runs)
    if policy == "every_k":
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"remat policy 'every_k' needs an option k >= 1, got {k!r}")
        return _apply_segments(closed, _chunks(layers, k))
    if policy == "sqrt":
        return _apply_segments(closed, _chunks(layers, max(1, round(math.sqrt(len(layers))))))
    # memory_budget: among "no checkpoints" and "a checkpoint every k layers" (k = 1..n), the one
    # that recomputes the fewest equations while its estimated activation memory fits the budget
    if budget_bytes is None:
        raise ValueError("remat policy 'memory_budget' needs an option budget_bytes")
    candidates = [[]] + [_chunks(layers, k) for k in range(1, len(layers) + 1)]
    scored = [(sum(len(s) - 1 for s in segs), _estimate(jaxpr, segs), segs) for segs in candidates]
    fitting = [c for c in scored if c[1] <= budget_bytes]
    if fitting:
        return _apply_segments(closed, min(fitting, key=lambda c: (c[0], c[1]))[2])
    best = min(c[1] for c in scored)
    raise ValueError(f"no rematerialization fits {budget_bytes:,} bytes of activations; the least this "
                     f"program needs is about {best:,} bytes")
