"""From a Jaxpr to a schedule of loop nests over buffers: fusion, views, and memory planning.

Three ideas carry the whole backend:

* **Views.** Every buffer is C-contiguous, so broadcast_in_dim, transpose, slice, rev, squeeze,
  expand_dims and (most) reshapes are just new (offset, strides) on an existing buffer: they cost no
  code and no memory; whoever reads the value reads through the strides.
* **Fused loops.** Elementwise equations of one shape join the loop of the producer they read, as long
  as that loop is *open* (nothing outside it has read any of its values yet). A loop is emitted at the
  position of its last member, which keeps the schedule a topological order without any graph search.
  Only values read outside their loop are stored; the rest live in registers. A reduction absorbs the
  open loop that computes its operand when nothing else reads that loop's values.
* **Buffers.** Inputs, consts and outputs come from Python; an intermediate gets a slice of one
  scratch arena, reused after its last reader (first fit on live ranges). A computed output is written
  straight into the output array.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from compiler.ir.core import ClosedJaxpr, DType, Eqn, Jaxpr, Literal, Var

from .rules import KINDS, SUPPORTED_DTYPES

ALIGN = 64


# ----------------------------------------------------------------------------------------------
# Buffers and views
# ----------------------------------------------------------------------------------------------

@dataclass(eq=False)
class Buf:
    """A region of memory: an input, const or output array, or a slice of the scratch arena."""
    kind: str                 # "in" | "const" | "out" | "scratch"
    index: int                # argument position (in/const/out) or byte offset in the arena (scratch)
    dtype: DType
    size: int                 # elements

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass(frozen=True, eq=False)
class View:
    """Elements ``buf[offset + sum(i_d * strides[d])]`` for indices i in ``shape``.

    ``dyn`` adds run-time offsets: each (atom, stride, hi) adds ``clip(atom, 0, hi) * stride``.
    """
    buf: Buf
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dyn: tuple = ()

    @property
    def dtype(self) -> DType:
        return self.buf.dtype

    def is_full_contiguous(self) -> bool:
        return (not self.dyn and self.offset == 0 and int(np.prod(self.shape)) == self.buf.size
                and _same_layout(self.shape, self.strides, contiguous_strides(self.shape)))


def contiguous_strides(shape) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


def _same_layout(shape, a, b) -> bool:
    return all(n == 1 or x == y for n, x, y in zip(shape, a, b))


def full_view(buf: Buf, shape) -> View:
    return View(buf, 0, tuple(shape), contiguous_strides(shape))


# ---- view rules: how each data-movement primitive maps (offset, strides) --------------------------

def _view_broadcast_in_dim(v: View, shape, broadcast_dimensions) -> View:
    strides = [0] * len(shape)
    for i, d in enumerate(broadcast_dimensions):
        if v.shape[i] == shape[d]:
            strides[d] = v.strides[i]
    return View(v.buf, v.offset, tuple(shape), tuple(strides), v.dyn)


def _view_transpose(v: View, permutation) -> View:
    return View(v.buf, v.offset, tuple(v.shape[p] for p in permutation),
                tuple(v.strides[p] for p in permutation), v.dyn)


def _view_squeeze(v: View, dimensions) -> View:
    keep = [i for i in range(len(v.shape)) if i not in dimensions]
    return View(v.buf, v.offset, tuple(v.shape[i] for i in keep), tuple(v.strides[i] for i in keep), v.dyn)


def _view_expand_dims(v: View, dimensions) -> View:
    shape, strides = list(v.shape), list(v.strides)
    for d in sorted(dimensions):
        shape.insert(d, 1)
        strides.insert(d, 0)
    return View(v.buf, v.offset, tuple(shape), tuple(strides), v.dyn)


def _view_slice(v: View, start_indices, limit_indices, strides=None) -> View:
    steps = strides or (1,) * len(v.shape)
    offset = v.offset + sum(s * st for s, st in zip(start_indices, v.strides))
    shape = tuple((hi - lo + st - 1) // st for lo, hi, st in zip(start_indices, limit_indices, steps))
    return View(v.buf, offset, shape, tuple(s * st for s, st in zip(v.strides, steps)), v.dyn)


def _view_rev(v: View, dimensions) -> View:
    offset, strides = v.offset, list(v.strides)
    for d in dimensions:
        if v.shape[d] > 0:
            offset += (v.shape[d] - 1) * strides[d]
        strides[d] = -strides[d]
    return View(v.buf, offset, v.shape, tuple(strides), v.dyn)


def _view_reshape(v: View, new_sizes) -> View | None:
    """numpy's no-copy reshape: None when the strides cannot express the new shape."""
    old = [(n, s) for n, s in zip(v.shape, v.strides) if n != 1]
    new = list(new_sizes)
    if 0 in v.shape or 0 in new:
        return View(v.buf, v.offset, tuple(new), contiguous_strides(new), v.dyn)
    out = [0] * len(new)
    oi = ni = 0
    while oi < len(old) and ni < len(new):
        if new[ni] == 1:
            out[ni] = 0
            ni += 1
            continue
        oj, nj = oi + 1, ni + 1
        np_, op_ = new[ni], old[oi][0]
        while np_ != op_:
            if np_ < op_:
                np_ *= new[nj]
                nj += 1
            else:
                op_ *= old[oj][0]
                oj += 1
        for k in range(oi, oj - 1):          # the merged old axes must be contiguous among themselves
            if old[k][1] != old[k + 1][0] * old[k + 1][1]:
                return None
        out[nj - 1] = old[oj - 1][1]
        for k in range(nj - 1, ni, -1):
            out[k - 1] = out[k] * new[k]
        ni, oi = nj, oj
    for k in range(ni, len(new)):
        out[k] = 0
    return View(v.buf, v.offset, tuple(new), tuple(out), v.dyn)


