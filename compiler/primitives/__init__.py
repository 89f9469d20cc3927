"""Every primitive of the IR, declared once per family module with its rules side by side."""
from . import control, elementwise, linalg, reductions, sparse, structural  # noqa: F401  (registers them)
from ..ir.core import PRIMITIVES  # noqa: F401
