"""sparse_dot: native kernels that multiply only by the kept weights (compiler/primitives/sparse.py).

Two kernels, both register-blocked and explicitly vectorized:

* **row-axpy** (CSR, N:M when the permute kernel does not apply, and every ``transpose=True``):
  with x packed transposed as xT[K, Mp] (rows of x in lanes, zero padded to whole vectors), output
  column n is ``outT[n, :] = sum_p values[p] * xT[k_p, :]``: per stored weight one splat and R vector
  FMAs on a block of R*W rows of x (transposed: ``outT[k_p, :] += values[p] * xT[n, :]``). Work and
  memory traffic scale with the number of stored weights, so it wins once most weights are zero.
* **permute** (N:M forward, M dividing the vector width, AVX-512): like the dense GEMM's 8 x 32
  micro-kernel, but for each vector of W consecutive k of a row of x it does one ``vpermps`` per
  stored weight row to put, in every lane (output column), the x value its weight multiplies, then
  an FMA: N/M of the dense FMAs, plus as many permutes (which issue on other ports). The stored
  weights are re-packed per 2W-column panel as values and i32 lane indices (clamped), once per call.

On several threads (plan.parallelize) the kernel is a chunked step between the packing of x and the
copy out: chunks of row blocks (row-axpy) or of column panels (permute, each thread packing its
panels' weights into its own buffers); results are the same bits as on one thread.

Every index read from a buffer is clamped (N:M positions to M-1, CSR columns into [0, K), indptr into
[0, nnz]), so no operand value can make the kernel touch memory outside its buffers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from compiler.ir.core import Eqn, Literal, ShapedArray
from compiler.ir.core import dtype as to_dtype
from compiler.primitives.sparse import parse_format

from .plan import Buf, Nest, Unsupported, View, contiguous_strides

ROW_VECTORS = 4          # row-axpy: vectors of rows of x per block (R)
IN_LANE = False
PERM_ROWS = 8            # permute kernel: rows of x per micro-tile (MR); columns: 2 vectors (NR)


@dataclass
class SparseSpec:
    nm: tuple | None          # (N, M) or None for CSR
    k: int
    n: int
    transpose: bool
    rows: int                 # M: the product of x's leading axes
    inner: int                # x's last axis (k, or n when transposed)
    outer: int                # the output's last axis
    cd: object                # compute dtype (f32 / f64)
    vw: int                   # lanes per vector
    kernel: str               # "axpy" | "perm"
    mp: int = 0               # axpy: rows padded to whole vectors
    mr: int = 0               # perm: rows padded to whole micro-tiles
    kp: int = 0               # perm: k padded to whole vectors
    np_: int = 0              # perm: columns padded to whole panels
    nr: int = 0               # perm: panel width


def sparse_spec(e: Eqn, vector_bytes: int) -> SparseSpec:
    x = e.inputs[0]
    p = e.params
    cd = x.aval.dtype
    if cd.name not in ("f32", "f64"):
        raise Unsupported(f"LLVM backend: sparse_dot on {cd.name} is not supported yet (f32, f64)")
    nm = parse_format(p["format"])
    k, n = p["dense_shape"]
    rows = int(np.prod(x.aval.shape[:-1], dtype=np.int64))
    vw = max(1, vector_bytes // cd.itemsize)
    inner, outer = (n, k) if p["transpose"] else (k, n)
    use_perm = (nm is not None and not p["transpose"] and vector_bytes == 64 and vw % nm[1] == 0
                and rows >= PERM_ROWS and n >= vw and k >= vw)
    spec = SparseSpec(nm, k, n, p["transpose"], rows, inner, outer, cd, vw, "perm" if use_perm else "axpy")
    if use_perm:
        spec.nr = 2 * vw
        spec.mr = -(-rows // PERM_ROWS) * PERM_ROWS
        spec.kp = -(-k // vw) * vw
        spec.np_ = -(-n // spec.nr) * spec.nr
    else:
        spec.mp = -(-max(rows, 1) // vw) * vw
    return spec


def sparse_temps(spec: SparseSpec) -> dict:
    cd = spec.cd
    if spec.kernel == "axpy":
        return {"xt": Buf("scratch", -1, cd, spec.inner * spec.mp), "ot": Buf("scratch", -1, cd, spec.outer * spec.mp)}
    qp = spec.kp // spec.nm[1] * spec.nm[0]
    return {"xp": Buf("scratch", -1, cd, spec.mr * spec.kp), "op": Buf("scratch", -1, cd, spec.mr * spec.np_),
            "vp": Buf("scratch", -1, cd, qp * spec.nr), "ip": Buf("scratch", -1, to_dtype("i64" if cd.name == "f64" else "i32"), qp * spec.nr)}


# ----------------------------------------------------------------------------------------------
# Planning (called by plan.Planner for KINDS["sparse_dot"] == "sparse")
# ----------------------------------------------------------------------------------------------

def plan_sparse(pl, e: Eqn, i: int) -> None:
    """One group: x through its view (any strides), compressed operands as contiguous buffers."""
    from .engine import host
    spec = sparse_spec(e, host().vector_bytes)
    x, *w = e.inputs
    x = pl.materialize(x, i)
    ops = [pl.contiguous(a, i) for a in w]
    e = Eqn(e.primitive, [x, *ops], e.outvars, e.params)
    pl._pos[id(e)] = i
    g = pl.new_group("sparse", [e], i, closed=True)
    g.out = e.outvars[0]
    for a in e.inputs:
        pl.read(a, g)
        pl.storage(a)
    pl.storage(g.out)
    g.temps = sparse_temps(spec)


# ----------------------------------------------------------------------------------------------
# Code
# ----------------------------------------------------------------------------------------------

def sparse_units(spec: SparseSpec) -> int:
    """What a threaded sparse kernel is cut into: row blocks of x (axpy: full blocks of R vectors,
    then single vectors) or NR-column panels (permute)."""
    if spec.kernel == "axpy":
        step = ROW_VECTORS * spec.vw
        return spec.mp // step + (spec.mp % step) // spec.vw
    return spec.np_ // spec.nr


def stored_weights(e: Eqn) -> int:
    """How many weights the compressed operand stores (CSR: its capacity)."""
    return e.inputs[-1].aval.size if parse_format(e.params["format"]) is None else e.inputs[1].aval.size


def _phases(kg, g):
    """(spec, the nests that pack x (and zero what the kernel accumulates into), the nest that
    copies the result out): the kernel runs between them."""
    from .engine import host
    e = g.eqns[0]
    spec = sparse_spec(e, host().vector_bytes)
    x, out = e.inputs[0], e.outvars[0]
    lead_strides = contiguous_strides(x.aval.shape[:-1])
    zero = Literal(0, ShapedArray((), spec.cd))
    pro = []
    if spec.kernel == "axpy":
        xt, ot = g.temps["xt"], g.temps["ot"]
        mp = spec.mp
        if mp > spec.rows:
            pro.append(Nest((spec.inner, mp - spec.rows), [],
                            [(zero, View(xt, spec.rows, (spec.inner, mp - spec.rows), (mp, 1)), "store")]))
        pro.append(Nest(x.aval.shape, [], [(x, View(xt, 0, x.aval.shape, lead_strides + (mp,)), "store")]))
        if spec.transpose:
            pro.append(Nest((spec.outer * mp,), [], [(zero, View(ot, 0, (spec.outer * mp,), (1,)), "store")]))
        src = View(ot, 0, out.aval.shape, lead_strides + (mp,))
    else:
        xp, op = g.temps["xp"], g.temps["op"]
        if spec.mr > spec.rows or spec.kp > spec.k:
            pro.append(Nest((spec.mr * spec.kp,), [], [(zero, View(xp, 0, (spec.mr * spec.kp,), (1,)), "store")]))
        pro.append(Nest(x.aval.shape, [], [(x, View(xp, 0, x.aval.shape,
                                                    tuple(s * spec.kp for s in lead_strides) + (1,)), "store")]))
        src = View(op, 0, out.aval.shape, tuple(s * spec.np_ for s in lead_strides) + (1,))
    return spec, pro, Nest(out.aval.shape, [], [(src, kg.plan.views[out], "store")])


def emit_sparse(kg, g) -> None:
    from .codegen import emit_nest
    spec, pro, epi = _phases(kg, g)
    for nest in pro:
        emit_nest(kg, nest)
    _emit_kernel(kg, g, spec)
    emit_nest(kg, epi)


def emit_sparse_threaded(kg, g, k: int) -> None:
    """Chunked steps: pack x (each nest a step of its own: the permute kernel's zero fill covers
    what the copy then writes), the kernel on this chunk's row blocks or column panels (the permute
    kernel packing its weights into this thread's own buffers), copy the result out."""
    from .codegen import emit_nest
    spec, pro, epi = _phases(kg, g)
    for j, nest in enumerate(pro):
        kg.begin(f"group{k}_sparse_in{j}", chunks=g.chunks)
        emit_nest(kg, nest, split=True)
        kg.end()
    kg.begin(f"group{k}_sparse", chunks=g.chunks)
    units = sparse_units(spec)
    kg.use_chunks(units)
    _emit_kernel(kg, g, spec, kg.part(units))
    kg.end()
    kg.begin(f"group{k}_sparse_out", chunks=g.chunks)
    emit_nest(kg, epi, split=True)
    kg.end()