VIEW_RULES = {
    "broadcast_in_dim": _view_broadcast_in_dim, "transpose": _view_transpose, "squeeze": _view_squeeze,
    "expand_dims": _view_expand_dims, "slice": _view_slice, "rev": _view_rev, "reshape": _view_reshape,
}


@dataclass
class Linear:
    """An address (or index) function of a loop nest: ``offset + sum(i_d * strides[d])`` plus ``dyn``."""
    strides: list
    offset: int = 0
    dyn: tuple = ()


def coalesce(shape, linears: list[Linear], classes=None) -> list[tuple[int, int]]:
    """Merge adjacent dimensions that every linear function walks as one; drop size-1 dimensions.

    Dimensions merge only within one class (kept vs reduced). Returns [(size, class)] and rewrites
    each linear's strides to the new dimensions.
    """
    classes = classes or [0] * len(shape)
    dims: list[list] = []                 # [size, class, [stride per linear]]
    for d, n in enumerate(shape):
        if n == 1:
            continue
        strides = [lin.strides[d] for lin in linears]
        if dims and dims[-1][1] == classes[d] and all(p == s * n for p, s in zip(dims[-1][2], strides)):
            dims[-1][0] *= n
            dims[-1][2] = strides
        else:
            dims.append([n, classes[d], strides])
    for k, lin in enumerate(linears):
        lin.strides = [dim[2][k] for dim in dims]
    return [(dim[0], dim[1]) for dim in dims]


# ----------------------------------------------------------------------------------------------
# Groups: the units of code, in schedule order
# ----------------------------------------------------------------------------------------------

Source = Union[Var, Literal, View]


@dataclass(eq=False)
class Nest:
    """One fused loop nest over ``shape``: compute ``eqns`` per element, store ``outs``.

    ``outs``: (source, destination view, mode); a source is a member's or an outside var, a literal,
    or a view read directly; mode "store" or "add" (read-modify-write, for scatter_add).
    ``indirect`` maps a destination view to (index view, axis) for scatter_add's clamped indices.
    """
    shape: tuple[int, ...]
    eqns: list[Eqn] = field(default_factory=list)
    outs: list = field(default_factory=list)
    sequential: bool = False
    indirect: dict = field(default_factory=dict)


@dataclass(eq=False)
class Group:
    kind: str                               # "loop" | "reduce" | "dot" | "seq"
    eqns: list[Eqn]                         # loop members / the reduce or dot eqn with its prologue
    shape: tuple[int, ...] = ()
    last: int = 0                           # index of its last equation: the schedule position
    closed: bool = False
    nests: list[Nest] = field(default_factory=list)   # "seq": the loop nests that build the value
    out: Var | None = None                  # reduce / dot / seq: the value it produces
    temps: dict = field(default_factory=dict)         # dot: scratch it needs while it runs
    merged_into: "Group | None" = None
    gemm: object = None                     # dot: the GEMM blocking it runs with (None: a reduction)


