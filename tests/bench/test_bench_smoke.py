"""Smoke run of the full benchmark script: `python bench/run.py --quick` (without --write).

Checks that it finishes, prints the table with every workload's row and no traceback. jax and torch
are optional there: without them their columns are "-" and a note says why.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "run.py"

EXPECTED_ROWS = [
    "| chain sigmoid(0.75*log(x/2)+x+log(3x)), f32 2^16 |",
    "| chain sigmoid(0.75*log(x/2)+x+log(3x)), f32 2^18 |",
    "| grad of sum(chain), f32 2^16 |",
    "| grad of sum(chain), f32 2^18 |",
    "| MLP training-step gradient 64-128-10, batch 256, f32 |",
    "| matmul 64x64x64 f32 |",
    "| matmul 128x128x128 f32 |",
    "| matmul 128x128x128 f64 |",
    "| 10-layer matmul chain gradient",
    "| conv2d forward ",
    "| conv2d gradient ",
    "| LayerNorm gradient ",
    "| row-wise logsumexp 128x128 f32 |",
    "| compile latency of a fresh ~50-op function",
    "| per-call overhead, f(x) = 2x+1 on f32[3] |",
]


def test_bench_run_quick_smoke():
    results = ROOT / "bench" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert "| workload | tj llvm ms | tj numpy ms | numpy ms | jax.jit ms | torch ms |" in out
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    for row in EXPECTED_ROWS:
        assert any(line.startswith(row) for line in table), f"missing row {row!r}\n{out[-4000:]}"
    for line in table[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == "workload" or set(cells[0]) <= set("-:"):
            continue
        assert cells[1] != "-" or "failed" in cells[-1] or "FELL BACK" in cells[-1], line   # tj llvm timed
        assert cells[2] != "-", line                                                       # tj numpy timed
        assert "workload failed" not in out
    assert "Targets (DESIGN.md):" in out
    assert "memory bandwidth" in out and "GFLOP/s" in out
    # machine figures are numbers
    assert "wrote " not in out
    after = results.read_bytes() if results.exists() else None
    assert before == after, "--write was not given: RESULTS.md must be untouched"
