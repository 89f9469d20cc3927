"""LLVM machinery: the host target, the optimization pipeline, ORC LLJIT linking, and a bounded cache.

Facts this relies on (notes/llvmlite.md): the legacy pass manager is gone (new pass builder only); a
target machine handed to an engine belongs to it, so the JIT gets its own and the pass builder
another; each kernel is linked as its own JIT library whose resource tracker unloads it when dropped,
which is what lets the kernel cache stay bounded.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property

import llvmlite.binding as llvm

_LOCK = threading.RLock()


@dataclass(frozen=True)
class Host:
    """What codegen needs to know about the CPU: vector register width and libmvec's ISA letter."""
    triple: str
    cpu: str
    features: str
    vector_bytes: int          # widest vector register: 64 (AVX-512), 32 (AVX2), 16 otherwise
    mvec_isa: str | None       # libmvec variant letter: 'e' AVX-512, 'd' AVX2, 'b' SSE4; None: no libmvec

    def lanes(self, itemsize: int) -> int:
        return max(1, self.vector_bytes // itemsize)


class _Engine:
    """One process-wide LLJIT and pass-builder target machine, created on first use."""

    def __init__(self):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.target = llvm.Target.from_triple(llvm.get_process_triple())
        features = llvm.get_host_cpu_features().flatten()
        on = set(f[1:] for f in features.split(",") if f.startswith("+"))
        x86 = llvm.get_process_triple().startswith(("x86_64", "i686", "i386"))
        vbytes = 64 if "avx512f" in on else 32 if "avx2" in on else 16
        self.libmvec = _open("mvec") if x86 else None
        isa = None
        if self.libmvec is not None:
            isa = "e" if "avx512f" in on else "d" if "avx2" in on else "b" if "sse4.1" in on else None
        self.host = Host(llvm.get_process_triple(), llvm.get_host_cpu_name(), features, vbytes, isa)
        self.libm = _open("m")
        self.jit = llvm.create_lljit_compiler(self._machine())
        self.opt_machine = self._machine()
        self.light_machine = self._machine(codegen_opt=1)   # code generation for the "light" pipeline
        self.names = itertools.count()

    def _machine(self, codegen_opt: int = 3):
        return self.target.create_target_machine(cpu=self.host.cpu, features=self.host.features,
                                                 opt=codegen_opt, jit=True)

    def symbol_address(self, name: str) -> int | None:
        if name.startswith("tracejit_"):              # tracejit's own runtimes
            from . import gemm, mathlib, threads
            if name in mathlib.RUNTIME_SYMBOLS:       # out-of-line exp/log (mathlib.py)
                return mathlib.runtime_symbols().get(name)
            if name.startswith("tracejit_ukernel_"):  # GEMM micro-kernels (gemm.py)
                return gemm.ukernel_address(name)
            return threads.symbols().get(name)         # the thread pool (threads.py)
        for lib in (self.libmvec, self.libm):
            if lib is not None:
                try:
                    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
                except AttributeError:
                    pass
        return None

    def _optimized_module(self, ir_text: str, pipeline: str = "full"):
        """Parse, verify and optimize. ``"full"`` is LLVM's O3 pipeline (both vectorizers, no unrolling);
        ``"light"`` only inlines what is marked always-inline and cleans up (SROA, instcombine,
        simplifycfg), and compile_object then generates code at O1 rather than O3: about half the
        LLVM time, which is most of a small program's compile latency. codegen.pipeline_for says
        which programs get which."""
        mod = llvm.parse_assembly(ir_text)
        mod.verify()
        pto = llvm.create_pipeline_tuning_options(speed_level=3)
        pto.slp_vectorization = True
        # No loop unrolling: the loops are vectorized (and the GEMM micro-kernel register-blocked) by
        # codegen already. LLVM's full unrolling of short constant loops (a pad's rows, a pooling window)
        # made basic blocks of thousands of instructions, and its instruction schedulers are
        # quadratic in those: the MNIST CNN's training step took 6 s to compile, now 1.2 s; run
        # times moved by at most 2% (bench/RESULTS.md).
        pto.loop_unrolling = False
        pto.loop_vectorization = True
        pb = llvm.create_pass_builder(self.opt_machine, pto)
        if pipeline == "light":
            mpm = llvm.create_new_module_pass_manager()
            mpm.add_always_inliner_pass()
            mpm.add_sroa_pass()
            mpm.add_instruction_combine_pass()
            mpm.add_simplify_cfg_pass()
        elif pipeline == "full":
            mpm = pb.getModulePassManager()
        else:
            raise ValueError(f"unknown optimization pipeline {pipeline!r}; expected 'full' or 'light'")
        mpm.run(mod, pb)
        return mod

    def optimize(self, ir_text: str, pipeline: str = "full") -> str:
        return str(self._optimized_module(ir_text, pipeline))

    def compile_object(self, ir_text: str, pipeline: str = "full") -> bytes:
        """Optimize and compile to relocatable machine code (what the disk cache stores); going
        straight from the optimized module to an object skips printing and re-parsing the IR."""
        machine = self.opt_machine if pipeline == "full" else self.light_machine
        return machine.emit_object(self._optimized_module(ir_text, pipeline))

    def link(self, ir_text: str, externals: list[str], entries: list[str], imports: dict | None = None):
        """JIT-link optimized IR; returns (resource tracker, {entry name: address}). ``externals`` are
        looked up (libm, libmvec, the thread runtime); ``imports`` maps more names to addresses."""
        return self._link(llvm.JITLibraryBuilder().add_ir(ir_text), externals, entries, imports)

    def link_object(self, obj: bytes, externals: list[str], entries: list[str]):
        """JIT-link an object file from compile_object (or the disk cache); as ``link``."""
        return self._link(llvm.JITLibraryBuilder().add_object_img(obj), externals, entries, None)

    def _link(self, builder, externals, entries, imports):
        for name in entries:
            builder.export_symbol(name)
        for name in externals:
            addr = self.symbol_address(name)
            if addr is None:
                raise RuntimeError(f"LLVM backend: external function {name} not found in libm/libmvec")
            builder.import_symbol(name, addr)
        for name, addr in (imports or {}).items():
            builder.import_symbol(name, addr)
        tracker = builder.link(self.jit, f"tracejit_kernel_{next(self.names)}")
        return tracker, {name: tracker[name] for name in entries}


def _open(name: str):
    path = ctypes.util.find_library(name)
    candidates = [path] if path else []
    candidates.append({"m": "libm.so.6", "mvec": "libmvec.so.1"}[name])
    for c in candidates:
        try:
            return ctypes.CDLL(c)
        except OSError:
            continue
    return None


class _Lazy:
    @cached_property
    def engine(self) -> _Engine:
        with _LOCK:
            return _Engine()


_LAZY = _Lazy()


def engine() -> _Engine:
    return _LAZY.engine


def host() -> Host:
    return engine().host


class KernelCache:
    """A bounded LRU of compiled kernels keyed by (program text, input signature).

    Dropping an entry drops its resource tracker, which unloads the machine code; live callables
    keep their kernel (and its tracker) alive, so eviction never frees code that can still run.
    """

    def __init__(self, maxsize: int = 256):
        self.maxsize = maxsize
        self._entries: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        with _LOCK:
            kernel = self._entries.get(key)
            if kernel is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return kernel

    def put(self, key, kernel) -> None:
        with _LOCK:
            self._entries[key] = kernel
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with _LOCK:
            self._entries.clear()
            self.hits = self.misses = 0

    def info(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._entries), "maxsize": self.maxsize}


CACHE = KernelCache()
LOCK = _LOCK
