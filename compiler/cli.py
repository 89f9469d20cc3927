"""The `tracejit` command (also `python -m compiler`): print IR, check gradients, explain backprop.

    tracejit ir FILE.py:FUNC --args 'f32[3],f32[]' [--grad | --jvp | --vjp] [--passes dce,cse] [--llvm]
    tracejit check FILE.py:FUNC --at 1.0,0.5
    tracejit explain FILE.py:FUNC --at 1.0,0.5
    tracejit bench [--quick] [--write]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
from typing import Callable

import numpy as np

from .ir.core import DTYPES


class CLIError(Exception):
    """A user mistake on the command line: printed as one line, exit status 2."""


def load_function(spec: str) -> Callable:
    if ":" not in spec:
        raise CLIError(f"expected FILE.py:FUNCTION, got {spec!r}")
    path, name = spec.rsplit(":", 1)
    if not os.path.isfile(path):
        raise CLIError(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location("_tracejit_user_module", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the user's file failed to import: say so, in one line
        raise CLIError(f"importing {path} failed: {type(e).__name__}: {e}") from None
    finally:
        sys.path.pop(0)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise CLIError(f"{path} has no function {name!r}")
    return fn


_TYPE = r"([a-z0-9_]+)\[([0-9,\s]*)\]"
_TYPE_LIST = re.compile(rf"^\s*(?:{_TYPE}(?:\s*,\s*{_TYPE})*)?\s*$")


def parse_arg_types(text: str) -> list[np.ndarray]:
    """'f32[3],f32[]' -> example arrays of those types (ones)."""
    if not _TYPE_LIST.match(text):
        raise CLIError(f"malformed --args {text!r}; expected types like 'f32[3],f32[]'")
    out = []
    for dtype, dims in re.findall(_TYPE, text):
        if dtype not in DTYPES:
            raise CLIError(f"unknown dtype {dtype!r} in --args; expected one of {', '.join(DTYPES)}")
        out.append(np.ones(tuple(int(d) for d in dims.split(",") if d.strip()), DTYPES[dtype].np))
    return out


def parse_point(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise CLIError(f"malformed --at {text!r}; expected numbers like 1.0,0.5") from None


def cmd_ir(ns) -> str:
    import compiler as tj
    fn = load_function(ns.target)
    args = parse_arg_types(ns.args)
    if ns.grad:
        traced = tj.grad(fn, argnums=tuple(range(len(args))))
    elif ns.jvp:
        traced = lambda *a: tj.jvp(fn, a, tuple(np.ones_like(x) for x in a))
    elif ns.vjp:
        def traced(*a):
            out, back = tj.vjp(fn, *a)
            return out, back(tj.tree_map(lambda o: np.ones(np.shape(o), np.asarray(o).dtype) if not isinstance(
                o, tj.Tracer) else tj.numpy.ones_like(o), out))
    else:
        traced = fn
    closed = tj.make_jaxpr(traced)(*args)
    if ns.passes:
        from .passes import PASSES, run_passes
        names = [p.strip() for p in ns.passes.split(",") if p.strip()]
        unknown = [p for p in names if p not in PASSES]
        if unknown:
            raise CLIError(f"unknown pass {unknown[0]!r} in --passes; available: {', '.join(PASSES)}")
        closed = run_passes(closed, names)
    if ns.llvm:
        try:
            from runtime.llvm import llvm_ir
        except ImportError as e:
            raise CLIError(f"the LLVM backend is not available: {e}") from None
        try:
            return llvm_ir(closed)
        except NotImplementedError as e:
            raise CLIError(f"cannot lower to LLVM yet: {e}") from None
    return str(closed)


def cmd_check(ns) -> str:
    from . import symbolic
    report = symbolic.check_grad(load_function(ns.target), *parse_point(ns.at))
    return str(report)


def cmd_explain(ns) -> str:
    from .explain import explain_grad
    point = parse_point(ns.at)
    explain_grad(load_function(ns.target), argnums=tuple(range(len(point))))(*point)
    return ""


def cmd_bench(ns) -> str:
    """Run bench/run.py from the source checkout (benchmarks are not part of the installed package)."""
    import subprocess
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "run.py")
    if not os.path.isfile(script):
        raise CLIError("tracejit bench runs bench/run.py from a source checkout of tracejit; none found "
                       f"at {script}")
    flags = (["--quick"] if ns.quick else []) + (["--write"] if ns.write else [])
    status = subprocess.call([sys.executable, script, *flags])
    if status:
        raise CLIError(f"the benchmark exited with status {status}")
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tracejit", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ir = sub.add_parser("ir", help="print the jaxpr of FILE.py:FUNC (or of its derivative)")
    ir.add_argument("target")
    ir.add_argument("--args", required=True, help="argument types, e.g. 'f32[3],f32[]'")
    mode = ir.add_mutually_exclusive_group()
    mode.add_argument("--grad", action="store_true", help="the reverse-mode gradient program")
    mode.add_argument("--jvp", action="store_true", help="the forward-mode (JVP) program")
    mode.add_argument("--vjp", action="store_true", help="the VJP program (cotangent of ones)")
    ir.add_argument("--passes", default="", help="passes to run first, comma-separated (e.g. simplify,cse,dce,remat)")
    ir.add_argument("--llvm", action="store_true", help="print the LLVM IR instead of the jaxpr")
    ir.set_defaults(run=cmd_ir)
    check = sub.add_parser("check", help="compare tj.grad with sympy at a point")
    check.add_argument("target")
    check.add_argument("--at", required=True, help="the point, e.g. 1.0,0.5")
    check.set_defaults(run=cmd_check)
    explain = sub.add_parser("explain", help="print the backward pass step by step")
    explain.add_argument("target")
    explain.add_argument("--at", required=True)
    explain.set_defaults(run=cmd_explain)
    bench = sub.add_parser("bench", help="time tracejit against numpy, jax.jit and PyTorch")
    bench.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    bench.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    bench.set_defaults(run=cmd_bench)
    return parser


def main(argv=None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        text = ns.run(ns)
    except CLIError as e:
        print(f"tracejit: error: {e}", file=sys.stderr)
        return 2
    if text:
        try:
            print(text)
        except BrokenPipeError:          # e.g. piped into `head`
            pass
    return 0
