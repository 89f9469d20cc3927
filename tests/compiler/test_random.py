"""compiler.random: Threefry known answers, determinism, distributions (tolerances from the CLT),
and tracing under jit / vmap / grad with the same numbers as eager."""
import math

import ml_dtypes
import numpy as np
import pytest

import compiler as tj
import compiler.numpy as cnp
from compiler import nn, random

N = 100_000
Z = 5.0           # tolerance in standard errors: a false failure has probability ~ 6e-7

BF16 = pytest.param(ml_dtypes.bfloat16, id="bfloat16")


def u32(*values):
    return np.array(values, np.uint32)


# ---- keys and the cipher -----------------------------------------------------------------------

def test_prng_key():
    k = random.PRNGKey(0)
    assert k.dtype == np.uint32 and k.shape == (2,)
    np.testing.assert_array_equal(k, [0, 0])
    np.testing.assert_array_equal(random.PRNGKey(2**32 + 5), [1, 5])
    np.testing.assert_array_equal(random.PRNGKey(-1), [0xFFFFFFFF, 0xFFFFFFFF])     # as jax
    np.testing.assert_array_equal(random.key(7), random.PRNGKey(7))


# Random123 known-answer tests for threefry2x32 with 20 rounds (kat_vectors in the distribution)
KAT = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


@pytest.mark.parametrize("key,counter,expected", KAT)
def test_threefry_known_answers(key, counter, expected):
    x0, x1 = random.threefry_2x32(u32(*key), u32(counter[0]), u32(counter[1]))
    assert (int(x0[0]), int(x1[0])) == expected
    assert np.asarray(x0).dtype == np.uint32


def test_threefry_known_answers_under_jit_and_vectorized():
    f = tj.jit(lambda k, a, b: random.threefry_2x32(k, a, b))
    for key, counter, expected in KAT:
        x0, x1 = f(u32(*key), u32(counter[0], 0), u32(counter[1], 0))
        assert (int(x0[0]), int(x1[0])) == expected
    # the third vector's key applied to the first vector's counter in a batch keeps element 0 right
    x0, x1 = random.threefry_2x32(u32(0, 0), u32(0, 0xFFFFFFFF, 0), u32(0, 0xFFFFFFFF, 0))
    assert (int(x0[0]), int(x1[0])) == KAT[0][2] and (int(x0[2]), int(x1[2])) == KAT[0][2]


def _threefry_reference(key, x0, x1):
    """Threefry-2x32, 20 rounds, in plain Python integers (Salmon et al. 2011)."""
    mask = 0xFFFFFFFF
    rot = (13, 15, 26, 6, 17, 29, 16, 24)
    ks = [key[0], key[1], key[0] ^ key[1] ^ 0x1BD11BDA]
    x0, x1 = (x0 + ks[0]) & mask, (x1 + ks[1]) & mask
    for r in range(20):
        x0 = (x0 + x1) & mask
        x1 = ((x1 << rot[r % 8]) | (x1 >> (32 - rot[r % 8]))) & mask
        x1 ^= x0
        if r % 4 == 3:
            i = r // 4 + 1
            x0 = (x0 + ks[i % 3]) & mask
            x1 = (x1 + ks[(i + 1) % 3] + i) & mask
    return x0, x1


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_random_bits_layout(n):
    """The counters 0..2h-1 (h = ceil(n/2)) split into two halves, the two output words concatenated."""
    key = u32(0x12345678, 0x9ABCDEF0)
    half = (n + 1) // 2
    pairs = [_threefry_reference((int(key[0]), int(key[1])), i, half + i) for i in range(half)]
    expected = ([a for a, _ in pairs] + [b for _, b in pairs])[:n]
    np.testing.assert_array_equal(random.random_bits(key, (n,)), expected)
    np.testing.assert_array_equal(random.random_bits(key, (1, n)), [expected])


def test_reference_implementation_agrees_with_known_answers():
    for key, counter, expected in KAT:
        assert _threefry_reference(key, *counter) == expected


def test_split_matches_jax():
    # jax.random.split(jax.random.PRNGKey(0)) with the default threefry implementation
    np.testing.assert_array_equal(random.split(random.PRNGKey(0)),
                                  [[4146024105, 967050713], [2718843009, 1272950319]])


