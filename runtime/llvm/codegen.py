"""Plan -> LLVM IR: ``kernel(in..., consts..., outs..., scratch)`` runs the whole program, calling one
internal function per group of the plan (so LLVM optimizes many small functions, in linear time).

Everything is explicitly vectorized: a loop nest walks its index space with the innermost (coalesced)
dimension in vectors of W lanes and one partial vector for the remainder, so the result does not
depend on what the loop vectorizer decides. Each value read from memory is addressed through a
*linear* index function ``offset + sum(i_d * stride_d)``: contiguous strides load vectors, zero
strides load a scalar and splat it, anything else gathers.

Register types: f32/f16/bf16 compute in float (f16/bf16 are rounded after every operation, as numpy
does), f64 in double, integers in their width, bool in i1 (stored as one byte). A contiguous partial
vector (a loop's tail) is read with one masked load and written in pieces of 2^k lanes (masked
stores are slow on this CPU); other partial vectors lane by lane (see KernelGen.load and store).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from llvmlite import ir

from compiler.ir.core import DType, Literal, Var, dtype as to_dtype

from . import mathlib
from .engine import engine, host
from .plan import Group, Linear, Nest, Plan, View, coalesce, contiguous_strides, full_view
from .rules import ELEMENTWISE, KINDS, int_constant

I1, I8, I16, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()
PTR = ir.PointerType()
ARRAY_DATA_OFFSET = 16       # PyArrayObject: PyObject_HEAD (16 bytes), then char *data (checked: abi.py)
FAST = ("contract",)          # FMA contraction only: NaN, inf and signed zeros keep numpy's meaning
I64_DT = to_dtype("i64")


def scalar_type(d: DType) -> ir.Type:
    """The register type of an element."""
    if d.name == "f64":
        return F64
    if d.is_float:
        return F32
    if d.kind == "b":
        return I1
    return ir.IntType(8 * d.itemsize)


def storage_type(d: DType) -> ir.Type:
    """The in-memory type of an element."""
    if d.name in F8_FORMATS:
        return I8
    return {"f16": ir.HalfType(), "bf16": I16, "bool": I8}.get(d.name) or scalar_type(d)


# float8 formats: (mantissa bits, exponent bias, has infinities). e4m3fn has no inf; its only NaN is
# S.1111.111, and overflow (or inf) converts to NaN. e5m2 is IEEE-like: overflow converts to inf.
F8_FORMATS = {"f8_e4m3fn": (3, 7, False), "f8_e5m2": (2, 15, True)}


def vec(ty: ir.Type, w: int) -> ir.Type:
    return ty if w == 1 else ir.VectorType(ty, w)


def _mangle(ty: ir.Type) -> str:
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_mangle(ty.element)}"
    if isinstance(ty, ir.PointerType):
        return "p0"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    return {F32: "f32", F64: "f64"}.get(ty) or "f16"


class Splat(ir.Constant):
    """A vector constant with every lane equal, printed as ``splat (float 2.0)``: one element to
    format instead of W, which keeps code generation of long programs fast."""

    def __init__(self, vty: ir.VectorType, elem: ir.Constant):
        self.type, self.elem = vty, elem
        self.constant = [elem] * vty.count

    def _get_reference(self):
        return f"splat ({self.elem.type} {self.elem.get_reference()})"


class Lanes:
    """What an elementwise rule sees: the builder, the lane count W, and typed helpers."""
    fast = FAST

    def __init__(self, kg: "KernelGen", w: int):
        self.kg, self.b, self.W = kg, kg.b, w

    def rty(self, d: DType) -> ir.Type:
        return vec(scalar_type(d), self.W)

    def const(self, d: DType, value) -> ir.Constant:
        return self.splat_const(scalar_type(d), value)

    def splat_const(self, ty: ir.Type, value) -> ir.Constant:
        if isinstance(ty, ir.IntType):
            c = int_constant(ty, int(value))
        else:
            c = ir.Constant(ty, float(value))
        return c if self.W == 1 else Splat(ir.VectorType(ty, self.W), c)

    def splat(self, x: ir.Value) -> ir.Value:
        if self.W == 1:
            return x
        v = self.b.insert_element(ir.Constant(ir.VectorType(x.type, self.W), None), x, ir.Constant(I32, 0))
        return self.b.shuffle_vector(v, ir.Constant(v.type, None), ir.Constant(ir.VectorType(I32, self.W), None))

    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        return self.kg.declare(name, ret, args)

    def intrinsic(self, name: str, args: list, ret: ir.Type | None = None, mangle: list | None = None):
        tys = [a.type for a in args]
        ret = ret or tys[0]
        full = ".".join([name] + [_mangle(t) for t in (mangle or [tys[0]])])
        return self.b.call(self.declare(full, ret, tys), args)

    def clamp_index(self, i, hi: int):
        """An i64 index (scalar or lanes) clipped into [0, hi], as XLA clamps gathers and slices."""
        b = self.b
        zero, top = self.splat_const(I64, 0), self.splat_const(I64, hi)
        i = b.select(b.icmp_signed("<", i, zero), zero, i)
        return b.select(b.icmp_signed(">", i, top), top, i)

    def math(self, name: str, args: list, d: DType):
        return mathlib.call(self, name, args, d.name == "f64")

    # -- conversions between register representations ----------------------------------------
    def round_to(self, x, d: DType):
        """Round a float register value to what dtype d can hold (f16, bf16); others unchanged."""
        b = self.b
        if d.name == "f16":
            return b.fpext(b.fptrunc(x, vec(ir.HalfType(), self.W)), vec(F32, self.W))
        if d.name == "bf16":
            if isinstance(x.type, ir.DoubleType) or getattr(x.type, "element", None) == F64:
                x = b.fptrunc(x, vec(F32, self.W))
            bits = b.bitcast(x, vec(I32, self.W))
            lsb = b.and_(b.lshr(bits, self.splat_const(I32, 16)), self.splat_const(I32, 1))
            rounded = b.add(b.add(bits, self.splat_const(I32, 0x7FFF)), lsb)
            quiet = b.or_(bits, self.splat_const(I32, 0x00400000))
            nan = b.fcmp_unordered("uno", x, x)
            out = b.and_(b.select(nan, quiet, rounded), self.splat_const(I32, 0xFFFF0000))
            return b.bitcast(out, vec(F32, self.W))
        if d.name in F8_FORMATS:
            return self.f8_decode(self.f8_encode(x, d), d)
        return x

    def f8_encode(self, x, d: DType):
        """f32 lanes -> float8 bytes, rounding to nearest even as ml_dtypes does: the normal range by
        rounding the f32 bit pattern to the target's mantissa bits and rebiasing the exponent, the
        subnormal range by one float addition of a constant whose ulp is the target's subnormal ulp."""
        m, bias, has_inf = F8_FORMATS[d.name]
        b, c = self.b, (lambda v: self.splat_const(I32, v))
        bits = b.bitcast(x, vec(I32, self.W))
        sign = b.and_(b.lshr(bits, c(24)), c(0x80))
        a = b.and_(bits, c(0x7FFFFFFF))
        shift = 23 - m
        rounded = b.add(b.add(a, c((1 << (shift - 1)) - 1)), b.and_(b.lshr(a, c(shift)), c(1)))
        normal = b.sub(b.lshr(rounded, c(shift)), c((127 - bias) << m))
        magic = float(2.0 ** (1 - bias - m + 23))
        summed = b.fadd(b.bitcast(a, vec(F32, self.W)), self.splat_const(F32, magic))
        sub = b.sub(b.bitcast(summed, vec(I32, self.W)), c(int(np.float32(magic).view(np.int32))))
        enc = b.select(b.icmp_unsigned("<", a, c((127 - bias + 1) << 23)), sub, normal)
        if has_inf:                      # overflow -> inf (0x7C), NaN -> 0x7E (or the payload f8_decode keeps)
            enc = b.select(b.icmp_unsigned(">=", enc, c(0x7C)), c(0x7C), enc)
            payload = b.and_(bits, c(3))
            nan = b.or_(c(0x7C), b.select(b.icmp_unsigned("==", payload, c(0)), c(2), payload))
            enc = b.select(b.icmp_unsigned(">", a, c(0x7F800000)), nan, enc)
        else:                            # overflow, inf and NaN -> 0x7F
            enc = b.select(b.icmp_unsigned(">", enc, c(0x7E)), c(0x7F), enc)
        return b.trunc(b.or_(enc, sign), vec(I8, self.W))

    def f8_decode(self, raw, d: DType):
        """float8 bytes -> f32 lanes, exactly: the magnitude bits placed in an f32 pattern and scaled
        by 2^(127 - bias) (which also makes subnormals right); NaN and inf set apart. An e5m2 NaN keeps
        its 2 payload bits in the quiet NaN's low bits, so copies keep the byte (convert drops them)."""
        m, bias, has_inf = F8_FORMATS[d.name]
        b, c = self.b, (lambda v: self.splat_const(I32, v))
        r = b.zext(raw, vec(I32, self.W))
        sign = b.shl(b.and_(r, c(0x80)), c(24))
        mag = b.and_(r, c(0x7F))
        f = b.fmul(b.bitcast(b.shl(mag, c(23 - m)), vec(F32, self.W)), self.splat_const(F32, 2.0 ** (127 - bias)))
        out = b.or_(b.bitcast(f, vec(I32, self.W)), sign)
        if has_inf:
            out = b.select(b.icmp_unsigned("==", mag, c(0x7C)), b.or_(sign, c(0x7F800000)), out)
            nan = b.icmp_unsigned(">", mag, c(0x7C))
            quiet = b.or_(b.or_(sign, c(0x7FC00000)), b.and_(mag, c(3)))
        else:
            nan = b.icmp_unsigned("==", mag, c(0x7F))
            quiet = b.or_(sign, c(0x7FC00000))
        out = b.select(nan, quiet, out)
        return b.bitcast(out, vec(F32, self.W))

    def wrap_i4(self, x):
        """An i8 register reduced to int4's range by wrapping (sign-extend the low nibble)."""
        four = self.splat_const(I8, 4)
        return self.b.ashr(self.b.shl(x, four), four)

    def convert(self, x, src: DType, dst: DType):
        b = self.b
        if src == dst:
            return x
        sty, dty = scalar_type(src), scalar_type(dst)
        out_ty = vec(dty, self.W)
        if dst.kind == "b":
            if src.is_float:
                return b.fcmp_unordered("!=", x, self.const(src, 0.0))
            return b.icmp_unsigned("!=", x, self.const(src, 0))
        if src.kind == "b":
            return b.uitofp(x, out_ty) if dst.is_float else b.zext(x, out_ty)
        if src.is_int and dst.is_int:
            if dty.width < sty.width:
                x = b.trunc(x, out_ty)
            elif dty.width > sty.width:
                x = (b.sext if src.kind == "i" else b.zext)(x, out_ty)
            return self.wrap_i4(x) if dst.name == "i4" else x
        if src.is_int:                     # int -> float, rounding once into the target type
            tmp_ty = vec(ir.HalfType(), self.W) if dst.name == "f16" else out_ty
            y = (b.sitofp if src.kind == "i" else b.uitofp)(x, tmp_ty)
            return b.fpext(y, out_ty) if dst.name == "f16" else self.round_to(y, dst)
        if dst.is_int:                     # float -> int saturates, NaN -> 0 (the interpreter's rule)
            if dty.width <= 16:            # i4, 8 and 16 bits: clamp in float (the bounds are exact),
                fty = sty                  # then a plain conversion (vector fptosi.sat to i8 is 6x slower)
                lo, hi = (-8, 7) if dst.name == "i4" else (int(np.iinfo(dst.np).min), int(np.iinfo(dst.np).max))
                flo, fhi, zero = self.splat_const(fty, lo), self.splat_const(fty, hi), self.splat_const(fty, 0)
                x = b.select(b.fcmp_ordered("<", x, flo), flo, b.select(b.fcmp_ordered(">", x, fhi), fhi, x))
                x = b.select(b.fcmp_unordered("uno", x, x), zero, x)
                return b.trunc(b.fptosi(x, vec(I32, self.W)), out_ty)
            name = "llvm.fptosi.sat" if dst.kind == "i" else "llvm.fptoui.sat"
            return self.intrinsic(name, [x], ret=out_ty, mangle=[out_ty, x.type])
        if src.name in F8_FORMATS:
            x = self.plain_nan(x)
        if dst.name == "f16" and sty == F64:          # numpy rounds f64 -> f16 once
            return b.fpext(b.fptrunc(self.to_f32_round_odd(x), vec(ir.HalfType(), self.W)), out_ty)
        # (ml_dtypes rounds f64 -> f8 through f32, twice; the plain fptrunc below does the same)
        if sty != dty:
            x = b.fpext(x, out_ty) if dty == F64 else b.fptrunc(x, out_ty)
        return self.round_to(self.plain_nan(x) if dst.name in F8_FORMATS else x, dst)

    def plain_nan(self, x):
        """f32 lanes with NaNs made the quiet NaN of their sign, as ml_dtypes converts every NaN (this
        drops the e5m2 payload f8_decode keeps for copies)."""
        b = self.b
        bits = b.bitcast(x, vec(I32, self.W))
        quiet = b.or_(b.and_(bits, self.splat_const(I32, ~0x7FFFFF)), self.splat_const(I32, 0x7FC00000))
        return b.select(b.fcmp_unordered("uno", x, x), b.bitcast(quiet, x.type), x)

    def to_f32_round_odd(self, x):
        """f64 -> f32 rounding to odd: a later rounding to a narrower type is then exact-once
        (LLVM's direct f64 -> f16 needs a compiler-rt call the JIT cannot resolve)."""
        b = self.b
        f = b.fptrunc(x, vec(F32, self.W))
        back = b.fpext(f, x.type)
        inexact = b.fcmp_ordered("!=", back, x)
        away = b.fcmp_ordered(">", self.intrinsic("llvm.fabs", [back]), self.intrinsic("llvm.fabs", [x]))
        bits = b.bitcast(f, vec(I32, self.W))
        bits = b.sub(bits, b.zext(b.and_(inexact, away), bits.type))
        bits = b.or_(bits, b.zext(inexact, bits.type))
        return b.bitcast(bits, vec(F32, self.W))

    def from_storage(self, raw, d: DType):
        b = self.b
        if d.kind == "b":
            return b.icmp_unsigned("!=", raw, ir.Constant(raw.type, None))
        if d.name == "f16":
            return b.fpext(raw, vec(F32, self.W))
        if d.name == "bf16":
            return b.bitcast(b.shl(b.zext(raw, vec(I32, self.W)), self.splat_const(I32, 16)), vec(F32, self.W))
        if d.name in F8_FORMATS:
            return self.f8_decode(raw, d)
        if d.name == "i4":                 # ml_dtypes keeps the value in the low nibble
            return self.wrap_i4(raw)
        return raw

    def to_storage(self, x, d: DType):
        b = self.b
        if d.kind == "b":
            return b.zext(x, vec(I8, self.W))
        if d.name == "f16":
            return b.fptrunc(x, vec(ir.HalfType(), self.W))
        if d.name == "bf16":
            bits = b.bitcast(self.round_to(x, d), vec(I32, self.W))
            return b.trunc(b.lshr(bits, self.splat_const(I32, 16)), vec(I16, self.W))
        if d.name in F8_FORMATS:
            return self.f8_encode(x, d)
        if d.name == "i4":
            return b.and_(x, self.splat_const(I8, 0x0F))
        return x


