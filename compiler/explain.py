"""explain_grad: the reverse pass of a program printed step by step, like a hand backprop table."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .ir.core import Literal
from .ir.printer import format_literal, format_param, var_names
from .tracing import trace
from .transforms import ad as _ad
from .tree_util import tree_flatten


@dataclass
class Step:
    """One row of the table: an equation, its value in the forward pass, and in the reverse pass the
    adjoint contributions it sends to each of its inputs."""
    equation: str
    value: Any
    contributions: list          # (input name, contribution, input's adjoint so far)


@dataclass
class Explanation:
    forward: list
    backward: list
    gradients: Any
    jaxpr: Any = None
    values: dict = field(default_factory=dict)      # variable name -> forward value
    adjoints: dict = field(default_factory=dict)    # variable name -> d output / d variable

    def __str__(self) -> str:
        lines = ["forward pass (values):"]
        lines += [f"  {s.equation:<40} = {_fmt(s.value)}" for s in self.forward]
        lines.append("reverse pass (adjoints, last equation first; x̄ = d output / d x):")
        for s in self.backward:
            lines.append(f"  {s.equation}")
            for name, contribution, total in s.contributions:
                lines.append(f"      {name}̄ += {_fmt(contribution):<24} -> {name}̄ = {_fmt(total)}")
        return "\n".join(lines)


def _fmt(x) -> str:
    x = np.asarray(x)
    return f"{x.item():.6g}" if x.size == 1 else np.array2string(x, precision=4, threshold=8)


def explain_grad(fun: Callable, argnums: int | tuple = 0):
    """``explain_grad(f)(*args)`` prints the forward values and the reverse pass of grad(f) at args,
    and returns an Explanation whose ``gradients`` equal ``grad(f, argnums)(*args)``."""
    @functools.wraps(fun)
    def run(*args):
        closed, _, _ = trace(fun, args)
        jaxpr = closed.jaxpr
        names = var_names(jaxpr)

        def text(eqn):
            ins = " ".join(format_literal(a) if isinstance(a, Literal) else names[a] for a in eqn.inputs)
            params = "[" + ", ".join(f"{k}={format_param(v, 0, None)}" for k, v in eqn.params.items()) + "]" \
                if eqn.params else ""
            return f"{' '.join(names[v] for v in eqn.outvars)} = {eqn.primitive.name}{params} {ins}"

        leaves, _ = tree_flatten(tuple(args))
        primals = [np.asarray(x, v.aval.dtype.np) for v, x in zip(jaxpr.invars, leaves)]
        forward = [Step(f"{names[v]} (input)", x, []) for v, x in zip(jaxpr.invars, primals)]
        backward = []
        values = {names[v]: x for v, x in zip(jaxpr.invars, primals)}
        adjoints = {names[jaxpr.outvars[0]]: np.ones((), jaxpr.outvars[0].aval.dtype.np)}

        def observe(eqn, outs, contributions):
            if contributions is None:
                forward.append(Step(text(eqn), outs[0] if len(outs) == 1 else outs, []))
                values.update((names[v], o) for v, o in zip(eqn.outvars, outs))
            else:
                backward.append(Step(text(eqn), None, [(names[a], ct, total) for a, ct, total in contributions]))
                adjoints.update((names[a], total) for a, _, total in contributions)

        (out,), vjp_backward = _ad.vjp_eval(jaxpr, closed.consts, primals, observe)
        backward.append(Step(f"{names[jaxpr.outvars[0]]}̄ = 1 (seed)", None, []))
        cts = vjp_backward([np.ones((), jaxpr.outvars[0].aval.dtype.np)])
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        grads = [cts[n] if cts[n] is not None else np.zeros(jaxpr.invars[n].aval.shape,
                                                             jaxpr.invars[n].aval.dtype.np) for n in nums]
        explanation = Explanation(forward, backward, grads[0] if isinstance(argnums, int) else tuple(grads),
                                  closed, values, adjoints)
        print(explanation)
        return explanation
    return run