# ---- determinism ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [
    lambda k: random.uniform(k, (50,)),
    lambda k: random.normal(k, (50,)),
    lambda k: random.bernoulli(k, 0.5, (50,)),
    lambda k: random.random_bits(k, (50,)),
    lambda k: random.permutation(k, 50),
])
def test_same_key_same_numbers_other_key_other_numbers(fn):
    a, b = np.asarray(fn(random.PRNGKey(3))), np.asarray(fn(random.PRNGKey(3)))
    np.testing.assert_array_equal(a, b)
    c = np.asarray(fn(random.PRNGKey(4)))
    assert np.mean(a != c) > 0.3


def test_split_keys_differ():
    key = random.PRNGKey(11)
    keys = np.asarray(random.split(key, 8))
    assert keys.shape == (8, 2) and keys.dtype == np.uint32
    rows = {tuple(k) for k in keys} | {tuple(key)}
    assert len(rows) == 9
    samples = [np.asarray(random.uniform(k, (20,))) for k in keys]
    for i in range(8):
        for j in range(i):
            assert not np.allclose(samples[i], samples[j])
    # split is deterministic, and split(key, 2) is a prefix-free different call from split(key, 3)
    np.testing.assert_array_equal(random.split(key, 8), keys)
    a, b = random.split(key)
    assert not np.array_equal(a, b)


def test_fold_in():
    key = random.PRNGKey(5)
    ks = [tuple(np.asarray(random.fold_in(key, d))) for d in range(20)]
    assert len(set(ks)) == 20 and tuple(key) not in ks
    np.testing.assert_array_equal(random.fold_in(key, 3), random.fold_in(key, 3))
    k = np.asarray(random.fold_in(key, 3))
    assert k.shape == (2,) and k.dtype == np.uint32


def test_bad_keys_are_rejected():
    with pytest.raises(TypeError):
        random.uniform(np.array([1, 2, 3], np.uint32), (3,))
    with pytest.raises(TypeError):
        random.normal(np.array([1, 2], np.int32), (3,))
    with pytest.raises(TypeError):
        random.uniform(random.PRNGKey(0), (3,), dtype=np.int32)


# ---- distributions --------------------------------------------------------------------------------

def _check_mean_var(x, mean, var, fourth_central):
    """Sample mean and variance within Z standard errors (CLT): se(mean) = sqrt(var/n),
    se(var) = sqrt((mu4 - var^2) / n)."""
    n = x.size
    x = x.astype(np.float64)
    assert abs(x.mean() - mean) < Z * math.sqrt(var / n), (x.mean(), mean)
    assert abs(x.var() - var) < Z * math.sqrt((fourth_central - var**2) / n) + 1e-12, (x.var(), var)


def test_uniform_range_and_moments():
    x = np.asarray(random.uniform(random.PRNGKey(0), (N,)))
    assert x.dtype == np.float32 and x.shape == (N,)
    assert x.min() >= 0.0 and x.max() < 1.0
    _check_mean_var(x, 0.5, 1 / 12, 1 / 80)
    # each tenth of [0, 1) gets its share (binomial)
    counts = np.histogram(x, bins=10, range=(0, 1))[0]
    assert np.all(np.abs(counts - N / 10) < Z * math.sqrt(N * 0.1 * 0.9))


def test_uniform_bounds_and_shapes():
    x = np.asarray(random.uniform(random.PRNGKey(1), (200, 500), minval=-2.0, maxval=3.0))
    assert x.shape == (200, 500)
    assert x.min() >= -2.0 and x.max() < 3.0
    _check_mean_var(x, 0.5, 25 / 12, 5**4 / 80)
    assert np.asarray(random.uniform(random.PRNGKey(1))).shape == ()
    assert np.asarray(random.uniform(random.PRNGKey(1), 7)).shape == (7,)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16, BF16])
