"""Vector transcendental functions: own AVX-512 float32 exp/log, glibc's libmvec, libm per lane.

On AVX-512 hosts float32 ``exp`` and ``log`` (and so ``logistic``) are inline IR (own_exp, own_log):
the exponent is split off with ``getexp``/``getmant`` or put back with ``scalef``, which also handle
denormals, overflow and underflow, and a short polynomial fitted at first use (``coefficients``) does
the rest; about twice libmvec's speed at <= 2 ulp. Everything else, f64, other hosts, and (for
comparison) TRACEJIT_LIBMVEC=1 or ``OWN_KERNELS = False`` go to libmvec.

LLVM's own ``llvm.exp``/``llvm.log`` on vectors become one scalar libm call per lane (slower than
numpy, see notes/llvmlite.md). Instead of teaching the vectorizer about libmvec through
"vector-function-abi-variant" attributes, codegen already works on explicit vectors, so it calls the
vector variants by their vector-ABI names (``_ZGVeN16v_expf`` = AVX-512, 16 lanes, one vector
argument) and splits or pads its vectors to the variant's width.
"""
from __future__ import annotations

import functools
import math
import os

import numpy as np
from llvmlite import ir

from .engine import engine

FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "erf", "pow")
_ISA_BYTES = {"e": 64, "d": 32, "b": 16}
# Own AVX-512 float32 exp/log instead of libmvec; TRACEJIT_LIBMVEC=1 (or setting this False and
# clearing the kernel cache) selects libmvec, e.g. to compare the two.
OWN_KERNELS = os.environ.get("TRACEJIT_LIBMVEC", "") != "1"
F32 = ir.FloatType()
V16 = ir.VectorType(F32, 16)


def vector_symbol(name: str, double: bool, nargs: int) -> tuple[str, int] | None:
    """The libmvec symbol for ``name`` on this host and its lane count, or None if there is none."""
    isa = engine().host.mvec_isa
    if isa is None:
        return None
    lanes = _ISA_BYTES[isa] // (8 if double else 4)
    sym = f"_ZGV{isa}N{lanes}{'v' * nargs}_{name if double else name + 'f'}"
    return (sym, lanes) if engine().symbol_address(sym) is not None else None


def own_kernel(name: str, double: bool):
    """The inline 16-lane kernel for ``name`` on this host, or None (then libmvec or libm is used)."""
    if double or not OWN_KERNELS or name not in ("exp", "log") or not _avx512():
        return None
    return {"exp": own_exp, "log": own_log}[name]


@functools.lru_cache(maxsize=None)
def _avx512() -> bool:
    return "+avx512f" in engine().host.features.split(",")


def call(cx, name: str, args: list, double: bool):
    """``name`` applied lane-wise to ``args`` (scalars or vectors of cx.W lanes)."""
    if name not in FUNCTIONS:
        raise NotImplementedError(f"LLVM backend: no math function {name}")
    b = cx.b
    own = own_kernel(name, double)
    if own is not None:
        if getattr(cx.kg, "loop_elems", INLINE_MIN_ELEMS) >= INLINE_MIN_ELEMS:
            return in_lanes(b, lambda vs: own(cx, vs[0]), args, 16)
        fn = _own_function(cx, name, own)
        return in_lanes(b, lambda vs: b.call(fn, vs), args, 16)
    scalar_ty = ir.DoubleType() if double else ir.FloatType()
    found = None if cx.W == 1 else vector_symbol(name, double, len(args))
    if found is None:
        scalar_fn = cx.declare(name if double else name + "f", scalar_ty, [scalar_ty] * len(args))
    if cx.W == 1:
        return b.call(scalar_fn, args)
    if found is None:                                   # one libm call per lane
        out = ir.Constant(args[0].type, None)
        for lane in range(cx.W):
            i = ir.Constant(ir.IntType(32), lane)
            out = b.insert_element(out, b.call(scalar_fn, [b.extract_element(a, i) for a in args]), i)
        return out
    sym, lanes = found
    vty = ir.VectorType(scalar_ty, lanes)
    fn = cx.declare(sym, vty, [vty] * len(args))
    return in_lanes(b, lambda vs: b.call(fn, vs), args, lanes)


# In long loops the kernels are inlined (no call, no spilled registers: the sigmoid-of-logs chain
# runs ~1.4x faster than through calls); in short ones, where run time is microseconds, every use
# calls the process-wide copy (runtime_symbols), so LLVM does not optimize and compile a copy per
# use (a fresh 50-op function on f32[1024] with 10 exps compiles in ~14 ms instead of ~35).
INLINE_MIN_ELEMS = 1 << 14


def _own_function(cx, name: str, kernel):
    """``<16 x float> tracejit_<name>f16(<16 x float>)``: a kernel of the process-wide math runtime
    (compiled once, see ``runtime_symbols``), declared here and called like a libmvec function."""
    return cx.declare(f"tracejit_{name}f16", V16, [V16])


