"""Program-to-program passes, each a function Jaxpr -> Jaxpr (ClosedJaxpr -> ClosedJaxpr)."""
from .fold import fold_constants

__all__ = ["fold_constants"]