def test_uniform_dtypes(dtype):
    x = np.asarray(random.uniform(random.PRNGKey(2), (20_000,), dtype))
    assert x.dtype == np.dtype(dtype)
    xf = x.astype(np.float64)
    assert np.all(np.isfinite(xf)) and xf.min() >= 0.0 and xf.max() < 1.0
    _check_mean_var(xf, 0.5, 1 / 12, 1 / 80)
    assert len(np.unique(xf)) > min(1000, 2 ** ml_dtypes.finfo(dtype).nmant // 2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_uniform_never_reaches_maxval(dtype):
    # 1 + 2u with u = 1 - 2**-nbits rounds to 3 in the dtype: the interval must stay half-open
    x = np.asarray(random.uniform(random.PRNGKey(3), (N,), dtype, minval=1.0, maxval=3.0))
    assert x.max() < 3.0 and x.min() >= 1.0


def test_normal_moments():
    x = np.asarray(random.normal(random.PRNGKey(0), (N,)))
    assert x.dtype == np.float32 and np.all(np.isfinite(x))
    _check_mean_var(x, 0.0, 1.0, 3.0)
    # skewness 0 (se ~ sqrt(15/n)) and kurtosis 3 (se ~ sqrt(96/n))
    x = x.astype(np.float64)
    assert abs(np.mean(x**3)) < Z * math.sqrt(15 / N)
    assert abs(np.mean(x**4) - 3) < Z * math.sqrt(96 / N)
    # the empirical CDF at a few points
    for t in (-2.0, -1.0, 0.0, 0.5, 1.5):
        p = 0.5 * (1 + math.erf(t / math.sqrt(2)))
        assert abs(np.mean(x <= t) - p) < Z * math.sqrt(p * (1 - p) / N)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, BF16])
def test_normal_dtypes(dtype):
    x = np.asarray(random.normal(random.PRNGKey(9), (20_000,), dtype))
    assert x.dtype == np.dtype(dtype)
    xf = x.astype(np.float64)
    assert np.all(np.isfinite(xf))
    _check_mean_var(xf, 0.0, 1.0, 3.0 + 0.05)       # low precision rounding adds a little


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
def test_bernoulli_rate(p):
    x = np.asarray(random.bernoulli(random.PRNGKey(6), p, (N,)))
    assert x.dtype == np.bool_
    assert abs(x.mean() - p) < Z * math.sqrt(p * (1 - p) / N) + 1e-12
    if p in (0.0, 1.0):
        assert np.all(x == bool(p))


def test_bernoulli_broadcast_p():
    p = np.array([[0.1], [0.5], [0.8]])
    x = np.asarray(random.bernoulli(random.PRNGKey(7), p, (3, 20_000)))
    assert x.shape == (3, 20_000)
    for row, q in zip(x, p[:, 0]):
        assert abs(row.mean() - q) < Z * math.sqrt(q * (1 - q) / row.size)
    y = np.asarray(random.bernoulli(random.PRNGKey(7), np.full((4, 5), 0.5)))     # shape from p
    assert y.shape == (4, 5)


@pytest.mark.parametrize("n", [1, 2, 10, 257])
def test_permutation_is_a_permutation(n):
    perm = np.asarray(random.permutation(random.PRNGKey(n), n))
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))
    if n > 2:
        other = np.asarray(random.permutation(random.PRNGKey(n + 1000), n))
        assert not np.array_equal(perm, other)
        assert not np.array_equal(perm, np.arange(n))


def test_large_eager_permutation():
    """A dataset-sized shuffle (an n x n comparison would need 40 GB here)."""
    n = 200_000
    perm = np.asarray(random.permutation(random.PRNGKey(0), n))
    np.testing.assert_array_equal(np.bincount(perm, minlength=n), np.ones(n))
    # no position is favoured: the mean displacement |perm[i] - i| is n/3 for a uniform permutation
    disp = np.abs(perm - np.arange(n)).mean()
    assert abs(disp - n / 3) < Z * n / math.sqrt(18 * n)


def test_permutation_of_an_array_permutes_rows():
    x = np.arange(24.0).reshape(8, 3)
    key = random.PRNGKey(1)
    y = np.asarray(random.permutation(key, x))
    order = np.asarray(random.permutation(key, 8))
    np.testing.assert_array_equal(y, x[order])


def test_permutation_is_uniform_over_keys():
    """All 6 permutations of 3 elements, each ~1/6 of the time over 1200 keys (chi-square)."""
    keys = random.split(random.PRNGKey(0), 1200)
    perms = np.asarray(tj.vmap(lambda k: random.permutation(k, 3))(keys))
    codes = perms[:, 0] * 9 + perms[:, 1] * 3 + perms[:, 2]
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 6
    expected = 1200 / 6
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert chi2 < 25.7            # the 0.9999 quantile of chi-square with 5 degrees of freedom
    for i in (0, 17, 1199):       # vmapped = eager, key by key
        np.testing.assert_array_equal(perms[i], random.permutation(keys[i], 3))


