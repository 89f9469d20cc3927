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

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Union

import numpy as np

from compiler.ir.core import PRIMITIVES, ClosedJaxpr, DType, Eqn, Jaxpr, Literal, ShapedArray, Var
from compiler.ir.core import dtype as to_dtype

from .rules import KINDS, STORAGE_ONLY_DTYPES, STORAGE_ONLY_PRIMITIVES, SUPPORTED_DTYPES

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
    chunks: int = 1                         # > 1: a step of its own, its index space cut into chunks
    joins_previous: bool = False            # independent of the group's earlier nests (disjoint writes,
                                            # reads none of theirs): threads may run it alongside them


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
    branches: list = field(default_factory=list)      # cond: the Plan of each branch; while: cond, body; scan: body
    chunks: int = 1                         # reduce / dot: chunks its threaded steps are cut into
    split: str = ""                         # how: "kept" | "red" (partials) | GEMM_SPLITS (dot)


@dataclass
class Plan:
    groups: list[Group]                      # in schedule order
    views: dict                              # Var -> View (stored values and views of them)
    in_bufs: list[Buf]
    const_bufs: list[Buf]
    out_bufs: list[Buf]
    scratch_bytes: int
    threads: int = 1                         # > 1: the kernel runs its steps on this many threads


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
            if a.aval.dtype.name in STORAGE_ONLY_DTYPES and name not in STORAGE_ONLY_PRIMITIVES:
                raise Unsupported(f"LLVM backend: '{name}' on {a.aval.dtype.name} is not supported "
                                  f"(only conversions and data movement are; convert to f32 / i32 first)")


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
    def __init__(self, closed: ClosedJaxpr, gemm_spec=None, gemm_temps=None, gemm_min_flops: int = 0,
                 threads: int = 1):
        self.eqns, self.jaxpr = inline_and_prune(closed.jaxpr)
        _check_supported(self.eqns, self.jaxpr)
        self.gemm_spec, self.gemm_temps, self.gemm_min_flops = gemm_spec, gemm_temps, gemm_min_flops
        self.threads = threads
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
        root = g
        while root.merged_into is not None:
            root = root.merged_into
        while g.merged_into is not None and g.merged_into is not root:   # path compression
            g.merged_into, g = root, g.merged_into
        return root

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
        # both lists are in program order; the common case (an equation joining the loop it reads)
        # concatenates, which keeps planning linear in the program's length
        a, b = other.eqns, into.eqns
        if not a or not b:
            into.eqns = a or b
        elif self.position(a[-1]) < self.position(b[0]):
            into.eqns = a + b
        elif self.position(b[-1]) < self.position(a[0]):
            b.extend(a)
        else:
            into.eqns = sorted(a + b, key=self.position)
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
        threads = parallelize(order, self.views, self.threads) if self.threads > 1 else 1
        scratch = self._assign_scratch(order)
        return Plan(order, self.views, self.in_bufs, self.const_bufs, out_bufs, scratch, threads)

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

    def _sparse(self, e: Eqn, i: int) -> None:
        from .sparse import plan_sparse
        plan_sparse(self, e, i)

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
            nests.append(Nest(shape, [], [(x, sub, "store")], joins_previous=bool(nests)))
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

    def _nests_reduce_window_max(self, e: Eqn, dst: View) -> list[Nest]:
        return self._window_nests(e, dst, "max")

    def _nests_reduce_window_sum(self, e: Eqn, dst: View) -> list[Nest]:
        return self._window_nests(e, dst, "add")

    def _window_nests(self, e: Eqn, dst: View, mode: str) -> list[Nest]:
        """Pooling as one accumulating pass per window position: fill the output with the padding
        value (the combine's identity), then for each offset k of the window combine in the input
        elements that land inside the unpadded input (a strided view) at the outputs they belong to.
        f16 and bf16 sums accumulate in an f32 scratch and round once, as numpy and the interpreter do."""
        x = e.inputs[0]
        d = x.aval.dtype
        out_shape = e.outvars[0].aval.shape
        wd, ws, pad = e.params["window_dimensions"], e.params["window_strides"], e.params["padding"]
        if mode == "max":
            fill = float("-inf") if d.is_float else int(np.iinfo(d.np).min)
        else:
            fill = 0
        acc = dst
        if mode == "add" and d.name in ("f16", "bf16"):
            tmp = Var(ShapedArray(out_shape, to_dtype("f32")))
            acc = self.storage(tmp)
        nests = [Nest(out_shape, [], [(Literal(fill, ShapedArray((), acc.dtype)), acc, "store")])]
        lit = isinstance(x, Literal)                  # a constant operand: every element is the literal
        src = View(None, 0, x.aval.shape, (0,) * len(x.aval.shape)) if lit else self.storage(x)
        if 0 not in out_shape and 0 not in x.aval.shape:
            per_dim = []
            for kk_n, n, m, s, (lo, _) in zip(wd, x.aval.shape, out_shape, ws, pad):
                # input index i = o * s + k - lo must lie in [0, n)
                def info(k, n=n, m=m, s=s, lo=lo):
                    o0 = max(0, -(-(lo - k) // s))
                    o1 = min(m, (n - 1 + lo - k) // s + 1)
                    return None if o1 <= o0 else (o0, o1 - o0, 1, o0 * s + k - lo)
                per_dim.append(_axis_runs(kk_n, info))
            nd = len(out_shape)
            for combo in itertools.product(*per_dim):
                kshape = tuple(r[1] for r in combo)
                oshape = tuple(r[3] for r in combo)
                offset = src.offset + sum(r[5] * xs for r, xs in zip(combo, src.strides))
                doff = acc.offset + sum(r[2] * os_ for r, os_ in zip(combo, acc.strides))
                shape = kshape + oshape
                sstr = tuple(r[6] * xs for r, xs in zip(combo, src.strides)) + tuple(xs * s for xs, s in
                                                                                   zip(src.strides, ws))
                dstr = (0,) * nd + tuple(acc.strides)
                piece = x if lit else View(src.buf, offset, shape, sstr, src.dyn)
                nests.append(Nest(shape, [], [(piece, View(acc.buf, doff, shape, dstr), mode)],
                                  sequential=int(np.prod(oshape)) == 1))
        if acc is not dst:
            nests.append(Nest(out_shape, [], [(acc, dst, "store")]))
        return nests

    def _conv(self, e: Eqn, i: int) -> None:
        """conv_general_dilated as im2col + dot_general: the columns (G, Cg, *K, N, *OUT) are filled by
        one strided copy per kernel position (zeros where padding or dilation puts no input), then
        (G, O/G, Cg*K) x (G, Cg*K, N*OUT) runs as a batched GEMM, then a copy puts (G, O/G, N, *OUT)
        into (N, O, *OUT). The columns keep the operands' type and the GEMM produces the result type,
        so an int8 x int8 -> int32 convolution runs on the int8 GEMM (intgemm.py) with int8 columns.
        Common 2-D float convolutions skip the columns and the copy: see _implicit_conv."""
        x, w = (self.materialize(a, i) for a in e.inputs)
        if self._implicit_conv(e, x, w, i):
            return
        out = e.outvars[0]
        p = e.params
        d = x.aval.dtype
        N, C, *S = x.aval.shape
        O, Cg, *K = w.aval.shape
        OUT = list(out.aval.shape[2:])
        G = p["feature_group_count"]
        nsp = len(S)
        ws, ld, rd, pad = p["window_strides"], p["lhs_dilation"], p["rhs_dilation"], p["padding"]
        ck, npix = Cg * int(np.prod(K, dtype=np.int64)), N * int(np.prod(OUT, dtype=np.int64))
        cols = Var(ShapedArray((G, ck, npix), d))
        g = self.new_group("loop", [], i, shape=(G, ck, npix), closed=True)
        for a in (x, w):
            self.read(a, g)
        xv = self.storage(x)
        cshape = (G, Cg, *K, N, *OUT)
        # The columns are (G, Cg*K, N*OUT), or laid out transposed, (G, N*OUT, Cg*K), when the kernel
        # is wider than the output (a weight gradient): each copy then runs along the kernel's last
        # axis instead of the output's (a few elements), and the GEMM reads B through strides.
        transposed = nsp > 0 and K[-1] > OUT[-1]
        if transposed:
            colst = Var(ShapedArray((G, npix, ck), d))
            ct = self.storage(colst)
            self.views[cols] = View(ct.buf, ct.offset, (G, ck, npix), (npix * ck, 1, ck))
            lay = (G, N, *OUT, Cg, *K)
            ls = contiguous_strides(lay)
            cs = (ls[0], ls[2 + nsp], *ls[3 + nsp:], ls[1], *ls[2:2 + nsp])      # in cshape's axis order
            order = (0, 2 + nsp, *range(3 + nsp, 3 + 2 * nsp), 1, *range(2, 2 + nsp))   # walk: kernel axes inner
        else:
            cs = contiguous_strides(cshape)
            order = None
        cv = self.storage(cols)
        nests = []
        full = True
        pieces = []
        infos = []
        if 0 not in cshape and 0 not in x.aval.shape:
            per_dim = []
            for j in range(nsp):
                # dilated input coordinate t = o * s + k * rd - lo must be a multiple of ld in [0, (n-1)*ld]
                def info(k, j=j):
                    s_, base, n, m = ws[j], k * rd[j] - pad[j][0], S[j], OUT[j]
                    os_ = [o for o in range(m) if (o * s_ + base) % ld[j] == 0
                           and 0 <= o * s_ + base <= (n - 1) * ld[j]]
                    if not os_:
                        return None
                    step_o = os_[1] - os_[0] if len(os_) > 1 else 1
                    return os_[0], len(os_), step_o, (os_[0] * s_ + base) // ld[j]
                infos.append(info)
                runs = _axis_runs(K[j], info)
                if sum(r[1] for r in runs) != K[j] or any(r[3] != OUT[j] for r in runs):
                    full = False
                per_dim.append(runs)
            xsp = xv.strides[2:]
            csk, cso = cs[2:2 + nsp], cs[3 + nsp:]
            for combo in itertools.product(*per_dim):
                pshape = (G, Cg, *(r[1] for r in combo), N, *(r[3] for r in combo))
                offset = xv.offset + sum(r[5] * xs for r, xs in zip(combo, xsp))
                doff = cv.offset + sum(r[0] * c1 + r[2] * c2 for r, c1, c2 in zip(combo, csk, cso))
                sstr = (Cg * xv.strides[1], xv.strides[1], *(r[6] * xs for r, xs in zip(combo, xsp)),
                        xv.strides[0], *(r[4] * s_ // l_ * xs for r, s_, l_, xs in zip(combo, ws, ld, xsp)))
                dstr = (cs[0], cs[1], *csk, cs[2 + nsp], *(r[4] * c2 for r, c2 in zip(combo, cso)))
                pieces.append(_ordered(Nest(pshape, [], [(View(xv.buf, offset, pshape, sstr, xv.dyn),
                                                          View(cv.buf, doff, pshape, dstr), "store")]), order))
        else:
            full = False
        if not full:
            zero = Literal(0, ShapedArray((), d))
            borders = _conv_borders(infos, K, OUT) if infos else None
            if borders is None:                 # (lhs dilation: the uncovered part is not a few boxes)
                nests.append(_ordered(Nest(cshape, [], [(zero, View(cv.buf, cv.offset, cshape, cs), "store")]), order))
            else:                               # zeros only where no piece writes (the padding)
                csk, cso = cs[2:2 + nsp], cs[3 + nsp:]
                for box in borders:
                    shape = (G, Cg, *(r[1] for r in box), N, *(r[3] - r[2] for r in box))
                    offset = cv.offset + sum(r[0] * c1 + r[2] * c2 for r, c1, c2 in zip(box, csk, cso))
                    nests.append(_ordered(Nest(shape, [], [(zero, View(cv.buf, offset, shape, cs), "store")]), order))
        g.nests = nests + pieces
        # the border boxes and the pieces write disjoint parts of cols: threads may do them in any
        # order; after a full zero fill the pieces (disjoint among themselves) must wait for it
        for nest in g.nests[1:] if not (nests and borders is None) else pieces[1:]:
            nest.joins_previous = True
        g.out = cols
        self.producer[cols] = g
        # the weights as (G, O/G, Cg*K)
        wshape = (G, O // G, ck)
        wv = _view_reshape(self.storage(w), wshape)
        if wv is None:
            wc = Var(w.aval)
            cg = self.new_group("loop", [], i, shape=w.aval.shape, closed=True)
            cg.nests = [Nest(w.aval.shape, [], [(w, self.storage(wc), "store")])]
            cg.out = wc
            self.producer[wc] = cg
            wv = _view_reshape(self.storage(wc), wshape)
            w = wc
        wr = Var(ShapedArray(wshape, d))
        self.views[wr] = wv
        if self.group_of(w) is not None:
            self.producer[wr] = self.group_of(w)
        od = out.aval.dtype
        res = Var(ShapedArray((G, O // G, npix), od))
        dot = Eqn(PRIMITIVES["dot_general"], [wr, cols], [res],
                  {"dimension_numbers": (((2,), (1,)), ((0,), (0,))),
                   "preferred_element_type": None if od == d else od})
        self._pos[id(dot)] = i
        self._dot(dot, i)
        # (G, O/G, N, *OUT) -> (N, O, *OUT)
        rv = self.storage(res)
        rv = View(rv.buf, rv.offset, (G, O // G, N, *OUT), contiguous_strides((G, O // G, N, *OUT)))
        perm = (2, 0, 1) + tuple(range(3, 3 + nsp))
        rv = _view_transpose(rv, perm)
        rv = View(rv.buf, rv.offset, (N, O, *OUT), (rv.strides[0], rv.strides[2], *rv.strides[3:]))
        cp = self.new_group("loop", [], i, shape=out.aval.shape, closed=True)
        self.read(res, cp)
        cp.nests = [Nest(out.aval.shape, [], [(rv, self.storage(out), "store")])]
        cp.out = out
        self.producer[out] = cp

    def _implicit_conv(self, e: Eqn, x: Var, w: Var, i: int) -> bool:
        """A 2-D float convolution (one group, unit stride along the width, no input dilation, no
        negative padding) as one GEMM out[n, :, pixel] = W (O, C*KH*KW) x B, whose B the GEMM packs
        block by block straight from the input (zero-padded first, if padded) and whose C it writes
        in out's layout (gemm.ImplicitConv): no columns buffer (KH*KW times the input) and no copy
        of the result. False (nothing planned) when the shape does not allow it."""
        from .gemm import ImplicitConv, compute_dtype, implicit_conv_spec
        p, out = e.params, e.outvars[0]
        d = x.aval.dtype
        pads = [v for pair in p["padding"] for v in pair]
        if (self.gemm_spec is None or x.aval.ndim != 4 or p["feature_group_count"] != 1
                or tuple(p["lhs_dilation"]) != (1, 1) or p["window_strides"][1] != 1 or min(pads) < 0
                or d.name not in ("f32", "f64") or out.aval.dtype != d or compute_dtype(d) != d):
            return False
        N, C, H, W = x.aval.shape
        O, _, KH, KW = w.aval.shape
        _, _, OH, OW = out.aval.shape
        xv, ov = self.storage(x), self.storage(out)
        wv = _view_reshape(self.storage(w), (O, C * KH * KW))
        if (wv is None or xv.dyn or wv.dyn or ov.dyn or 0 in out.aval.shape or 0 in x.aval.shape
                or ov.strides != contiguous_strides(out.aval.shape)):
            return False
        m, n, k = O, N * OH * OW, C * KH * KW
        (ylo, yhi), (xlo, xhi) = p["padding"]
        padded = (N, C, H + ylo + yhi, W + xlo + xhi)
        conv = ImplicitConv(xv, KH, KW, OH, OW, p["window_strides"][0], p["rhs_dilation"][0],
                            p["rhs_dilation"][1], O)
        spec = implicit_conv_spec(conv, m, n, k, (wv.offset, wv.strides[0], wv.strides[1]), d)
        if spec is None or 2 * m * n * k < self.gemm_min_flops:
            return False
        src = x
        if padded != x.aval.shape or xv.strides[3] != 1:
            # the padded input: zeros in the four borders, x in the middle (disjoint: one step)
            src = Var(ShapedArray(padded, d))
            pv = self.storage(src)
            st = pv.strides
            pg = self.new_group("loop", [], i, shape=padded, closed=True)
            self.read(x, pg)
            Wp = padded[3]
            boxes = [((0, 0), (ylo, Wp)), ((ylo + H, 0), (yhi, Wp)), ((ylo, 0), (H, xlo)), ((ylo, xlo + W), (H, xhi))]
            zero = Literal(0, ShapedArray((), d))
            nests = [Nest((N, C, H, W), [], [(x, View(pv.buf, pv.offset + ylo * st[2] + xlo, (N, C, H, W), st), "store")])]
            for (y0, x0), (hh, ww) in boxes:
                if hh and ww:
                    shape = (N, C, hh, ww)
                    nests.append(Nest(shape, [], [(zero, View(pv.buf, pv.offset + y0 * st[2] + x0 * st[3], shape, st),
                                                   "store")], joins_previous=True))
            pg.nests = nests
            pg.out = src
            self.producer[src] = pg
        spec = dataclasses.replace(spec, conv=dataclasses.replace(conv, x=self.views[src]))
        wr = Var(ShapedArray((O, k), d))
        self.views[wr] = wv
        if self.group_of(w) is not None:
            self.producer[wr] = self.group_of(w)
        dot = Eqn(PRIMITIVES["dot_general"], [wr, src], [out], {"dimension_numbers": (((1,), (1,)), ((), ())),
                                                               "preferred_element_type": None})
        self._pos[id(dot)] = i
        g = self.new_group("dot", [dot], i, closed=True)
        g.out = out
        for a in (w, wr, src):
            self.read(a, g)
        g.gemm = spec
        g.temps = self.gemm_temps(spec, d)
        return True

    def _branch(self, e: Eqn, i: int) -> None:
        """cond: each branch is planned on its own (its own groups and scratch, in a temp of this
        arena); the kernel picks one at run time and calls it on contiguous operand buffers."""
        index, *ops = e.inputs
        sub = []
        for br in e.params["branches"]:
            if br.constvars:
                raise Unsupported("LLVM backend: cond branches with constants are not supported yet")
            sub.append(Planner(ClosedJaxpr(br, []), self.gemm_spec, self.gemm_temps, self.gemm_min_flops).run())
        args = [self.contiguous(a, i) for a in ops]
        e = Eqn(e.primitive, [index, *args], e.outvars, e.params)
        self._pos[id(e)] = i
        g = self.new_group("cond", [e], i, closed=True)
        g.out = e.outvars[0] if e.outvars else None
        for a in e.inputs:
            self.read(a, g)
            if isinstance(a, Var):
                self.storage(a)
        for v in e.outvars:
            self.storage(v)
        g.branches = sub
        top = max(p.scratch_bytes for p in sub)
        if top:
            g.temps = {"branch": Buf("scratch", -1, to_dtype("u8"), top)}

    # -- loops: while and scan call a sub-plan per iteration ------------------------------------
    def _while_loop(self, e: Eqn, i: int) -> None:
        """while: the cond and the body are planned on their own; the kernel calls cond on the
        current carry, then the body from the current carry into the other one (ping-pong)."""
        p = e.params
        self._loop_group("while", e, i, [p["cond_jaxpr"], p["body_jaxpr"]], e.outvars)

    def _scan_loop(self, e: Eqn, i: int) -> None:
        """scan: a counted loop calling the body's plan; step i reads xs[i] and writes ys[i] in place
        (a pointer into the stacked array), the carry ping-pongs as in while."""
        self._loop_group("scan", e, i, [e.params["jaxpr"]], e.outvars[:e.params["num_carry"]])

    def _loop_group(self, kind: str, e: Eqn, i: int, bodies: list, carries: list) -> Group:
        """A group running sub-plans in a loop on whole contiguous operand buffers. Its temps: one
        scratch arena the sub-plans share (they never run at once), a second buffer per carry (the
        ping-pong partner of the carry's own output buffer) and, for while, the predicate."""
        subs = [Planner(ClosedJaxpr(j, []), self.gemm_spec, self.gemm_temps, self.gemm_min_flops).run()
                for j in bodies]
        args = [self.contiguous(a, i) for a in e.inputs]
        e = Eqn(e.primitive, args, e.outvars, e.params)
        self._pos[id(e)] = i
        g = self.new_group(kind, [e], i, closed=True)
        g.out = e.outvars[0] if e.outvars else None
        for a in args:
            self.read(a, g)
        for v in e.outvars:
            self.storage(v)
        g.branches = subs
        top = max(s.scratch_bytes for s in subs)
        if top:
            g.temps["sub"] = Buf("scratch", -1, to_dtype("u8"), top)
        for j, v in enumerate(carries):
            g.temps[f"carry{j}"] = Buf("scratch", -1, v.aval.dtype, v.aval.size)
        if kind == "while":
            g.temps["flag"] = Buf("scratch", -1, to_dtype("bool"), 1)
        return g

    def contiguous(self, a, i: int) -> Var:
        """Atom ``a`` as a var stored as one whole contiguous buffer (a view of another is copied),
        so that a sub-plan or a kernel with its own layout (sparse_dot) can take it as an argument."""
        a = self.materialize(a, i)
        if self.storage(a).is_full_contiguous():
            return a
        tmp = Var(a.aval)
        g = self.new_group("loop", [], i, shape=a.aval.shape, closed=True)
        self.read(a, g)
        g.nests = [Nest(a.aval.shape, [], [(a, self.storage(tmp), "store")])]
        g.out = tmp
        self.producer[tmp] = g
        return tmp

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



def _ordered(nest: Nest, order) -> Nest:
    """The same copy with its axes walked in ``order`` (outermost first)."""
    if order is None:
        return nest
    outs = []
    for src, dst, mode in nest.outs:
        views = []
        for v in (src, dst):
            if isinstance(v, View):
                v = View(v.buf, v.offset, tuple(v.shape[a] for a in order), tuple(v.strides[a] for a in order), v.dyn)
            views.append(v)
        outs.append((views[0], views[1], mode))
    return Nest(tuple(nest.shape[a] for a in order), nest.eqns, outs, nest.sequential, nest.indirect)


def _conv_borders(infos, K, OUT) -> list[tuple] | None:
    """The im2col entries no input element lands in, as disjoint boxes: per box and axis, (first
    kernel position, count, first output, end output). An entry is uncovered when some axis's output
    is outside the outputs its kernel position reaches; the box for axis j takes the entries whose
    first such axis is j (valid outputs on the axes before it), so no entry is in two boxes (and no
    two threads write one). None when some kernel position's outputs are not an interval (lhs
    dilation): then a few boxes cannot describe the uncovered part."""
    groups = []                               # per axis: [k0, count, valid (lo, hi), invalid intervals]
    for j, info in enumerate(infos):
        axis = []
        for k in range(K[j]):
            r = info(k)
            if r is None:
                valid, ivs = (0, 0), ((0, OUT[j]),)
            else:
                o0, cnt, so, _ = r
                if cnt > 1 and so != 1:
                    return None
                valid = (o0, o0 + cnt)
                ivs = tuple(iv for iv in ((0, o0), (o0 + cnt, OUT[j])) if iv[1] > iv[0])
            if axis and axis[-1][2] == valid and axis[-1][0] + axis[-1][1] == k:
                axis[-1][1] += 1
            else:
                axis.append([k, 1, valid, ivs])
        groups.append(axis)
    boxes = []
    for j, axis in enumerate(groups):
        for k0, klen, _, ivs in axis:
            for a, b in ivs:
                for before in itertools.product(*groups[:j]):
                    if any(g[2][1] <= g[2][0] for g in before):
                        continue
                    box = [(g[0], g[1], g[2][0], g[2][1]) for g in before] + [(k0, klen, a, b)]
                    box += [(0, K[i], 0, OUT[i]) for i in range(j + 1, len(groups))]
                    boxes.append(box)
    return boxes


def _axis_runs(n: int, info) -> list[tuple]:
    """Group window / kernel positions 0..n-1 of one axis into runs that one strided nest can cover.

    ``info(k)`` gives (first output, output count, output step, first input index) for position k,
    or None when no output reads an input element there. A run is (k0, length, first output, output
    count, output step, first input index, input step per k)."""
    runs: list[list] = []
    for k in range(n):
        r = info(k)
        if r is None:
            continue
        o0, cnt, so, i0 = r
        if runs:
            p = runs[-1]
            if p[0] + p[1] == k and p[2:5] == [o0, cnt, so] and (p[1] == 1 or i0 - p[5] == p[6] * p[1]):
                if p[1] == 1:
                    p[6] = i0 - p[5]
                p[1] += 1
                continue
        runs.append([k, 1, o0, cnt, so, i0, 0])
    return [tuple(r) for r in runs]


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


def make_plan(closed: ClosedJaxpr, gemm_spec=None, gemm_temps=None, gemm_min_flops: int = 2 * 16 * 16 * 16,
              threads: int = 1) -> Plan:
    """Plan a program; ``gemm_spec(eqn, a_view, b_view)`` says whether (and how) a dot runs as a GEMM;
    ``threads`` > 1 lets large loops, reductions and GEMMs run on that many threads."""
    return Planner(closed, gemm_spec, gemm_temps, gemm_min_flops, threads).run()


# ----------------------------------------------------------------------------------------------
# Threads: which steps are worth cutting into chunks (shapes are static, so this is decided here)
# ----------------------------------------------------------------------------------------------
#
# A threaded kernel runs its groups as a list of *steps*; a step either runs whole (on whichever
# thread claims it) or is cut into a fixed number of chunks that the threads claim one by one from a
# counter. Chunks follow the static shapes only, so the result does not depend on how many threads
# ran or which did what (partial sums are combined in chunk order). The estimates below are
# nanoseconds on one core; they only need to be right within a factor of two or so.

MIN_STEP_NS = 15_000          # a step below this runs whole: cutting it costs more than it saves
MIN_PROGRAM_NS = 30_000       # a program whose parallel steps add up to less stays single-threaded
# (measured, 2-core EPYC: handing a call to the pool and back costs 2-3 us; x*2+1 on f32 gains from
# 2^16 elements (8 us), a sum from 2^15, the sigmoid-of-logs chain from 2^15 (40 us))
CHUNK_NS = 25_000             # about this much work per chunk ...
MAX_CHUNKS_PER_THREAD = 8     # ... but no more chunks than this per thread (and at least one each)
_SLOW_OPS = {"exp": 0.35, "log": 0.35, "log1p": 0.4, "expm1": 0.4, "tanh": 0.45, "sin": 0.4, "cos": 0.4,
             "erf": 0.45, "pow": 0.8, "logistic": 0.45, "div": 0.08, "sqrt": 0.08, "rsqrt": 0.1, "rem": 0.3}
_BASE_NS = 0.1                 # per element: loads, stores, loop
_GFLOPS = {"f32": 90.0, "f64": 45.0}     # the GEMM kernel on one core, GFLOP/s (= flops per ns)
_INT8_GOPS = 350.0            # the int8 VNNI GEMM on one core (measured: 1024^3 in 5.0 ms), ops per ns
_SPARSE_GFLOPS = 20.0         # the sparse kernels on one core, per stored weight and row of x


def _elems(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if len(shape) else 1


def _ops_ns(eqns) -> float:
    return sum(_SLOW_OPS.get(e.primitive.name, 0.03) for e in eqns)


def _chunks(cost_ns: float, threads: int, units: int) -> int:
    c = max(threads, int(np.ceil(cost_ns / CHUNK_NS)))
    return int(max(1, min(c, MAX_CHUNKS_PER_THREAD * threads, units)))


def slot_elems(count: int, dtype: DType) -> int:
    """Elements of one per-thread or per-chunk slot holding ``count``: whole cache lines, so that
    threads writing neighbouring slots never share a line."""
    per_line = max(1, ALIGN // dtype.itemsize)
    return max(per_line, -(-count // per_line) * per_line)


def slots(copies: int, count: int, dtype: DType) -> Buf:
    """A scratch temp of ``copies`` slots of ``count`` elements each (one per thread or chunk)."""
    return Buf("scratch", -1, dtype, copies * slot_elems(count, dtype))


def partial_dtype(kind: str, d: DType) -> DType:
    """What a partial result of a reduction is kept in: the accumulator's register type."""
    return to_dtype("f32") if d.name in ("f16", "bf16") else d


def step_runs(nests: list[Nest]) -> list[list[Nest]]:
    """A loop group's nests as threaded steps: each nest starts one, unless it may run alongside
    the ones before it (``joins_previous``)."""
    runs: list[list[Nest]] = []
    for nest in nests:
        if runs and nest.joins_previous:
            runs[-1].append(nest)
        else:
            runs.append([nest])
    return runs


def parallelize(order: list[Group], views: dict, threads: int) -> int:
    """Mark the steps worth running on ``threads`` threads (Nest.chunks, Group.chunks / split) and
    give them their per-thread or per-chunk scratch. Returns the kernel's thread count (1: none)."""
    decisions = []
    total = 0.0
    for g in order:
        if g.kind in ("loop", "seq"):
            # nests that may run side by side (im2col's copies, say) share one step, so their costs
            # add up: many copies too small to cut alone are cut together
            for run in step_runs(g.nests):
                cut = [nest for nest in run if not (nest.sequential or nest.indirect)]
                cost = sum(_elems(nest.shape) * (_BASE_NS + _ops_ns(nest.eqns)) for nest in cut)
                if cut and cost >= MIN_STEP_NS:
                    chunks = _chunks(cost, threads, max(_elems(nest.shape) for nest in cut))
                    decisions.extend(("nest", nest, chunks) for nest in cut)
                    total += cost
        elif g.kind == "reduce":
            e = g.eqns[-1]
            x = e.inputs[0]
            n = _elems(x.aval.shape)
            cost = n * (_BASE_NS + _ops_ns(g.eqns[:-1]))
            if cost < MIN_STEP_NS:
                continue
            kept = _elems(e.outvars[0].aval.shape) if e.primitive.name != "cumsum" else n // max(
                1, x.aval.shape[e.params["axis"]])
            if kept >= 4 * threads:
                decisions.append(("kept", g, _chunks(cost, threads, kept)))
                total += cost
            elif e.primitive.name in ("reduce_sum", "reduce_prod", "reduce_max", "reduce_min", "argmax"):
                decisions.append(("red", g, _chunks(cost, threads, n // kept)))
                total += cost
        elif g.kind == "dot":
            e = g.eqns[-1]
            out = e.outvars[0].aval
            if g.gemm is not None:
                spec = g.gemm
                batch = _elems([s for s, *_ in spec.batch])
                if type(spec).__name__ == "IntGemmSpec":   # int8: cut into column panels only
                    cost = 2.0 * spec.m * spec.n * spec.k * batch / _INT8_GOPS
                    units = min(-(-spec.n // 32), max(1, spec.n // 256))   # chunks of >= 256 columns
                    if cost >= MIN_STEP_NS and units >= threads:
                        decisions.append(("int8 cols", g, _chunks(cost, threads, units)))
                        total += cost
                    continue
                cost = 2.0 * spec.m * spec.n * spec.k * batch / _GFLOPS.get(spec.cd.name, 45.0)
                if cost < MIN_STEP_NS:
                    continue
                how = gemm_split(spec, batch, cost, threads)
                if how is None:
                    continue
                decisions.append((how[0], g, how[1]))
                total += cost
            else:
                kept, contracted = _elems(out.shape), _contracted(e)
                cost = 2.0 * kept * contracted / 8.0
                if cost < MIN_STEP_NS:
                    continue
                if kept >= 4 * threads:
                    decisions.append(("kept", g, _chunks(cost, threads, kept)))
                else:
                    decisions.append(("red", g, _chunks(cost, threads, contracted)))
                total += cost
        elif g.kind == "sparse":               # cut into row blocks or column panels (sparse_units)
            from .engine import host
            from .sparse import sparse_spec, sparse_units, stored_weights
            e = g.eqns[0]
            spec = sparse_spec(e, host().vector_bytes)
            cost = 2.0 * spec.rows * stored_weights(e) / _SPARSE_GFLOPS
            units = sparse_units(spec)
            if cost >= MIN_STEP_NS and units >= 2:
                decisions.append(("sparse", g, _chunks(cost, threads, units)))
                total += cost
    if total < MIN_PROGRAM_NS or not decisions:
        return 1
    for how, obj, chunks in decisions:
        if how == "nest":
            obj.chunks = chunks
            continue
        g = obj
        g.chunks, g.split = chunks, how
        if how == "red":
            e = g.eqns[-1]
            out = e.outvars[0].aval
            if g.kind == "dot":
                from .gemm import compute_dtype
                pd = compute_dtype(e.inputs[0].aval.dtype)
            elif e.primitive.name == "argmax":    # per chunk the index, and its value beside it
                pd, vd = to_dtype("i64"), e.inputs[0].aval.dtype
                g.temps = dict(g.temps, partial_values=slots(chunks, _elems(out.shape), vd))
            else:
                pd = partial_dtype(e.primitive.name, e.inputs[0].aval.dtype)
            g.temps = dict(g.temps, partials=slots(chunks, _elems(out.shape), pd))
        elif how == "sparse":
            from .engine import host
            from .sparse import sparse_spec, sparse_temps
            spec = sparse_spec(g.eqns[0], host().vector_bytes)
            if spec.kernel == "perm":           # each thread packs the weights of its panels itself
                g.temps = dict(g.temps, **{name: slots(threads, buf.size, buf.dtype)
                                           for name, buf in sparse_temps(spec).items() if name in ("vp", "ip")})
        elif how == "int8 cols":
            from .intgemm import int_gemm_temps
            g.split = "cols"
            g.temps = {name: slots(threads, buf.size, buf.dtype) for name, buf in int_gemm_temps(g.gemm).items()}
        elif how in GEMM_SPLITS:
            spec = g.gemm
            temps = dict(g.temps)
            temps["pack_a"] = slots(threads, spec.mc * spec.kc, spec.cd)
            if how != "tiles":                  # tiles share one packed B block; the others pack their own
                temps["pack_b"] = slots(threads, spec.kc * spec.nc, spec.cd)
            if how == "ksplit":                 # a partial product per chunk, summed in chunk order
                size = spec.m * spec.n * _elems([s for s, *_ in spec.batch])
                temps["partials"] = slots(chunks, size, spec.cd)
            g.temps = temps
    return threads


GEMM_SPLITS = ("batch", "cols", "rows", "ksplit", "tiles")
_PACK_A_NS, _PACK_B_NS, _SUM_NS = 0.2, 0.15, 0.3     # per element: packing A, packing B, a partial sum
GEMM_OVERHEAD = 0.08          # a split may add this much work (repacking, partial sums) to avoid syncs
KSPLIT_MAX_ELEMS = 1 << 18    # partial products of at most this many elements each


def gemm_split(spec, batch: int, cost: float, threads: int):
    """How a GEMM is cut for threads, (how, chunks) or None. Chunks that each pack what they need run
    as one step (no waits inside the GEMM), which keeps threads independent on a busy machine:
    "batch" (batch items), "cols" (column panels; each chunk repacks all of A), "rows" (row panels;
    each repacks all of B), "ksplit" (ranges of K blocks, a partial product each, summed after).
    "tiles" (one shared packed B block per (NC, KC) block, two steps each) wastes no work but waits
    twice per block: the fallback for large products that none of the others cut cheaply."""
    m, n, k = spec.m, spec.n, spec.k
    if spec.conv is not None:
        # an implicit convolution (gemm.ImplicitConv) is cut into column chunks only: each packs
        # its own part of B from the input and writes its own part of the result
        chunks = min(_chunks(cost, threads, -(-n // spec.nr)), max(1, n // 256))
        return ("cols", chunks) if chunks >= 2 * threads else None
    if batch >= 2 * threads:
        return "batch", _chunks(cost, threads, batch)
    options = []
    panels_n, panels_m, blocks_k = -(-n // spec.nr), -(-m // spec.mr), -(-k // spec.kc)
    # a chunk keeps at least 256 columns / one MC block of rows: narrower chunks reuse each packed
    # block less (measured: 1024^3 cut into 16 row chunks ran 10% slower than into 4 or 7)
    for how, units, extra_per_chunk, most in (("cols", panels_n, m * k * _PACK_A_NS * batch, n // 256),
                                              ("rows", panels_m, k * n * _PACK_B_NS * batch, m // spec.mc),
                                              ("ksplit", blocks_k, m * n * _SUM_NS * batch, blocks_k)):
        if how == "ksplit" and m * n * batch > KSPLIT_MAX_ELEMS:
            continue
        # as many chunks as the cost suggests, but no more than the repacking budget allows
        chunks = min(_chunks(cost, threads, units), most,
                     int(GEMM_OVERHEAD * cost // max(extra_per_chunk, 1e-9)))
        if chunks >= 2 * threads:
            options.append((chunks * extra_per_chunk / cost, -chunks, how))
    if options:
        _, chunks, how = min(options)
        return how, -chunks
    tiles = panels_m * -(-min(n, spec.nc) // spec.nr)
    if tiles >= 2 * threads:
        phases = -(-n // spec.nc) * blocks_k * batch
        return "tiles", _chunks(cost / phases, threads, tiles)
    return None


def _contracted(e: Eqn) -> int:
    """The size of the contracted dimensions of dot_general ``e``."""
    (ca, _), _ = e.params["dimension_numbers"]
    return _elems([e.inputs[0].aval.shape[d] for d in ca])
