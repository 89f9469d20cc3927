"""The native calling convention and the checks in front of it.

``kernel(in_0, ..., consts..., out_0, ..., scratch)`` takes one pointer per buffer. Native code has no
bounds checks, so every argument is checked here first (count, dtype, shape as runtime.abi does,
plus C-contiguity and alignment): a wrong buffer raises TypeError and never reaches the kernel.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Sequence

import numpy as np

from compiler.ir.core import ShapedArray

from ..abi import check_args


def check_native_args(avals: Sequence[ShapedArray], args: Sequence[Any]) -> list[np.ndarray]:
    arrays = check_args(avals, args)
    for i, (x, aval) in enumerate(zip(arrays, avals)):
        if not x.flags.c_contiguous:
            raise TypeError(f"argument {i}: expected a C-contiguous {aval} array, got a strided view "
                            f"(strides {x.strides}); pass np.ascontiguousarray(x)")
        if not x.flags.aligned:
            raise TypeError(f"argument {i}: expected an aligned {aval} array, got a misaligned buffer; "
                            f"pass a copy (x.copy())")
    return arrays


def prepare_consts(avals: Sequence[ShapedArray], consts: Sequence[Any] | None) -> list[np.ndarray]:
    """The captured constants as contiguous arrays of exactly their declared types."""
    if consts is None:
        if avals:
            raise TypeError(f"this jaxpr has {len(avals)} constvars but no values for them "
                            f"(parse(text, consts=[...]) supplies them)")
        return []
    if len(consts) != len(avals):
        raise TypeError(f"expected {len(avals)} consts, got {len(consts)}")
    out = []
    for i, (c, aval) in enumerate(zip(consts, avals)):
        arr = np.ascontiguousarray(np.asarray(c, dtype=aval.dtype.np))
        if arr.shape != aval.shape:
            raise TypeError(f"const {i}: expected {aval}, got shape {arr.shape}")
        out.append(arr)
    return out


def _data_offset_works() -> bool:
    """Does ``entry`` read numpy's data pointer where this build of Python and numpy keeps it?"""
    from .codegen import ARRAY_DATA_OFFSET
    base = np.arange(8, dtype=np.float64)
    probes = [base, base[3:], np.empty((2, 3), np.int8), np.ones(())]
    return all(ctypes.c_void_p.from_address(id(a) + ARRAY_DATA_OFFSET).value == a.ctypes.data for a in probes)


OBJECT_ENTRY = _data_offset_works()
_NO_SCRATCH = np.empty(64, np.uint8)           # never touched by a kernel that needs no scratch


class NativeFunction:
    """A compiled kernel bound to one program's consts: call it with the flat inputs."""

    def __init__(self, kernel, consts: list[np.ndarray]):
        self.kernel = kernel
        self.consts = consts
        self._const_ptrs = [c.ctypes.data for c in consts]
        self._out_specs = [(a.shape, a.dtype.np) for a in kernel.out_avals]
        self._in_specs = [(a.shape, a.dtype.np) for a in kernel.in_avals]
        self._scratch: list[np.ndarray] = []
        self._lock = threading.Lock()
        self._specialize_hot_path()

    def _fast_check(self, args) -> bool:
        """True when every argument is already exactly right (the common case, checked cheaply)."""
        if len(args) != len(self._in_specs):
            return False
        for x, (shape, dtype) in zip(args, self._in_specs):
            if type(x) is not np.ndarray or x.dtype != dtype or x.shape != shape:
                return False
            flags = x.flags
            if not (flags.c_contiguous and flags.aligned):
                return False
        return True

    def __call__(self, *args) -> list[np.ndarray]:
        return self._call(args if self._fast_check(args) else check_native_args(self.kernel.in_avals, args))

    def call_if_exact(self, args) -> list[np.ndarray] | None:
        """Run when every argument is already exactly right (jit's hot path); None otherwise."""
        return self._call(args) if self._fast_check(args) else None

    def _specialize_hot_path(self) -> None:
        """For the common kernel (object entry, no scratch) replace ``call_if_exact`` by one flat
        function: the same checks as _fast_check, with no further Python calls before native code."""
        if not OBJECT_ENTRY or self.kernel.scratch_bytes:
            return
        in_specs, out_specs = tuple(self._in_specs), tuple(self._out_specs)
        n, consts, entry, empty, ndarray = len(in_specs), tuple(self.consts), self.kernel.entry, np.empty, np.ndarray

        def call_if_exact(args):
            if len(args) != n:
                return None
            for x, (shape, dtype) in zip(args, in_specs):
                if type(x) is not ndarray or x.dtype != dtype or x.shape != shape:
                    return None
                flags = x.flags
                if not (flags.c_contiguous and flags.aligned):
                    return None
            outs = [empty(shape, dtype) for shape, dtype in out_specs]
            entry(*args, *consts, *outs, _NO_SCRATCH)
            return outs
        self.call_if_exact = call_if_exact

    def _call(self, arrays) -> list[np.ndarray]:
        k = self.kernel
        outs = [np.empty(shape, dtype) for shape, dtype in self._out_specs]
        if not k.scratch_bytes:
            self._run(arrays, outs, _NO_SCRATCH)
            return outs
        with self._lock:                  # each concurrent call gets its own scratch arena
            scratch = self._scratch.pop() if self._scratch else np.empty(k.scratch_bytes, np.uint8)
        try:
            self._run(arrays, outs, scratch)
        finally:
            with self._lock:
                self._scratch.append(scratch)
        return outs

    def _run(self, arrays, outs, scratch) -> None:
        k = self.kernel
        if OBJECT_ENTRY:
            k.entry(*arrays, *self.consts, *outs, scratch)
        else:
            k.cfunc(*[a.ctypes.data for a in arrays], *self._const_ptrs, *[o.ctypes.data for o in outs],
                    scratch.ctypes.data)


def cfunction(address: int, nargs: int, objects: bool = False):
    """A ctypes callable for a kernel entry taking pointers (or, for ``entry``, array objects)."""
    arg = ctypes.py_object if objects else ctypes.c_void_p
    return ctypes.CFUNCTYPE(None, *([arg] * nargs))(address)
