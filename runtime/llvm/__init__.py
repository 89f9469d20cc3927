"""Native code through LLVM: ``compile_llvm(closed)`` -> callable(*flat_args) -> list of arrays.

plan.py decides fusion, views and buffers; codegen.py (with gemm.py, mathlib.py and the rule table
in rules.py) writes one LLVM function for the whole program; engine.py optimizes, JIT-links and
caches it; abi.py checks every argument before native code sees it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import llvmlite
import llvmlite.binding

from compiler.ir.core import ClosedJaxpr, ShapedArray

from . import diskcache, engine as _engine, gemm, mathlib, plan, threads as _threads
from .abi import OBJECT_ENTRY, NativeFunction, cfunction, prepare_consts
from .codegen import generate
from .rules import LOWERED
from .threads import get_num_threads, set_num_threads

__all__ = ["compile_llvm", "llvm_ir", "LOWERED", "cache_info", "clear_cache", "plan_summary",
           "set_num_threads", "get_num_threads", "set_cache_dir"]

set_cache_dir = diskcache.set_cache_dir


@dataclass
class Kernel:
    """Machine code for one program text and input signature (shared by equal programs)."""
    in_avals: list[ShapedArray]
    const_avals: list[ShapedArray]
    out_avals: list[ShapedArray]
    scratch_bytes: int
    ir: str | None                # the generated IR (None when the object came from the disk cache)
    tracker: object
    cfunc: object                 # kernel(buffer pointers...), where numpy arrays are not read natively
    entry: object                 # entry(array objects...), where they are (abi.OBJECT_ENTRY); else None
    seconds: dict = field(default_factory=dict)
    threads: int = 1              # > 1: runs on up to this many threads (see threads.py)
    pipeline: str = "full"        # the LLVM optimization it got: "full" | "light" (codegen.pipeline_for)


_ENTRY = "objects" if OBJECT_ENTRY else "pointers"     # what the kernel exports: see codegen.KernelGen.finish
_EXPORT = "entry" if OBJECT_ENTRY else "kernel"


def _plan(closed: ClosedJaxpr, threads: int | None = None):
    host = _engine.host()
    threads = _threads.planned_threads() if threads is None else threads
    return plan.make_plan(closed, lambda e, a, b: gemm.gemm_spec(e, a, b, host.vector_bytes), gemm.gemm_temps,
                          threads=threads)


def llvm_ir(closed: ClosedJaxpr, optimized: bool = False) -> str:
    """The LLVM IR of the program's kernel (as generated, or after the optimization pipeline)."""
    gen = generate(_plan(closed), _ENTRY)
    return _engine.engine().optimize(gen.text, gen.pipeline) if optimized else gen.text


def plan_summary(closed: ClosedJaxpr, threads: int | None = None) -> dict:
    """How the program is cut into loops: the kind and size of each group, the scratch it needs, and
    (threads > 1) the chunks each threaded step is cut into."""
    plan = _plan(closed, threads)
    groups = [{"kind": g.kind, "eqns": [e.primitive.name for e in g.eqns], "gemm": g.gemm is not None,
               "chunks": g.chunks if g.split else [n.chunks for n in g.nests], "split": g.split}
              for g in plan.groups]
    return {"groups": groups, "scratch_bytes": plan.scratch_bytes, "threads": plan.threads}


def _disk_key(closed: ClosedJaxpr, signature: tuple, threads: int) -> str:
    host = _engine.host()
    return diskcache.make_key(str(closed.jaxpr), repr(signature), f"threads={threads}",
                              f"own_math={mathlib.OWN_KERNELS}", f"export={_EXPORT}", host.triple, host.cpu,
                              host.features, f"llvmlite {llvmlite.__version__}",
                              "llvm " + ".".join(map(str, llvmlite.binding.llvm_version_info)))


def _build(closed: ClosedJaxpr, threads: int, signature: tuple, pipeline: str | None = None) -> Kernel:
    """Plan, generate, optimize and compile to an object, then JIT-link it; with the disk cache on,
    a previous process's object for the same key is linked instead (only the link is paid).
    ``pipeline`` overrides codegen.pipeline_for (tests compare the two; not cached on disk)."""
    eng = _engine.engine()
    t0 = time.perf_counter()
    key = _disk_key(closed, signature, threads) if diskcache.cache_dir() is not None and pipeline is None else None
    cached = diskcache.load(key) if key is not None else None
    if cached is not None:
        obj, meta, text = cached.obj, cached.meta, None       # the IR is not kept on disk
        scratch_bytes, externals, planned = meta["scratch_bytes"], meta["externals"], meta["threads"]
        used = meta.get("pipeline", "full")
        t1 = t2 = time.perf_counter()
    else:
        plan = _plan(closed, threads)
        gen = generate(plan, _ENTRY)
        text, externals = gen.text, gen.externals
        t1 = time.perf_counter()
        used = pipeline or gen.pipeline
        obj = eng.compile_object(text, used)
        t2 = time.perf_counter()
        scratch_bytes, planned = plan.scratch_bytes, plan.threads
        if key is not None:
            diskcache.store(key, obj, {"scratch_bytes": scratch_bytes, "externals": list(externals),
                                       "threads": planned, "pipeline": used})
    tracker, addresses = eng.link_object(obj, externals, [_EXPORT])
    t3 = time.perf_counter()
    jaxpr = closed.jaxpr
    nargs = len(jaxpr.invars) + len(jaxpr.constvars) + len(jaxpr.outvars) + 1
    address = addresses[_EXPORT]
    return Kernel([v.aval for v in jaxpr.invars], [v.aval for v in jaxpr.constvars],
                  [a.aval for a in jaxpr.outvars], scratch_bytes, text, tracker,
                  None if OBJECT_ENTRY else cfunction(address, nargs),
                  cfunction(address, nargs, objects=True) if OBJECT_ENTRY else None,
                  {"codegen": t1 - t0, "optimize": t2 - t1, "link": t3 - t2, "disk_cache_hit": cached is not None},
                  planned, used)


def compile_llvm(closed: ClosedJaxpr) -> NativeFunction:
    """A native callable for ``closed``: takes the flat inputs, returns the list of flat outputs.

    Raises NotImplementedError naming the primitive when some equation has no native lowering.
    """
    consts = prepare_consts([v.aval for v in closed.jaxpr.constvars], closed.consts)
    threads = _threads.planned_threads()
    signature = tuple(str(v.aval) for v in closed.jaxpr.invars)
    key = (str(closed.jaxpr), signature, threads, mathlib.OWN_KERNELS)
    kernel = _engine.CACHE.get(key)
    if kernel is None:
        with _engine.LOCK:
            kernel = _build(closed, threads, signature)
        _engine.CACHE.put(key, kernel)
    return NativeFunction(kernel, consts)


def cache_info() -> dict:
    """Hits, misses and size of the kernel cache."""
    return _engine.CACHE.info()


def clear_cache() -> None:
    _engine.CACHE.clear()
