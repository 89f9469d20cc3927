"""dot_general: a packed, register-blocked GEMM for floats, and a vectorized reduction for the rest.

The GEMM follows the BLIS layering: B is packed into KC x NR panels and A into MR x KC panels (zero
padded, converted to the compute type, any strides), then a micro-kernel keeps an MR x NR block of C
in MR * NR/W vector registers (2 vectors per row: 8 x 32 floats on AVX-512) and does one broadcast
and two FMAs per row per k. Edge tiles compute in full and store under a mask. The micro-kernel
is compiled once per process and only named in each program's module (``ukernel_address``).

Everything else (integer dots, matrix-vector, tiny products) is a reduction of a*b over the
contracting dimensions on the index space (batch, lhs free, contract, rhs free), which vectorizes
along rhs free dimensions or, for matrix-vector, along the contraction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from llvmlite import ir

from compiler.ir.core import DType, dtype as to_dtype

from .codegen import I1, I64, PTR, Fused, Lanes, Reduction, counted_loop, emit_nest, opaque_alloca, scalar_type
from .plan import Buf, Linear, Nest, View, coalesce


def compute_dtype(d: DType) -> DType:
    """What the interpreter multiplies in: f64 stays, other floats use f32, integers int64."""
    if d.is_float:
        return to_dtype("f64") if d.name == "f64" else to_dtype("f32")
    return to_dtype("i64")


def _split(eqn, a_view: View, b_view: View):
    (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
    a, b = eqn.inputs
    free_a = [d for d in range(a.aval.ndim) if d not in ca and d not in ba]
    free_b = [d for d in range(b.aval.ndim) if d not in cb and d not in bb]
    return ca, cb, ba, bb, free_a, free_b


# ----------------------------------------------------------------------------------------------
# Dot as a reduction
# ----------------------------------------------------------------------------------------------

def emit_dot(kg, g) -> None:
    from . import intgemm
    if isinstance(g.gemm, intgemm.IntGemmSpec):
        intgemm.emit_int_gemm(kg, g)
    elif g.gemm is not None:
        emit_gemm(kg, g)
    else:
        emit_dot_as_reduction(kg, g)


def emit_dot_as_reduction(kg, g, split: str | None = None, out: View | None = None) -> None:
    """``split`` ("kept" / "red") and ``out`` (a partial-result slot): in threaded steps."""
    e = g.eqns[-1]
    a, b = e.inputs
    av, bv = kg.plan.views[a], kg.plan.views[b]
    out = out if out is not None else kg.plan.views[g.out]
    ca, cb, ba, bb, free_a, free_b = _split(e, av, bv)
    nb, nfa, nc = len(ba), len(free_a), len(ca)
    shape = ([a.aval.shape[d] for d in ba] + [a.aval.shape[d] for d in free_a] + [a.aval.shape[d] for d in ca]
             + [b.aval.shape[d] for d in free_b])
    a_strides = ([av.strides[d] for d in ba] + [av.strides[d] for d in free_a] + [av.strides[d] for d in ca]
                 + [0] * len(free_b))
    b_strides = ([bv.strides[d] for d in bb] + [0] * nfa + [bv.strides[d] for d in cb]
                 + [bv.strides[d] for d in free_b])
    fz = Fused(kg, shape, [])
    ka = fz.add(a_strides, av.offset, av.dyn)
    kb = fz.add(b_strides, bv.offset, bv.dyn)
    cd = compute_dtype(a.aval.dtype)
    src = a.aval.dtype

    def operand(pt, env):
        cx = pt.cx
        x = cx.convert(kg.load(cx, av.buf, pt.bases[ka], pt.lane_strides[ka], pt.mask), src, cd)
        y = cx.convert(kg.load(cx, bv.buf, pt.bases[kb], pt.lane_strides[kb], pt.mask), src, cd)
        return cx.b.fmul(x, y, flags=("contract",)) if cd.is_float else cx.b.mul(x, y)

    out_view = View(out.buf, out.offset, out.shape, out.strides)
    # the output's strides over (batch, free_a, free_b) go onto the index space (batch, free_a, contract,
    # free_b): Reduction spreads them over the kept dimensions in order.
    red = Reduction(kg, fz, shape, tuple(range(nb + nfa, nb + nfa + nc)), "dot", cd, operand, out_view,
                    split=split)
    red.emit()


# ----------------------------------------------------------------------------------------------
# The GEMM
# ----------------------------------------------------------------------------------------------

@dataclass
class GemmSpec:
    batch: list            # [(size, a_stride, b_stride, c_stride)]
    m: int
    n: int
    k: int
    a: tuple               # (offset, stride along m, stride along k)
    b: tuple               # (offset, stride along k, stride along n)
    cd: DType              # compute dtype
    mr: int
    nr: int
    vw: int
    mc: int
    kc: int
    nc: int
    conv: "ImplicitConv | None" = None     # B read from a convolution's input, C in its layout


@dataclass(frozen=True)
class ImplicitConv:
    """A 2-D convolution's GEMM without its im2col buffer (plan.Planner._implicit_conv): B's row
    ci*KH*KW + ky*KW + kx, column (n*OH + oy)*OW + ox is x[n, ci, oy*sy + ky*dy, ox + kx*dx] of the
    input, zero-padded beforehand (so every read is inside it), packed straight from there; C's row
    o of that column is out[n, o, oy, ox]. Unit stride along the width, OW a multiple of the vector
    width and OH*OW of NR, so one vector of columns is one run along a row of x and one micro-tile
    stays in one image."""
    x: View                    # the (padded) input (N, C, H, W), unit stride along W
    kh: int
    kw: int
    oh: int
    ow: int
    sy: int
    dy: int
    dx: int
    o: int                     # output channels (C's rows)


def blocking(m: int, n: int, k: int, cd: DType, vector_bytes: int) -> tuple[int, int, int, int, int, int]:
    """(mr, nr, vw, mc, kc, nc): the register tile, vector width and cache blocks of a GEMM."""
    vw = max(4, vector_bytes // cd.itemsize)
    mr = 8 if vector_bytes >= 64 else 6
    nr = 2 * vw
    if n <= vw and vector_bytes >= 64:
        # a narrow product (a layer's few outputs): one vector of columns, more rows per tile, so a
        # tile wastes at most one vector's lanes instead of two (and still keeps 16 accumulators)
        mr, nr = 16, vw
    kc = min(256, k)
    mc = min(144, -(-m // mr) * mr)
    nc = min(2048, -(-n // nr) * nr)
    return mr, nr, vw, mc, kc, nc


def implicit_conv_spec(conv: ImplicitConv, m: int, n: int, k: int, a_addr: tuple, cd: DType) -> GemmSpec | None:
    """The GEMM of a convolution whose B is packed from its input, or None when its shape does not
    allow it (see ImplicitConv)."""
    from .engine import host
    vector_bytes = host().vector_bytes
    mr, nr, vw, mc, kc, nc = blocking(m, n, k, cd, vector_bytes)
    if conv.ow % vw or (conv.oh * conv.ow) % nr:
        return None
    return GemmSpec([], m, n, k, a_addr, (0, 0, 0), cd, mr, nr, vw, mc, kc, nc, conv)


def gemm_spec(eqn, a_view: View, b_view: View, vector_bytes: int):
    """The GEMM shape of a float dot_general (or an int8 one, see intgemm.py), or None when it should
    run as a reduction."""
    from . import intgemm
    a, b = eqn.inputs
    if intgemm.applies(eqn, a_view, b_view):
        return intgemm.int_gemm_spec(eqn, a_view, b_view)
    if not a.aval.dtype.is_float or a_view.dyn or b_view.dyn:
        return None
    geometry = gemm_geometry(eqn, a_view, b_view)
    if geometry is None:
        return None
    batch, m, n, k, a_addr, b_addr = geometry
    cd = compute_dtype(a.aval.dtype)
    mr, nr, vw, mc, kc, nc = blocking(m, n, k, cd, vector_bytes)
    return GemmSpec(batch, m, n, k, a_addr, b_addr, cd, mr, nr, vw, mc, kc, nc)


def gemm_geometry(eqn, a_view: View, b_view: View):
    """(batch, m, n, k, (a offset, m stride, k stride), (b offset, k stride, n stride)) of a dot whose
    free and contracting dimensions each coalesce to one; None otherwise (or when m, n < 2)."""
    a, b = eqn.inputs
    ca, cb, ba, bb, free_a, free_b = _split(eqn, a_view, b_view)
    sa, sb = a.aval.shape, b.aval.shape

    def one(sizes, *stride_lists):
        lins = [Linear(list(s)) for s in stride_lists]
        dims = coalesce(sizes, lins)
        if len(dims) > 1:
            return None
        return int(np.prod(sizes)), [lin.strides[0] if dims else 0 for lin in lins]

    mm = one([sa[d] for d in free_a], [a_view.strides[d] for d in free_a])
    nn = one([sb[d] for d in free_b], [b_view.strides[d] for d in free_b])
    kk = one([sa[d] for d in ca], [a_view.strides[d] for d in ca], [b_view.strides[d] for d in cb])
    if mm is None or nn is None or kk is None:
        return None
    m, (sam,) = mm
    n, (sbn,) = nn
    k, (sak, sbk) = kk
    if m < 2 or n < 2 or k < 1:
        return None
    batch = []
    c_stride = m * n
    batch_sizes = [sa[d] for d in ba]
    for i, (da, db) in enumerate(zip(ba, bb)):
        batch.append((sa[da], a_view.strides[da], b_view.strides[db], int(np.prod(batch_sizes[i + 1:])) * c_stride))
    return batch, m, n, k, (a_view.offset, sam, sak), (b_view.offset, sbk, sbn)


def gemm_temps(spec: GemmSpec, out_dtype: DType) -> dict:
    from . import intgemm
    if isinstance(spec, intgemm.IntGemmSpec):
        return intgemm.int_gemm_temps(spec)
    temps = {"pack_a": Buf("scratch", -1, spec.cd, spec.mc * spec.kc),
             "pack_b": Buf("scratch", -1, spec.cd, spec.kc * spec.nc)}
    if out_dtype != spec.cd:
        size = spec.m * spec.n * int(np.prod([s for s, *_ in spec.batch]))
        temps["c"] = Buf("scratch", -1, spec.cd, size)
    return temps


class _Gemm:
    """The pieces of one GEMM group's loops, emitted into whichever function ``kg`` is building."""

    def __init__(self, kg, g):
        self.kg, self.g = kg, g
        self.spec = spec = g.gemm
        e = g.eqns[-1]
        a, bvar = e.inputs
        self.av, self.bv = kg.plan.views[a], kg.plan.views[bvar]
        self.out = kg.plan.views[g.out]
        self.cbuf = g.temps.get("c", self.out.buf)
        self.c_off = 0 if "c" in g.temps else self.out.offset
        self.ety = scalar_type(spec.cd)
        self.esize = spec.cd.itemsize
        self.ukernel = _microkernel(kg, spec)
        # B read in place (its full panels are not packed) when its rows are contiguous, already of
        # the compute type, and all of M is one block: then each panel is read once anyway.
        self.direct_b = (spec.conv is None and spec.b[2] == 1 and not self.bv.dyn
                         and self.bv.buf.dtype == spec.cd and spec.m <= spec.mc)

    def c64(self, v):
        return ir.Constant(I64, v)

    def vmin(self, x, y):
        b = self.kg.b
        return b.select(b.icmp_signed("<", x, y), x, y)

    def bind(self, pa=None, pb=None) -> None:
        """The packing buffers of the function being built (default: the group's temps)."""
        kg, g = self.kg, self.g
        self.pa = pa if pa is not None else kg.base_ptr(g.temps["pack_a"])
        self.pb = pb if pb is not None else kg.base_ptr(g.temps["pack_b"])
        self.pc_ = kg.base_ptr(self.cbuf)

    def batch_offsets(self, flat):
        """(a, b, c) element offsets of batch item ``flat`` (an i64 value, row-major over the batch)."""
        b, c64 = self.kg.b, self.c64
        a0, b0, c0 = c64(self.spec.a[0]), c64(self.spec.b[0]), c64(self.c_off)
        rest = flat
        for i in reversed(range(len(self.spec.batch))):
            size, sa_, sb_, sc_ = self.spec.batch[i]
            t = b.urem(rest, c64(size)) if i else rest
            rest = b.udiv(rest, c64(size))
            a0, b0, c0 = b.add(a0, b.mul(t, c64(sa_))), b.add(b0, b.mul(t, c64(sb_))), b.add(c0, b.mul(t, c64(sc_)))
        return a0, b0, c0

    def static_batch_offsets(self, flat: int):
        spec = self.spec
        a0, b0, c0 = spec.a[0], spec.b[0], self.c_off
        for size, sa_, sb_, sc_ in reversed(spec.batch):
            t, flat = flat % size, flat // size
            a0, b0, c0 = a0 + t * sa_, b0 + t * sb_, c0 + t * sc_
        return a0, b0, c0

    def blocks(self, a0, b0, c0, rows=None, cols=None, depth=None) -> None:
        """C = A B for one batch item, blocked: B panels (KC x NC), A panels (MC x KC), micro-tiles.
        ``rows`` / ``cols`` / ``depth``: (start, end) of the part of M / N / K to do (i64 values;
        default all); the first KC block of ``depth`` stores into C, later ones add."""
        spec, kg, c64 = self.spec, self.kg, self.c64
        b = kg.b
        i0, i1 = rows or (c64(0), c64(spec.m))
        j0, j1 = cols or (c64(0), c64(spec.n))
        p0, p1 = depth or (c64(0), c64(spec.k))
        with counted_loop(b, j1, start=j0, step=spec.nc) as jc:
            nc = self.vmin(c64(spec.nc), b.sub(j1, jc))
            with counted_loop(b, p1, start=p0, step=spec.kc) as pc:
                kc = self.vmin(c64(spec.kc), b.sub(p1, pc))
                if self.direct_b:                 # only the edge panel, if any
                    self.pack_b(b0, pc, jc, kc, nc, b.mul(b.udiv(nc, c64(spec.nr)), c64(spec.nr)), nc)
                else:
                    self.pack_b(b0, pc, jc, kc, nc)
                with counted_loop(b, i1, start=i0, step=spec.mc) as ic:
                    mc = self.vmin(c64(spec.mc), b.sub(i1, ic))
                    self.pack_a(a0, ic, pc, kc, mc)
                    self.tiles(c0, ic, mc, jc, c64(0), nc, kc, b.icmp_signed("==", pc, p0), b0, pc)

    def tiles(self, c0, ic, mc, jc, j0, j1, kc, first, b0=None, pc=None) -> None:
        """Micro-tiles of the packed block: columns [j0, j1) of the B block, all mc packed rows
        (full panels straight from B itself when ``direct_b``: then b0 and pc locate them)."""
        spec, kg, c64 = self.spec, self.kg, self.c64
        b = kg.b
        with counted_loop(b, j1, start=j0, step=spec.nr) as jr:
            nr = self.vmin(c64(spec.nr), b.sub(j1, jr))
            bp = b.gep(self.pb, [b.mul(jr, kc)], source_etype=self.ety)
            ldb = c64(spec.nr)
            if self.direct_b:
                whole = b.icmp_signed("==", nr, c64(spec.nr))
                src = b.gep(kg.base_ptr(self.bv.buf), [b.add(b0, b.add(b.mul(pc, c64(spec.b[1])), b.add(jc, jr)))],
                            source_etype=self.ety)
                bp = b.select(whole, src, bp)
                ldb = b.select(whole, c64(spec.b[1]), ldb)
            if spec.conv is None:
                ldc, col = c64(spec.n), b.add(jc, jr)
            else:                                   # column (n, pixel) of out[n, o, pixel]
                pixels = spec.conv.oh * spec.conv.ow
                j = b.add(jc, jr)
                ldc = c64(pixels)
                col = b.add(b.mul(b.udiv(j, ldc), c64(spec.conv.o * pixels)), b.urem(j, ldc))
            with counted_loop(b, mc, step=spec.mr) as ir_:
                mr = self.vmin(c64(spec.mr), b.sub(mc, ir_))
                ap = b.gep(self.pa, [b.mul(ir_, kc)], source_etype=self.ety)
                coff = b.add(c0, b.add(b.mul(b.add(ic, ir_), ldc), col))
                cp = b.gep(self.pc_, [coff], source_etype=self.ety)
                b.call(self.ukernel, [ap, bp, cp, ldc, ldb, kc, mr, nr, first])

    def pack_b(self, b0, pc, jc, kc, nc, q0=None, q1=None) -> None:
        """Bp[q][k][c] = B[pc + k, jc + q*NR + c] (0 past the edge), q over NR-column panels
        (columns [q0, q1) of the block, default all).

        Past the edge each lane reads the last valid column instead (always in bounds) and is zeroed.
        """
        if self.spec.conv is not None:
            self.pack_b_conv(pc, jc, kc, nc, q0, q1)
            return
        spec, kg, c64 = self.spec, self.kg, self.c64
        b = kg.b
        bv, pb, ety, esize = self.bv, self.pb, self.ety, self.esize
        cd = spec.cd
        cx = Lanes(kg, spec.vw)
        sbk, sbn = spec.b[1], spec.b[2]
        halves = range(spec.nr // spec.vw)

        def panel(q, kk, edge):
            row = b.add(b0, b.add(b.mul(b.add(pc, kk), c64(sbk)), b.mul(b.add(jc, q), c64(sbn))))
            dst = b.add(b.mul(q, kc), b.mul(kk, c64(spec.nr)))
            for half in halves:
                if edge is None:                 # a full panel: vector loads (gathers if B is strided)
                    v = kg.load(cx, bv.buf, b.add(row, c64(half * spec.vw * sbn)), sbn)
                else:
                    lanes = ir.Constant(ir.VectorType(I64, spec.vw), list(range(half * spec.vw, (half + 1) * spec.vw)))
                    inside = b.icmp_signed("<=", lanes, cx.splat(edge))
                    cols = b.select(inside, lanes, cx.splat(edge))
                    v = kg.load(cx, bv.buf, b.add(cx.splat(row), b.mul(cols, cx.splat(c64(sbn)))), None)
                    v = b.select(inside, cx.convert(v, bv.buf.dtype, cd), cx.const(cd, 0))
                v = cx.convert(v, bv.buf.dtype, cd) if edge is None else v
                b.store(v, b.gep(pb, [b.add(dst, c64(half * spec.vw))], source_etype=ety), align=esize)

        def transposed(q):
            """B's columns are contiguous (B = X^T): vw x vw blocks, loaded as columns and transposed
            in registers, then the rows left over one by one."""
            vw = spec.vw
            kfull = b.mul(b.udiv(kc, c64(vw)), c64(vw))
            with counted_loop(b, kfull, step=vw) as k0:
                for half in halves:
                    col0 = b.add(b.add(b0, b.add(pc, k0)), b.mul(b.add(jc, b.add(q, c64(half * vw))), c64(sbn)))
                    vs = [cx.convert(kg.load(cx, bv.buf, b.add(col0, c64(c * sbn)), 1), bv.buf.dtype, cd)
                          for c in range(vw)]
                    for r, v in enumerate(transpose(b, vs)):
                        dst = b.add(b.add(b.mul(q, kc), b.mul(b.add(k0, c64(r)), c64(spec.nr))), c64(half * vw))
                        b.store(v, b.gep(pb, [dst], source_etype=ety), align=esize)
            with counted_loop(b, kc, start=kfull) as kk:
                panel(q, kk, None)

        with counted_loop(b, nc if q1 is None else q1, start=0 if q0 is None else q0, step=spec.nr) as q:
            last = b.sub(self.vmin(c64(spec.nr), b.sub(nc, q)), c64(1))
            with b.if_else(b.icmp_signed("==", last, c64(spec.nr - 1))) as (full, edge):
                with full:
                    if sbk == 1 and sbn != 1:
                        transposed(q)
                    else:
                        with counted_loop(b, kc) as kk:
                            panel(q, kk, None)
                with edge:
                    with counted_loop(b, kc) as kk:
                        panel(q, kk, last)

    def pack_b_conv(self, pc, jc, kc, nc, q0=None, q1=None) -> None:
        """Bp[q][k][c] = B[pc + k, jc + q*NR + c] of an ImplicitConv: each vector of columns is one
        plain load of a row of the padded input (im2col into a block that stays in cache)."""
        spec, kg, c64, cv = self.spec, self.kg, self.c64, self.spec.conv
        b = kg.b
        cx = Lanes(kg, spec.vw)
        x = cv.x
        sn, sc, sy_, _ = x.strides
        pixels, taps = cv.oh * cv.ow, cv.kh * cv.kw
        with counted_loop(b, nc if q1 is None else q1, start=0 if q0 is None else q0, step=spec.nr) as q:
            starts = []                         # per vector of columns: where its run starts in x
            for v in range(spec.nr // spec.vw):
                j = b.add(jc, b.add(q, c64(v * spec.vw)))
                pix = b.urem(j, c64(pixels))
                starts.append(b.add(b.add(c64(x.offset), b.mul(b.udiv(j, c64(pixels)), c64(sn))),
                                    b.add(b.mul(b.udiv(pix, c64(cv.ow)), c64(cv.sy * sy_)), b.urem(pix, c64(cv.ow)))))
            with counted_loop(b, kc) as kk:
                r = b.add(pc, kk)
                tap = b.urem(r, c64(taps))
                tap_off = b.add(b.mul(b.udiv(r, c64(taps)), c64(sc)),
                                b.add(b.mul(b.udiv(tap, c64(cv.kw)), c64(cv.dy * sy_)),
                                      b.mul(b.urem(tap, c64(cv.kw)), c64(cv.dx))))
                dst = b.add(b.mul(q, kc), b.mul(kk, c64(spec.nr)))
                for v, start in enumerate(starts):
                    val = cx.convert(kg.load(cx, x.buf, b.add(start, tap_off), 1), x.buf.dtype, spec.cd)
                    b.store(val, b.gep(self.pb, [b.add(dst, c64(v * spec.vw))], source_etype=self.ety),
                            align=self.esize)

    def pack_a(self, a0, ic, pc, kc, mc) -> None:
        """Ap[p][k][r] = A[ic + p*MR + r, pc + k] (0 past the edge), p over MR-row panels."""
        spec, kg, c64 = self.spec, self.kg, self.c64
        b = kg.b
        av, pa, ety, esize, cd = self.av, self.pa, self.ety, self.esize, spec.cd
        cx1 = Lanes(kg, 1)
        sam, sak = spec.a[1], spec.a[2]
        mr = spec.mr

        def scalar_rows(p, rows, k0):
            with counted_loop(b, kc, start=k0) as kk:
                for r in range(mr):
                    dst = b.gep(pa, [b.add(b.add(b.mul(p, kc), b.mul(kk, c64(mr))), c64(r))], source_etype=ety)
                    inside = b.icmp_signed("<", c64(r), rows)
                    row = b.select(inside, b.add(b.add(ic, p), c64(r)), c64(0))
                    src = b.add(a0, b.add(b.mul(row, c64(sam)), b.mul(b.add(pc, kk), c64(sak))))
                    v = cx1.convert(kg.load(cx1, av.buf, src), av.buf.dtype, cd)
                    b.store(b.select(inside, v, cx1.const(cd, 0)), dst, align=esize)

        def transposed(p):
            """A's rows are contiguous: mr x mr blocks loaded as rows, transposed in registers."""
            cx = Lanes(kg, mr)
            kfull = b.mul(b.udiv(kc, c64(mr)), c64(mr))
            with counted_loop(b, kfull, step=mr) as k0:
                row0 = b.add(a0, b.add(b.mul(b.add(ic, p), c64(sam)), b.add(pc, k0)))
                vs = [cx.convert(kg.load(cx, av.buf, b.add(row0, c64(r * sam)), 1), av.buf.dtype, cd)
                      for r in range(mr)]
                for j, v in enumerate(transpose(b, vs)):
                    dst = b.add(b.mul(p, kc), b.mul(b.add(k0, c64(j)), c64(mr)))
                    b.store(v, b.gep(pa, [dst], source_etype=ety), align=esize)
            scalar_rows(p, c64(mr), kfull)

        fast = sak == 1 and sam != 1 and mr & (mr - 1) == 0 and not av.dyn
        with counted_loop(b, mc, step=mr) as p:
            rows = self.vmin(c64(mr), b.sub(mc, p))
            if fast:
                with b.if_else(b.icmp_signed("==", rows, c64(mr))) as (whole, edge):
                    with whole:
                        transposed(p)
                    with edge:
                        scalar_rows(p, rows, c64(0))
            else:
                scalar_rows(p, rows, c64(0))

    def convert_out(self, split: bool = False) -> None:
        """C was computed in the compute type: round it into the output."""
        if "c" in self.g.temps:
            tmp = View(self.cbuf, 0, self.out.shape, self.out.strides)
            emit_nest(self.kg, Nest(self.out.shape, [], [(tmp, self.out, "store")]), split=split)


def for_each_batch(kg, batch, a0, b0, c0, body) -> None:
    """Loops over the batch dimensions [(size, a stride, b stride, c stride)], advancing the A, B and
    C offsets; ``body(a, b, c)`` emits one matrix product (shared by the float and int8 GEMMs)."""
    b = kg.b
    if not batch:
        body(a0, b0, c0)
        return
    (size, sa, sb, sc), rest = batch[0], batch[1:]
    with kg.loop(size) as t:
        step = lambda base, stride: b.add(base, b.mul(t, ir.Constant(I64, stride)))  # noqa: E731
        for_each_batch(kg, rest, step(a0, sa), step(b0, sb), step(c0, sc), body)


def emit_gemm(kg, g) -> None:
    gm = _Gemm(kg, g)
    gm.bind()
    spec, c64 = gm.spec, gm.c64
    for_each_batch(kg, spec.batch, c64(spec.a[0]), c64(spec.b[0]), c64(gm.c_off), gm.blocks)
    gm.convert_out()


def emit_gemm_threaded(kg, g, k: int) -> None:
    """A GEMM group as threaded steps (plan.gemm_split chose how).

    "batch" / "cols" / "rows" / "ksplit": one step whose chunks are batch items / column panels / row
    panels / ranges of KC blocks, each thread packing into its own A and B buffers; "ksplit" writes a
    partial product per chunk and a second step sums them in chunk order.
    "tiles": per (batch item, NC block, KC block), one step packs the B block (shared, chunks of
    NR-column panels), then one step computes its micro-tiles in chunks of a grid of row panels x
    column panels, each thread packing the A rows of its chunk into its own buffer (BLIS's
    parallel loops, with B packed once per block whatever the thread count).
    """
    from . import intgemm
    from .codegen import emit_combine
    from .plan import slot_elems
    if isinstance(g.gemm, intgemm.IntGemmSpec):            # column chunks only (plan.parallelize)
        kg.begin(f"group{k}_int_gemm", chunks=g.chunks)
        intgemm.emit_int_gemm(kg, g)
        kg.end()
        return
    gm = _Gemm(kg, g)
    spec, c64 = gm.spec, gm.c64
    T = kg.threads
    slot_a = slot_elems(spec.mc * spec.kc, spec.cd) * spec.cd.itemsize
    batch = int(np.prod([s for s, *_ in spec.batch], dtype=np.int64)) if spec.batch else 1
    how = g.split
    if how != "tiles":
        kg.begin(f"group{k}_gemm", chunks=g.chunks)
        slot_b = slot_elems(spec.kc * spec.nc, spec.cd) * spec.cd.itemsize
        pa = Buf("scratch", -1, spec.cd, spec.mc * spec.kc)
        pb = Buf("scratch", -1, spec.cd, spec.kc * spec.nc)
        kg.bind_slot(pa, g.temps["pack_a"], slot_a, kg.tid)
        kg.bind_slot(pb, g.temps["pack_b"], slot_b, kg.tid)
        parts = None
        if how == "ksplit":
            parts = g.temps["partials"]
            size = spec.m * spec.n * batch
            mine = Buf("scratch", parts.index, spec.cd, size)
            kg.bind_slot(mine, parts, slot_elems(size, spec.cd) * spec.cd.itemsize, kg.chunk)
            gm.cbuf, gm.c_off = mine, 0
        gm.bind(kg.base_ptr(pa), kg.base_ptr(pb))
        b = kg.b
        if how == "batch":
            kg.use_chunks(batch)
            start, end = kg.part(batch)
            with counted_loop(b, end, start=start) as t:
                gm.blocks(*gm.batch_offsets(t))
        else:
            unit, total = {"cols": (spec.nr, spec.n), "rows": (spec.mr, spec.m), "ksplit": (spec.kc, spec.k)}[how]
            kg.use_chunks(-(-total // unit))
            start, end = kg.part(-(-total // unit))
            r = (b.mul(start, c64(unit)), gm.vmin(b.mul(end, c64(unit)), c64(total)))
            part = {"cols": "cols", "rows": "rows", "ksplit": "depth"}[how]
            with counted_loop(b, batch) as t:
                gm.blocks(*gm.batch_offsets(t), **{part: r})
        count = kg.nchunks
        kg.end()
        if how == "ksplit":
            kg.begin(f"group{k}_gemm_sum", chunks=g.chunks)
            kg.use_chunks(1)
            emit_combine(kg, "dot", spec.cd, parts, slot_elems(spec.m * spec.n * batch, spec.cd), count, gm.out)
            kg.end()
            return
    else:
        gm.direct_b = False
        b_chunks = max(1, min(2 * T, -(-min(spec.n, spec.nc) // spec.nr)))
        kg.begin(f"group{k}_gemm_packb", chunks=b_chunks, extra=3, schedule=False)
        b = kg.b
        gm.bind(pa=ir.Constant(PTR, None))
        b0, jc, pc = kg.extra_args
        nc = gm.vmin(c64(spec.nc), b.sub(c64(spec.n), jc))
        kc = gm.vmin(c64(spec.kc), b.sub(c64(spec.k), pc))
        panels = b.udiv(b.add(nc, c64(spec.nr - 1)), c64(spec.nr))
        q0 = b.mul(b.udiv(b.mul(kg.chunk, panels), c64(b_chunks)), c64(spec.nr))
        q1 = b.mul(b.udiv(b.mul(b.add(kg.chunk, c64(1)), panels), c64(b_chunks)), c64(spec.nr))
        q1 = gm.vmin(q1, nc)
        gm.pack_b(b0, pc, jc, kc, nc, q0, q1)
        packb = kg.end()

        m_panels = -(-spec.m // spec.mr)
        rm = max(1, min(g.chunks, m_panels))
        rn = max(1, g.chunks // rm)
        kg.begin(f"group{k}_gemm", chunks=rm * rn, extra=4, schedule=False)
        b = kg.b
        pa = Buf("scratch", -1, spec.cd, spec.mc * spec.kc)
        kg.bind_slot(pa, g.temps["pack_a"], slot_a, kg.tid)
        gm.bind(pa=kg.base_ptr(pa))
        a0, c0, jc, pc = kg.extra_args
        nc = gm.vmin(c64(spec.nc), b.sub(c64(spec.n), jc))
        kc = gm.vmin(c64(spec.kc), b.sub(c64(spec.k), pc))
        cm, cn = b.udiv(kg.chunk, c64(rn)), b.urem(kg.chunk, c64(rn))
        i0 = b.mul(b.udiv(b.mul(cm, c64(m_panels)), c64(rm)), c64(spec.mr))
        i1 = gm.vmin(b.mul(b.udiv(b.mul(b.add(cm, c64(1)), c64(m_panels)), c64(rm)), c64(spec.mr)), c64(spec.m))
        panels = b.udiv(b.add(nc, c64(spec.nr - 1)), c64(spec.nr))
        j0 = b.mul(b.udiv(b.mul(cn, panels), c64(rn)), c64(spec.nr))
        j1 = gm.vmin(b.mul(b.udiv(b.mul(b.add(cn, c64(1)), panels), c64(rn)), c64(spec.nr)), nc)
        first = b.icmp_signed("==", pc, c64(0))
        with counted_loop(b, i1, start=i0, step=spec.mc) as ic:
            mc = gm.vmin(c64(spec.mc), b.sub(i1, ic))
            gm.pack_a(a0, ic, pc, kc, mc)
            gm.tiles(c0, ic, mc, jc, j0, j1, kc, first)
        compute = kg.end()
        for t in range(batch):
            a0_, b0_, c0_ = gm.static_batch_offsets(t)
            for jc_ in range(0, spec.n, spec.nc):
                for pc_ in range(0, spec.k, spec.kc):
                    kg.schedule_step(packb, b_chunks, (b0_, jc_, pc_))
                    kg.schedule_step(compute, rm * rn, (a0_, c0_, jc_, pc_))
    if "c" in g.temps:
        kg.begin(f"group{k}_gemm_out", chunks=g.chunks)
        gm.convert_out(split=True)
        kg.end()


def transpose(b: ir.IRBuilder, rows: list) -> list:
    """Transpose n vectors of n lanes (n a power of two) with log2(n) rounds of two-input shuffles:
    round s swaps the off-diagonal s x s blocks of row pairs (i, i + s)."""
    n = len(rows)
    rows = list(rows)
    s = 1
    while s < n:
        lo = ir.Constant(ir.VectorType(ir.IntType(32), n), [l if not l & s else n + l - s for l in range(n)])
        hi = ir.Constant(ir.VectorType(ir.IntType(32), n), [l + s if not l & s else n + l for l in range(n)])
        for i in range(n):
            if i & s:
                continue
            a, c = rows[i], rows[i + s]
            rows[i], rows[i + s] = b.shuffle_vector(a, c, lo), b.shuffle_vector(a, c, hi)
        s *= 2
    return rows


_UKERNEL_ARGS = [PTR, PTR, PTR, I64, I64, I64, I64, I64, I1]
_UKERNELS: dict[str, int] = {}       # symbol -> address of the compiled micro-kernel
_UKERNEL_TRACKERS: list = []         # their resource trackers, which keep the code loaded


def _microkernel(kg, spec: GemmSpec) -> ir.Function:
    """The micro-kernel for ``spec``'s compute type and register tile, declared as an outside
    function: it is compiled once per process (``ukernel_address``), not in every GEMM program's
    module, where it was close to half of a lone matmul's LLVM time."""
    name = f"tracejit_ukernel_{spec.cd.name}_{spec.mr}x{spec.nr}_v{spec.vw}"
    return kg.declare(name, ir.VoidType(), _UKERNEL_ARGS)


def ukernel_address(name: str) -> int | None:
    """The address of micro-kernel ``name`` (``tracejit_ukernel_<dtype>_<MR>x<NR>_v<W>``, or the int8
    ``tracejit_ukernel_vnni_<MR>x<NR>``), compiling and linking it on first use."""
    import re
    from . import intgemm
    from .mathlib import RuntimeModule
    if name not in _UKERNELS:
        m = re.fullmatch(r"tracejit_ukernel_(\w+?)_(\d+)x(\d+)_v(\d+)", name)
        vnni = re.fullmatch(r"tracejit_ukernel_vnni_(\d+)x(\d+)", name)
        if vnni is not None and int(vnni.group(2)) == intgemm.NR:
            holder = RuntimeModule("tracejit_ukernel")
            intgemm.build_microkernel(holder, int(vnni.group(1)), name)
        elif m is not None and m.group(1) != "vnni":
            holder = RuntimeModule("tracejit_ukernel")
            _build_microkernel(holder, GemmTile(to_dtype(m.group(1)), int(m.group(2)), int(m.group(3)),
                                                int(m.group(4))), name)
        else:
            return None
        tracker, addresses = holder.link([name])
        _UKERNELS[name] = addresses[name]
        _UKERNEL_TRACKERS.append(tracker)
    return _UKERNELS[name]


@dataclass(frozen=True)
class GemmTile:
    """What a micro-kernel depends on: compute type, register tile MR x NR, vector width."""
    cd: DType
    mr: int
    nr: int
    vw: int


def _build_microkernel(kg, spec: GemmTile, name: str) -> ir.Function:
    """``ukernel(Ap, Bp, C, ldc, ldb, kc, mr, nr, first)``: C[:mr, :nr] (=|+=) Ap^T Bp over kc, B's
    rows ldb elements apart (NR in a packed panel). ``kg``: the runtime module (mathlib.RuntimeModule)."""
    ety = scalar_type(spec.cd)
    esize = spec.cd.itemsize
    vty = ir.VectorType(ety, spec.vw)
    nv = spec.nr // spec.vw
    fn = ir.Function(kg.module, ir.FunctionType(ir.VoidType(), _UKERNEL_ARGS), name=name)
    fn.attributes.add("nounwind")
    ap, bp, cp, ldc, ldb, kc, mr, nr, first = fn.args
    for p in (ap, bp, cp):
        p.add_attribute("noalias")
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)
    fma = kg.declare(f"llvm.fma.v{spec.vw}{'f64' if esize == 8 else 'f32'}", vty, [vty, vty, vty])
    accs = [[opaque_alloca(b, vty) for _ in range(nv)] for _ in range(spec.mr)]
    zero = ir.Constant(vty, None)
    for row in accs:
        for a in row:
            b.store(zero, a)
    with counted_loop(b, kc) as k:
        bvec = [b.load(b.gep(bp, [b.add(b.mul(k, ldb), ir.Constant(I64, v * spec.vw))],
                             source_etype=ety), typ=vty, align=esize) for v in range(nv)]
        for r in range(spec.mr):
            s = b.load(b.gep(ap, [b.add(b.mul(k, ir.Constant(I64, spec.mr)), ir.Constant(I64, r))], source_etype=ety),
                       typ=ety, align=esize)
            sv = b.shuffle_vector(b.insert_element(ir.Constant(vty, None), s, ir.Constant(ir.IntType(32), 0)),
                                  ir.Constant(vty, None), ir.Constant(ir.VectorType(ir.IntType(32), spec.vw), None))
            for v in range(nv):
                b.store(b.call(fma, [sv, bvec[v], b.load(accs[r][v], typ=vty)]), accs[r][v])
    # write back: full tiles with vector stores; edge tiles go through a stack tile, element by element
    full = b.and_(b.icmp_signed("==", mr, ir.Constant(I64, spec.mr)), b.icmp_signed("==", nr, ir.Constant(I64, spec.nr)))
    tile = opaque_alloca(b, ir.ArrayType(ety, spec.mr * spec.nr))
    with b.if_else(full) as (then, otherwise):
        with then:
            for r in range(spec.mr):
                for v in range(nv):
                    p = b.gep(cp, [b.add(b.mul(ir.Constant(I64, r), ldc), ir.Constant(I64, v * spec.vw))],
                              source_etype=ety)
                    acc = b.load(accs[r][v], typ=vty)
                    with b.if_else(first) as (store, add):
                        with store:
                            b.store(acc, p, align=esize)
                        with add:
                            b.store(b.fadd(b.load(p, typ=vty, align=esize), acc), p, align=esize)
        with otherwise:
            for r in range(spec.mr):
                for v in range(nv):
                    p = b.gep(tile, [ir.Constant(I64, r * spec.nr + v * spec.vw)], source_etype=ety)
                    b.store(b.load(accs[r][v], typ=vty), p, align=esize)
            with counted_loop(b, mr) as r:
                with counted_loop(b, nr) as c:
                    t = b.load(b.gep(tile, [b.add(b.mul(r, ir.Constant(I64, spec.nr)), c)], source_etype=ety),
                               typ=ety, align=esize)
                    p = b.gep(cp, [b.add(b.mul(r, ldc), c)], source_etype=ety)
                    b.store(b.select(first, t, b.fadd(b.load(p, typ=ety, align=esize), t)), p, align=esize)
    b.ret_void()
    return fn
