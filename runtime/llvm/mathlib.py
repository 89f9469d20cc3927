"""Vector transcendental functions: glibc's libmvec called directly, libm per lane as the fallback.

LLVM's own ``llvm.exp``/``llvm.log`` on vectors become one scalar libm call per lane (slower than
numpy, see notes/llvmlite.md). Instead of teaching the vectorizer about libmvec through
"vector-function-abi-variant" attributes, codegen already works on explicit vectors, so it calls the
vector variants by their vector-ABI names (``_ZGVeN16v_expf`` = AVX-512, 16 lanes, one vector
argument) and splits or pads its vectors to the variant's width.
"""
from __future__ import annotations

from llvmlite import ir

from .engine import engine

FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos", "erf", "pow")
_ISA_BYTES = {"e": 64, "d": 32, "b": 16}


def vector_symbol(name: str, double: bool, nargs: int) -> tuple[str, int] | None:
    """The libmvec symbol for ``name`` on this host and its lane count, or None if there is none."""
    isa = engine().host.mvec_isa
    if isa is None:
        return None
    lanes = _ISA_BYTES[isa] // (8 if double else 4)
    sym = f"_ZGV{isa}N{lanes}{'v' * nargs}_{name if double else name + 'f'}"
    return (sym, lanes) if engine().symbol_address(sym) is not None else None


def call(cx, name: str, args: list, double: bool):
    """``name`` applied lane-wise to ``args`` (scalars or vectors of cx.W lanes)."""
    if name not in FUNCTIONS:
        raise NotImplementedError(f"LLVM backend: no math function {name}")
    b = cx.b
    scalar_ty = ir.DoubleType() if double else ir.FloatType()
    scalar_fn = cx.declare(name if double else name + "f", scalar_ty, [scalar_ty] * len(args))
    if cx.W == 1:
        return b.call(scalar_fn, args)
    found = vector_symbol(name, double, len(args))
    if found is None:                                   # one libm call per lane
        out = ir.Constant(args[0].type, None)
        for lane in range(cx.W):
            i = ir.Constant(ir.IntType(32), lane)
            out = b.insert_element(out, b.call(scalar_fn, [b.extract_element(a, i) for a in args]), i)
        return out
    sym, lanes = found
    vty = ir.VectorType(scalar_ty, lanes)
    fn = cx.declare(sym, vty, [vty] * len(args))
    if cx.W == lanes:
        return b.call(fn, args)
    if cx.W < lanes:                                    # pad with 1.0 (a harmless argument) and cut
        pad = ir.Constant(args[0].type, [1.0] * cx.W)
        widen = ir.Constant(ir.VectorType(ir.IntType(32), lanes), list(range(cx.W)) + [cx.W] * (lanes - cx.W))
        res = b.call(fn, [b.shuffle_vector(a, pad, widen) for a in args])
        return b.shuffle_vector(res, ir.Constant(vty, None),
                                ir.Constant(ir.VectorType(ir.IntType(32), cx.W), list(range(cx.W))))
    pieces = []
    for k in range(cx.W // lanes):
        sel = ir.Constant(ir.VectorType(ir.IntType(32), lanes), list(range(k * lanes, (k + 1) * lanes)))
        pieces.append(b.call(fn, [b.shuffle_vector(a, ir.Constant(a.type, None), sel) for a in args]))
    while len(pieces) > 1:
        n = pieces[0].type.count
        sel = ir.Constant(ir.VectorType(ir.IntType(32), 2 * n), list(range(2 * n)))
        pieces = [b.shuffle_vector(pieces[i], pieces[i + 1], sel) for i in range(0, len(pieces), 2)]
    return pieces[0]
