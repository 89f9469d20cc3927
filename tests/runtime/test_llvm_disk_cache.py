"""The optional disk cache of compiled kernels: a second process links the stored object instead of
compiling, results are unchanged, and a damaged or foreign entry is never loaded."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compiler as tj
import compiler.numpy as cnp
import runtime
from runtime import llvm
from runtime.llvm import diskcache

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys
import numpy as np
import compiler as tj, compiler.numpy as cnp, runtime
from runtime import llvm
x = np.linspace(0.1, 2.0, 1000).astype(np.float32)
m = lambda x, shape: cnp.reshape(x[:960], shape)
closed = tj.make_jaxpr(lambda x: cnp.tanh(cnp.log(x) * 3.0) + x @ x + cnp.sum(m(x, (32, 30)) @ m(x, (30, 32))))(x)
fn = runtime.compile(closed, "llvm")
out = fn(x)[0]
print(json.dumps({"hit": fn.kernel.seconds["disk_cache_hit"], "out": out.tolist()}))
"""


def _child(cache_dir) -> dict:
    env = dict(os.environ, TRACEJIT_CACHE_DIR=str(cache_dir),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _expected():
    """(The matrix product runs as a GEMM whose micro-kernel the object only names: the second
    process compiles that on demand when it links the stored object.)"""
    x = np.linspace(0.1, 2.0, 1000).astype(np.float32)
    return np.tanh(np.log(x) * 3.0) + x @ x + np.sum(x[:960].reshape(32, 30) @ x[:960].reshape(30, 32))


def test_second_process_links_the_stored_kernel(tmp_path):
    first = _child(tmp_path)
    assert first["hit"] is False
    assert list(tmp_path.glob("*/*.o")) and list(tmp_path.glob("*/*.json"))
    second = _child(tmp_path)
    assert second["hit"] is True
    assert second["out"] == first["out"]                         # the same machine code, bit for bit
    np.testing.assert_allclose(second["out"], _expected(), rtol=1e-4)


def test_damaged_entry_is_never_loaded(tmp_path):
    _child(tmp_path)
    (obj,) = tmp_path.glob("*/*.o")
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF                                 # one flipped byte: the hash no longer matches
    obj.write_bytes(bytes(data))
    again = _child(tmp_path)
    assert again["hit"] is False                                 # recompiled (and stored afresh)
    np.testing.assert_allclose(again["out"], _expected(), rtol=1e-4)
    assert _child(tmp_path)["hit"] is True


def test_garbage_and_foreign_records_are_ignored(tmp_path):
    _child(tmp_path)
    (meta,) = tmp_path.glob("*/*.json")
    meta.write_text("{not json")
    assert _child(tmp_path)["hit"] is False
    (meta,) = tmp_path.glob("*/*.json")
    record = json.loads(meta.read_text())
    record["key"] = "0" * 64                                     # a record that names another program
    meta.write_text(json.dumps(record))
    assert _child(tmp_path)["hit"] is False


@pytest.fixture
def cache_in(tmp_path):
    before = diskcache.cache_dir()
    llvm.set_cache_dir(tmp_path)
    llvm.clear_cache()
    yield tmp_path
    llvm.set_cache_dir(before)
    llvm.clear_cache()


def test_in_process_hit_after_memory_cache_is_cleared(cache_in):
    x = np.arange(1, 9, dtype=np.float64)
    closed = tj.make_jaxpr(lambda x: cnp.sqrt(x) * 2.0 - 1.0)(x)
    a = runtime.compile(closed, "llvm")
    llvm.clear_cache()                                           # the in-memory cache forgets it
    b = runtime.compile(closed, "llvm")
    assert a.kernel.seconds["disk_cache_hit"] is False and b.kernel.seconds["disk_cache_hit"] is True
    np.testing.assert_array_equal(a(x)[0], b(x)[0])
    np.testing.assert_allclose(b(x)[0], np.sqrt(x) * 2.0 - 1.0)
    assert b.kernel.ir is None and a.kernel.ir                   # the IR is regenerated on demand only


def test_key_depends_on_signature_and_threads(cache_in):
    f = lambda x: x * 3.0 + 1.0  # noqa: E731
    for x in (np.ones(4, np.float32), np.ones(5, np.float32), np.ones(4, np.float64)):
        runtime.compile(tj.make_jaxpr(f)(x), "llvm")
    assert len(list(cache_in.glob("*/*.json"))) == 3
    before = llvm.get_num_threads()
    try:
        llvm.set_num_threads(1 if before > 1 else 2)
        runtime.compile(tj.make_jaxpr(f)(np.ones(4, np.float32)), "llvm")
    finally:
        llvm.set_num_threads(before)
    planned = {json.loads(p.read_text())["threads"] for p in cache_in.glob("*/*.json")}
    assert len(list(cache_in.glob("*/*.json"))) in (3, 4) and planned <= {1, 2}


def test_directory_is_pruned_to_max_entries(cache_in):
    llvm.set_cache_dir(cache_in, max_entries=3)
    for k in range(6):
        runtime.compile(tj.make_jaxpr(lambda x, k=k: x + float(k))(np.ones(2, np.float32)), "llvm")
    assert len(list(cache_in.glob("*/*.json"))) == 3
    assert len(list(cache_in.glob("*/*.o"))) == 3


def test_unwritable_directory_only_costs_the_cache(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    before = diskcache.cache_dir()
    diskcache._state["dir"] = str(blocker)                      # as if the directory vanished
    try:
        llvm.clear_cache()
        fn = runtime.compile(tj.make_jaxpr(lambda x: x - 7.0)(np.ones(3, np.float32)), "llvm")
        np.testing.assert_array_equal(fn(np.ones(3, np.float32))[0], np.full(3, -6.0, np.float32))
    finally:
        llvm.set_cache_dir(before)
        llvm.clear_cache()


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="max_entries"):
        llvm.set_cache_dir(tmp_path, max_entries=0)


def test_key_depends_on_the_math_kernels(cache_in):
    from runtime.llvm import mathlib
    closed = tj.make_jaxpr(lambda x: cnp.exp(x))(np.ones(64, np.float32))
    saved = mathlib.OWN_KERNELS
    try:
        for own in (True, False):
            mathlib.OWN_KERNELS = own
            fn = runtime.compile(closed, "llvm")
            assert fn.kernel.seconds["disk_cache_hit"] is False     # never the other mode's kernel
            np.testing.assert_allclose(fn(np.ones(64, np.float32))[0], np.full(64, np.e, np.float32), rtol=1e-6)
    finally:
        mathlib.OWN_KERNELS = saved
    assert len(list(cache_in.glob("*/*.json"))) == 2


def test_key_depends_on_the_code_generators_source(cache_in, monkeypatch):
    """An object made by another version of the backend (another digest of runtime/llvm's source)
    is never linked: it may call the process-wide micro-kernels or the thread pool differently."""
    closed = tj.make_jaxpr(lambda x: x * 5.0 - 2.0)(np.ones(6, np.float32))
    assert runtime.compile(closed, "llvm").kernel.seconds["disk_cache_hit"] is False
    llvm.clear_cache()
    monkeypatch.setitem(diskcache._state, "codegen", "0" * 64)            # as if the backend had changed
    fn = runtime.compile(closed, "llvm")
    assert fn.kernel.seconds["disk_cache_hit"] is False
    np.testing.assert_array_equal(fn(np.ones(6, np.float32))[0], np.full(6, 3.0, np.float32))
    assert len(list(cache_in.glob("*/*.json"))) == 2
