"""Pytrees: nested tuples, lists, dicts and None with arrays (or scalars) at the leaves.

Transformations flatten their inputs to a list of leaves plus a TreeDef and rebuild outputs from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

_NODE_TYPES: dict[type, tuple[Callable, Callable]] = {}


def register_pytree_node(cls: type, flatten: Callable, unflatten: Callable) -> None:
    """Make ``cls`` a container: ``flatten(x) -> (children, aux)``, ``unflatten(aux, children) -> x``."""
    _NODE_TYPES[cls] = (flatten, unflatten)


register_pytree_node(tuple, lambda t: (list(t), None), lambda _, c: tuple(c))
register_pytree_node(list, lambda l: (list(l), None), lambda _, c: list(c))
register_pytree_node(dict, lambda d: ([d[k] for k in sorted(d)], tuple(sorted(d))),
                     lambda keys, c: dict(zip(keys, c)))
register_pytree_node(type(None), lambda _: ([], None), lambda _, c: None)


@dataclass(frozen=True)
class TreeDef:
    """The structure of a pytree: a node type with aux data and children, or a leaf (node_type None)."""
    node_type: type | None
    aux: Any
    children: tuple["TreeDef", ...]

    @property
    def num_leaves(self) -> int:
        return 1 if self.node_type is None else sum(c.num_leaves for c in self.children)

    def __str__(self) -> str:
        if self.node_type is None:
            return "*"
        inner = ", ".join(map(str, self.children))
        if self.node_type is dict:
            inner = ", ".join(f"{k!r}: {c}" for k, c in zip(self.aux, self.children))
            return "{" + inner + "}"
        if self.node_type is type(None):
            return "None"
        if self.node_type is list:
            return "[" + inner + "]"
        if self.node_type is tuple:
            return "(" + inner + ("," if len(self.children) == 1 else "") + ")"
        return f"{self.node_type.__name__}({inner})"


LEAF = TreeDef(None, None, ())


def tree_flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, TreeDef]:
    leaves: list = []

    def walk(x):
        node = _NODE_TYPES.get(type(x))
        if node is None or (is_leaf is not None and is_leaf(x)):
            leaves.append(x)
            return LEAF
        children, aux = node[0](x)
        return TreeDef(type(x), aux, tuple(walk(c) for c in children))

    return leaves, walk(tree)


def tree_unflatten(treedef: TreeDef, leaves: list) -> Any:
    it = iter(leaves)

    def build(td: TreeDef):
        if td.node_type is None:
            return next(it)
        return _NODE_TYPES[td.node_type][1](td.aux, [build(c) for c in td.children])

    out = build(treedef)
    if next(it, _SENTINEL) is not _SENTINEL:
        raise ValueError(f"too many leaves for tree structure {treedef}")
    return out


_SENTINEL = object()


def tree_leaves(tree: Any) -> list:
    return tree_flatten(tree)[0]


def tree_structure(tree: Any) -> TreeDef:
    return tree_flatten(tree)[1]


def tree_map(f: Callable, tree: Any, *rest: Any) -> Any:
    leaves, td = tree_flatten(tree)
    others = []
    for r in rest:
        r_leaves, r_td = tree_flatten(r)
        if r_td != td:
            raise ValueError(f"tree_map: structures differ: {td} vs {r_td}")
        others.append(r_leaves)
    return tree_unflatten(td, [f(*xs) for xs in zip(leaves, *others)])
