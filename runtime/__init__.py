"""Backends that run a Jaxpr: the numpy interpreter (reference semantics) and native code via LLVM."""
from .interpreter import eval_jaxpr
from .backends import BACKENDS, compile

__all__ = ["eval_jaxpr", "compile", "BACKENDS"]
