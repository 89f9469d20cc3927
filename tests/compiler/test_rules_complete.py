"""No primitive is half-added: each has its shape rule, derivative rules, batching rule, and a
numpy implementation."""
from compiler.ir.core import PRIMITIVES
from runtime.interpreter import IMPLS

NO_INPUTS = {"iota"}         # never batched: nothing to carry a batch axis


def test_every_primitive_has_every_rule():
    for name, prim in PRIMITIVES.items():
        assert prim.shape_rule is not None, name
        assert prim.jvp_rule is not None and prim.vjp_rule is not None, name
        assert prim.batch_rule is not None or name in NO_INPUTS, name
        assert name in IMPLS, f"{name} has no numpy implementation"


def test_every_elementwise_math_primitive_reads_back_in_sympy():
    from compiler.primitives import elementwise
    for value in vars(elementwise).values():
        if getattr(value, "name", None) in PRIMITIVES and value.name not in ("round", "shift_left",
                                                                            "shift_right_logical"):
            assert value.sympy_rule is not None, value.name
