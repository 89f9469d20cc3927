"""int8 x int8 -> int32 dot_general as a packed GEMM on AVX-512 VNNI (``vpdpbusd``).

``vpdpbusd`` multiplies *unsigned* bytes by signed bytes, four products per 32-bit lane, and adds
them to the lane without saturation. Signed A is made unsigned by adding 128 (an xor of the sign
bit) while it is packed, and the surplus ``128 * sum_k B[k, j]`` is subtracted by starting each
accumulator at ``-128 * colsum(B)`` (computed while B is packed). All arithmetic is modulo 2^32,
like the interpreter's int64 sum cast to int32, so the result is exact for every int8 value.

Layout (BLIS-style blocking, as gemm.py): for each KC x NC block of B and MC x KC block of A,

* B panels of NR = 32 columns: per group of 4 k, 32 columns x 4 bytes (byte ``4c + t`` is
  B[k0 + t, c]), i.e. two zmm registers; then the panel's 32 corrections ``-128 * colsum`` (i32).
  K is padded to a multiple of 4 with zero rows, so whatever A holds there adds nothing.
* A panels of MR rows: row r holds its KC (padded) bytes + 128, contiguous, so packing A is a
  vector copy with an xor; the micro-kernel broadcasts one 32-bit word (4 k) per row and k group.

The micro-kernel keeps an MR x 32 block of C in MR * 2 zmm accumulators. Hosts without avx512vnni
keep the generic reduction (gemm.emit_dot_as_reduction).
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from compiler.ir.core import dtype as to_dtype

from .codegen import I1, I8, I32, I64, PTR, Lanes, counted_loop, opaque_alloca
from .plan import Buf, View

NR = 32                    # columns per B panel: two zmm of 16 int32 lanes
LANES = 16                 # int32 lanes per zmm
I32_DT = to_dtype("i32")


@dataclass
class IntGemmSpec:
    batch: list            # [(size, a_stride, b_stride, c_stride)]
    m: int
    n: int
    k: int
    a: tuple               # (offset, stride along m, stride along k)
    b: tuple               # (offset, stride along k, stride along n)
    mr: int
    mc: int
    kc: int                # a multiple of 4
    nc: int                # a multiple of NR


def has_vnni(host) -> bool:
    on = {f[1:] for f in host.features.split(",") if f.startswith("+")}
    return host.vector_bytes >= 64 and {"avx512f", "avx512bw", "avx512vnni"} <= on


def applies(eqn, a_view: View, b_view: View) -> bool:
    """An int8 x int8 dot with an int32 result, on a host with VNNI, without run-time offsets."""
    from .engine import host
    a, b = eqn.inputs
    return (a.aval.dtype.name == "i8" and b.aval.dtype.name == "i8" and eqn.outvars[0].aval.dtype.name == "i32"
            and not a_view.dyn and not b_view.dyn and has_vnni(host()))


def int_gemm_spec(eqn, a_view: View, b_view: View, mr: int = 8) -> IntGemmSpec | None:
    from .gemm import gemm_geometry
    geometry = gemm_geometry(eqn, a_view, b_view)
    if geometry is None:
        return None
    batch, m, n, k, a_addr, b_addr = geometry
    kc = min(512, -(-k // 4) * 4)
    mc = min(192, -(-m // mr) * mr)
    nc = min(1536, -(-n // NR) * NR)
    return IntGemmSpec(batch, m, n, k, a_addr, b_addr, mr, mc, kc, nc)


def int_gemm_temps(spec: IntGemmSpec) -> dict:
    """Packed A (MC x KC bytes) and packed B (NC/NR panels of KC/4 x NR words plus NR corrections)."""
    return {"pack_a": Buf("scratch", -1, I32_DT, spec.mc * spec.kc // 4),
            "pack_b": Buf("scratch", -1, I32_DT, spec.nc * (spec.kc // 4 + 1))}


def emit_int_gemm(kg, g) -> None:
    """The whole product, or (in a chunked step of a threaded plan: g.split == "cols") this chunk's
    range of NR-column panels, packing into this thread's own A and B buffers."""
    from .gemm import for_each_batch
    from .plan import slot_elems
    spec: IntGemmSpec = g.gemm
    e = g.eqns[-1]
    a, bvar = e.inputs
    av, bv = kg.plan.views[a], kg.plan.views[bvar]
    out = kg.plan.views[g.out]
    b = kg.b
    ukernel = _microkernel(kg, spec.mr)
    c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
    j0, j1 = c64(0), c64(spec.n)
    if kg.chunk is not None:
        temps = int_gemm_temps(spec)
        bufs = []
        for name in ("pack_a", "pack_b"):
            mine = Buf("scratch", -1, I32_DT, temps[name].size)
            kg.bind_slot(mine, g.temps[name], slot_elems(temps[name].size, I32_DT) * 4, kg.tid)
            bufs.append(mine)
        pa, pb = (kg.base_ptr(x) for x in bufs)
        panels = -(-spec.n // NR)
        kg.use_chunks(panels)
        start, end = kg.part(panels)
        j0, j1 = b.mul(start, c64(NR)), b.mul(end, c64(NR))
        j1 = b.select(b.icmp_signed("<", j1, c64(spec.n)), j1, c64(spec.n))
    else:
        pa, pb = kg.base_ptr(g.temps["pack_a"]), kg.base_ptr(g.temps["pack_b"])
    pc_ = kg.base_ptr(out.buf)

    def vmin(x, y):
        return b.select(b.icmp_signed("<", x, y), x, y)

    def blocks(a0, b0, c0):
        with counted_loop(b, j1, start=j0, step=spec.nc) as jc:
            nc = vmin(c64(spec.nc), b.sub(j1, jc))
            with counted_loop(b, spec.k, step=spec.kc) as pc:
                kc = vmin(c64(spec.kc), b.sub(c64(spec.k), pc))
                k4 = b.ashr(b.add(kc, c64(3)), c64(2))                 # k groups of 4 in this block
                pack_b(b0, pc, jc, kc, k4, nc)
                with counted_loop(b, spec.m, step=spec.mc) as ic:
                    mc = vmin(c64(spec.mc), b.sub(c64(spec.m), ic))
                    pack_a(a0, ic, pc, kc, k4, mc)
                    first = b.icmp_signed("==", pc, c64(0))
                    with counted_loop(b, nc, step=NR) as jr:
                        nr = vmin(c64(NR), b.sub(nc, jr))
                        with counted_loop(b, mc, step=spec.mr) as ir_:
                            mr = vmin(c64(spec.mr), b.sub(mc, ir_))
                            ap = b.gep(pa, [b.mul(ir_, k4)], source_etype=I32)
                            bp = b.gep(pb, [b.mul(jr, b.add(k4, c64(1)))], source_etype=I32)
                            coff = b.add(c0, b.add(b.mul(b.add(ic, ir_), c64(spec.n)), b.add(jc, jr)))
                            cp = b.gep(pc_, [coff], source_etype=I32)
                            b.call(ukernel, [ap, bp, cp, c64(spec.n), k4, mr, nr, first])

    def pack_b(b0, pc, jc, kc, k4, nc):
        """Panel q (columns jc+q .. +32) at word q*(k4+1): per k group 128 interleaved bytes, then
        -128 * the column sums. Rows past kc and columns past nc read an in-bounds element and are
        zeroed."""
        cx = Lanes(kg, NR)
        sbk, sbn = spec.b[1], spec.b[2]
        zero8 = cx.const(to_dtype("i8"), 0)
        lanes = ir.Constant(ir.VectorType(I64, NR), list(range(NR)))
        sums = kg.alloca(ir.VectorType(I32, NR))
        concat = ir.Constant(ir.VectorType(I32, 2 * NR), list(range(2 * NR)))
        interleave = ir.Constant(ir.VectorType(I32, 4 * NR),
                                 [(t // 2) * 2 * NR + (t % 2) * NR + c for c in range(NR) for t in range(4)])

        def panel(q, edge):
            b.store(ir.Constant(ir.VectorType(I32, NR), None), sums)
            base = b.mul(q, b.add(k4, c64(1)))
            cols = None
            if edge is not None:
                inside = b.icmp_signed("<=", lanes, cx.splat(edge))
                cols = b.select(inside, lanes, cx.splat(edge))
            with counted_loop(b, k4) as kk:
                rows = []
                for t in range(4):
                    kin = b.add(b.mul(kk, c64(4)), c64(t))
                    valid = b.icmp_signed("<", kin, kc)
                    krow = b.add(pc, b.select(valid, kin, b.sub(kc, c64(1))))
                    row = b.add(b0, b.add(b.mul(krow, c64(sbk)), b.mul(b.add(jc, q), c64(sbn))))
                    if edge is None:
                        v = kg.load(cx, bv.buf, row, sbn)
                    else:
                        v = kg.load(cx, bv.buf, b.add(cx.splat(row), b.mul(cols, cx.splat(c64(sbn)))), None)
                        v = b.select(inside, v, zero8)
                    rows.append(b.select(valid, v, zero8))
                s = b.load(sums, typ=ir.VectorType(I32, NR))
                for v in rows:
                    s = b.add(s, b.sext(v, ir.VectorType(I32, NR)))
                b.store(s, sums)
                lo = b.shuffle_vector(rows[0], rows[1], concat)
                hi = b.shuffle_vector(rows[2], rows[3], concat)
                packed = b.shuffle_vector(lo, hi, interleave)
                dst = b.gep(pb, [b.add(base, b.mul(kk, c64(NR)))], source_etype=I32)
                b.store(packed, dst, align=4)
            corr = b.mul(b.load(sums, typ=ir.VectorType(I32, NR)), Lanes(kg, NR).splat_const(I32, -128))
            b.store(corr, b.gep(pb, [b.add(base, b.mul(k4, c64(NR)))], source_etype=I32), align=4)

        with counted_loop(b, nc, step=NR) as q:
            last = b.sub(vmin(c64(NR), b.sub(nc, q)), c64(1))
            with b.if_else(b.icmp_signed("==", last, c64(NR - 1))) as (full, edge):
                with full:
                    panel(q, None)
                with edge:
                    panel(q, last)

    def pack_a(a0, ic, pc, kc, k4, mc):
        """Row r of panel p at byte (p*k4 + r*k4)*4: A[row, pc:pc+kc] + 128, padded to k4*4 bytes.
        Rows past mc repeat row ic (their results are never stored); 64 bytes at a time, then bytes."""
        sam, sak = spec.a[1], spec.a[2]
        w = 64
        cxw, cx1 = Lanes(kg, w), Lanes(kg, 1)
        i8 = to_dtype("i8")
        flip_w, flip_1 = cxw.const(i8, -128), cx1.const(i8, -128)
        pbytes = pa                                          # byte addressing of the packed words
        with counted_loop(b, mc, step=spec.mr) as p:
            rows = vmin(c64(spec.mr), b.sub(mc, p))
            for r in range(spec.mr):
                inside = b.icmp_signed("<", c64(r), rows)
                row = b.select(inside, b.add(b.add(ic, p), c64(r)), ic)
                src0 = b.add(a0, b.add(b.mul(row, c64(sam)), b.mul(pc, c64(sak))))
                dst0 = b.mul(b.add(b.mul(p, k4), b.mul(c64(r), k4)), c64(4))
                full = b.mul(b.ashr(kc, c64(6)), c64(w))
                with counted_loop(b, full, step=w) as kk:
                    v = kg.load(cxw, av.buf, b.add(src0, b.mul(kk, c64(sak))), sak)
                    b.store(b.xor(v, flip_w), b.gep(pbytes, [b.add(dst0, kk)], source_etype=I8), align=1)
                with counted_loop(b, b.mul(k4, c64(4)), start=full) as kk:
                    kin = b.select(b.icmp_signed("<", kk, kc), kk, b.sub(kc, c64(1)))
                    v = kg.load(cx1, av.buf, b.add(src0, b.mul(kin, c64(sak))))
                    b.store(b.xor(v, flip_1), b.gep(pbytes, [b.add(dst0, kk)], source_etype=I8), align=1)

    for_each_batch(kg, spec.batch, c64(spec.a[0]), c64(spec.b[0]), c64(out.offset), blocks)


_UKERNEL_ARGS = [PTR, PTR, PTR, I64, I64, I64, I64, I1]


def _microkernel(kg, mr_max: int) -> ir.Function:
    """The VNNI micro-kernel, declared as an outside function: like the float ones (gemm.py), it is
    compiled once per process (gemm.ukernel_address), not in every program's module."""
    return kg.declare(f"tracejit_ukernel_vnni_{mr_max}x{NR}", ir.VoidType(), _UKERNEL_ARGS)


def build_microkernel(kg, mr_max: int, name: str) -> ir.Function:
    """``ukernel(Ap, Bp, C, ldc, k4, mr, nr, first)``: C[:mr, :nr] (=|+=) (Ap + 128)^T Bp - 128 colsum.
    ``kg``: the runtime module (mathlib.RuntimeModule)."""
    vty, bty = ir.VectorType(I32, LANES), ir.VectorType(I8, 4 * LANES)
    nv = NR // LANES
    fn = ir.Function(kg.module, ir.FunctionType(ir.VoidType(), _UKERNEL_ARGS), name=name)
    fn.attributes.add("nounwind")
    ap, bp, cp, ldc, k4, mr, nr, first = fn.args
    for p in (ap, bp, cp):
        p.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    dp = kg.declare("llvm.x86.avx512.vpdpbusd.512", vty, [vty, bty, bty])
    c64 = lambda v: ir.Constant(I64, v)  # noqa: E731
    corr = [b.load(b.gep(bp, [b.add(b.mul(k4, c64(NR)), c64(v * LANES))], source_etype=I32), typ=vty, align=4)
            for v in range(nv)]
    accs = [[opaque_alloca(b, vty) for _ in range(nv)] for _ in range(mr_max)]
    for row in accs:
        for v, acc in enumerate(row):
            b.store(corr[v], acc)
    rows = [b.gep(ap, [b.mul(c64(r), k4)], source_etype=I32) for r in range(mr_max)]
    undef_idx = ir.Constant(ir.VectorType(I32, LANES), None)
    with counted_loop(b, k4) as k:
        bvec = [b.load(b.gep(bp, [b.add(b.mul(k, c64(NR)), c64(v * LANES))], source_etype=I32), typ=bty, align=4)
                for v in range(nv)]
        for r in range(mr_max):
            word = b.load(b.gep(rows[r], [k], source_etype=I32), typ=I32, align=4)
            sv = b.shuffle_vector(b.insert_element(ir.Constant(vty, None), word, ir.Constant(I32, 0)),
                                  ir.Constant(vty, None), undef_idx)
            sv = b.bitcast(sv, bty)
            for v in range(nv):
                b.store(b.call(dp, [b.load(accs[r][v], typ=vty), sv, bvec[v]]), accs[r][v])
    # write back: full tiles with vector stores; edge tiles through a stack tile, element by element
    full = b.and_(b.icmp_signed("==", mr, c64(mr_max)), b.icmp_signed("==", nr, c64(NR)))
    tile = opaque_alloca(b, ir.ArrayType(I32, mr_max * NR))
    with b.if_else(full) as (then, otherwise):
        with then:
            for r in range(mr_max):
                for v in range(nv):
                    p = b.gep(cp, [b.add(b.mul(c64(r), ldc), c64(v * LANES))], source_etype=I32)
                    acc = b.load(accs[r][v], typ=vty)
                    old = b.load(p, typ=vty, align=4)
                    b.store(b.select(first, acc, b.add(old, acc)), p, align=4)
        with otherwise:
            for r in range(mr_max):
                for v in range(nv):
                    b.store(b.load(accs[r][v], typ=vty), b.gep(tile, [c64(r * NR + v * LANES)], source_etype=I32),
                            align=4)
            with counted_loop(b, mr) as r:
                with counted_loop(b, nr) as c:
                    t = b.load(b.gep(tile, [b.add(b.mul(r, c64(NR)), c)], source_etype=I32), typ=I32, align=4)
                    p = b.gep(cp, [b.add(b.mul(r, ldc), c)], source_etype=I32)
                    b.store(b.select(first, t, b.add(b.load(p, typ=I32, align=4), t)), p, align=4)
    b.ret_void()
    return fn