# ----------------------------------------------------------------------------------------------
# Index spaces: linear address functions, coalescing, points
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def counted_loop(b: ir.IRBuilder, n, start=0, step: int = 1, reverse: bool = False):
    """``for i in range(start, n, step)``; yields i (``n-1+start-i`` when reversed, for step 1).

    ``n`` is an int (a loop of one trip is no loop) or a run-time i64 value.
    """
    static = isinstance(n, int)
    if static and isinstance(start, int) and n - start <= step:
        yield ir.Constant(I64, n - 1 if reverse and step == 1 else start)
        return
    fn = b.function
    n_v = ir.Constant(I64, n) if static else n
    start_v = ir.Constant(I64, start) if isinstance(start, int) else start
    pre = b.block
    head, body, done = fn.append_basic_block("loop"), fn.append_basic_block("body"), fn.append_basic_block("done")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(start_v, pre)
    b.cbranch(b.icmp_signed("<", i, n_v), body, done)
    b.position_at_end(body)
    yield b.sub(b.add(n_v, b.sub(start_v, ir.Constant(I64, 1))), i) if reverse else i
    i.add_incoming(b.add(i, ir.Constant(I64, step)), b.block)
    b.branch(head)
    b.position_at_end(done)


def step(b: ir.IRBuilder, base, i, stride: int):
    """base + i * stride, without the instructions that stride 0 or 1 make pointless."""
    if stride == 0:
        return base
    scaled = i if stride == 1 else b.mul(i, ir.Constant(I64, stride))
    if isinstance(base, ir.Constant) and base.constant == 0:
        return scaled
    return b.add(base, scaled)


class Point:
    """A position in a loop nest: per linear, the scalar offset of lane 0 and the stride between lanes."""

    def __init__(self, cx: Lanes, bases: list, lane_strides: list, mask=None):
        self.cx, self.bases, self.lane_strides, self.mask = cx, bases, lane_strides, mask

    def offsets(self, k: int):
        """Offsets of all lanes of linear k (a vector of i64), or a scalar when W == 1."""
        cx = self.cx
        if cx.W == 1:
            return self.bases[k]
        s = self.lane_strides[k]
        lanes = ir.Constant(ir.VectorType(I64, cx.W), [i * s for i in range(cx.W)])
        return cx.b.add(cx.splat(self.bases[k]), lanes)


