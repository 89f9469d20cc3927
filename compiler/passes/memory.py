"""memory_profile: how many bytes a program keeps alive, from the liveness of its values.

A value is live from the equation that defines it to its last use; inputs and constants are live for
the whole call (the caller holds them) and outputs from their definition to the end. The peak is the
largest total over the program points, where a point is "during equation i": everything live across
it, plus its outputs, plus the transient peak inside its sub-jaxprs (a checkpoint region's
recomputation, a loop body). This is what the numpy interpreter actually allocates, since it frees
each value after its last use.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.core import ClosedJaxpr, Eqn, Jaxpr, Var
from .cse import cse


@dataclass
class MemoryProfile:
    peak_bytes: int             # live buffers at the worst point, inputs and outputs included
    activation_bytes: int       # the intermediates (neither input nor output) live at that point
    input_bytes: int
    output_bytes: int
    recomputed_eqns: int        # equations that repeat earlier work (what remat adds; what cse removes)
    peak_at: int                # index of the equation where the peak occurs (-1: before any)

    def __str__(self) -> str:
        return (f"peak {self.peak_bytes:,} B (activations {self.activation_bytes:,} B, inputs "
                f"{self.input_bytes:,} B, outputs {self.output_bytes:,} B) at equation {self.peak_at}; "
                f"{self.recomputed_eqns} recomputed equations")


def _nbytes(v) -> int:
    return v.aval.nbytes if isinstance(v, Var) else 0


def _sub_jaxprs(params: dict):
    for value in params.values():
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, Jaxpr):
                yield v


def inner_peak(jaxpr: Jaxpr) -> int:
    """Bytes a sub-jaxpr allocates at its worst point beyond its inputs (which its caller holds)."""
    return _profile(jaxpr)[0] - sum(_nbytes(v) for v in jaxpr.invars + jaxpr.constvars)


def _profile(jaxpr: Jaxpr) -> tuple[int, int, int]:
    """(peak bytes incl. inputs, intermediate bytes at the peak, equation index of the peak)."""
    last_use: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for a in eqn.inputs:
            if isinstance(a, Var):
                last_use[a] = i
    outputs = {a for a in jaxpr.outvars if isinstance(a, Var)}
    held = set(jaxpr.invars) | set(jaxpr.constvars)
    base = sum(_nbytes(v) for v in held)
    live: dict = {}                               # intermediates and outputs defined so far
    peak, peak_act, peak_at = base, 0, -1
    for i, eqn in enumerate(jaxpr.eqns):
        transient = max((inner_peak(j) for j in _sub_jaxprs(eqn.params)), default=0)
        new = sum(_nbytes(v) for v in eqn.outvars)
        now = base + sum(live.values()) + new + transient
        if now > peak:
            acts = sum(b for v, b in live.items() if v not in outputs) + sum(
                _nbytes(v) for v in eqn.outvars if v not in outputs) + transient
            peak, peak_act, peak_at = now, acts, i
        for v in eqn.outvars:
            if v in outputs or last_use.get(v, -1) > i:
                live[v] = _nbytes(v)
        for a in eqn.inputs:
            if isinstance(a, Var) and a in live and last_use.get(a) == i and a not in outputs:
                del live[a]
    return peak, peak_act, peak_at


def memory_profile(closed: ClosedJaxpr | Jaxpr) -> MemoryProfile:
    if not isinstance(closed, ClosedJaxpr):
        closed = ClosedJaxpr(closed, [])
    jaxpr = closed.jaxpr
    peak, acts, at = _profile(jaxpr)
    flat = ClosedJaxpr(inline_checkpoints(jaxpr), closed.consts)
    recomputed = len(flat.jaxpr.eqns) - len(cse(flat).jaxpr.eqns)
    held = jaxpr.invars + jaxpr.constvars
    return MemoryProfile(peak, acts, sum(_nbytes(v) for v in held),
                         sum(_nbytes(v) for v in {a for a in jaxpr.outvars if isinstance(a, Var)}),
                         recomputed, at)


def inline_checkpoints(jaxpr: Jaxpr) -> Jaxpr:
    """The program with every checkpoint region spliced in place (to count repeated work)."""
    eqns = []
    rename: dict = {}
    for eqn in jaxpr.eqns:
        inputs = [rename.get(a, a) if isinstance(a, Var) else a for a in eqn.inputs]
        if eqn.primitive.name != "checkpoint":
            eqns.append(Eqn(eqn.primitive, inputs, eqn.outvars, eqn.params))
            continue
        body = inline_checkpoints(eqn.params["jaxpr"])
        inner = dict(zip(body.invars, inputs))
        for e in body.eqns:
            eqns.append(Eqn(e.primitive, [inner.get(a, a) if isinstance(a, Var) else a for a in e.inputs],
                            e.outvars, e.params))
        for out, a in zip(eqn.outvars, body.outvars):
            rename[out] = inner.get(a, a) if isinstance(a, Var) else a
    outvars = [rename.get(a, a) if isinstance(a, Var) else a for a in jaxpr.outvars]
    return Jaxpr(jaxpr.constvars, jaxpr.invars, eqns, outvars)
