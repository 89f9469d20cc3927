"""An optional on-disk cache of compiled kernels, so that a second process skips LLVM entirely.

Off unless ``TRACEJIT_CACHE_DIR`` is set (or ``set_cache_dir(path)`` is called). Each entry is the
kernel's relocatable object code plus a small JSON record; the key hashes everything the machine code
depends on: the program text and input signature, the codegen settings and source, the host CPU and
features, and the llvmlite/LLVM and cache-format versions. Loading code is loading executable bytes, so an
entry is used only when its recorded SHA-256 matches the object file; anything unreadable, truncated
or mismatched is ignored (and removed) and the kernel is compiled afresh. Writes go to a temporary
file and are renamed into place, so concurrent processes never see half an entry. The directory is
kept to ``max_entries`` by dropping the least recently used entries.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

FORMAT = 1
_LOCK = threading.Lock()
_state = {"dir": os.environ.get("TRACEJIT_CACHE_DIR") or None, "max_entries": 4096,
          "hits": 0, "misses": 0, "writes": 0}


@dataclass
class Entry:
    """What a cached kernel needs besides its object code."""
    obj: bytes
    meta: dict


def set_cache_dir(path: str | os.PathLike | None, max_entries: int = 4096) -> None:
    """Turn the disk cache on (a directory, created if needed) or off (None)."""
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
    if not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError(f"set_cache_dir: max_entries must be a positive int, got {max_entries!r}")
    with _LOCK:
        _state["dir"] = None if path is None else str(path)
        _state["max_entries"] = max_entries


def cache_dir() -> Path | None:
    d = _state["dir"]
    return None if d is None else Path(d)


def info() -> dict:
    return {"dir": _state["dir"], "hits": _state["hits"], "misses": _state["misses"],
            "writes": _state["writes"], "max_entries": _state["max_entries"]}


def codegen_digest() -> str:
    """A digest of the backend's own source (runtime/llvm/*.py), part of every key: an object made by
    another version of the code generator (which may call the process-wide micro-kernels or the
    thread pool differently) is never linked."""
    if "codegen" not in _state:
        h = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        _state["codegen"] = h.hexdigest()
    return _state["codegen"]


def make_key(*parts: str) -> str:
    """A hex digest over the cache format, the code generator's source and every part (program,
    signature, host, versions)."""
    h = hashlib.sha256(f"tracejit-kernel-v{FORMAT}-{codegen_digest()}".encode())
    for p in parts:
        data = p.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _paths(d: Path, key: str) -> tuple[Path, Path]:
    sub = d / key[:2]
    return sub / f"{key}.o", sub / f"{key}.json"


def load(key: str) -> Entry | None:
    d = cache_dir()
    if d is None:
        return None
    obj_path, meta_path = _paths(d, key)
    try:
        meta = json.loads(meta_path.read_text())
        obj = obj_path.read_bytes()
        ok = (isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("key") == key
              and meta.get("sha256") == hashlib.sha256(obj).hexdigest())
    except (OSError, ValueError):
        ok = False
    if not ok:
        _state["misses"] += 1
        if obj_path.exists() or meta_path.exists():
            _remove(obj_path, meta_path)           # corrupt or foreign: never load it
        return None
    _state["hits"] += 1
    try:
        os.utime(meta_path)                        # recently used: kept when the directory is pruned
    except OSError:
        pass
    return Entry(obj, meta)


def store(key: str, obj: bytes, meta: dict) -> None:
    """Write an entry atomically; failures (read-only or full disk) only cost the cache."""
    d = cache_dir()
    if d is None:
        return
    obj_path, meta_path = _paths(d, key)
    record = dict(meta, format=FORMAT, key=key, sha256=hashlib.sha256(obj).hexdigest())
    try:
        obj_path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(obj_path, obj)
        _atomic_write(meta_path, json.dumps(record).encode())   # written last: marks the entry complete
        _state["writes"] += 1
        _prune(d)
    except OSError:
        pass


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _remove(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except OSError:
            pass


def _prune(d: Path) -> None:
    metas = list(d.glob("*/*.json"))
    excess = len(metas) - _state["max_entries"]
    if excess <= 0:
        return
    def mtime(p):
        try:
            return p.stat().st_mtime
        except OSError:
            return 0.0
    for meta_path in sorted(metas, key=mtime)[:excess]:
        _remove(meta_path, meta_path.with_suffix(".o"))


def clear() -> None:
    """Delete every entry in the cache directory (the directory itself stays)."""
    d = cache_dir()
    if d is None:
        return
    for p in list(d.glob("*/*.json")) + list(d.glob("*/*.o")):
        _remove(p)
    _state["hits"] = _state["misses"] = _state["writes"] = 0
