"""Program-to-program passes, each a function ClosedJaxpr -> ClosedJaxpr that keeps verify happy."""
from .cse import cse
from .dce import dce
from .fold import fold_constants
from .memory import MemoryProfile, memory_profile
from .pareto import pareto_front
from .prune import is_n_m_sparse, prune, sparsity_of
from .quantize import QuantizationReport, quantization_report, quantize
from .remat import remat
from .simplify import simplify
from .sparsify import SparsifyReport, sparsify

DEFAULT_PASSES = ("simplify", "cse", "dce")
PASSES = {"simplify": simplify, "cse": cse, "dce": dce, "fold_constants": fold_constants, "remat": remat,
          "sparsify": sparsify}


def run_passes(closed, names=DEFAULT_PASSES):
    """Apply the named passes in order."""
    for name in names:
        if name not in PASSES:
            raise ValueError(f"unknown pass {name!r}; available: {', '.join(PASSES)}")
        closed = PASSES[name](closed)
    return closed


__all__ = ["cse", "dce", "fold_constants", "simplify", "remat", "memory_profile", "MemoryProfile",
           "prune", "is_n_m_sparse", "sparsity_of", "pareto_front", "quantize", "quantization_report",
           "QuantizationReport", "sparsify", "SparsifyReport",
           "run_passes", "PASSES", "DEFAULT_PASSES"]