def _emit_kernel(kg, g, spec: SparseSpec, units=None) -> None:
    """The kernel, on units [start, end) of sparse_units (i64 values; default all)."""
    e = g.eqns[0]
    if spec.kernel == "axpy":
        _emit_axpy(kg, spec, e, g.temps["xt"], g.temps["ot"], units)
        return
    temps = dict(g.temps)
    if units is not None:                       # this thread's own packed weights
        from .plan import slot_elems
        for name, one in sparse_temps(spec).items():
            if name in ("vp", "ip"):
                mine = Buf("scratch", -1, one.dtype, one.size)
                kg.bind_slot(mine, temps[name], slot_elems(one.size, one.dtype) * one.dtype.itemsize, kg.tid)
                temps[name] = mine
    _emit_perm(kg, spec, e, temps, units)


def _c(v: int) -> ir.Constant:
    from .codegen import I64
    return ir.Constant(I64, v)


class _Entries:
    """The stored weights of output column (or, transposed, input row) n: loop over them, giving
    (k, value) for each, with every index clamped."""

    def __init__(self, kg, spec: SparseSpec, e: Eqn):
        from .codegen import Lanes
        self.kg, self.spec = kg, spec
        self.bufs = [kg.plan.views[a].buf for a in e.inputs[1:]]
        self.cx1 = Lanes(kg, 1)

    def load(self, buf, offset):
        from .codegen import storage_type
        b = self.kg.b
        ty = storage_type(buf.dtype)
        return b.load(b.gep(self.kg.base_ptr(buf), [offset], source_etype=ty), typ=ty, align=buf.dtype.itemsize)

    def each(self, n, body) -> None:
        from .codegen import I64, counted_loop
        b, spec = self.kg.b, self.spec
        if spec.nm is None:
            indptr, indices, values = self.bufs
            nnz = values.size
            lo = self.cx1.clamp_index(b.sext(self.load(indptr, n), I64), nnz)
            hi = self.cx1.clamp_index(b.sext(self.load(indptr, b.add(n, _c(1))), I64), nnz)
            with counted_loop(b, hi, start=lo) as p:
                k = self.cx1.clamp_index(b.sext(self.load(indices, p), I64), max(spec.k - 1, 0))
                body(k, self.load(values, p))
            return
        values, indices = self.bufs
        nn, mm = spec.nm
        if spec.k == 0:
            return
        with counted_loop(b, spec.k // mm) as grp:
            for j in range(nn):
                off = b.add(b.mul(b.add(b.mul(grp, _c(nn)), _c(j)), _c(spec.n)), n)
                pos = b.zext(self.load(indices, off), I64)
                pos = b.select(b.icmp_unsigned(">", pos, _c(mm - 1)), _c(mm - 1), pos)
                body(b.add(b.mul(grp, _c(mm)), pos), self.load(values, off))


def _emit_axpy(kg, spec: SparseSpec, e: Eqn, xt: Buf, ot: Buf, units=None) -> None:
    from .codegen import counted_loop, opaque_alloca, scalar_type
    b = kg.b
    W, mp = spec.vw, spec.mp
    ety = scalar_type(spec.cd)
    vty = ir.VectorType(ety, W)
    esize = spec.cd.itemsize
    fma = kg.declare(f"llvm.fma.v{W}{'f64' if esize == 8 else 'f32'}", vty, [vty, vty, vty])
    xbase, obase = kg.base_ptr(xt), kg.base_ptr(ot)
    entries = _Entries(kg, spec, e)
    accs = [opaque_alloca(kg.setup, vty) for _ in range(ROW_VECTORS)]

    def vptr(base, row, m0, r):
        return b.gep(base, [b.add(b.add(b.mul(row, _c(mp)), m0), _c(r * W))], source_etype=ety)

    def splat(s):
        v = b.insert_element(ir.Constant(vty, None), s, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(v, ir.Constant(vty, None), ir.Constant(ir.VectorType(ir.IntType(32), W), None))

    def block(m0, nv):
        # (static loops of no trip run once in counted_loop: the callers skip empty ones)
        with counted_loop(b, spec.inner if spec.transpose else spec.outer) as n:
            if not spec.transpose:
                for r in range(nv):
                    b.store(ir.Constant(vty, None), accs[r])

                def gather_row(k, v):
                    s = splat(v)
                    for r in range(nv):
                        xv = b.load(vptr(xbase, k, m0, r), typ=vty, align=esize)
                        b.store(b.call(fma, [s, xv, b.load(accs[r], typ=vty)]), accs[r])
                entries.each(n, gather_row)
                for r in range(nv):
                    b.store(b.load(accs[r], typ=vty), vptr(obase, n, m0, r), align=esize)
            else:
                xr = [b.load(vptr(xbase, n, m0, r), typ=vty, align=esize) for r in range(nv)]

                def scatter_row(k, v):
                    s = splat(v)
                    for r in range(nv):
                        p = vptr(obase, k, m0, r)
                        b.store(b.call(fma, [s, xr[r], b.load(p, typ=vty, align=esize)]), p, align=esize)
                entries.each(n, scatter_row)

    if (spec.inner if spec.transpose else spec.outer) == 0:
        return
    step = ROW_VECTORS * W
    full = mp // step * step
    if units is not None:                       # units [start, end): full blocks, then single vectors
        start, end = units
        nfull = full // step
        sel = lambda c, x, y: b.select(c, x, y)  # noqa: E731
        if full:
            hi = sel(b.icmp_signed("<", end, _c(nfull)), end, _c(nfull))
            with counted_loop(b, hi, start=start) as u:
                block(b.mul(u, _c(step)), ROW_VECTORS)
        if full < mp:
            lo = sel(b.icmp_signed(">", start, _c(nfull)), start, _c(nfull))
            with counted_loop(b, end, start=lo) as u:
                block(b.add(_c(full), b.mul(b.sub(u, _c(nfull)), _c(W))), 1)
        return
    if full:
        with counted_loop(b, full, step=step) as m0:
            block(m0, ROW_VECTORS)
    if full < mp:
        with counted_loop(b, mp, start=full, step=W) as m0:
            block(m0, 1)


def _emit_perm(kg, spec: SparseSpec, e: Eqn, temps: dict, units=None) -> None:
    """Panels of NR = 2W columns (``units``: panels [start, end), default all): pack values and lane
    indices, then MR x NR micro-tiles."""
    from .codegen import I32, I64, counted_loop, opaque_alloca, scalar_type
    b = kg.b
    W, NR, MR = spec.vw, spec.nr, PERM_ROWS
    nn, mm = spec.nm
    f64 = spec.cd.name == "f64"
    ety = scalar_type(spec.cd)
    ity = I64 if f64 else I32
    vty, ivty = ir.VectorType(ety, W), ir.VectorType(ity, W)
    esize = spec.cd.itemsize
    fma = kg.declare(f"llvm.fma.v{W}{'f64' if f64 else 'f32'}", vty, [vty, vty, vty])
    # a group of M fits a 128-bit lane: broadcast it to every lane and pick in-lane (vpermilps, cheaper
    # than the cross-lane vpermps); otherwise one vector of W k's and a cross-lane permute
    in_lane = mm * spec.cd.itemsize == 16 and IN_LANE
    if in_lane:
        perm = kg.declare("llvm.x86.avx512.vpermilvar.pd.512" if f64 else "llvm.x86.avx512.vpermilvar.ps.512",
                          vty, [vty, ivty])
    else:
        perm = kg.declare("llvm.x86.avx512.permvar.df.512" if f64 else "llvm.x86.avx512.permvar.sf.512", vty, [vty, ivty])
    values, indices = (kg.plan.views[a].buf for a in e.inputs[1:])
    vals_p, idx_p = kg.base_ptr(values), kg.base_ptr(indices)
    vp, ip, xp, op = (kg.base_ptr(temps[t]) for t in ("vp", "ip", "xp", "op"))
    q_all = spec.k // mm * nn                     # stored rows
    qp = spec.kp // mm * nn                       # with the zero rows of the padded k
    jc_rows = W // mm * nn                        # stored rows per vector of k
    chunks = spec.kp // W
    accs = [[opaque_alloca(kg.setup, vty) for _ in range(2)] for _ in range(MR)]

    j0, j1 = (0, spec.np_) if units is None else (b.mul(units[0], _c(NR)), b.mul(units[1], _c(NR)))
    with counted_loop(b, j1, start=j0, step=NR) as jc:
        # pack: vp[q][c], ip[q][c] for the panel's columns (0 past the last column or stored row);
        # whole panels in vectors, the last partial one element by element
        def lane_base(q):
            return _c(0) if in_lane else b.mul(b.urem(b.udiv(q, _c(nn)), _c(W // mm)), _c(mm))

        def put(q, c, v, lane):
            dst = b.add(b.mul(q, _c(NR)), _c(c))
            b.store(v, b.gep(vp, [dst], source_etype=ety), align=esize)
            b.store(lane, b.gep(ip, [dst], source_etype=ity), align=ity.width // 8)

        i8v = ir.VectorType(ir.IntType(8), W)
        with b.if_else(b.icmp_signed("<=", b.add(jc, _c(NR)), _c(spec.n))) as (whole, part):
            with whole:
                with counted_loop(b, q_all) as q:
                    for h in range(2):
                        off = b.add(b.add(b.mul(q, _c(spec.n)), jc), _c(h * W))
                        v = b.load(b.gep(vals_p, [off], source_etype=ety), typ=vty, align=esize)
                        pos = b.zext(b.load(b.gep(idx_p, [off], source_etype=ir.IntType(8)), typ=i8v, align=1), ivty)
                        top = ir.Constant(ivty, [mm - 1] * W)
                        pos = b.select(b.icmp_unsigned(">", pos, top), top, pos)
                        base = lane_base(q)
                        base = b.trunc(base, ity) if ity != I64 else base
                        bv = b.shuffle_vector(b.insert_element(ir.Constant(ivty, None), base, ir.Constant(I32, 0)),
                                              ir.Constant(ivty, None), ir.Constant(ir.VectorType(I32, W), None))
                        dst = b.add(b.mul(q, _c(NR)), _c(h * W))
                        b.store(v, b.gep(vp, [dst], source_etype=ety), align=esize)
                        b.store(b.add(bv, pos), b.gep(ip, [dst], source_etype=ity), align=ity.width // 8)
                if qp > q_all:
                    with counted_loop(b, qp, start=q_all) as q:
                        for c in range(NR):
                            put(q, c, ir.Constant(ety, 0.0), ir.Constant(ity, 0))
            with part:
                with counted_loop(b, qp) as q:
                    for c in range(NR):
                        col = b.add(jc, _c(c))
                        inside = b.and_(b.icmp_signed("<", col, _c(spec.n)), b.icmp_signed("<", q, _c(q_all)))
                        off = b.select(inside, b.add(b.mul(q, _c(spec.n)), col), _c(0))
                        v = b.load(b.gep(vals_p, [off], source_etype=ety), typ=ety, align=esize)
                        pos = b.zext(b.load(b.gep(idx_p, [off], source_etype=ir.IntType(8)), typ=ir.IntType(8)), I64)
                        pos = b.select(b.icmp_unsigned(">", pos, _c(mm - 1)), _c(mm - 1), pos)
                        lane = b.add(lane_base(q), pos)
                        put(q, c, b.select(inside, v, ir.Constant(ety, 0.0)), lane if f64 else b.trunc(lane, I32))
        with counted_loop(b, spec.mr, step=MR) as ir_:
            for row in accs:
                for a in row:
                    b.store(ir.Constant(vty, None), a)
            steps, per_step, width = (spec.kp // mm, nn, mm) if in_lane else (chunks, jc_rows, W)
            with counted_loop(b, steps) as t:
                xs = []
                for r in range(MR):
                    p = b.gep(xp, [b.add(b.mul(b.add(ir_, _c(r)), _c(spec.kp)), b.mul(t, _c(width)))], source_etype=ety)
                    if in_lane:
                        part = b.load(p, typ=ir.VectorType(ety, mm), align=esize)
                        xs.append(b.shuffle_vector(part, ir.Constant(part.type, None),
                                                   ir.Constant(ir.VectorType(I32, W), [i % mm for i in range(W)])))
                    else:
                        xs.append(b.load(p, typ=vty, align=esize))
                for j in range(per_step):
                    base = b.mul(b.add(b.mul(t, _c(per_step)), _c(j)), _c(NR))
                    for v in range(2):
                        at = b.add(base, _c(v * W))
                        wv = b.load(b.gep(vp, [at], source_etype=ety), typ=vty, align=esize)
                        iv = b.load(b.gep(ip, [at], source_etype=ity), typ=ivty, align=ity.width // 8)
                        for r in range(MR):
                            picked = b.call(perm, [xs[r], iv])
                            b.store(b.call(fma, [picked, wv, b.load(accs[r][v], typ=vty)]), accs[r][v])
            for r in range(MR):
                for v in range(2):
                    dst = b.add(b.mul(b.add(ir_, _c(r)), _c(spec.np_)), b.add(jc, _c(v * W)))
                    b.store(b.load(accs[r][v], typ=vty), b.gep(op, [dst], source_etype=ety), align=esize)