@dataclass
class Plan:
    groups: list[Group]                      # in schedule order
    views: dict                              # Var -> View (stored values and views of them)
    in_bufs: list[Buf]
    const_bufs: list[Buf]
    out_bufs: list[Buf]
    scratch_bytes: int


class Unsupported(NotImplementedError):
    pass


def _check_supported(eqns: list[Eqn], jaxpr: Jaxpr) -> None:
    for v in list(jaxpr.invars) + list(jaxpr.constvars):
        if v.aval.dtype.name not in SUPPORTED_DTYPES:
            raise Unsupported(f"LLVM backend: dtype {v.aval.dtype.name} is not supported yet")
    for e in eqns:
        name = e.primitive.name
        if name not in KINDS:
            raise Unsupported(f"LLVM backend: primitive '{name}' has no native lowering yet "
                              f"(runtime.llvm.LOWERED lists the ones that do)")
        for a in list(e.inputs) + list(e.outvars):
            if a.aval.dtype.name not in SUPPORTED_DTYPES:
                raise Unsupported(f"LLVM backend: dtype {a.aval.dtype.name} in '{name}' is not "
                                  f"supported yet")


def inline_and_prune(jaxpr: Jaxpr) -> list[Eqn]:
    """The program's equations with checkpoint regions inlined and dead equations dropped."""
    eqns: list[Eqn] = []

    def inline(body: Jaxpr, args: list) -> list:
        env = dict(zip(body.invars, args))

        def read(a):
            return env.get(a, a) if isinstance(a, Var) else a
        for e in body.eqns:
            ins = [read(a) for a in e.inputs]
            if e.primitive.name == "checkpoint":
                outs = inline(e.params["jaxpr"], ins)
            else:
                outs = [Var(v.aval) for v in e.outvars]
                eqns.append(Eqn(e.primitive, ins, outs, e.params))
            env.update(zip(e.outvars, outs))
        return [read(a) for a in body.outvars]

    if any(e.primitive.name == "checkpoint" for e in jaxpr.eqns):
        outs = inline(Jaxpr([], jaxpr.invars, jaxpr.eqns, jaxpr.outvars), list(jaxpr.invars))
        jaxpr = Jaxpr(jaxpr.constvars, jaxpr.invars, [], outs)
    else:
        eqns = list(jaxpr.eqns)
    live = {v for v in jaxpr.outvars if isinstance(v, Var)}
    kept = []
    for e in reversed(eqns):
        if any(v in live for v in e.outvars):
            kept.append(e)
            live.update(a for a in e.inputs if isinstance(a, Var))
    kept.reverse()
    return kept, jaxpr


# ----------------------------------------------------------------------------------------------
# The planner
# ----------------------------------------------------------------------------------------------