class KernelGen:
    """Builds the kernel function for a Plan.

    Single-threaded plans (and every sub-plan: cond branches) keep the plain convention: one function
    ``(in..., consts..., outs..., scratch)`` per group, called in schedule order by ``kernel``. A
    threaded plan (``plan.threads`` > 1) is a list of *steps*: a plain group function runs whole on
    one thread; a *chunked* step function ``(in..., outs..., scratch, chunk, tid, extra...)`` does
    chunk ``chunk`` of ``nchunks`` of its work (``tid`` picks per-thread scratch). See ``finish``.

    Each group function is a thin always-inlined wrapper with that convention around a *body*
    ``(p0, p1, ..., [chunk, tid, extra...])`` that takes the addresses of the buffers it touches,
    in the order it first asks for them (``base_ptr``), rather than reading them off the arguments
    at fixed arena offsets. Groups that do the same work on different buffers (the GEMMs of a
    layer stack and of its gradient, the same elementwise step on every layer) then have bodies
    of the same text, and the module keeps one of each: LLVM's time is spent per distinct body.
    """

    def __init__(self, plan: Plan, parent: "KernelGen | None" = None, prefix: str = ""):
        self.plan = plan
        self.host = host()
        self.prefix = prefix
        if parent is None:
            self.module = ir.Module(name="tracejit")
            self.module.triple = self.host.triple
            self.module.data_layout = str(engine().opt_machine.target_data)
            self.externals: set[str] = set()
            self.bodies: dict[str, ir.Function] = {}     # body text (name left out) -> the body kept
        else:                                   # a cond branch: its functions go into the parent's module
            self.module, self.externals, self.bodies = parent.module, parent.externals, parent.bodies
        self.body_of: dict[str, ir.Function] = {}       # group function name -> its body
        self.nargs = len(plan.in_bufs) + len(plan.const_bufs) + len(plan.out_bufs) + 1
        self.parts: list[ir.Function] = []
        self.threads = getattr(plan, "threads", 1) if parent is None else 1
        self.steps: list[tuple] = []            # threaded: (function, chunks, extra constant args)
        self.chunk = None

    def begin(self, name: str, internal: bool = True, chunks: int | None = None, extra: int = 0,
              schedule: bool = True) -> None:
        """Start a function over the kernel's arguments. Each group gets its own (kept out of line),
        so LLVM optimizes many small functions instead of one huge one: compile time stays linear.

        ``chunks``: a chunked step function (threaded plans only) taking (chunk, tid) and ``extra``
        more i64 arguments after the buffers; ``schedule=False`` leaves scheduling it to the caller
        (``schedule_step``), for a function that runs as several steps with different extra args."""
        chunked = chunks is not None
        ints = [I64] * (2 + extra) if chunked else []
        self.name = self.prefix + name
        self.outlined = internal and name != "kernel"     # a group's function: built as a body (see class)
        if self.outlined:                                  # pointer parameters come as base_ptr asks
            self.fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), ints), name=self.name + ".body")
        else:
            self.fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR] * self.nargs + ints),
                                  name=self.name)
            for a in self.fn.args[:self.nargs]:
                a.add_attribute("noalias")
        self.fn.attributes.add("nounwind")
        if internal:
            self.fn.linkage = "internal"
            self.fn.attributes.add("noinline")
        entry = self.fn.append_basic_block("entry")
        self.setup = ir.IRBuilder(entry)
        self.start = self.fn.append_basic_block("start")
        self.b = ir.IRBuilder(self.start)
        self._ptrs: dict[int, ir.Value] = {}
        self._params: dict[tuple, list] = {}              # (kind, index) -> [parameter, buffer, bytes]
        first_int = 0 if self.outlined else self.nargs
        if chunked:
            self.chunk, self.tid = self.fn.args[first_int], self.fn.args[first_int + 1]
            self.extra_args = list(self.fn.args[first_int + 2:])
        else:
            self.chunk = self.tid = None
            self.extra_args = []
        self.nchunks = chunks or 1
        self._requested = chunks
        self._schedule = schedule
        self.fixed_chunks = False               # several nests share the chunks: never fewer

    def next_step(self, suffix: str) -> None:
        """End this step function and begin the next one like it (a group run as two steps: all
        chunks of the first are done before any of the second starts)."""
        name, chunks = self.name[len(self.prefix):] + suffix, self._requested
        self.end()
        self.begin(name, chunks=chunks)

    def end(self) -> ir.Function:
        """Finish the function begun last; returns what callers call (for a group: its wrapper)."""
        self.b.ret_void()
        self.setup.branch(self.start)
        if self.outlined:
            self.fn = self._wrap(self._keep_body())
        if self.fn.name != "kernel":
            self.parts.append(self.fn)
            if self._schedule and self.fn.name not in ("run", "entry"):
                self.steps.append((self.fn, self.nchunks if self.chunk is not None else None, ()))
        return self.fn

    def _keep_body(self) -> ir.Function:
        """Give the body its pointer parameters (noalias where no other one overlaps its bytes) and
        keep it, unless the module already has a body of the same text: then that one is used."""
        body, params = self.fn, list(self._params.values())
        scratch = [(p, buf.index, buf.index + nbytes) for p, buf, nbytes in params if buf.kind == "scratch"]
        for p, buf, nbytes in params:
            lo, hi = buf.index, buf.index + nbytes
            if buf.kind != "scratch" or not any(q is not p and qlo < hi and lo < qhi for q, qlo, qhi in scratch):
                p.add_attribute("noalias")
        body.args = tuple(p for p, _, _ in params) + body.args
        body.ftype = ir.FunctionType(ir.VoidType(), [a.type for a in body.args])
        body.type = body.ftype.as_pointer()
        head, rest = str(body).split("\n", 1)
        key = head.replace(body.get_reference(), "@body", 1) + "\n" + rest
        kept = self.bodies.setdefault(key, body)
        if kept is not body:
            del self.module.globals[body.name]
        return kept

    def _wrap(self, body: ir.Function) -> ir.Function:
        """The group's function in the kernel's convention: the body's buffer addresses from the
        arguments (scratch ones at their arena offsets), then the call. Always inlined."""
        ints = [a.type for a in body.args[len(self._params):]]
        fn = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR] * self.nargs + ints), name=self.name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("alwaysinline")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        ptrs = [self._arg_ptr(b, fn, buf) for _, buf, _ in self._params.values()]
        b.call(body, ptrs + list(fn.args[self.nargs:]))
        b.ret_void()
        self.body_of[fn.name] = body
        return fn

    def _arg_ptr(self, b: ir.IRBuilder, fn: ir.Function, buf) -> ir.Value:
        """A buffer's address in a function of the kernel's convention."""
        plan = self.plan
        if buf.kind == "in":
            return fn.args[buf.index]
        if buf.kind == "const":
            return fn.args[len(plan.in_bufs) + buf.index]
        if buf.kind == "out":
            return fn.args[len(plan.in_bufs) + len(plan.const_bufs) + buf.index]
        return b.gep(fn.args[self.nargs - 1], [ir.Constant(I64, buf.index)], source_etype=I8)

    def _param(self, buf) -> ir.Value:
        """The body's parameter holding ``buf``'s address (one per buffer, made on first use)."""
        entry = self._params.get((buf.kind, buf.index))
        if entry is None:
            entry = self._params[(buf.kind, buf.index)] = [ir.Argument(self.fn, PTR), buf, buf.nbytes]
        entry[2] = max(entry[2], buf.nbytes)
        return entry[0]

    def schedule_step(self, fn: ir.Function, chunks: int, extra: tuple = ()) -> None:
        self.steps.append((fn, chunks, tuple(extra)))

    # -- chunks of a threaded step ----------------------------------------------------------------
    def part(self, units: int):
        """This chunk's share [start, end) of ``units`` (i64 values): chunk c of C gets
        [c * units // C, (c + 1) * units // C)."""
        b, c = self.b, self.chunk
        C = ir.Constant(I64, self.nchunks)
        start = b.udiv(b.mul(c, ir.Constant(I64, units)), C)
        end = b.udiv(b.mul(b.add(c, ir.Constant(I64, 1)), ir.Constant(I64, units)), C)
        return start, end

    def use_chunks(self, units: int) -> bool:
        """Cut this step's work along an axis of ``units`` (no more chunks than units): True in a
        chunked step function, which then loops over ``part(units)`` of that axis only."""
        if self.chunk is None:
            return False
        if not self.fixed_chunks:
            self.nchunks = max(1, min(self.nchunks, units))
        return True

    def bind_slot(self, buf, temp, slot_bytes: int, which) -> None:
        """In this function, ``buf`` is slot ``which`` (the chunk or thread id argument) of scratch
        temp ``temp``: slots are ``slot_bytes`` apart."""
        s = self.setup
        offset = s.mul(which, ir.Constant(I64, slot_bytes))
        self._ptrs[id(buf)] = s.gep(self.base_ptr(temp), [offset], source_etype=I8)

    # -- module helpers -----------------------------------------------------------------------
    def declare(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name=name)
            fn.attributes.add("nounwind")
            if not name.startswith("llvm."):
                self.externals.add(name)
        return fn

    def alloca(self, ty: ir.Type) -> ir.Value:
        return opaque_alloca(self.setup, ty)

    def base_ptr(self, buf) -> ir.Value:
        """The address of a buffer's first element (computed once, in the entry block)."""
        p = self._ptrs.get(id(buf))
        if p is None:
            p = self._param(buf) if self.outlined else self._arg_ptr(self.setup, self.fn, buf)
            self._ptrs[id(buf)] = p
        return p

    def loop(self, n, start: int = 0, step: int = 1, reverse: bool = False):
        return counted_loop(self.b, n, start, step, reverse)

    def finish(self, entry: str = "objects") -> str:
        """The exported function. ``kernel`` (buffer pointers) calls every group's function in
        schedule order. With ``entry="objects"`` the export is ``entry``, which takes numpy array
        objects and reads each one's data pointer itself (saving the ~1 us that ``arr.ctypes.data``
        costs per argument on the Python side) with ``kernel`` inlined into it; ``"pointers"``
        exports ``kernel`` itself. A lone group is inlined too: LLVM's code generator pays close to
        a millisecond per function, the larger part of a small program's compile time."""
        if self.threads > 1:
            kernel = self.finish_threaded()
        else:
            if len(self.parts) == 1 and self.parts[0].name in self.body_of:
                body = self.body_of[self.parts[0].name]
                body.attributes.discard("noinline")
                body.attributes.add("alwaysinline")
            self.begin("kernel", internal=False)
            for part in self.parts:
                self.b.call(part, list(self.fn.args))
            self.end()
            kernel = self.fn
        if entry == "pointers":
            return str(self.module)
        if entry != "objects":
            raise ValueError(f"entry must be 'objects' or 'pointers', got {entry!r}")
        kernel.linkage = "internal"
        kernel.attributes.add("alwaysinline")
        self.begin("entry", internal=False)
        b = self.b
        data = [b.load(b.gep(a, [ir.Constant(I64, ARRAY_DATA_OFFSET)], source_etype=I8), typ=PTR)
                for a in self.fn.args]
        b.call(kernel, data)
        self.end()
        return str(self.module)

    def finish_threaded(self) -> ir.Function:
        """``kernel`` of a threaded plan: the call's context (buffer pointers; per step a claim and a
        done counter; a sleepers count) lives in kernel's frame; ``run(ctx, tid, n)`` is what every
        thread executes: for each step, wait until the previous step is done, then claim chunks
        (or the whole step) from its counter until none are left. Any thread can do any chunk, so a
        late or absent worker only means the others do more (threads.py cancels one that never
        started). The thread count is ``tracejit_num_threads`` (set_num_threads), at most the
        count the plan was made for."""
        steps = self.steps
        nsteps = len(steps)
        ctx_ty = ir.LiteralStructType([ir.ArrayType(PTR, self.nargs), ir.ArrayType(I32, 2 * nsteps + 1)])
        i32s = lambda ctx, k: self.b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, 1), ir.Constant(I32, k)],  # noqa: E731
                                         source_etype=ctx_ty)
        wait = self.declare("tracejit_wait", ir.VoidType(), [PTR, I32, PTR, I64])
        done = self.declare("tracejit_done", ir.VoidType(), [PTR, I32, PTR])
        pool_run = self.declare("tracejit_pool_run", ir.VoidType(), [PTR, PTR, I64])

        run = ir.Function(self.module, ir.FunctionType(ir.VoidType(), [PTR, I64, I64]), name=self.prefix + "run")
        run.linkage = "internal"
        run.attributes.add("nounwind")
        ctx, tid, _ = run.args
        self.fn = run
        self.b = b = ir.IRBuilder(run.append_basic_block("entry"))
        ptrs = [b.load(b.gep(ctx, [ir.Constant(I32, 0), ir.Constant(I32, 0), ir.Constant(I32, i)],
                             source_etype=ctx_ty), typ=PTR) for i in range(self.nargs)]
        sleepers = i32s(ctx, 2 * nsteps)
        prev = None
        for k, (fn, chunks, extra) in enumerate(steps):
            claim, donep = i32s(ctx, 2 * k), i32s(ctx, 2 * k + 1)
            if prev is not None:                       # the previous step must be complete
                pdone, ptarget = prev
                d = b.load_atomic(pdone, "acquire", 4, typ=I32)
                with b.if_then(b.icmp_unsigned("!=", d, ptarget), likely=False):
                    b.call(wait, [pdone, ptarget, sleepers, tid])
            total = chunks or 1
            target = ir.Constant(I32, total)
            args = list(ptrs)
            if total == 1:
                c = b.atomic_rmw("add", claim, ir.Constant(I32, 1), "monotonic")
                with b.if_then(b.icmp_unsigned("==", c, ir.Constant(I32, 0))):
                    if chunks is not None:
                        args += [ir.Constant(I64, 0), tid] + [ir.Constant(I64, v) for v in extra]
                    b.call(fn, args)
                    b.call(done, [donep, target, sleepers])
            else:
                head, body, out = (run.append_basic_block(n) for n in (f"claim{k}", f"chunk{k}", f"next{k}"))
                b.branch(head)
                b.position_at_end(head)
                c = b.atomic_rmw("add", claim, ir.Constant(I32, 1), "monotonic")
                b.cbranch(b.icmp_unsigned("<", c, target), body, out)
                b.position_at_end(body)
                args += [b.zext(c, I64), tid] + [ir.Constant(I64, v) for v in extra]
                b.call(fn, args)
                b.call(done, [donep, target, sleepers])
                b.branch(head)
                b.position_at_end(out)
            prev = (donep, target)
        b.ret_void()

        self.begin("kernel", internal=False, schedule=False)
        b = self.b
        frame = opaque_alloca(self.setup, ctx_ty)
        for i, a in enumerate(self.fn.args):
            b.store(a, b.gep(frame, [ir.Constant(I32, 0), ir.Constant(I32, 0), ir.Constant(I32, i)],
                             source_etype=ctx_ty))
        self.b = b
        for k in range(2 * nsteps + 1):
            b.store(ir.Constant(I32, 0), i32s(frame, k))
        count = self.module.globals.get("tracejit_num_threads")
        if count is None:
            count = ir.GlobalVariable(self.module, I64, "tracejit_num_threads")
            self.externals.add("tracejit_num_threads")
        n = b.load_atomic(count, "monotonic", 8, typ=I64)
        n = b.select(b.icmp_signed(">", n, ir.Constant(I64, self.threads)), ir.Constant(I64, self.threads), n)
        with b.if_else(b.icmp_signed(">", n, ir.Constant(I64, 1))) as (many, one):
            with many:
                b.call(pool_run, [run, frame, n])
            with one:
                b.call(run, [frame, ir.Constant(I64, 0), ir.Constant(I64, 1)])
        self.end()
        return self.fn

    # -- reading scalars (dynamic offsets) ------------------------------------------------------
    def scalar(self, atom) -> tuple[ir.Value, DType]:
        """The register value of a scalar atom, loaded at the point of use."""
        cx = Lanes(self, 1)
        d = atom.aval.dtype
        if isinstance(atom, Literal):
            return cx.const(d, atom.value), d
        view = self.plan.views[atom]
        return self.load(cx, view.buf, self.dyn_offset(view.offset, view.dyn)), d

    def dyn_offset(self, offset: int, dyn: tuple) -> ir.Value:
        total = ir.Constant(I64, offset)
        b = self.b
        for atom, stride, hi in dyn:
            v, d = self.scalar(atom)
            cx = Lanes(self, 1)
            v = cx.clamp_index(cx.convert(v, d, I64_DT), hi)
            total = b.add(total, b.mul(v, ir.Constant(I64, stride)))
        return total

    # -- memory access ---------------------------------------------------------------------------
    # Partial vectors (the remainder of a row) are read and written lane by lane: LLVM 22 turns a
    # one-lane masked store of a truncated vector into an 8-byte store (a heap overrun), so masked
    # loads and stores are not used at all.
    def _lane_offsets(self, cx: Lanes, offset, stride):
        if stride is None:
            return offset
        return self.b.add(cx.splat(offset), ir.Constant(ir.VectorType(I64, cx.W), [i * stride for i in range(cx.W)]))

    def _lane_offset(self, offset, stride, lane: int):
        if stride is None:
            return self.b.extract_element(offset, ir.Constant(I32, lane))
        return offset if lane == 0 else self.b.add(offset, ir.Constant(I64, lane * stride))

    def load(self, cx: Lanes, buf, offset, stride: int | None = None, mask=None):
        """Load lanes of ``buf`` into registers: at scalar ``offset`` with lane ``stride``, or at a
        vector of offsets (stride None); with a mask only its leading true lanes are read."""
        b, d = self.b, buf.dtype
        sty = storage_type(d)
        align = d.itemsize
        base = self.base_ptr(buf)

        def scalar_at(off):
            return b.load(b.gep(base, [off], source_etype=sty), typ=sty, align=align)

        if cx.W == 1:
            return cx.from_storage(scalar_at(offset), d)
        vty = ir.VectorType(sty, cx.W)
        if stride == 0:
            return cx.from_storage(cx.splat(scalar_at(offset)), d)
        valid = valid_lanes(mask, cx.W)
        if valid < cx.W and stride == 1 and valid > 1:     # a contiguous tail: one masked load
            raw = cx.intrinsic("llvm.masked.load", [b.gep(base, [offset], source_etype=sty), ir.Constant(I32, align),
                                                    tail_mask(valid, cx.W), ir.Constant(vty, None)],
                               ret=vty, mangle=[vty, PTR])
            return cx.from_storage(raw, d)
        if valid < cx.W:
            raw = ir.Constant(vty, None)
            for lane in range(valid):
                raw = b.insert_element(raw, scalar_at(self._lane_offset(offset, stride, lane)), ir.Constant(I32, lane))
            return cx.from_storage(raw, d)
        if stride == 1:
            return cx.from_storage(b.load(b.gep(base, [offset], source_etype=sty), typ=vty, align=align), d)
        ptrs = self.lane_ptrs(base, self._lane_offsets(cx, offset, stride), sty, cx.W)
        ones = ir.Constant(ir.VectorType(I1, cx.W), [1] * cx.W)
        raw = cx.intrinsic("llvm.masked.gather", [ptrs, ir.Constant(I32, align), ones, ir.Constant(vty, None)],
                           ret=vty, mangle=[vty, ptrs.type])
        return cx.from_storage(raw, d)

    def lane_ptrs(self, base, offsets, ety, w: int):
        """A vector of element pointers (llvmlite types a vector-index GEP as a scalar ptr: fix it)."""
        ptrs = self.b.gep(base, [offsets], source_etype=ety)
        ptrs.type = ir.VectorType(PTR, w)
        return ptrs

    def store(self, cx: Lanes, value, buf, offset, stride: int | None = None, mask=None) -> None:
        b, d = self.b, buf.dtype
        sty = storage_type(d)
        align = d.itemsize
        raw = cx.to_storage(value, d)
        base = self.base_ptr(buf)
        if cx.W == 1:
            b.store(raw, b.gep(base, [offset], source_etype=sty), align=align)
            return
        valid = valid_lanes(mask, cx.W)
        if valid < cx.W and stride == 1:     # a contiguous tail: pieces of 2^k lanes (masked stores are slow)
            lane = 0
            while lane < valid:
                n = 1 << (valid - lane).bit_length() - 1
                p = b.gep(base, [b.add(offset, ir.Constant(I64, lane))], source_etype=sty)
                if n == 1:
                    b.store(b.extract_element(raw, ir.Constant(I32, lane)), p, align=align)
                else:
                    piece = b.shuffle_vector(raw, ir.Constant(raw.type, None),
                                             ir.Constant(ir.VectorType(I32, n), list(range(lane, lane + n))))
                    b.store(piece, p, align=align)
                lane += n
            return
        if valid < cx.W or stride == 0:
            for lane in range(valid if stride != 0 else 1):
                p = b.gep(base, [self._lane_offset(offset, stride, lane)], source_etype=sty)
                b.store(b.extract_element(raw, ir.Constant(I32, lane)), p, align=align)
            return
        if stride == 1:
            b.store(raw, b.gep(base, [offset], source_etype=sty), align=align)
            return
        ptrs = self.lane_ptrs(base, self._lane_offsets(cx, offset, stride), sty, cx.W)
        ones = ir.Constant(ir.VectorType(I1, cx.W), [1] * cx.W)
        cx.intrinsic("llvm.masked.scatter", [raw, ptrs, ir.Constant(I32, align), ones], ret=ir.VoidType(),
                     mangle=[raw.type, ptrs.type])

    # -- loop nests over coalesced index spaces --------------------------------------------------
    def split_loop(self, n: int, split: bool):
        """``for i in range(n)``, or over this chunk's part of it when ``split``."""
        if not split:
            return self.loop(n)
        start, end = self.part(n)
        return counted_loop(self.b, end, start=start)

    def vector_loop(self, n: int, w: int, split: bool, full, tail) -> None:
        """An axis of n elements in vectors of w lanes: ``full(j)`` for each full vector at j, then
        ``tail(j)`` once for the partial one. Split: this chunk's vectors only (the partial vector
        belongs to the last chunk)."""
        nfull = n // w
        if not split:
            if nfull:
                with self.loop(nfull * w, step=w) as j:
                    full(j)
            if nfull * w < n:
                tail(ir.Constant(I64, nfull * w))
            return
        b = self.b
        units = -(-n // w)
        start, end = self.part(units)
        efull = b.select(b.icmp_unsigned("<", end, ir.Constant(I64, nfull)), end, ir.Constant(I64, nfull))
        wc = ir.Constant(I64, w)
        with counted_loop(b, b.mul(efull, wc), start=b.mul(start, wc), step=w) as j:
            full(j)
        if nfull * w < n:
            with b.if_then(b.icmp_unsigned("==", end, ir.Constant(I64, units))):
                tail(ir.Constant(I64, nfull * w))

    def split_axis(self, dims, w: int, allowed=None, tiled: bool = False) -> int | None:
        """Which axis of a (coalesced) index space a chunked step cuts: the outermost whose units
        (elements; vectors for the innermost, tiles of w rows for a tiled one) are at least the
        chunk count, else the one with the most units; only axes in ``allowed`` (indices), which
        must be axes along which every written element is written by one index only. None outside
        chunked steps (and one chunk when no axis can be cut)."""
        if self.chunk is None or not dims:
            return None
        last = len(dims) - 1
        cands = []
        for k, (n, cls) in enumerate(dims):
            if allowed is not None and k not in allowed:
                continue
            if tiled and k == last:
                continue
            units = -(-n // w) if k == last or (tiled and k == last - 1) else n
            cands.append((k, units))
        if not cands:
            if not self.fixed_chunks:
                self.nchunks = 1
            return None
        k, units = next(((k, u) for k, u in cands if u >= self.nchunks), max(cands, key=lambda c: c[1]))
        self.use_chunks(units)
        return k

    def walk(self, dims, linears: list[Linear], w: int, body, split: bool = False, allowed=None) -> None:
        """Run ``body(point)`` over the index space ``dims`` ([(size, class)]); the last dimension goes
        in vectors of ``w`` lanes (full vectors, then one partial vector under a constant mask).

        When some linear strides along the last dimension but is contiguous along the one before
        (a transpose), those two dimensions are walked in tiles, so the strided side stays in L1.
        ``split``: in a chunked step, only this chunk's part of one axis (one of ``allowed``, indices).
        """
        b = self.b
        bases = [self.dyn_offset(lin.offset, lin.dyn) if lin.dyn else ir.Constant(I64, lin.offset)
                 for lin in linears]
        if not dims:
            body(Point(Lanes(self, 1), bases, [0] * len(linears)))
            return
        last = len(dims) - 1
        cx = Lanes(self, w)
        tiled = (w > 1 and last >= 1 and dims[last][0] >= 2 * w and dims[last - 1][0] >= 2
                 and any(abs(lin.strides[last]) > 1 and abs(lin.strides[last - 1]) == 1 for lin in linears))
        sk = self.split_axis(dims, w, allowed, tiled) if split else None

        def advance(bases, k, i):
            return [step(b, base, i, lin.strides[k]) for base, lin in zip(bases, linears)]

        def vectors(bases, n: int, split: bool = False):
            """The last dimension from ``bases`` on, n elements: full vectors, then the remainder."""
            strides = [lin.strides[last] for lin in linears]

            def full(j):
                body(Point(cx, advance(bases, last, j), strides))

            def tail(j):
                mask = ir.Constant(ir.VectorType(I1, w), [1 if i < n % w else 0 for i in range(w)])
                body(Point(cx, advance(bases, last, j), strides, mask))
            self.vector_loop(n, w, split, full, tail)

        def tiles(bases, split: bool):
            k = last - 1
            rows_per_tile, block = w, 4 * w
            n_rows, n = dims[k][0], dims[last][0]
            if split:
                units = -(-n_rows // rows_per_tile)
                s, e = self.part(units)
                rpt = ir.Constant(I64, rows_per_tile)
                e = b.mul(e, rpt)
                e = b.select(b.icmp_signed("<", e, ir.Constant(I64, n_rows)), e, ir.Constant(I64, n_rows))
                outer = counted_loop(b, e, start=b.mul(s, rpt), step=rows_per_tile)
            else:
                outer = self.loop(n_rows, step=rows_per_tile)
            with outer as t0:
                rows = b.sub(ir.Constant(I64, n_rows), t0)
                rows = b.select(b.icmp_signed("<", rows, ir.Constant(I64, rows_per_tile)), rows,
                                ir.Constant(I64, rows_per_tile))
                for start, size, count in ((0, block, n // block), (n // block * block, n % block, 1)):
                    if not size or not count:
                        continue
                    with self.loop(count) as blk:
                        l0 = b.add(ir.Constant(I64, start), b.mul(blk, ir.Constant(I64, size)))
                        with counted_loop(b, rows) as t:
                            vectors(advance(advance(bases, k, b.add(t0, t)), last, l0), size)

        def rec(k, bases):
            if k == last:
                vectors(bases, dims[last][0], sk == last)
            elif tiled and k == last - 1:
                tiles(bases, sk == last - 1)
            else:
                with self.split_loop(dims[k][0], sk == k) as i:
                    rec(k + 1, advance(bases, k, i))

        if split and sk is None and self.chunk is not None and self.nchunks > 1:
            with b.if_then(b.icmp_unsigned("==", self.chunk, ir.Constant(I64, 0))):   # uncut: one chunk does it
                rec(0, bases)
        else:
            rec(0, bases)


def opaque_alloca(b: ir.IRBuilder, ty: ir.Type) -> ir.Value:
    """A stack slot addressed by an opaque ``ptr`` (llvmlite would type it ``ty*``)."""
    slot = b.alloca(ty)
    slot.type = PTR
    return slot


def tail_mask(valid: int, w: int) -> ir.Constant:
    """The constant mask of a vector's ``valid`` leading lanes."""
    return ir.Constant(ir.VectorType(I1, w), [1] * valid + [0] * (w - valid))


def valid_lanes(mask, w: int) -> int:
    """How many leading lanes a (constant, prefix) tail mask enables; w without a mask."""
    if mask is None:
        return w
    return sum(1 for bit in mask.constant if int(bit.constant if hasattr(bit, "constant") else bit))


def register_bytes(d: DType) -> int:
    """Bytes of one lane in registers (f16/bf16 compute in f32, bool is one bit)."""
    if d.name == "bool":
        return 1
    return 4 if d.is_float and d.name != "f64" else d.itemsize


def lanes_for(kg: KernelGen, dtypes, n_inner: int) -> int:
    """Vector width: one register of the widest lane type (4 to 16 lanes), no wider than the
    innermost extent needs."""
    widest = max([register_bytes(d) for d in dtypes] or [4])
    w = max(4, min(16, kg.host.lanes(widest)))
    while w > 1 and w // 2 >= n_inner:
        w //= 2
    return w


# ----------------------------------------------------------------------------------------------
# Fused expressions: members evaluated per point, leaves loaded through linears
# ----------------------------------------------------------------------------------------------

class Fused:
    """Equations fused over one index space, and the linear functions their leaves are read through."""

    def __init__(self, kg: KernelGen, shape, eqns):
        self.kg, self.shape, self.eqns = kg, tuple(shape), eqns
        kg.loop_elems = int(np.prod(self.shape, dtype=np.int64))   # what math calls weigh inlining by
        self.linears: list[Linear] = []
        self.leaves: dict = {}                   # Var or id(View) -> (linear index, buf)
        self.gens: dict = {}                     # id(eqn) -> how the generator reads
        self.members = {v for e in eqns for v in e.outvars}
        for e in eqns:
            kind = KINDS[e.primitive.name]
            if kind == "elementwise":
                for a in e.inputs:
                    if isinstance(a, Var) and a not in self.members:
                        self.leaf(a)
            else:
                self._generator(e)

    def add(self, strides, offset=0, dyn=()) -> int:
        self.linears.append(Linear(list(strides), offset, dyn))
        return len(self.linears) - 1

    def _broadcast_strides(self, view: View):
        if view.shape == self.shape:
            return view.strides
        assert view.shape == (), (view.shape, self.shape)
        return (0,) * len(self.shape)

    def leaf(self, src) -> tuple[int, object]:
        key = src if isinstance(src, Var) else id(src)
        if key not in self.leaves:
            view = self.kg.plan.views[src] if isinstance(src, Var) else src
            self.leaves[key] = (self.add(self._broadcast_strides(view), view.offset, view.dyn), view.buf)
        return self.leaves[key]

    def _generator(self, e) -> None:
        name = e.primitive.name
        if name == "iota":
            strides = [1 if d == e.params["dimension"] else 0 for d in range(len(self.shape))]
            self.gens[id(e)] = ("iota", self.add(strides))
        elif name == "dynamic_slice":
            x, *starts = e.inputs
            view = self.kg.plan.views[x]
            dyn = view.dyn + tuple((s, st, n - k) for s, st, n, k in
                                   zip(starts, view.strides, view.shape, e.params["slice_sizes"]))
            self.gens[id(e)] = ("load", self.add(view.strides, view.offset, dyn), view.buf)
        elif name == "gather":
            x, idx = e.inputs
            axis = e.params["axis"]
            xv, iv = self.kg.plan.views[x], self.kg.plan.views[idx]
            k = len(iv.shape)
            xs = xv.strides[:axis] + (0,) * k + xv.strides[axis + 1:]
            ist = (0,) * axis + iv.strides + (0,) * (len(xv.shape) - axis - 1)
            self.gens[id(e)] = ("gather", self.add(xs, xv.offset, xv.dyn), xv.buf, self.add(ist, iv.offset, iv.dyn),
                                iv.buf, xv.strides[axis], xv.shape[axis] - 1)
        else:                                     # a view of a literal: a constant
            self.gens[id(e)] = ("const", e.inputs[0])

    def dtypes(self):
        out = [v.aval.dtype for v in self.members]
        out += [buf.dtype for _, buf in self.leaves.values()]
        return out

    # -- evaluation ---------------------------------------------------------------------------
    def value(self, pt: Point, atom, env: dict):
        cx = pt.cx
        if isinstance(atom, Literal):
            return cx.const(atom.aval.dtype, atom.value)
        if isinstance(atom, Var) and atom in env:
            return env[atom]
        k, buf = self.leaf(atom)
        v = self.kg.load(cx, buf, pt.bases[k], pt.lane_strides[k], pt.mask)
        if isinstance(atom, Var):
            env[atom] = v
        return v

    def evaluate(self, pt: Point) -> dict:
        env: dict = {}
        for e in self.eqns:
            out = e.outvars[0]
            d = out.aval.dtype
            spec = self.gens.get(id(e))
            if spec is None:
                args = [self.value(pt, a, env) for a in e.inputs]
                v = ELEMENTWISE[e.primitive.name](pt.cx, args, e)
                if d.name in ("f16", "bf16") and e.primitive.name != "convert_element_type":
                    v = pt.cx.round_to(v, d)
            else:
                v = self._generate(pt, spec, d)
            env[out] = v
        return env

    def _generate(self, pt: Point, spec, d: DType):
        cx, b, kg = pt.cx, pt.cx.b, self.kg
        kind = spec[0]
        if kind == "const":
            return cx.const(d, spec[1].value)
        if kind == "iota":
            return cx.convert(pt.offsets(spec[1]), I64_DT, d)
        if kind == "load":
            _, k, buf = spec
            return kg.load(cx, buf, pt.bases[k], pt.lane_strides[k], pt.mask)
        _, kx, xbuf, ki, ibuf, axis_stride, hi = spec
        idx = kg.load(cx, ibuf, pt.bases[ki], pt.lane_strides[ki], pt.mask)
        idx = cx.clamp_index(cx.convert(idx, ibuf.dtype, I64_DT), hi)
        if cx.W > 1 and pt.lane_strides[ki] == 0 and pt.lane_strides[kx] in (0, 1):
            first = b.extract_element(idx, ir.Constant(I32, 0))
            off = b.add(pt.bases[kx], b.mul(first, ir.Constant(I64, axis_stride)))
            return kg.load(cx, xbuf, off, pt.lane_strides[kx], pt.mask)
        off = b.add(pt.offsets(kx), b.mul(idx, cx.const(I64_DT, axis_stride)))
        return kg.load(cx, xbuf, off, None, pt.mask)


# ----------------------------------------------------------------------------------------------
# Group emitters
# ----------------------------------------------------------------------------------------------

def emit_nest(kg: KernelGen, nest: Nest, split: bool = False) -> None:
    """One loop nest; ``split``: in a chunked step, only this chunk's part of it."""
    if int(np.prod(nest.shape)) == 0:
        return
    fz = Fused(kg, nest.shape, nest.eqns)
    outs = []
    for src, dst, mode in nest.outs:
        if not isinstance(src, Literal) and src not in fz.members:
            fz.leaf(src)
        ind = nest.indirect.get(id(dst))
        if ind is None:
            outs.append((src, mode, fz.add(dst.strides, dst.offset, dst.dyn), dst.buf, None))
        else:
            idx, axis, axis_stride, n = ind
            iv = kg.plan.views[idx]
            k = len(iv.shape)
            ist = (0,) * axis + iv.strides + (0,) * (len(nest.shape) - axis - k)
            outs.append((src, mode, fz.add(dst.strides, dst.offset, dst.dyn), dst.buf,
                         (fz.add(ist, iv.offset, iv.dyn), iv.buf, axis_stride, n - 1)))
    dims = coalesce(nest.shape, fz.linears)
    dtypes = fz.dtypes() + [dst.buf.dtype for _, dst, _ in nest.outs]
    w = 1 if not dims or (nest.sequential and not _lanes_never_collide(fz, outs)) else \
        lanes_for(kg, dtypes, dims[-1][0])
    # chunks may only cut axes along which every destination moves: a zero stride (a window's
    # kernel axes, say) writes one element from many indices, which must stay on one thread
    allowed = {d for d in range(len(dims)) if all(fz.linears[k].strides[d] != 0 for _, _, k, _, _ in outs)}
    if nest.sequential or nest.indirect:     # (in a chunked step: done whole, by one chunk)
        allowed = set()

    def body(pt: Point):
        env = fz.evaluate(pt)
        cx, b = pt.cx, kg.b
        for src, mode, k, buf, ind in outs:
            v = fz.value(pt, src, env)
            src_dtype = src.aval.dtype if not isinstance(src, View) else src.dtype
            v = cx.convert(v, src_dtype, buf.dtype)
            offset, stride = pt.bases[k], pt.lane_strides[k]
            if ind is not None:                     # scatter_add: clamped index, then read-modify-write
                ki, ibuf, axis_stride, hi = ind     # (one index for all lanes: _lanes_never_collide)
                one = Lanes(kg, 1)
                idx = one.clamp_index(one.convert(kg.load(one, ibuf, pt.bases[ki]), ibuf.dtype, I64_DT), hi)
                offset = b.add(offset, b.mul(idx, ir.Constant(I64, axis_stride)))
            if mode == "max":
                old = kg.load(cx, buf, offset, stride, pt.mask)
                v = apply(cx, "max", [v, old], buf.dtype)
            elif mode == "add":
                old = kg.load(cx, buf, offset, stride, pt.mask)
                v = apply(cx, "add", [old, v], buf.dtype)
                if buf.dtype.name in ("f16", "bf16"):
                    v = cx.round_to(v, buf.dtype)
            kg.store(cx, v, buf, offset, stride, pt.mask)

    kg.walk(dims, fz.linears, w, body, split=split, allowed=allowed)


def _lanes_never_collide(fz, outs) -> bool:
    """May a sequential (scatter-add) nest run its last axis in vectors? Yes when along that axis
    the index stays put and every destination moves: the lanes of one vector then update distinct
    elements, and the rows, which may hit one element twice, still go one after another."""
    for _, _, k, _, ind in outs:
        strides = fz.linears[k].strides
        if not strides or strides[-1] == 0:
            return False
        if ind is not None and fz.linears[ind[0]].strides[-1] != 0:
            return False
    return True


def apply(cx: Lanes, name: str, args: list, d: DType):
    """Apply elementwise rule ``name`` to operands of dtype d outside any equation."""
    aval = SimpleNamespace(aval=SimpleNamespace(dtype=d))
    eqn = SimpleNamespace(primitive=SimpleNamespace(name=name), inputs=[aval] * len(args), outvars=[aval], params={})
    return ELEMENTWISE[name](cx, args, eqn)


# ---- reductions, argmax, cumsum, and dot products without a GEMM kernel --------------------------

_IDENTITY = {"sum": 0, "cumsum": 0, "dot": 0, "prod": 1}


class Combine:
    """How a reduction folds values into its accumulator: identity and combine."""

    def __init__(self, kind: str, d: DType):
        self.kind, self.d = kind, d

    def identity(self, cx: Lanes):
        d, k = self.d, self.kind
        if k in _IDENTITY:
            return cx.const(d, _IDENTITY[k])
        big = k == "min"
        if d.is_float:
            return cx.const(d, float("inf") if big else float("-inf"))
        if d.kind == "b":
            return cx.const(d, 1 if big else 0)
        info = np.iinfo(d.np)
        return cx.const(d, info.max if big else info.min)

    def __call__(self, cx: Lanes, acc, v):
        """Floats accumulate in registers (f32 for f16/bf16) as numpy's pairwise sums and the
        interpreter's f32 accumulator for bf16 do; f16 products and cumsums round every step,
        as numpy's float16 loops do."""
        k, d, b = self.kind, self.d, cx.b
        each = (lambda v: cx.round_to(v, d)) if d.name == "f16" and k in ("prod", "cumsum") else (lambda v: v)
        if k in ("sum", "cumsum", "dot"):
            return each(b.fadd(acc, v, flags=FAST)) if d.is_float else b.add(acc, v)
        if k == "prod":
            return each(b.fmul(acc, v, flags=FAST)) if d.is_float else b.mul(acc, v)
        return apply(cx, "max" if k in ("max", "argmax") else "min", [v, acc], d)


def _argmax_better(cx: Lanes, d: DType, v, i, best, besti):
    """(v, i) beats (best, besti): larger, or NaN over a number, or as large with a smaller index."""
    b = cx.b
    if d.is_float:
        vn, bn = b.fcmp_unordered("uno", v, v), b.fcmp_unordered("uno", best, best)
        gt = b.or_(b.fcmp_ordered(">", v, best), b.and_(vn, b.not_(bn)))
        tie = b.or_(b.fcmp_ordered("==", v, best), b.and_(vn, bn))
    else:
        gt = (b.icmp_signed if d.kind == "i" else b.icmp_unsigned)(">", v, best)
        tie = b.icmp_unsigned("==", v, best)
    return b.or_(gt, b.and_(tie, b.icmp_signed("<", i, besti)))


def emit_reduce(kg: KernelGen, g: Group, split: str | None = None, out: View | None = None,
                out_value: View | None = None) -> None:
    """A reduce group; ``split`` ("kept" / "red") and ``out`` (a partial-result slot) in threaded steps
    (argmax's partial also keeps its best value, in ``out_value``)."""
    e = g.eqns[-1]
    name = e.primitive.name
    x = e.inputs[0]
    in_shape = tuple(x.aval.shape)
    out = out if out is not None else kg.plan.views[g.out]
    if name == "cumsum":
        axes, kind = (e.params["axis"],), "cumsum"
    else:
        axes = tuple(e.params["axes"])
        kind = {"reduce_sum": "sum", "reduce_prod": "prod", "reduce_max": "max", "reduce_min": "min",
                "argmax": "argmax"}[name]
    fz = Fused(kg, in_shape, g.eqns[:-1])
    if isinstance(x, Var) and x not in fz.members:
        fz.leaf(x)
    Reduction(kg, fz, in_shape, axes, kind, x.aval.dtype, lambda pt, env: fz.value(pt, x, env), out,
              reverse=bool(e.params.get("reverse", False)), split=split, out_value=out_value).emit()


def reduce_kind(e) -> tuple[str, DType]:
    """(combine kind, accumulator dtype) of a reduce or dot_general equation."""
    if e.primitive.name == "dot_general":
        from .gemm import compute_dtype
        return "dot", compute_dtype(e.inputs[0].aval.dtype)
    kind = {"reduce_sum": "sum", "reduce_prod": "prod", "reduce_max": "max", "reduce_min": "min",
            "argmax": "argmax", "cumsum": "cumsum"}[e.primitive.name]
    return kind, e.inputs[0].aval.dtype


def emit_argmax_combine(kg: KernelGen, d: DType, parts, slot: int, values, vslot: int, count: int,
                        out: View) -> None:
    """out = the best of ``count`` partial argmaxes (an index in ``parts``, its value in ``values``):
    the larger value, a NaN over a number, and on a tie the smaller index, as in one pass."""
    if int(np.prod(out.shape)) == 0:
        return
    lin_out = Linear(list(out.strides), out.offset, out.dyn)
    lin_p = Linear(list(contiguous_strides(out.shape)), 0)
    dims = coalesce(out.shape, [lin_out, lin_p])

    def body(pt: Point) -> None:
        cx, b = pt.cx, kg.b
        best = besti = None
        for c in range(count):
            i = kg.load(cx, parts, b.add(pt.bases[1], ir.Constant(I64, c * slot)))
            v = kg.load(cx, values, b.add(pt.bases[1], ir.Constant(I64, c * vslot)))
            if best is None:
                best, besti = v, i
            else:
                better = _argmax_better(cx, d, v, i, best, besti)
                best, besti = b.select(better, v, best), b.select(better, i, besti)
        kg.store(cx, cx.convert(besti, I64_DT, out.dtype), out.buf, pt.bases[0])
    kg.walk(dims, [lin_out, lin_p], 1, body)


def emit_combine(kg: KernelGen, kind: str, acc_dtype: DType, parts, slot: int, count: int, out: View) -> None:
    """out = the ``count`` partial results in ``parts`` (``slot`` elements apart, each laid out
    contiguously in out's shape) folded in order, then converted to out's dtype."""
    if int(np.prod(out.shape)) == 0:
        return
    lin_out = Linear(list(out.strides), out.offset, out.dyn)
    lin_p = Linear(list(contiguous_strides(out.shape)), 0)
    dims = coalesce(out.shape, [lin_out, lin_p])
    comb = Combine(kind, acc_dtype)
    w = lanes_for(kg, [acc_dtype, out.dtype], dims[-1][0]) if dims else 1

    def body(pt: Point) -> None:
        cx, b = pt.cx, kg.b
        acc = None
        for c in range(count):
            off = b.add(pt.bases[1], ir.Constant(I64, c * slot))
            v = kg.load(cx, parts, off, pt.lane_strides[1], pt.mask)
            acc = v if acc is None else comb(cx, acc, v)
        kg.store(cx, cx.convert(acc, acc_dtype, out.dtype), out.buf, pt.bases[0], pt.lane_strides[0], pt.mask)
    kg.walk(dims, [lin_out, lin_p], w, body)


class Reduction:
    """The loop nest of a reduction (or a scan, for cumsum) of ``operand(point, env)`` over ``axes``.

    Case A (the innermost dimension is reduced): per output element, a vector accumulator runs along
    that dimension and its lanes are folded at the end. Case B (the innermost dimension is kept): a
    vector of outputs accumulates while the reduced dimensions are looped inside. Scans keep the
    order of additions (W = 1 in case A), so cumsum matches numpy bit for bit.
    """

    def __init__(self, kg, fz: Fused, in_shape, axes, kind, acc_dtype, operand, out: View, reverse=False,
                 split: str | None = None, out_value: View | None = None):
        self.kg, self.fz, self.in_shape, self.axes = kg, fz, tuple(in_shape), tuple(axes)
        self.out_value = out_value          # argmax's partial result: its best value goes here too
        self._best = None
        self.split = split if kg.chunk is not None else None
        self.sk = None                                     # the (coalesced) axis this chunk cuts
        self.kind, self.acc_dtype, self.operand, self.out, self.reverse = kind, acc_dtype, operand, out, reverse
        self.scan, self.argmax = kind == "cumsum", kind == "argmax"
        self.comb = Combine(kind, acc_dtype)
        if self.scan:
            out_strides = out.strides
        else:
            it = iter(out.strides)
            out_strides = [0 if d in self.axes else next(it) for d in range(len(in_shape))]
        self.k_out = fz.add(out_strides, out.offset)
        self.k_count = fz.add([1 if d in self.axes else 0 for d in range(len(in_shape))]) if self.argmax else None

    def emit(self) -> None:
        kg = self.kg
        if int(np.prod(self.out.shape)) == 0:
            return
        if int(np.prod(self.in_shape)) == 0:              # an empty reduced axis: the identity
            ident = _IDENTITY.get(self.kind, 0)
            emit_nest(kg, Nest(self.out.shape, [], [(Literal(ident, _scalar_aval(self.out.dtype)), self.out,
                                                     "store")]))
            return
        linears = self.fz.linears
        self.dims = dims = coalesce(self.in_shape, linears, [1 if d in self.axes else 0
                                                             for d in range(len(self.in_shape))])
        self.red = [k for k, (_, c) in enumerate(dims) if c == 1]
        self.keep = [k for k, (_, c) in enumerate(dims) if c == 0]
        inner_reduced = bool(dims) and dims[-1][1] == 1
        dtypes = self.fz.dtypes() + [self.acc_dtype]
        if not dims or (inner_reduced and self.scan):
            self.w = 1
        else:
            self.w = lanes_for(kg, dtypes, dims[-1][0])
        in_place = (not inner_reduced and self.red and not self.scan and not self.argmax
                    and self.acc_dtype == self.out.dtype and self.out.dtype.name not in ("f16", "bf16"))
        if in_place:
            self.accumulate_in_place()
            return
        if self.split:
            self.sk = kg.split_axis(dims, self.w, self.allowed())
        self.acc = kg.alloca(vec(scalar_type(self.acc_dtype), self.w))
        self.acc_i = kg.alloca(vec(I64, self.w)) if self.argmax else None
        bases = [kg.dyn_offset(lin.offset, lin.dyn) if lin.dyn else ir.Constant(I64, lin.offset)
                 for lin in linears]
        if inner_reduced:
            self.over_kept_a(0, bases)
        else:
            self.over_kept_b(0, bases)

    def accumulate_in_place(self) -> None:
        """Case B when the output holds the accumulator's type: fill the output with the identity,
        then walk the input in memory order doing out[o] = combine(out[o], x). Every access is then
        contiguous (a column sum reads rows, instead of walking down each column)."""
        kg = self.kg
        ident = Combine(self.kind, self.out.dtype).identity(Lanes(kg, 1)).constant
        fill = Nest(self.out.shape, [], [(Literal(ident, _scalar_aval(self.out.dtype)), self.out, "store")])
        if self.split == "kept":          # the fill is a step of its own: chunks cut it differently
            emit_nest(kg, fill, split=True)
            kg.next_step("_acc")
        else:                             # unsplit, or a partial result: this chunk's own slot
            emit_nest(kg, fill)
        k = self.k_out
        buf = self.out.buf

        def body(pt: Point) -> None:
            v = self.operand(pt, self.fz.evaluate(pt))
            old = kg.load(pt.cx, buf, pt.bases[k], pt.lane_strides[k], pt.mask)
            kg.store(pt.cx, self.comb(pt.cx, old, v), buf, pt.bases[k], pt.lane_strides[k], pt.mask)
        kg.walk(self.dims, self.fz.linears, self.w, body, split=bool(self.split), allowed=self.allowed())

    # -- shared pieces ---------------------------------------------------------------------------
    def allowed(self) -> set:
        """Axes a chunked step may cut: kept axes along which the output moves ("kept"), or reduced
        axes (a partial result per chunk, "red")."""
        if self.split == "kept":
            k = self.k_out
            return {d for d, (_, c) in enumerate(self.dims) if c == 0 and self.fz.linears[k].strides[d] != 0}
        return {d for d, (_, c) in enumerate(self.dims) if c == 1}

    def at(self, bases, k, i):
        return [step(self.kg.b, base, i, lin.strides[k]) for base, lin in zip(bases, self.fz.linears)]

    def strides(self, k):
        return [lin.strides[k] for lin in self.fz.linears]

    def init(self, cx: Lanes) -> None:
        b = self.kg.b
        ident = Combine("max", self.acc_dtype).identity(cx) if self.argmax else self.comb.identity(cx)
        b.store(ident, self.acc)
        if self.argmax:
            b.store(cx.splat_const(I64, 0), self.acc_i)

    def fold(self, pt: Point) -> None:
        cx, b = pt.cx, self.kg.b
        v = self.operand(pt, self.fz.evaluate(pt))
        cur = b.load(self.acc, typ=v.type)
        if self.argmax:
            i = pt.offsets(self.k_count)
            curi = b.load(self.acc_i, typ=i.type)
            better = _argmax_better(cx, self.acc_dtype, v, i, cur, curi)
            if pt.mask is not None:
                better = b.and_(better, pt.mask)
            b.store(b.select(better, v, cur), self.acc)
            b.store(b.select(better, i, curi), self.acc_i)
            return
        new = self.comb(cx, cur, v)
        if pt.mask is not None:
            new = b.select(pt.mask, new, cur)
        b.store(new, self.acc)

    def result(self, cx: Lanes):
        """The accumulator (argmax: its index), lanes folded to one when cx is scalar and w > 1."""
        b = self.kg.b
        ty = vec(scalar_type(self.acc_dtype), self.w)
        value = b.load(self.acc, typ=ty)
        index = b.load(self.acc_i, typ=vec(I64, self.w)) if self.argmax else None
        if cx.W == self.w:
            self._best = value
            return index if self.argmax else value
        lane = [ir.Constant(I32, i) for i in range(self.w)]
        best = b.extract_element(value, lane[0])
        besti = b.extract_element(index, lane[0]) if self.argmax else None
        for l in lane[1:]:
            v = b.extract_element(value, l)
            if self.argmax:
                i = b.extract_element(index, l)
                better = _argmax_better(cx, self.acc_dtype, v, i, best, besti)
                best, besti = b.select(better, v, best), b.select(better, i, besti)
            else:
                best = self.comb(cx, best, v)
        self._best = best
        return besti if self.argmax else best

    def put(self, pt: Point, value) -> None:
        cx = pt.cx
        src = I64_DT if self.argmax else self.acc_dtype
        k = self.k_out
        self.kg.store(cx, cx.convert(value, src, self.out.dtype), self.out.buf, pt.bases[k],
                      pt.lane_strides[k], pt.mask)
        if self.out_value is not None:       # (laid out as out: both are contiguous partial slots)
            self.kg.store(cx, self._best, self.out_value.buf, pt.bases[k], pt.lane_strides[k], pt.mask)

    # -- case A: the innermost dimension is reduced ---------------------------------------------
    def over_kept_a(self, ki, bases) -> None:
        if ki < len(self.keep):
            k = self.keep[ki]
            with self.kg.split_loop(self.dims[k][0], k == self.sk) as i:
                self.over_kept_a(ki + 1, self.at(bases, k, i))
            return
        cxw, cx1 = Lanes(self.kg, self.w), Lanes(self.kg, 1)
        self.init(cxw)
        self.over_reduced_a(0, bases)
        if not self.scan:
            self.put(Point(cx1, bases, [0] * len(bases)), self.result(cx1))

    def over_reduced_a(self, ri, bases) -> None:
        kg, w = self.kg, self.w
        k = self.red[ri]
        n = self.dims[k][0]
        if ri < len(self.red) - 1:
            with kg.split_loop(n, k == self.sk) as i:
                self.over_reduced_a(ri + 1, self.at(bases, k, i))
            return
        cx = Lanes(kg, w)
        full = n // w * w
        if k == self.sk:                   # a partial result over this chunk's vectors (never a scan)
            mask = ir.Constant(ir.VectorType(I1, w), [1 if i < n - full else 0 for i in range(w)])
            kg.vector_loop(n, w, True, lambda j: self.fold(Point(cx, self.at(bases, k, j), self.strides(k))),
                           lambda j: self.fold(Point(cx, self.at(bases, k, j), self.strides(k), mask)))
            return
        if full:
            with kg.loop(full, step=w, reverse=self.reverse and w == 1) as j:
                pt = Point(cx, self.at(bases, k, j), self.strides(k))
                self.fold(pt)
                if self.scan:
                    self.put(pt, self.result(cx))
        if full < n:
            mask = ir.Constant(ir.VectorType(I1, w), [1 if i < n - full else 0 for i in range(w)])
            self.fold(Point(cx, self.at(bases, k, ir.Constant(I64, full)), self.strides(k), mask))

    # -- case B: the innermost dimension is kept -------------------------------------------------
    def over_kept_b(self, ki, bases) -> None:
        kg, w = self.kg, self.w
        if not self.keep:
            return self.chunk(Lanes(kg, 1), bases, [0] * len(bases), None)
        if ki < len(self.keep) - 1:
            k = self.keep[ki]
            with kg.split_loop(self.dims[k][0], k == self.sk) as i:
                self.over_kept_b(ki + 1, self.at(bases, k, i))
            return
        k = self.keep[-1]
        n = self.dims[k][0]
        cx = Lanes(kg, w)
        full = n // w * w
        mask = ir.Constant(ir.VectorType(I1, w), [1 if i < n - full else 0 for i in range(w)])
        kg.vector_loop(n, w, k == self.sk, lambda j: self.chunk(cx, self.at(bases, k, j), self.strides(k), None),
                       lambda j: self.chunk(cx, self.at(bases, k, j), self.strides(k), mask))

    def chunk(self, cx: Lanes, bases, strides, mask) -> None:
        self.init(cx)
        self.over_reduced_b(cx, 0, bases, strides, mask)
        if not self.scan or not self.red:             # (a scan over a size-1 axis is a copy)
            self.put(Point(cx, bases, strides, mask), self.result(cx))

    def over_reduced_b(self, cx, ri, bases, strides, mask) -> None:
        if ri == len(self.red):
            self.fold(Point(cx, bases, strides, mask))
            return
        k = self.red[ri]
        loop = (self.kg.split_loop(self.dims[k][0], True) if k == self.sk
                else self.kg.loop(self.dims[k][0], reverse=self.reverse))
        with loop as i:
            inner = self.at(bases, k, i)
            self.over_reduced_b(cx, ri + 1, inner, strides, mask)
            if self.scan and ri == len(self.red) - 1:
                self.put(Point(cx, inner, strides, mask), self.result(cx))


def _scalar_aval(d: DType):
    from compiler.ir.core import ShapedArray
    return ShapedArray((), d)


# ----------------------------------------------------------------------------------------------
# The kernel
# ----------------------------------------------------------------------------------------------

def emit_groups(kg: KernelGen) -> None:
    from .gemm import emit_dot
    for k, g in enumerate(kg.plan.groups):
        if g.kind == "cond":
            emit_cond(kg, g, k)
            continue
        if g.kind in ("while", "scan"):
            emit_loop(kg, g, k)
            continue
        if kg.threads > 1 and (g.chunks > 1 or any(n.chunks > 1 for n in g.nests)):
            emit_threaded(kg, g, k)
            continue
        kg.begin(f"group{k}_{g.kind}")
        if g.kind == "reduce":
            emit_reduce(kg, g)
        elif g.kind == "dot":
            emit_dot(kg, g)
        elif g.kind == "sparse":
            from .sparse import emit_sparse
            emit_sparse(kg, g)
        else:
            for nest in g.nests:
                emit_nest(kg, nest)
        kg.end()


def emit_threaded(kg: KernelGen, g: Group, k: int) -> None:
    """A group of a threaded plan as steps: each large nest a chunked step (consecutive small ones
    share a plain step); a reduction cut along kept axes, or into per-chunk partial results that a
    second step combines in order; a GEMM (gemm.emit_gemm_threaded)."""
    from .gemm import emit_dot_as_reduction, emit_gemm_threaded
    from .plan import Buf, slot_elems, step_runs
    if g.kind in ("loop", "seq"):
        for nests in step_runs(g.nests):
            chunks = max(n.chunks for n in nests)
            if chunks == 1:
                kg.begin(f"group{k}_{g.kind}{len(kg.steps)}")
                for nest in nests:
                    emit_nest(kg, nest)
            else:                             # each nest cut into the step's chunks
                kg.begin(f"group{k}_{g.kind}{len(kg.steps)}", chunks=chunks)
                kg.fixed_chunks = len(nests) > 1
                for nest in nests:
                    emit_nest(kg, nest, split=True)
            kg.end()
        return
    if g.kind == "dot" and g.gemm is not None:
        emit_gemm_threaded(kg, g, k)
        return
    if g.kind == "sparse":
        from .sparse import emit_sparse_threaded
        emit_sparse_threaded(kg, g, k)
        return
    e = g.eqns[-1]
    emit = (lambda split, out=None: emit_dot_as_reduction(kg, g, split, out)) if g.kind == "dot" else \
        (lambda split, out=None: emit_reduce(kg, g, split, out))
    kg.begin(f"group{k}_{g.kind}", chunks=g.chunks)
    if g.split == "kept":
        emit("kept")
        kg.end()
        return
    out = kg.plan.views[g.out]
    parts = g.temps["partials"]
    kind, acc_dtype = reduce_kind(e)
    pd = parts.dtype
    slot = slot_elems(int(np.prod(out.shape)), pd)
    mine = Buf("scratch", parts.index, pd, slot)
    kg.bind_slot(mine, parts, slot * pd.itemsize, kg.chunk)
    if kind == "argmax":                      # the index, and beside it the value it points at
        values = g.temps["partial_values"]
        vslot = slot_elems(int(np.prod(out.shape)), values.dtype)
        my_values = Buf("scratch", values.index, values.dtype, vslot)
        kg.bind_slot(my_values, values, vslot * values.dtype.itemsize, kg.chunk)
        emit_reduce(kg, g, "red", full_view(mine, out.shape), full_view(my_values, out.shape))
    else:
        emit("red", full_view(mine, out.shape))
    count = kg.nchunks
    kg.end()
    kg.begin(f"group{k}_{g.kind}_combine")
    if kind == "argmax":
        emit_argmax_combine(kg, acc_dtype, parts, slot, values, vslot, count, out)
    else:
        emit_combine(kg, kind, acc_dtype, parts, slot, count, out)
    kg.end()


def emit_cond(kg: KernelGen, g: Group, k: int) -> None:
    """Each branch becomes a function ``(ins..., outs..., scratch)`` of its own plan; the group's
    function clamps the index and calls one of them on the operands' and results' buffers."""
    e = g.eqns[0]
    index, *ops = e.inputs
    fns = []
    for j, sub in enumerate(g.branches):
        bk = KernelGen(sub, parent=kg, prefix=f"{kg.prefix}g{k}b{j}_")
        emit_groups(bk)
        bk.begin("kernel")
        for part in list(bk.parts):
            bk.b.call(part, list(bk.fn.args))
        bk.end()
        fns.append(bk.fn)
    kg.begin(f"group{k}_cond")
    b = kg.b
    cx = Lanes(kg, 1)
    v, d = kg.scalar(index)
    i = cx.clamp_index(cx.convert(v, d, I64_DT), len(fns) - 1)
    args = [kg.base_ptr(kg.plan.views[a].buf) for a in ops]
    args += [kg.base_ptr(kg.plan.views[v].buf) for v in e.outvars]
    if "branch" in g.temps:
        args.append(kg.base_ptr(g.temps["branch"]))
    else:
        args.append(ir.Constant(PTR, None))
    done = kg.fn.append_basic_block("cond_done")
    blocks = [kg.fn.append_basic_block(f"branch{j}") for j in range(len(fns))]
    sw = b.switch(i, blocks[0])
    for j, blk in enumerate(blocks):
        sw.add_case(ir.Constant(I64, j), blk)
        b.position_at_end(blk)
        b.call(fns[j], args)
        b.branch(done)
    b.position_at_end(done)
    kg.end()


def emit_subkernel(kg: KernelGen, sub: Plan, prefix: str) -> ir.Function:
    """A sub-plan (a loop body, a loop condition) as one internal function ``(ins..., outs..., scratch)``
    in the parent's module."""
    bk = KernelGen(sub, parent=kg, prefix=prefix)
    emit_groups(bk)
    bk.begin("kernel")
    for part in list(bk.parts):
        bk.b.call(part, list(bk.fn.args))
    bk.end()
    return bk.fn


def emit_loop(kg: KernelGen, g: Group, k: int) -> None:
    """while and scan: the group's function loops, calling the body's function on the current carry
    buffers and the other ones (ping-pong: no copy per step, and the body's inputs never alias its
    outputs). A carry's own output buffer and one temp alternate; the result must end in the own one.

    while: copy the initial carry in; repeat { cond(carry) -> flag; stop unless flag; body }; copy back
    when an odd number of steps left it in the temp. scan: the trip count is static, so the initial
    carry goes into whichever buffer makes the last step write the own one; step i passes pointers
    to xs[i] and ys[i] (slices along axis 0 of contiguous arrays are contiguous)."""
    e = g.eqns[0]
    p = e.params
    tags = "cb" if g.kind == "while" else "s"
    fns = [emit_subkernel(kg, sub, f"{kg.prefix}g{k}{t}_") for t, sub in zip(tags, g.branches)]
    kg.begin(f"group{k}_{g.kind}")
    b = kg.b
    views = kg.plan.views

    def ptr(a):
        return kg.base_ptr(views[a].buf)

    scratch = kg.base_ptr(g.temps["sub"]) if "sub" in g.temps else ir.Constant(PTR, None)
    if g.kind == "while":
        nc, nb = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, init = e.inputs[:nc], e.inputs[nc:nc + nb], e.inputs[nc + nb:]
        carries = list(e.outvars)
    else:
        nk, nc = p["num_consts"], p["num_carry"]
        consts, init, xs = e.inputs[:nk], e.inputs[nk:nk + nc], e.inputs[nk + nc:]
        carries, ys = list(e.outvars[:nc]), list(e.outvars[nc:])
    own = [views[v].buf for v in carries]
    other = [g.temps[f"carry{j}"] for j in range(len(carries))]

    def copy(srcs, dsts):
        for s, d, v in zip(srcs, dsts, carries):
            shape = v.aval.shape
            src = s if isinstance(s, Var) else full_view(s, shape)
            emit_nest(kg, Nest(shape, [], [(src, full_view(d, shape), "store")]))

    def pick(parity, first, second):
        """The carry pointers for a step: ``first`` on even steps (parity 0), ``second`` on odd."""
        return [b.select(parity, kg.base_ptr(y), kg.base_ptr(x)) for x, y in zip(first, second)]

    if g.kind == "while":
        cond_fn, body_fn = fns
        copy(init, own)
        pre = b.block
        head, step_, exit_ = (kg.fn.append_basic_block(n) for n in ("while_head", "while_body", "while_exit"))
        b.branch(head)
        b.position_at_end(head)
        parity = b.phi(I1)
        parity.add_incoming(ir.Constant(I1, 0), pre)
        cur, nxt = pick(parity, own, other), pick(parity, other, own)
        flag = g.temps["flag"]
        b.call(cond_fn, [ptr(a) for a in cconsts] + cur + [kg.base_ptr(flag), scratch])
        b.cbranch(kg.load(Lanes(kg, 1), flag, ir.Constant(I64, 0)), step_, exit_)
        b.position_at_end(step_)
        b.call(body_fn, [ptr(a) for a in bconsts] + cur + nxt + [scratch])
        parity.add_incoming(b.not_(parity), b.block)
        b.branch(head)
        b.position_at_end(exit_)
        back, done = kg.fn.append_basic_block("while_copy_back"), kg.fn.append_basic_block("while_done")
        b.cbranch(parity, back, done)
        b.position_at_end(back)
        copy(other, own)
        b.branch(done)
        b.position_at_end(done)
    else:
        n = p["length"]
        first, second = (other, own) if n % 2 else (own, other)
        copy(init, first)
        if n:
            with kg.loop(n) as j:
                i = b.sub(ir.Constant(I64, n - 1), j) if p["reverse"] else j
                parity = b.trunc(j, I1)

                def slices(vs):
                    out = []
                    for v in vs:
                        nbytes = v.aval.size // n * v.aval.dtype.itemsize
                        out.append(b.gep(ptr(v), [b.mul(i, ir.Constant(I64, nbytes))], source_etype=I8))
                    return out
                args = [ptr(a) for a in consts] + pick(parity, first, second) + slices(xs)
                args += pick(parity, second, first) + slices(ys) + [scratch]
                b.call(fns[0], args)
    kg.end()


LIGHT_MAX_ELEMS = 1 << 14


def pipeline_for(plan: Plan) -> str:
    """The optimization pipeline a plan's kernel gets (engine._optimized_module): ``"light"`` for a
    small program, where compile time is what the user waits for: no array over LIGHT_MAX_ELEMS
    elements, no GEMM (its flops grow faster than its arrays) and no while/scan loop (its trip count
    multiplies the work). Everything else gets O3: its vector loops run the same either way, but a
    column variance measured 1.2x and a fori_loop 1.1x slower without it."""
    for g in plan.groups:
        if g.kind in ("while", "scan", "sparse") or (g.kind == "dot" and g.gemm is not None):
            return "full"
        for e in g.eqns:
            if any(a.aval.size > LIGHT_MAX_ELEMS for a in list(e.inputs) + list(e.outvars)):
                return "full"
        if any(pipeline_for(sub) == "full" for sub in g.branches):
            return "full"
    return "light"


@dataclass
class Generated:
    text: str                    # the module's LLVM IR
    externals: list[str]         # the outside symbols it calls
    pipeline: str                # "full" | "light": see pipeline_for


def generate(plan: Plan, entry: str = "objects") -> Generated:
    """The LLVM IR of the plan's kernel, exporting ``entry`` (array objects) or ``kernel`` (buffer
    pointers): see KernelGen.finish."""
    kg = KernelGen(plan)
    emit_groups(kg)
    return Generated(kg.finish(entry), sorted(kg.externals), pipeline_for(plan))
