"""compiler.random: counter-based random numbers with explicit keys (as jax.random).

A key is a uint32[2]. Every function is pure: the same key gives the same numbers, and a key is
never advanced in place: ``split`` it to get fresh ones. Bits come from the Threefry-2x32 block
cipher (Salmon et al. 2011, 20 rounds) written with primitives, so random numbers can be traced,
jitted and vmapped like anything else.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from . import numpy as cnp
from .ir.core import DEFAULT_FLOAT, dtype as to_dtype, f32, u32
from .primitives.structural import scatter_add
from .tracing import Tracer

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = 0x1BD11BDA


def PRNGKey(seed: int):
    """A key from an integer seed."""
    seed = int(seed)
    return np.array([(seed >> 32) & 0xFFFFFFFF, seed & 0xFFFFFFFF], np.uint32)


key = PRNGKey


def _u32(x):
    return cnp.astype(x, u32)


def _rotate_left(x, r: int):
    return cnp.bitwise_or(cnp.left_shift(x, np.uint32(r)), cnp.right_shift(x, np.uint32(32 - r)))


def threefry_2x32(key, x0, x1):
    """Encrypt the counter pairs (x0, x1) with key: two uint32 arrays of random bits."""
    k0, k1 = _u32(key[0]), _u32(key[1])
    ks = [k0, k1, cnp.bitwise_xor(cnp.bitwise_xor(k0, k1), np.uint32(_PARITY))]
    x0, x1 = cnp.add(_u32(x0), ks[0]), cnp.add(_u32(x1), ks[1])
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = cnp.add(x0, x1)
            x1 = cnp.bitwise_xor(_rotate_left(x1, r), x0)
        x0 = cnp.add(x0, ks[(i + 1) % 3])
        x1 = cnp.add(cnp.add(x1, ks[(i + 2) % 3]), np.uint32(i + 1))
    return x0, x1


def _check_key(key):
    shape = cnp.shape(key)
    if shape != (2,) or cnp.result_type(key) != u32:
        raise TypeError(f"expected a PRNG key (uint32[2], from compiler.random.PRNGKey), got shape "
                        f"{shape} dtype {cnp.result_type(key)}")


def random_bits(key, shape=()):
    """uint32 random bits of the given shape."""
    _check_key(key)
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    n = int(np.prod(shape, dtype=np.int64))
    half = (n + 1) // 2
    counts = cnp.arange(2 * half, dtype=u32)
    x0, x1 = threefry_2x32(key, counts[:half], counts[half:])
    return cnp.reshape(cnp.concatenate([x0, x1])[:n], shape)


def split(key, num: int = 2):
    """``num`` new independent keys, as an array of shape (num, 2)."""
    return cnp.reshape(random_bits(key, (num * 2,)), (num, 2))


def fold_in(key, data: int):
    """A new key determined by key and an integer."""
    _check_key(key)
    x0, x1 = threefry_2x32(key, np.array([0], np.uint32), np.array([data & 0xFFFFFFFF], np.uint32))
    return cnp.concatenate([x0, x1])


def _mantissa_bits(d) -> int:
    """How many random bits a uniform of dtype d can hold exactly: its significand (at most 32)."""
    return min(int(ml_dtypes.finfo(d.np).nmant) + 1, 32)


def uniform(key, shape=(), dtype=None, minval=0.0, maxval=1.0):
    """Uniform on [minval, maxval) (the bounds rounded to dtype): the top bits of each word, as many
    as the dtype's significand holds (24 for float32), scaled exactly into [0, 1)."""
    d = to_dtype(dtype) if dtype is not None else DEFAULT_FLOAT
    if not d.is_float:
        raise TypeError(f"uniform needs a floating dtype, got {d}")
    nbits = _mantissa_bits(d)
    bits = random_bits(key, shape)
    if nbits < 32:
        bits = cnp.right_shift(bits, np.uint32(32 - nbits))
    unit = cnp.multiply(cnp.astype(bits, d), np.asarray(2.0 ** -nbits, d.np))
    lo, hi = np.asarray(minval, d.np), np.asarray(maxval, d.np)
    out = cnp.add(cnp.multiply(unit, np.asarray(hi - lo, d.np)), lo)
    # lo + unit * (hi - lo) can round up to hi: keep the interval half-open
    return cnp.minimum(out, np.nextafter(hi, lo))


def normal(key, shape=(), dtype=None):
    """Standard normal samples (Box-Muller transform of two uniforms); float16 and bfloat16 samples
    are drawn in float32 and rounded."""
    d = to_dtype(dtype) if dtype is not None else DEFAULT_FLOAT
    if not d.is_float:
        raise TypeError(f"normal needs a floating dtype, got {d}")
    if d.itemsize < 4:
        return cnp.astype(normal(key, shape, f32), d)
    shape = tuple(shape) if not isinstance(shape, int) else (shape,)
    k1, k2 = split(key)
    u1 = cnp.subtract(np.asarray(1.0, d.np), uniform(k1, shape, d))        # in (0, 1]: log is finite
    u2 = uniform(k2, shape, d)
    radius = cnp.sqrt(cnp.multiply(np.asarray(-2.0, d.np), cnp.log(u1)))
    return cnp.multiply(radius, cnp.cos(cnp.multiply(u2, np.asarray(2 * np.pi, d.np))))


def bernoulli(key, p=0.5, shape=None):
    """True with probability p (p broadcasts against shape)."""
    shape = cnp.shape(p) if shape is None else shape
    return cnp.less(uniform(key, shape), p)


def permutation(key, x):
    """A random permutation of range(x) (an int) or of the first axis of array x."""
    n = int(x) if isinstance(x, (int, np.integer)) else cnp.shape(x)[0]
    bits = random_bits(key, (n,))
    if not isinstance(bits, Tracer):
        # eager: the same permutation (a stable sort by the random words) in O(n log n)
        order = np.argsort(np.asarray(bits), kind="stable").astype(np.int32)
        return order if isinstance(x, (int, np.integer)) else cnp.take(x, order, axis=0)
    # traced: rank of each element when sorted by its random word (ties broken by position): a permutation
    below = cnp.less(bits[None, :], bits[:, None])
    earlier_tie = cnp.logical_and(cnp.equal(bits[None, :], bits[:, None]),
                                  np.tril(np.ones((n, n), bool), -1))
    rank = cnp.sum(cnp.logical_or(below, earlier_tie), axis=1)
    order = scatter_add.bind(np.zeros((n,), np.int32), cnp.astype(rank, np.int32), np.arange(n, dtype=np.int32),
                             axis=0)
    return order if isinstance(x, (int, np.integer)) else cnp.take(x, order, axis=0)
