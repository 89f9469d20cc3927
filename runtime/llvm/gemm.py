"""dot_general: a packed, register-blocked GEMM for floats, and a vectorized reduction for the rest.

The GEMM follows the BLIS layering: B is packed into KC x NR panels and A into MR x KC panels (zero
padded, converted to the compute type, any strides), then a micro-kernel keeps an MR x NR block of C
in MR * NR/W vector registers (2 vectors per row: 8 x 32 floats on AVX-512) and does one broadcast
and two FMAs per row per k. Edge tiles compute in full and store under a mask.

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


def emit_dot_as_reduction(kg, g) -> None:
    e = g.eqns[-1]
    a, b = e.inputs
    av, bv = kg.plan.views[a], kg.plan.views[b]
    out = kg.plan.views[g.out]
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
    red = Reduction(kg, fz, shape, tuple(range(nb + nfa, nb + nfa + nc)), "dot", cd, operand, out_view)
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
    vw = max(4, vector_bytes // cd.itemsize)
    mr = 8 if vector_bytes >= 64 else 6
    nr = 2 * vw
    kc = min(256, k)
    mc = min(144 if mr == 8 else 144, -(-m // mr) * mr)
    nc = min(2048, -(-n // nr) * nr)
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


def emit_gemm(kg, g) -> None:
    spec: GemmSpec = g.gemm
    e = g.eqns[-1]
    a, bvar = e.inputs
    av, bv = kg.plan.views[a], kg.plan.views[bvar]
    out = kg.plan.views[g.out]
    cbuf = g.temps.get("c", out.buf)
    c_off = 0 if "c" in g.temps else out.offset
    b = kg.b
    cd = spec.cd
    ety = scalar_type(cd)
    esize = cd.itemsize
    ukernel = _microkernel(kg, spec)
    pa, pb, pc_ = kg.base_ptr(g.temps["pack_a"]), kg.base_ptr(g.temps["pack_b"]), kg.base_ptr(cbuf)
    c64 = lambda v: ir.Constant(I64, v)  # noqa: E731

    def vmin(x, y):
        return b.select(b.icmp_signed("<", x, y), x, y)

    def over_batch(i, a0, b0, c0):
        if i < len(spec.batch):
            size, sa_, sb_, sc_ = spec.batch[i]
            with kg.loop(size) as t:
                over_batch(i + 1, b.add(a0, b.mul(t, c64(sa_))), b.add(b0, b.mul(t, c64(sb_))),
                           b.add(c0, b.mul(t, c64(sc_))))
            return
        blocks(a0, b0, c0)

    def blocks(a0, b0, c0):
        with counted_loop(b, spec.n, step=spec.nc) as jc:
            nc = vmin(c64(spec.nc), b.sub(c64(spec.n), jc))
            with counted_loop(b, spec.k, step=spec.kc) as pc:
                kc = vmin(c64(spec.kc), b.sub(c64(spec.k), pc))
                pack_b(b0, pc, jc, kc, nc)
                with counted_loop(b, spec.m, step=spec.mc) as ic:
                    mc = vmin(c64(spec.mc), b.sub(c64(spec.m), ic))
                    pack_a(a0, ic, pc, kc, mc)
                    first = b.icmp_signed("==", pc, c64(0))
                    with counted_loop(b, nc, step=spec.nr) as jr:
                        nr = vmin(c64(spec.nr), b.sub(nc, jr))
                        with counted_loop(b, mc, step=spec.mr) as ir_:
                            mr = vmin(c64(spec.mr), b.sub(mc, ir_))
                            ap = b.gep(pa, [b.mul(ir_, kc)], source_etype=ety)
                            bp = b.gep(pb, [b.mul(jr, kc)], source_etype=ety)
                            coff = b.add(c0, b.add(b.mul(b.add(ic, ir_), c64(spec.n)), b.add(jc, jr)))
                            cp = b.gep(pc_, [coff], source_etype=ety)
                            b.call(ukernel, [ap, bp, cp, c64(spec.n), kc, mr, nr, first])

    def pack_b(b0, pc, jc, kc, nc):
        """Bp[q][k][c] = B[pc + k, jc + q*NR + c] (0 past the edge), q over NR-column panels.

        Past the edge each lane reads the last valid column instead (always in bounds) and is zeroed.
        """
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

        with counted_loop(b, nc, step=spec.nr) as q:
            last = b.sub(vmin(c64(spec.nr), b.sub(nc, q)), c64(1))
            with b.if_else(b.icmp_signed("==", last, c64(spec.nr - 1))) as (full, edge):
                with full:
                    with counted_loop(b, kc) as kk:
                        panel(q, kk, None)
                with edge:
                    with counted_loop(b, kc) as kk:
                        panel(q, kk, last)

    def pack_a(a0, ic, pc, kc, mc):
        """Ap[p][k][r] = A[ic + p*MR + r, pc + k] (0 past the edge), p over MR-row panels."""
        cx1 = Lanes(kg, 1)
        sam, sak = spec.a[1], spec.a[2]
        with counted_loop(b, mc, step=spec.mr) as p:
            rows = vmin(c64(spec.mr), b.sub(mc, p))
            with counted_loop(b, kc) as kk:
                for r in range(spec.mr):
                    dst = b.gep(pa, [b.add(b.add(b.mul(p, kc), b.mul(kk, c64(spec.mr))), c64(r))], source_etype=ety)
                    inside = b.icmp_signed("<", c64(r), rows)
                    row = b.select(inside, b.add(b.add(ic, p), c64(r)), c64(0))
                    src = b.add(a0, b.add(b.mul(row, c64(sam)), b.mul(b.add(pc, kk), c64(sak))))
                    v = cx1.convert(kg.load(cx1, av.buf, src), av.buf.dtype, cd)
                    b.store(b.select(inside, v, cx1.const(cd, 0)), dst, align=esize)

    over_batch(0, c64(spec.a[0]), c64(spec.b[0]), c64(c_off))
    if "c" in g.temps:
        tmp = View(cbuf, 0, out.shape, out.strides)
        emit_nest(kg, Nest(out.shape, [], [(tmp, out, "store")]))


def _microkernel(kg, spec: GemmSpec) -> ir.Function:
    """``ukernel(Ap, Bp, C, ldc, kc, mr, nr, first)``: C[:mr, :nr] (=|+=) Ap^T Bp over kc."""
    name = f"ukernel_{spec.cd.name}_{spec.mr}x{spec.nr}"
    fn = kg.module.globals.get(name)
    if fn is not None:
        return fn
    ety = scalar_type(spec.cd)
    esize = spec.cd.itemsize
    vty = ir.VectorType(ety, spec.vw)
    nv = spec.nr // spec.vw
    fn = ir.Function(kg.module, ir.FunctionType(ir.VoidType(), [PTR, PTR, PTR, I64, I64, I64, I64, I1]), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    ap, bp, cp, ldc, kc, mr, nr, first = fn.args
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
        bvec = [b.load(b.gep(bp, [b.add(b.mul(k, ir.Constant(I64, spec.nr)), ir.Constant(I64, v * spec.vw))],
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
