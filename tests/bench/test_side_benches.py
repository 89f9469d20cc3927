"""Smoke runs of the side benchmarks (low precision, sparse matmul, scan RNN) in their quick modes:
they finish, produce their tables, and every checked result is right (the scripts compare each
kernel's output against numpy and report "exact"/relative errors)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    return proc.stdout


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ") and "---" not in line]


def test_lowp_bench_quick():
    out = _run("bench_lowp.py", "--quick")
    assert "int8 x int8 -> int32" in out
    assert "exact: False" not in out and "exact: True" in out


def test_sparse_bench_quick():
    out = _run("bench_sparse.py", "--quick")
    rows = [r for r in _rows(out) if r[1] in ("2:4", "CSR")]
    assert {r[1] for r in rows} == {"2:4", "CSR"}, out
    for r in rows:
        assert float(r[8]) < 1e-4, r               # the sparse result equals the dense one
        assert float(r[9]) > 0, r                  # timed on two threads too (same bits: asserted there)


def test_scan_rnn_bench_quick():
    out = _run("bench_scan_rnn.py", "--steps", "50", "--repeat", "2")
    assert "forward" in out and "value_and_grad" in out