# ---- tracing: jit, vmap, grad ------------------------------------------------------------------

SAMPLERS = {
    "uniform": lambda k: random.uniform(k, (4, 3), minval=-1.0, maxval=2.0),
    "normal": lambda k: random.normal(k, (5,)),
    "normal64": lambda k: random.normal(k, (5,), np.float64),
    "bernoulli": lambda k: random.bernoulli(k, 0.3, (6,)),
    "split": lambda k: random.split(k, 3),
    "fold_in": lambda k: random.fold_in(k, 12345),
    "permutation": lambda k: random.permutation(k, 9),
    "permute_array": lambda k: random.permutation(k, np.arange(12.0).reshape(6, 2)),
    "bits": lambda k: random.random_bits(k, (7,)),
    "dropout": lambda k: nn.dropout(k, np.arange(1.0, 9.0), 0.5),
}


def assert_same_numbers(got, want):
    """Integers and booleans bit for bit; floats within a few ulp (compiled code may fuse a multiply
    and an add, or use a vector log/cos: what the LLVM backend promises against the interpreter)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=4 * np.finfo(got.dtype).eps, atol=4 * np.finfo(got.dtype).eps)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_jit_gives_the_eager_numbers(name):
    fn = SAMPLERS[name]
    key = random.PRNGKey(42)
    eager = np.asarray(fn(key))
    assert_same_numbers(tj.jit(fn)(key), eager)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_jit_without_passes_and_vmap_give_the_eager_numbers(name):
    fn = SAMPLERS[name]
    key = random.PRNGKey(42)
    eager = np.asarray(fn(key))
    assert_same_numbers(tj.jit(fn, passes=())(key), eager)
    keys = random.split(key, 4)
    batched = np.asarray(tj.vmap(fn)(keys))
    np.testing.assert_array_equal(batched, np.stack([np.asarray(fn(k)) for k in keys]))


def test_key_split_inside_jit_matches_eager():
    def f(key):
        k1, k2 = random.split(key)
        return random.normal(k1, (3,)) + random.uniform(k2, (3,))
    key = random.PRNGKey(8)
    assert_same_numbers(tj.jit(f)(key), f(key))


def test_gradient_through_random_noise():
    key = random.PRNGKey(2)
    x = np.linspace(-1, 1, 6)
    noise = np.asarray(random.normal(key, (6,), np.float64))
    g = tj.grad(lambda x, k: cnp.sum(cnp.multiply(x, random.normal(k, (6,), np.float64))))(x, key)
    np.testing.assert_array_equal(g, noise)


# ---- initializers --------------------------------------------------------------------------------

def _std_ok(w, std):
    w = np.asarray(w, np.float64)
    n = w.size
    assert abs(w.mean()) < Z * std / math.sqrt(n)
    assert abs(w.std() - std) < Z * std * math.sqrt(1 / (2 * n)) * 1.5


@pytest.mark.parametrize("shape,fan_in,fan_out", [((256, 128), 128, 256), ((64, 16, 3, 3), 144, 576)])
def test_kaiming_normal_std(shape, fan_in, fan_out):
    w = np.asarray(nn.kaiming_normal(random.PRNGKey(0), shape))
    assert w.shape == shape and w.dtype == np.float32
    _std_ok(w, math.sqrt(2.0 / fan_in))
    _std_ok(nn.kaiming_normal(random.PRNGKey(1), shape, mode="fan_out"), math.sqrt(2.0 / fan_out))
    _std_ok(nn.kaiming_normal(random.PRNGKey(2), shape, gain=1.0, dtype=np.float64), math.sqrt(1.0 / fan_in))


@pytest.mark.parametrize("shape,fan_in,fan_out", [((256, 128), 128, 256), ((32, 8, 5, 5), 200, 800)])
def test_xavier(shape, fan_in, fan_out):
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    w = np.asarray(nn.xavier_uniform(random.PRNGKey(0), shape))
    assert w.shape == shape
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.95 * bound
    _std_ok(w, bound / math.sqrt(3))
    w = np.asarray(nn.xavier_normal(random.PRNGKey(1), shape, gain=2.0))
    _std_ok(w, 2.0 * math.sqrt(2.0 / (fan_in + fan_out)))
