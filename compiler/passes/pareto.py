"""pareto_front: the configurations no other configuration beats on every objective."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_front(points, maximize: Sequence[bool], return_indices: bool = False):
    """The Pareto-optimal rows of ``points`` (n rows, one column per objective).

    ``maximize[j]`` says whether objective j is better larger (True) or smaller (False). A row is
    dominated when another row is at least as good on every objective and better on one. Rows are
    returned in their original order.
    """
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2:
        raise ValueError(f"points must be a 2-d array (rows of objectives), got shape {pts.shape}")
    if len(maximize) != pts.shape[1]:
        raise ValueError(f"maximize needs one entry per objective ({pts.shape[1]}), got {len(maximize)}")
    signed = pts * np.where(np.asarray(maximize, bool), 1.0, -1.0)       # larger is better everywhere
    at_least = (signed[:, None, :] >= signed[None, :, :]).all(axis=2)     # [i, j]: i >= j everywhere
    better = (signed[:, None, :] > signed[None, :, :]).any(axis=2)
    dominated = (at_least & better).any(axis=0)
    keep = np.flatnonzero(~dominated)
    return keep if return_indices else pts[keep]
