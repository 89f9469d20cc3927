"""Pictures of a program: a graphviz graph with inputs on the left and outputs on the right.

``to_dot`` needs nothing installed (it returns DOT source); ``render`` draws it with the graphviz
package and the graphviz ``dot`` program, and says clearly how to get them if they are missing.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from .ir.core import ClosedJaxpr, Jaxpr, Literal
from .ir.printer import format_literal, var_names


def _fmt(x) -> str:
    x = np.asarray(x)
    return f"{x.item():.4g}" if x.size == 1 else f"{x.dtype}{list(x.shape)}"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def to_dot(jaxpr: Jaxpr | ClosedJaxpr, values: dict | None = None, grads: dict | None = None,
           title: str | None = None) -> str:
    """DOT source for the program. ``values`` / ``grads`` map variable names (as printed: "a", "b",
    ...) to numbers shown on the nodes (e.g. a forward pass and its adjoints)."""
    closed = jaxpr if isinstance(jaxpr, ClosedJaxpr) else ClosedJaxpr(jaxpr, [])
    j = closed.jaxpr
    names = var_names(j)
    values, grads = values or {}, grads or {}

    def label(name: str, head: str) -> str:
        parts = [head]
        if name in values:
            parts.append(f"value {_fmt(values[name])}")
        if name in grads:
            parts.append(f"grad {_fmt(grads[name])}")
        return "\n".join(parts)

    lines = ["digraph jaxpr {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=11];']
    if title:
        lines.append(f"  label={_quote(title)}; labelloc=t;")
    lines.append("  subgraph inputs { rank=source;")
    for v in j.constvars + j.invars:
        kind = "const" if v in j.constvars else "input"
        lines.append(f"    {names[v]} [shape=box, style=rounded, label={_quote(label(names[v], f'{names[v]}: {v.aval} ({kind})'))}];")
    lines.append("  }")
    for k, eqn in enumerate(j.eqns):
        node = f"eqn{k}"
        outs = ", ".join(names[v] for v in eqn.outvars)
        head = f"{outs} = {eqn.primitive.name}"
        lines.append(f"  {node} [shape=ellipse, label={_quote(label(names[eqn.outvars[0]], head))}];")
        for a in eqn.inputs:
            if isinstance(a, Literal):
                lit = f"lit{k}_{id(a)}"
                lines.append(f"  {lit} [shape=plaintext, label={_quote(format_literal(a))}];")
                lines.append(f"  {lit} -> {node};")
            else:
                lines.append(f"  {_source(a, j, names)} -> {node};")
    lines.append("  subgraph outputs { rank=sink;")
    for i, a in enumerate(j.outvars):
        lines.append(f"    out{i} [shape=doublecircle, label={_quote(f'output {i}')}];")
    lines.append("  }")
    for i, a in enumerate(j.outvars):
        src = format_literal(a) if isinstance(a, Literal) else _source(a, j, names)
        lines.append(f"  {src if not isinstance(a, Literal) else _quote(src)} -> out{i};")
    lines.append("}")
    return "\n".join(lines)


def _source(v, jaxpr: Jaxpr, names) -> str:
    for k, eqn in enumerate(jaxpr.eqns):
        if v in eqn.outvars:
            return f"eqn{k}"
    return names[v]


class GraphvizMissing(RuntimeError):
    """The graphviz Python package or the `dot` program is not installed."""


def render(jaxpr: Jaxpr | ClosedJaxpr, path: str, values: dict | None = None, grads: dict | None = None,
           title: str | None = None) -> str:
    """Draw the program to ``path`` (.png, .svg or .pdf) and return the path."""
    try:
        import graphviz
    except ImportError:
        raise GraphvizMissing("render needs the graphviz Python package: pip install 'tracejit[viz]' "
                              "(compiler.viz.to_dot works without it)") from None
    if shutil.which("dot") is None:
        raise GraphvizMissing("render needs the graphviz 'dot' program: install the graphviz system "
                              "package (e.g. apt-get install graphviz); to_dot works without it")
    stem, ext = os.path.splitext(path)
    fmt = ext.lstrip(".") or "png"
    source = graphviz.Source(to_dot(jaxpr, values, grads, title))
    return source.render(filename=os.path.basename(stem), directory=os.path.dirname(path) or ".",
                         format=fmt, cleanup=True)
