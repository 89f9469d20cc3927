"""compiler.optim: optimizers as pure functions on pytrees (optax's shape, torch.optim's arithmetic).

    opt = optim.adam(lr=1e-3)
    state = opt.init(params)
    params, state = opt.update(grads, state, params)

Each update follows the corresponding torch.optim step, operation for operation, so a training run
matches PyTorch's step for step. Everything is traceable: an update can live inside jit.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from . import numpy as cnp
from .tree_util import tree_flatten, tree_map, tree_unflatten


class Optimizer(NamedTuple):
    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


def _scalar(value, like):
    return np.asarray(value, cnp.result_type(like).np)[()]


def _zeros_like_tree(params):
    return tree_map(lambda p: cnp.zeros_like(p), params)


def _check_same(grads, params):
    g_tree, p_tree = tree_flatten(grads)[1], tree_flatten(params)[1]
    if g_tree != p_tree:
        raise TypeError(f"grads and params must have the same structure, got {g_tree} and {p_tree}")


def sgd(lr: float, momentum: float = 0.0, dampening: float = 0.0, weight_decay: float = 0.0,
        nesterov: bool = False) -> Optimizer:
    """torch.optim.SGD: optional L2 weight decay, heavy-ball or Nesterov momentum."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def init(params):
        return {"step": np.int32(0), "momentum": _zeros_like_tree(params) if momentum else None}

    def update(grads, state, params):
        _check_same(grads, params)
        first = cnp.equal(state["step"], 0)

        def one(g, p, buf):
            if weight_decay:
                g = cnp.add(g, cnp.multiply(p, _scalar(weight_decay, p)))
            if momentum:
                buf = cnp.where(first, g, cnp.add(cnp.multiply(buf, _scalar(momentum, p)),
                                                  cnp.multiply(g, _scalar(1 - dampening, p))))
                g = cnp.add(g, cnp.multiply(buf, _scalar(momentum, p))) if nesterov else buf
            return cnp.subtract(p, cnp.multiply(g, _scalar(lr, p))), buf

        g_leaves, tree = tree_flatten(grads)
        p_leaves = tree_flatten(params)[0]
        b_leaves = tree_flatten(state["momentum"])[0] if momentum else [None] * len(p_leaves)
        new = [one(g, p, b) for g, p, b in zip(g_leaves, p_leaves, b_leaves)]
        new_state = {"step": cnp.add(state["step"], 1),
                     "momentum": tree_unflatten(tree, [b for _, b in new]) if momentum else None}
        return tree_unflatten(tree, [p for p, _ in new]), new_state

    return Optimizer(init, update)


def momentum(lr: float, beta: float = 0.9, nesterov: bool = False) -> Optimizer:
    """SGD with (heavy-ball or Nesterov) momentum."""
    return sgd(lr, momentum=beta, nesterov=nesterov)


def _adam(lr, b1, b2, eps, weight_decay, decoupled: bool) -> Optimizer:
    def init(params):
        return {"step": np.int32(0), "m": _zeros_like_tree(params), "v": _zeros_like_tree(params)}

    def update(grads, state, params):
        _check_same(grads, params)
        step = cnp.add(state["step"], 1)

        def one(g, p, m, v):
            t = cnp.astype(step, cnp.result_type(p))
            if weight_decay and decoupled:
                p = cnp.multiply(p, _scalar(1 - lr * weight_decay, p))
            elif weight_decay:
                g = cnp.add(g, cnp.multiply(p, _scalar(weight_decay, p)))
            m = cnp.add(cnp.multiply(m, _scalar(b1, p)), cnp.multiply(g, _scalar(1 - b1, p)))
            v = cnp.add(cnp.multiply(v, _scalar(b2, p)), cnp.multiply(cnp.multiply(g, g), _scalar(1 - b2, p)))
            correction1 = cnp.subtract(_scalar(1, p), cnp.power(_scalar(b1, p), t))
            correction2 = cnp.subtract(_scalar(1, p), cnp.power(_scalar(b2, p), t))
            step_size = cnp.divide(_scalar(lr, p), correction1)
            denom = cnp.add(cnp.divide(cnp.sqrt(v), cnp.sqrt(correction2)), _scalar(eps, p))
            return cnp.subtract(p, cnp.multiply(step_size, cnp.divide(m, denom))), m, v

        g_leaves, tree = tree_flatten(grads)
        new = [one(g, p, m, v) for g, p, m, v in zip(g_leaves, tree_flatten(params)[0],
                                                     tree_flatten(state["m"])[0], tree_flatten(state["v"])[0])]
        unflat = lambda k: tree_unflatten(tree, [n[k] for n in new])
        return unflat(0), {"step": step, "m": unflat(1), "v": unflat(2)}

    return Optimizer(init, update)


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0) -> Optimizer:
    """torch.optim.Adam (bias-corrected moments; weight_decay is L2 added to the gradient)."""
    return _adam(lr, b1, b2, eps, weight_decay, decoupled=False)


def adamw(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.01) -> Optimizer:
    """torch.optim.AdamW: Adam with decoupled weight decay (p *= 1 - lr * weight_decay first)."""
    return _adam(lr, b1, b2, eps, weight_decay, decoupled=True)
