"""x[index] under tj.jit against numpy indexing the same array with the same index.

Indices mix ints, slices (negative steps too), None, Ellipsis, integer arrays (numpy constants and
traced arguments), boolean masks and boolean scalars, including non-adjacent advanced indices
(whose broadcast dimensions go first, as numpy does).
"""
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import compiler as tj

SETTINGS = settings(max_examples=60, deadline=None)


def jit(f):
    return tj.jit(f, backend="numpy")


def numbered(shape, dtype=np.float32):
    """Distinct values, so a wrong element cannot look right."""
    return (np.arange(int(np.prod(shape)), dtype=np.int64) + 1).astype(dtype).reshape(shape)


def check(x, index):
    """Static index: equal to numpy, or IndexError where numpy raises IndexError."""
    try:
        want = x[index]
    except IndexError:
        with pytest.raises(IndexError):
            jit(lambda v: v[index])(x)
        return None
    got = jit(lambda v: v[index])(x)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape, index)
    np.testing.assert_array_equal(got, want)
    return want


@st.composite
def slices(draw, n):
    lo = draw(st.one_of(st.none(), st.integers(-n - 2, n + 2)))
    hi = draw(st.one_of(st.none(), st.integers(-n - 2, n + 2)))
    step = draw(st.one_of(st.none(), st.integers(-3, 3).filter(lambda s: s != 0)))
    return slice(lo, hi, step)


@st.composite
def indices(draw, shape, traced_arrays=False):
    """(index tuple, list of integer arrays that a traced variant passes as arguments)."""
    nd = len(shape)
    k = draw(st.integers(0, nd))                        # how many dimensions the index names
    use_ellipsis = draw(st.booleans())
    ell_at = draw(st.integers(0, k)) if use_ellipsis else None
    # dims covered by explicit entries: the first ell_at and the last k - ell_at (with an ellipsis)
    dims = list(range(k)) if ell_at is None else list(range(ell_at)) + list(range(nd - (k - ell_at), nd))
    kinds = [draw(st.sampled_from(["int", "slice", "slice", "array", "mask"])) for _ in dims]
    if kinds.count("mask") > 1:                          # at most one mask: counts would have to match
        first = kinds.index("mask")
        kinds = [kd if kd != "mask" or i == first else "slice" for i, kd in enumerate(kinds)]
    entries, arrays = [], []
    adv_shape = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    if "mask" in kinds:
        d = dims[kinds.index("mask")]
        mask = draw(hnp.arrays(np.bool_, (shape[d],)))
        adv_shape = (int(mask.sum()),)
    for d, kind in zip(dims, kinds):
        n = shape[d]
        if kind == "int":
            entries.append(draw(st.integers(-n, n - 1)) if n else draw(st.integers(-1, 1)))
        elif kind == "slice":
            entries.append(draw(slices(n)))
        elif kind == "mask":
            entries.append(mask)
        else:
            sub = adv_shape[len(adv_shape) - draw(st.integers(0, len(adv_shape))):]
            sub = tuple(1 if draw(st.integers(0, 4)) == 0 else s for s in sub)
            dt = np.dtype(draw(st.sampled_from([np.int32, np.int64, np.int8, np.uint8])))
            lo = 0 if dt.kind == "u" else -n
            el = st.integers(lo, n - 1) if n else st.just(0)
            entries.append(draw(hnp.arrays(dt, sub, elements=el)))
            arrays.append(entries[-1])
    if ell_at is not None:
        entries.insert(ell_at, Ellipsis)
    for _ in range(draw(st.integers(0, 2))):             # None (and sometimes a boolean scalar)
        entries.insert(draw(st.integers(0, len(entries))), draw(st.sampled_from([None, None, True, False])))
    positions = [k for k, e in enumerate(entries) if any(e is a for a in arrays)]
    if len(entries) == 1 and draw(st.booleans()):
        return entries[0], positions
    return tuple(entries), positions


shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)


@given(shapes.flatmap(lambda s: st.tuples(st.just(s), indices(s))))
@SETTINGS
def test_static_indices_match_numpy(case):
    shape, (index, _) = case
    check(numbered(shape), index)


@given(shapes.flatmap(lambda s: st.tuples(st.just(s), indices(s))))
@SETTINGS
def test_traced_integer_arrays_match_numpy(case):
    shape, (index, array_pos) = case
    x = numbered(shape)
    try:
        want = x[index]
    except IndexError:
        assume(False)
    as_tuple = index if isinstance(index, tuple) else (index,)
    arrays = [as_tuple[i] for i in array_pos]

    def f(v, *arrs):
        idx = list(as_tuple)
        for i, a in zip(array_pos, arrs):
            idx[i] = a
        return v[tuple(idx)]

    got = jit(f)(x, *arrays)
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, index)
    np.testing.assert_array_equal(got, want)


