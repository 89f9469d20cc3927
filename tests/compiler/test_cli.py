"""The tracejit command line, run as a user would (a subprocess), on a file it writes."""
import subprocess
import sys
import textwrap

import pytest

import compiler as tj
import compiler.numpy as cnp


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "seed.py"
    path.write_text(textwrap.dedent("""
        import compiler as tj, compiler.numpy as cnp
        def f(x1, x2):
            return tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))
    """))
    return path


def run(*args):
    return subprocess.run([sys.executable, "-m", "compiler", *args], capture_output=True, text=True,
                          timeout=120)


def test_ir_prints_the_jaxpr_that_make_jaxpr_gives(seed_file):
    result = run("ir", f"{seed_file}:f", "--args", "f32[],f32[]")
    assert result.returncode == 0, result.stderr
    f = lambda x1, x2: tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))
    import numpy as np
    assert result.stdout.strip() == str(tj.make_jaxpr(f)(np.float32(1), np.float32(1)))


def test_ir_grad_and_check(seed_file):
    grad_ir = run("ir", f"{seed_file}:f", "--args", "f32[],f32[]", "--grad")
    assert grad_ir.returncode == 0 and grad_ir.stdout.count("\n") > 10
    check = run("check", f"{seed_file}:f", "--at", "1.0,0.5")
    assert check.returncode == 0 and "OK" in check.stdout.splitlines()[0]


@pytest.mark.parametrize("args, message", [
    (["ir", "nope.py:f", "--args", "f32[]"], "no such file"),
    (["ir", "SEED:g", "--args", "f32[]"], "has no function 'g'"),
    (["ir", "SEED:f", "--args", "f32[3"], "malformed --args"),
    (["ir", "SEED:f", "--args", "q9[3]"], "unknown dtype"),
    (["check", "SEED:f", "--at", "1.0,x"], "malformed --at"),
])
def test_clear_errors(seed_file, args, message):
    args = [a.replace("SEED", str(seed_file)) for a in args]
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_ir_passes_shrink_the_program_and_unknown_passes_are_errors(seed_file):
    plain = run("ir", f"{seed_file}:f", "--args", "f32[],f32[]", "--grad")
    cleaned = run("ir", f"{seed_file}:f", "--args", "f32[],f32[]", "--grad", "--passes", "simplify,cse,dce")
    assert cleaned.returncode == 0
    assert cleaned.stdout.count(" = ") < plain.stdout.count(" = ")
    bad = run("ir", f"{seed_file}:f", "--args", "f32[],f32[]", "--passes", "nope")
    assert bad.returncode == 2 and "unknown pass 'nope'" in bad.stderr


def test_ir_llvm_prints_llvm_ir(seed_file):
    pytest.importorskip("llvmlite")
    result = run("ir", f"{seed_file}:f", "--args", "f32[],f32[]", "--llvm")
    assert result.returncode in (0, 2), result.stderr
    if result.returncode == 0:
        assert "define" in result.stdout and "target triple" in result.stdout
    else:
        assert "LLVM" in result.stderr and "Traceback" not in result.stderr


def test_bench_quick_runs_the_benchmark_table():
    result = subprocess.run([sys.executable, "-m", "compiler", "bench", "--quick"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| workload |" in result.stdout and "Traceback" not in result.stderr
