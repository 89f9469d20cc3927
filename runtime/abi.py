"""Argument checking shared by every backend: a compiled program only ever sees the buffers it was
built for (count, shape, dtype; C-contiguous for native code)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from compiler.ir.core import ShapedArray, dtype as to_dtype


def _describe(x: Any) -> str:
    if isinstance(x, (np.ndarray, np.generic)):
        try:
            return str(ShapedArray(tuple(x.shape), to_dtype(x.dtype)))
        except TypeError:
            return f"array of dtype {x.dtype} and shape {x.shape}"
    return f"{type(x).__name__} {x!r:.40}"


def check_args(avals: Sequence[ShapedArray], args: Sequence[Any]) -> list[np.ndarray]:
    """Return the arguments as numpy arrays of exactly the expected types, or raise TypeError naming
    expected vs got. Python scalars are accepted for scalar inputs of the same kind."""
    if len(args) != len(avals):
        raise TypeError(f"expected {len(avals)} arguments ({', '.join(map(str, avals))}), got {len(args)}")
    out = []
    for i, (aval, x) in enumerate(zip(avals, args)):
        want = aval.dtype.np
        if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic) and aval.shape == ():
            kind_ok = (aval.dtype.kind == "b") == isinstance(x, bool) and (
                aval.dtype.kind == "f" or not isinstance(x, float))
            if kind_ok:
                out.append(np.asarray(x, dtype=want))
                continue
        if not isinstance(x, (np.ndarray, np.generic)) or x.dtype != want or tuple(x.shape) != aval.shape:
            raise TypeError(f"argument {i}: expected {aval}, got {_describe(x)}")
        out.append(np.asarray(x))
    return out