@given(shapes.flatmap(lambda s: st.tuples(st.just(s), hnp.basic_indices(s, allow_newaxis=True,
                                                                         allow_ellipsis=True))))
@SETTINGS
def test_basic_indices_from_hypothesis(case):
    shape, index = case
    check(numbered(shape, np.int16), index)


@given(st.data())
@SETTINGS
def test_traced_scalar_indices(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    x = numbered(shape)
    d = data.draw(st.integers(0, len(shape) - 1))
    i = data.draw(st.integers(-shape[d], shape[d] - 1))
    prefix = (slice(None),) * d
    rest = data.draw(st.sampled_from([(), (None,), (Ellipsis,)] + ([(slice(None, None, -1),)] if d < len(shape) - 1
                                                                   else [])))
    index = prefix + (i,) + rest
    want = x[index]
    got = jit(lambda v, k: v[prefix + (k,) + rest])(x, np.int32(i))
    np.testing.assert_array_equal(got, want)
    assert got.shape == want.shape


def test_non_adjacent_advanced_indices_go_first():
    x = numbered((2, 3, 4, 5))
    for index in [(0, slice(None), [1, 2]), ([0, 1], slice(None), [1, 2], slice(1, 3)),
                  (slice(None), [0, 2], 1), (slice(None), [0, 2], slice(None), [[1], [3]]),
                  ([1], None, [1, 2]), (None, [1], [1, 2]), (Ellipsis, [0, 1], None),
                  ([[0, 1]], slice(None, None, -1), Ellipsis, [[2], [4]]),
                  (np.array([True, False]), slice(None), [1, 3]),
                  (np.array([[True, False, True], [False, False, True]]), slice(0, 3), [2, 4, 1])]:
        check(x, index)
    y = numbered((2, 3, 4))
    # an Ellipsis between advanced indices separates them even when it stands for no dimension
    for index in [(slice(None), [0], Ellipsis, [0]), (slice(None), [0], [0], Ellipsis), (slice(None), True, 0, 0),
                  (slice(None), True, Ellipsis, 0, 0), (slice(None), [0], None, [0]), (Ellipsis, [1], [0], [2])]:
        check(y, index)


def test_boolean_masks():
    x = numbered((3, 4))
    check(x, x > 5)                                      # full-shape mask with known values
    check(x, np.array([True, False, True]))
    check(x, (slice(None), np.array([False, True, True, False])))
    check(x, (np.zeros(3, bool),))
    check(x, True)
    check(x, False)
    check(x, (Ellipsis, True))
    check(x, (1, False))
    check(numbered(()), True)
    check(x, [True, False, True])                        # a list of bools is a mask too
    with pytest.raises(IndexError):
        jit(lambda v: v[np.array([True, False])])(x)     # wrong length, as numpy
    with pytest.raises(IndexError):
        jit(lambda v, m: v[m])(x, np.array([True, False, True]))    # a traced mask has no static shape


def test_out_of_bounds_static_indices_raise_index_error():
    x = numbered((3, 4))
    for index in [3, -4, (0, 4), (slice(None), -5), [0, 3], (slice(None), np.array([4])), (1, 2, 0),
                  (Ellipsis, 1, 2, 3), ([-4],)]:
        with pytest.raises(IndexError):
            x[index]
        with pytest.raises(IndexError):
            jit(lambda v: v[index])(x)
    with pytest.raises(IndexError):
        jit(lambda v: v[..., ...])(x)
    with pytest.raises(IndexError):
        jit(lambda v: v[1.5])(x)
    with pytest.raises(IndexError):
        jit(lambda v: v[np.array([1.0])])(x)


def test_empty_and_zero_size():
    check(numbered((0, 3)), (slice(None), [0, 1]))
    check(numbered((3, 0)), [0, 2])
    check(numbered((3,)), [])
    check(numbered((3, 2)), (np.zeros((0, 2), np.int32),))
    check(numbered((4, 3)), (slice(3, 1), [1]))
    check(numbered((2, 3)), (slice(None), slice(None, None, -2)))


def test_traced_out_of_bounds_indices_are_clamped():
    """Traced indices cannot be checked while tracing; like JAX they are clamped into range."""
    x = numbered((5,))
    got = jit(lambda v, i: v[i])(x, np.array([0, 4, 7, -1, -9], np.int32))
    np.testing.assert_array_equal(got, x[[0, 4, 4, 4, 0]])
    assert jit(lambda v, i: v[i])(x, np.int32(9)) == x[4]


def test_indexing_a_tracer_with_numpy_dispatch_and_methods():
    x = numbered((4, 5), np.float64)
    idx = np.array([3, 0])
    f = jit(lambda v: (np.take(v, idx, axis=1), v.take(idx), v[idx][:, ::2], v[1][2]))
    got = f(x)
    want = (np.take(x, idx, axis=1), x.take(idx), x[idx][:, ::2], x[1][2])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
        assert g.shape == w.shape