class Planner:
    def __init__(self, closed: ClosedJaxpr, gemm_spec=None, gemm_temps=None, gemm_min_flops: int = 0):
        self.eqns, self.jaxpr = inline_and_prune(closed.jaxpr)
        _check_supported(self.eqns, self.jaxpr)
        self.gemm_spec, self.gemm_temps, self.gemm_min_flops = gemm_spec, gemm_temps, gemm_min_flops
        self.views: dict[Var, View] = {}
        self.producer: dict[Var, Group] = {}
        self.groups: list[Group] = []
        self.consumers: dict[Var, set[int]] = {}
        for i, e in enumerate(self.eqns):
            for a in e.inputs:
                if isinstance(a, Var):
                    self.consumers.setdefault(a, set()).add(i)
        self.outset = {v for v in self.jaxpr.outvars if isinstance(v, Var)}
        self.in_bufs = [Buf("in", i, v.aval.dtype, v.aval.size) for i, v in enumerate(self.jaxpr.invars)]
        self.const_bufs = [Buf("const", i, v.aval.dtype, v.aval.size)
                           for i, v in enumerate(self.jaxpr.constvars)]
        for v, b in zip(list(self.jaxpr.invars) + list(self.jaxpr.constvars), self.in_bufs + self.const_bufs):
            self.views[v] = full_view(b, v.aval.shape)
        self.bufs: dict[Var, Buf] = {}          # var -> its own storage (computed values)

    # -- groups -----------------------------------------------------------------------------
    @staticmethod
    def find(g: Group) -> Group:
        while g.merged_into is not None:
            g = g.merged_into
        return g

    def group_of(self, v) -> Group | None:
        g = self.producer.get(v)
        return None if g is None else self.find(g)

    def new_group(self, kind: str, eqns: list[Eqn], index: int, **kw) -> Group:
        g = Group(kind, eqns, last=index, **kw)
        self.groups.append(g)
        for e in eqns:
            for v in e.outvars:
                self.producer[v] = g
        return g

    def merge(self, into: Group, other: Group) -> None:
        """Move other's equations into ``into`` (both loops of one shape, or a reduce and its operand)."""
        if into.kind == "loop":
            into.eqns = sorted(into.eqns + other.eqns, key=self.position)
        else:
            into.eqns = sorted(other.eqns, key=self.position) + into.eqns
        into.last = max(into.last, other.last)
        other.merged_into = into
        other.eqns = []

    def position(self, e: Eqn) -> int:
        return self._pos[id(e)]

    def read(self, v, by: Group | None) -> None:
        """``by`` reads v from memory: v's producing loop is closed and v must be stored."""
        if isinstance(v, Literal):
            return
        g = self.group_of(v)
        if g is not None and g is not by:
            g.closed = True

    def storage(self, v: Var) -> View:
        """The view v is read through, giving v a buffer if it has none yet."""
        view = self.views.get(v)
        if view is None:
            buf = Buf("scratch", -1, v.aval.dtype, v.aval.size)
            self.bufs[v] = buf
            view = self.views[v] = full_view(buf, v.aval.shape)
        return view

    def materialize(self, a, index: int) -> Var:
        """A var holding atom ``a`` in memory; a literal gets a one-element fill loop."""
        if isinstance(a, Var):
            return a
        v = Var(a.aval)
        g = self.new_group("loop", [], index, shape=(), closed=True)
        g.nests = [Nest((), [], [(a, self.storage(v), "store")])]
        g.out = v
        self.producer[v] = g
        return v

    # -- the walk -----------------------------------------------------------------------------
    def run(self) -> Plan:
        self._pos = {id(e): i for i, e in enumerate(self.eqns)}
        for i, e in enumerate(self.eqns):
            kind = KINDS[e.primitive.name]
            if kind == "view" and isinstance(e.inputs[0], Literal):
                kind = "generator"                       # a literal seen through a view: a constant
            getattr(self, "_" + kind)(e, i)
        end = len(self.eqns)
        out_bufs = self._claim_outputs(end)
        for g in self.groups:
            if g.merged_into is None and g.kind == "loop" and g.eqns:
                self._finish_loop(g)
        order = sorted((g for g in self.groups if g.merged_into is None and (g.eqns or g.nests)),
                       key=lambda g: g.last)
        scratch = self._assign_scratch(order)
        return Plan(order, self.views, self.in_bufs, self.const_bufs, out_bufs, scratch)

    def _elementwise(self, e: Eqn, i: int) -> None:
        shape = e.outvars[0].aval.shape
        g = self.new_group("loop", [e], i, shape=shape)
        for a in e.inputs:
            if not isinstance(a, Var):
                continue
            src = self.group_of(a)
            if src is g:
                continue
            if (src is not None and src.kind == "loop" and not src.closed and src.eqns
                    and src.shape == shape and a.aval.shape == shape and a not in self.views):
                self.merge(g, src)
            else:
                self.read(a, g)
                self.storage(a)

    def _generator(self, e: Eqn, i: int) -> None:
        g = self.new_group("loop", [e], i, shape=e.outvars[0].aval.shape)
        for a in e.inputs:
            if isinstance(a, Var):
                self.read(a, g)
                self.storage(a)

    def _view(self, e: Eqn, i: int) -> None:
        x, out = e.inputs[0], e.outvars[0]
        self.read(x, None)
        view = VIEW_RULES[e.primitive.name](self.storage(x), **e.params)
        if view is None:                                 # a reshape the strides cannot express: copy
            tmp = Var(x.aval)
            g = self.new_group("loop", [], i, shape=x.aval.shape, closed=True)
            g.nests = [Nest(x.aval.shape, [], [(x, self.storage(tmp), "store")])]
            g.out = tmp
            self.producer[tmp] = g
            view = VIEW_RULES[e.primitive.name](self.storage(tmp), **e.params)
        self.views[out] = view
        base = self.group_of(x)
        if base is not None:
            self.producer[out] = base

    def _reduce(self, e: Eqn, i: int) -> None:
        x = e.inputs[0]
        g = self.new_group("reduce", [e], i, shape=x.aval.shape if isinstance(x, Var) else ())
        g.out = e.outvars[0]
        src = self.group_of(x) if isinstance(x, Var) else None
        if (src is not None and src.kind == "loop" and not src.closed and src.eqns
                and src.shape == x.aval.shape and x not in self.views and self._only_feeds(src, i)):
            self.merge(g, src)
        elif isinstance(x, Var):
            self.read(x, g)
            self.storage(x)
        g.closed = True
        self.storage(e.outvars[0])

    def _only_feeds(self, src: Group, i: int) -> bool:
        members = {self.position(m) for m in src.eqns} | {i}
        return all(self.consumers.get(v, set()) <= members and v not in self.outset
                   for m in src.eqns for v in m.outvars)

    def _dot(self, e: Eqn, i: int) -> None:
        a, b = (self.materialize(x, i) for x in e.inputs)
        e = Eqn(e.primitive, [a, b], e.outvars, e.params)
        self._pos[id(e)] = i
        g = self.new_group("dot", [e], i, closed=True)
        g.out = e.outvars[0]
        for x in (a, b):
            self.read(x, g)
            self.storage(x)
        self.storage(g.out)
        if self.gemm_spec is not None:
            spec = self.gemm_spec(e, self.views[a], self.views[b])
            if spec is not None and 2 * spec.m * spec.n * spec.k >= self.gemm_min_flops:
                g.gemm = spec
                g.temps = self.gemm_temps(spec, g.out.aval.dtype)

    def _seq(self, e: Eqn, i: int) -> None:
        g = self.new_group("seq", [e], i, closed=True)
        g.out = out = e.outvars[0]
        for a in e.inputs:
            self.read(a, g)
            if isinstance(a, Var):
                self.storage(a)
        dst = self.storage(out)
        g.nests = getattr(self, "_nests_" + e.primitive.name)(e, dst)

    # -- the loop nests of the composite ops ----------------------------------------------------
    def _nests_concatenate(self, e: Eqn, dst: View) -> list[Nest]:
        d = e.params["dimension"]
        nests, start = [], 0
        for x in e.inputs:
            shape = x.aval.shape
            sub = View(dst.buf, dst.offset + start * dst.strides[d], shape, dst.strides)
            nests.append(Nest(shape, [], [(x, sub, "store")]))
            start += shape[d]
        return nests

    def _nests_pad(self, e: Eqn, dst: View) -> list[Nest]:
        x, value = e.inputs
        cfg = e.params["padding_config"]
        out_shape = e.outvars[0].aval.shape
        nests = []
        if not all(lo <= 0 and hi <= 0 and it == 0 for lo, hi, it in cfg):
            nests.append(Nest(out_shape, [], [(value, dst, "store")]))
        src = self.storage(x) if isinstance(x, Var) else None
        starts, limits, doff, dstrides, shape = [], [], dst.offset, [], []
        for (lo, hi, it), n, m, s in zip(cfg, x.aval.shape, out_shape, dst.strides):
            step = it + 1
            i0 = min(n, max(0, -(lo // step)))          # the first element landing at or after 0
            i1 = min(n, (m - 1 - lo) // step + 1) if m > 0 else 0
            i1 = max(i1, i0)
            starts.append(i0)
            limits.append(i1)
            shape.append(i1 - i0)
            doff += (lo + i0 * step) * s if i1 > i0 else 0
            dstrides.append(s * step)
        if all(n > 0 for n in shape) and src is not None:
            view = _view_slice(src, tuple(starts), tuple(limits))
            nests.append(Nest(tuple(shape), [], [(view, View(dst.buf, doff, tuple(shape), tuple(dstrides)),
                                                  "store")]))
        return nests

    def _nests_dynamic_update_slice(self, e: Eqn, dst: View) -> list[Nest]:
        x, upd, *starts = e.inputs
        shape = x.aval.shape
        dyn = tuple((s, st, n - k) for s, st, n, k in zip(starts, dst.strides, shape, upd.aval.shape))
        return [Nest(shape, [], [(x, dst, "store")]),
                Nest(upd.aval.shape, [], [(upd, View(dst.buf, dst.offset, upd.aval.shape, dst.strides, dyn),
                                           "store")])]

    def _nests_scatter_add(self, e: Eqn, dst: View) -> list[Nest]:
        x, idx, upd = e.inputs
        axis = e.params["axis"]
        shape = upd.aval.shape
        k = idx.aval.ndim
        strides = dst.strides[:axis] + (0,) * k + dst.strides[axis + 1:]
        target = View(dst.buf, dst.offset, shape, strides)
        nest = Nest(shape, [], [(upd, target, "add")], sequential=True)
        nest.indirect[id(target)] = (idx, axis, dst.strides[axis], x.aval.shape[axis])
        return [Nest(x.aval.shape, [], [(x, dst, "store")]), nest]

    # -- outputs and memory ---------------------------------------------------------------------
    def _claim_outputs(self, end: int) -> list[Buf]:
        """Computed outputs are written in place into the output arrays; the others are copied."""
        out_bufs = []
        for j, a in enumerate(self.jaxpr.outvars):
            buf = Buf("out", j, a.aval.dtype, a.aval.size)
            out_bufs.append(buf)
            root = None
            if isinstance(a, Var) and self.producer.get(a) is not None:
                view = self.views.get(a)
                if view is None:
                    root = a
                elif view.is_full_contiguous() and view.buf.kind == "scratch":
                    root = next((v for v, b in self.bufs.items() if b is view.buf), None)
            if root is not None and root not in self.bufs:
                self.bufs[root] = buf
                self.views[root] = full_view(buf, root.aval.shape)
                continue
            if root is not None and self.bufs[root].kind == "scratch":
                old = self.bufs[root]
                old.kind, old.index = "out", j
                out_bufs[j] = old
                continue
            g = self.new_group("loop", [], end + j, shape=a.aval.shape, closed=True)
            g.nests = [Nest(a.aval.shape, [], [(a, full_view(buf, a.aval.shape), "store")])]
        return out_bufs

    def _finish_loop(self, g: Group) -> None:
        members = {id(e) for e in g.eqns}
        outs = []
        for e in g.eqns:
            for v in e.outvars:
                used_outside = any(id(self.eqns[c]) not in members for c in self.consumers.get(v, ()))
                if used_outside or v in self.outset or v in self.bufs:
                    outs.append((v, self.storage(v), "store"))
        g.nests = [Nest(g.shape, g.eqns, outs)]

    def _assign_scratch(self, order: list[Group]) -> int:
        """First-fit placement of scratch buffers by live range over the schedule."""
        pos = {id(g): k for k, g in enumerate(order)}
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        bufs: dict[int, Buf] = {}

        def touch(buf: Buf, k: int) -> None:
            if buf.kind != "scratch":
                return
            bufs[id(buf)] = buf
            start[id(buf)] = min(start.get(id(buf), k), k)
            end[id(buf)] = max(end.get(id(buf), k), k)

        for g in order:
            k = pos[id(g)]
            for buf in group_buffers(g, self.views):
                touch(buf, k)
            for buf in g.temps.values():
                touch(buf, k)
        live: list[tuple[int, int, int]] = []       # (offset, nbytes, end)
        top = 0
        for key in sorted(bufs, key=lambda b: (start[b], -bufs[b].nbytes)):
            buf = bufs[key]
            live = [x for x in live if x[2] >= start[key]]
            size = max(ALIGN, -(-buf.nbytes // ALIGN) * ALIGN)
            offset = 0
            for lo, n, _ in sorted(live):
                if offset + size <= lo:
                    break
                offset = max(offset, lo + n)
            buf.index = offset
            live.append((offset, size, end[key]))
            top = max(top, offset + size)
        return top


def group_buffers(g: Group, views: dict) -> list[Buf]:
    """Every buffer a group reads or writes."""
    out = []

    def add(a):
        if isinstance(a, View):
            out.append(a.buf)
            for atom, _, _ in a.dyn:
                add(atom)
        elif isinstance(a, Var) and a in views:
            add(views[a])

    for e in g.eqns:
        for a in list(e.inputs) + list(e.outvars):
            add(a)
    for nest in g.nests:
        for e in nest.eqns:
            for a in e.inputs:
                add(a)
        for src, dst, _ in nest.outs:
            add(src)
            add(dst)
        for idx, *_ in nest.indirect.values():
            add(idx)
    if g.out is not None:
        add(g.out)
    return out


def make_plan(closed: ClosedJaxpr, gemm_spec=None, gemm_temps=None, gemm_min_flops: int = 2 * 16 * 16 * 16) -> Plan:
    """Plan a program; ``gemm_spec(eqn, a_view, b_view)`` says whether (and how) a dot runs as a GEMM."""
    return Planner(closed, gemm_spec, gemm_temps, gemm_min_flops).run()
