"""What the LLVM tests share: hypothesis settings, and a differential check against the interpreter
that also fences every output and the scratch arena with guard bytes."""
import os

import ml_dtypes
import numpy as np
from hypothesis import HealthCheck

import runtime
from runtime import llvm

SETTINGS = dict(max_examples=int(os.environ.get("LLVM_EXAMPLES", 25)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


GUARD = 256


def guarded_call(fn, *args):
    """Run a compiled function with its outputs and scratch fenced by guard bytes, and fail if the
    kernel wrote outside them (an overrun that might not crash but would corrupt the heap)."""
    k = fn.kernel
    arrays = llvm.abi.check_native_args(k.in_avals, args)
    raws, outs = [], []
    for aval in k.out_avals:
        raw = np.full(aval.size * aval.dtype.itemsize + 2 * GUARD, 0xAB, np.uint8)
        raws.append(raw)
        outs.append(raw[GUARD:raw.size - GUARD].view(aval.dtype.np).reshape(aval.shape))
    scratch = np.full(k.scratch_bytes + 2 * GUARD, 0xAB, np.uint8)
    if k.entry is not None:                    # the export reads each array object's data pointer
        k.entry(*arrays, *fn.consts, *outs, scratch[GUARD:])
    else:
        k.cfunc(*[a.ctypes.data for a in arrays], *fn._const_ptrs, *[o.ctypes.data for o in outs],
                scratch[GUARD:].ctypes.data)
    for raw in raws + [scratch]:
        assert (raw[:GUARD] == 0xAB).all() and (raw[raw.size - GUARD:] == 0xAB).all(), "kernel wrote out of bounds"
    return outs


def assert_same(closed, *args, rtol=1e-5, atol=1e-6):
    """The LLVM result equals the interpreter's: exactly for ints and bools, within tolerance for
    floats (NaN where numpy has NaN); and the kernel stays inside its buffers."""
    ref = runtime.eval_jaxpr(closed, *args)
    fn = runtime.compile(closed, "llvm")
    got = fn(*args)
    for g, h in zip(got, guarded_call(fn, *args)):
        assert g.tobytes() == h.tobytes()
    assert len(ref) == len(got)
    for r, g in zip(ref, got):
        assert g.dtype == r.dtype and g.shape == r.shape, (g.dtype, r.dtype, g.shape, r.shape)
        if r.dtype.kind in "iub" and r.dtype.names is None and r.dtype != ml_dtypes.bfloat16:
            np.testing.assert_array_equal(g, r)
        else:
            np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), rtol=rtol, atol=atol,
                                       equal_nan=True)