RUNTIME_SYMBOLS = ("tracejit_expf16", "tracejit_logf16")
_RUNTIME: dict = {}


class RuntimeModule:
    """Just enough of a KernelGen for the process-wide kernels (these, gemm's micro-kernels): a
    module to declare intrinsics in, a builder."""

    def __init__(self, name: str):
        eng = engine()
        self.module, self.b = ir.Module(name=name), None
        self.module.triple = eng.host.triple
        self.module.data_layout = str(eng.opt_machine.target_data)

    def link(self, symbols: list[str]):
        """Optimize (O3), compile and link the module: (resource tracker, {symbol: address})."""
        eng = engine()
        return eng.link(eng.optimize(str(self.module)), [], symbols)

    def declare(self, name: str, ret, args):
        fn = self.module.globals.get(name)
        return fn if fn is not None else ir.Function(self.module, ir.FunctionType(ret, args), name=name)


def runtime_symbols() -> dict:
    """Addresses of the own kernels as out-of-line functions, compiled and linked once per process:
    short loops call them, so each program's module stays small (and quick to compile)."""
    if not _RUNTIME:
        from .codegen import Lanes
        holder = RuntimeModule("tracejit_math")
        for name, kernel in (("exp", own_exp), ("log", own_log)):
            fn = ir.Function(holder.module, ir.FunctionType(V16, [V16]), name=f"tracejit_{name}f16")
            fn.attributes.add("nounwind")
            holder.b = ir.IRBuilder(fn.append_basic_block("entry"))
            holder.b.ret(kernel(Lanes(holder, 16), fn.args[0]))
        tracker, addresses = holder.link(list(RUNTIME_SYMBOLS))
        _RUNTIME.update(addresses, tracker=tracker)        # the tracker keeps the code loaded
    return {k: v for k, v in _RUNTIME.items() if k in RUNTIME_SYMBOLS}


def in_lanes(b, fn, args: list, lanes: int):
    """``fn`` (on vectors of exactly ``lanes`` lanes) applied to scalars or vectors of any width
    dividing or divisible by ``lanes``: narrower ones are padded with 1.0 (harmless to every
    function here) and cut, wider ones split and joined."""
    i32 = ir.IntType(32)
    if not isinstance(args[0].type, ir.VectorType):     # a scalar: lane 0 of a padded vector
        vty = ir.VectorType(args[0].type, lanes)
        pad = ir.Constant(vty, [1.0] * lanes)
        res = fn([b.insert_element(pad, a, ir.Constant(i32, 0)) for a in args])
        return b.extract_element(res, ir.Constant(i32, 0))
    w = args[0].type.count
    if w == lanes:
        return fn(args)
    if w < lanes:
        pad = ir.Constant(args[0].type, [1.0] * w)
        widen = ir.Constant(ir.VectorType(i32, lanes), list(range(w)) + [w] * (lanes - w))
        res = fn([b.shuffle_vector(a, pad, widen) for a in args])
        return b.shuffle_vector(res, ir.Constant(res.type, None), ir.Constant(ir.VectorType(i32, w), list(range(w))))
    pieces = []
    for k in range(w // lanes):
        sel = ir.Constant(ir.VectorType(i32, lanes), list(range(k * lanes, (k + 1) * lanes)))
        pieces.append(fn([b.shuffle_vector(a, ir.Constant(a.type, None), sel) for a in args]))
    while len(pieces) > 1:
        n = pieces[0].type.count
        sel = ir.Constant(ir.VectorType(i32, 2 * n), list(range(2 * n)))
        pieces = [b.shuffle_vector(pieces[i], pieces[i + 1], sel) for i in range(0, len(pieces), 2)]
    return pieces[0]


# ---- own float32 kernels ------------------------------------------------------------------------
def _lawson(x, target, scale, weight, degree: int, iterations: int = 60) -> np.ndarray:
    """Coefficients c of Q (degree ``degree``) minimising max |weight * (scale * Q(x) - target)| over
    the sample points x: weighted least squares whose weights Lawson's iteration multiplies by the
    error, which converges to the minimax (equioscillating) fit."""
    a = (scale * weight)[:, None] * x[:, None] ** np.arange(degree + 1)
    t = target * weight
    w = np.full(x.size, 1.0 / x.size)
    for _ in range(iterations):
        s = np.sqrt(w)
        c = np.linalg.lstsq(a * s[:, None], t * s, rcond=None)[0]
        err = np.abs(a @ c - t)
        w = w * err
        w /= w.sum()
    return c


@functools.cache
def coefficients(name: str) -> tuple[float, ...]:
    """Float32 polynomial coefficients (lowest degree first), fitted in float64 for relative error:
    exp: e^r = 1 + r + r^2 Q(r), |r| <= ln2/2 (a little wider: n's rounding of x*log2e may be off by
    one ulp), Q of degree 4 (max error ~0.06 * 2^-24);
    log: log(1+f) = f + f^2 Q(f), f = m - 1 in [-1/4, 1/2) (getmant's [3/4, 3/2)), Q of degree 7
    (~0.5 * 2^-24).  Both are evaluated by Horner's rule: the loops are throughput-bound, and Horner
    needs the fewest instructions (Estrin's shorter chain measured slower)."""
    if name == "exp":
        r = np.linspace(-0.36, 0.36, 4000)
        r = r[r != 0]
        c = _lawson(r, np.expm1(r) - r, r * r, np.exp(-r), 4)
    else:
        f = np.linspace(-0.25, 0.5, 8000)
        f = f[f != 0]
        c = _lawson(f, np.log1p(f) - f, f * f, 1 / np.abs(np.log1p(f)), 7)
    return tuple(float(v) for v in c.astype(np.float32))


def _split(value: float, keep_bits: int) -> tuple[float, float]:
    """value = hi + lo with hi a float32 of ``keep_bits`` significant bits (so small multiples of it
    are exact) and lo the float32 nearest the rest."""
    e = math.frexp(value)[1]
    hi = math.floor(value * 2.0 ** (keep_bits - e)) / 2.0 ** (keep_bits - e)
    return hi, float(np.float32(value - hi))


class _Vec:
    """Builder helpers on <16 x float> for the kernels below."""

    def __init__(self, cx):
        self.cx, self.b = cx, cx.b

    def c(self, v: float) -> ir.Constant:
        from .codegen import Splat
        return Splat(V16, ir.Constant(F32, float(np.float32(v))))

    def fma(self, a, x, y):
        return self.cx.intrinsic("llvm.fma", [a, x, y])

    def horner(self, x, coeffs):
        """The polynomial with these coefficients (lowest first) at x."""
        acc = self.c(coeffs[-1])
        for k in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(k))
        return acc

    def x86(self, name: str, args: list):
        return self.b.call(self.cx.declare("llvm.x86.avx512." + name, V16, [a.type for a in args]), args)

    def mask_ops(self, name: str, x, *imm):
        """getexp/getmant (all lanes, current rounding mode)."""
        i16, i32 = ir.IntType(16), ir.IntType(32)
        return self.x86(name, [x, *[ir.Constant(i32, v) for v in imm], ir.Constant(V16, None),
                               ir.Constant(i16, -1), ir.Constant(i32, 4)])


LN2 = math.log(2.0)


def own_exp(cx, x):
    """e^x on 16 float32 lanes: n = roundeven(x log2 e), r = x - n ln2 (Cody-Waite, two FMAs; exact
    for the first part since ln2_hi has 16 bits), then scalef(1 + r + r^2 Q(r), n), which rounds
    once and so gives inf past the overflow threshold and (sub)normals down to 0.  x is first clamped
    to [-120, 120] (keeping NaN; vminps/vmaxps), so +-inf give inf and 0, not inf - inf."""
    v, b = _Vec(cx), cx.b
    x = b.select(b.fcmp_ordered(">", x, v.c(120.0)), v.c(120.0), x)
    x = b.select(b.fcmp_ordered("<", x, v.c(-120.0)), v.c(-120.0), x)
    n = cx.intrinsic("llvm.roundeven", [b.fmul(x, v.c(1 / LN2))])
    hi, lo = _split(LN2, 16)
    r = v.fma(b.fneg(n), v.c(hi), x)
    r = v.fma(b.fneg(n), v.c(lo), r)
    p = v.horner(r, (1.0, 1.0) + coefficients("exp"))
    return v.x86("mask.scalef.ps.512", [p, n, ir.Constant(V16, None), ir.Constant(ir.IntType(16), -1),
                                         ir.Constant(ir.IntType(32), 4)])


def own_log(cx, x):
    """log x on 16 float32 lanes: x = m 2^e with m in [3/4, 3/2) (getmant, and getexp plus one where
    the mantissa was halved; both see through denormals), log m = f + f^2 Q(f) with f = m - 1 exact,
    and e ln2 added last (one float32 ln2 is enough: its error times |e| <= 150 stays far below an
    ulp of the result, and rounding log m first keeps the error ~1 ulp).  Special values need no
    code: getmant gives NaN for a set sign bit (x < 0), getexp -inf for +-0 and +inf for +inf, and
    those dominate the sum."""
    v, b = _Vec(cx), cx.b
    m = v.mask_ops("mask.getmant.ps.512", x, 3 | 2 << 2)   # [3/4, 3/2); NaN where the sign is set
    e = v.mask_ops("mask.getexp.ps.512", x)
    e = b.select(b.fcmp_ordered("<", m, v.c(1.0)), b.fadd(e, v.c(1.0)), e)
    f = b.fsub(m, v.c(1.0))
    q = v.horner(f, coefficients("log"))
    return v.fma(e, v.c(LN2), v.fma(b.fmul(f, f), q, f))
