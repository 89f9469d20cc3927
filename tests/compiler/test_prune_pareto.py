"""Magnitude pruning (unstructured, global, N:M) and Pareto fronts against brute force."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import compiler as tj
import runtime
from compiler.passes import is_n_m_sparse, pareto_front, prune, sparsity_of

finite = st.floats(-100, 100, allow_nan=False, width=32)


@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 3).map(lambda g: 4 * g)), elements=finite))
@settings(max_examples=50, deadline=None)
def test_two_four_keeps_the_two_largest_of_every_group(w):
    p = prune(w, structure="2:4")
    assert is_n_m_sparse(p, 2, 4)
    for group, kept in zip(w.reshape(-1, 4), p.reshape(-1, 4)):
        nonzero = kept != 0
        assert np.all(kept[nonzero] == group[nonzero])                 # kept values unchanged
        # no dropped element is larger in magnitude than a kept one
        dropped = np.abs(group[kept == 0])
        if dropped.size and nonzero.any():
            assert dropped.max() <= np.abs(group[nonzero]).min()


@given(arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(1, 8)), elements=finite),
       st.floats(0, 0.95))
@settings(max_examples=50, deadline=None)
def test_unstructured_prunes_the_smallest_fraction(w, sparsity):
    p = prune(w, sparsity)
    pruned = (p == 0) & (w != 0)
    expected = int(round(sparsity * w.size))
    assert (p == 0).sum() >= expected - 0 and ((p == 0) & (w != 0)).sum() <= expected
    if pruned.any() and (p != 0).any():
        assert np.abs(w[pruned]).max() <= np.abs(p[p != 0]).min()


def test_global_scope_uses_one_threshold_and_skips_biases():
    params = {"big": np.array([[10.0, 20.0], [30.0, 40.0]], np.float32),
              "small": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), "bias": np.array([0.1, 0.2])}
    out = prune(params, 0.5, scope="global")
    np.testing.assert_array_equal(out["small"], 0)             # the four smallest weights are all here
    np.testing.assert_array_equal(out["big"], params["big"])
    np.testing.assert_array_equal(out["bias"], params["bias"])
    per_layer = prune(params, 0.5)
    assert sparsity_of(per_layer["big"]) == 0.5 and sparsity_of(per_layer["small"]) == 0.5


def test_prune_a_jaxprs_constants():
    w = np.arange(1, 33, dtype=np.float32).reshape(4, 8)
    closed = tj.make_jaxpr(lambda x: x @ w)(np.ones((1, 4), np.float32))
    pruned = prune(closed, structure="2:4")
    # groups run along the axis the matmul sums over: the rows of w in x @ w
    assert is_n_m_sparse(pruned.consts[0].T, 2, 4) and not is_n_m_sparse(closed.consts[0].T, 2, 4)
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_array_equal(runtime.eval_jaxpr(pruned, x)[0], x @ pruned.consts[0])


def test_is_n_m_sparse_and_errors():
    assert is_n_m_sparse(np.array([1, 0, 0, 2, 0, 0, 3, 0]), 2, 4)
    assert not is_n_m_sparse(np.array([1, 1, 1, 0]), 2, 4)
    with pytest.raises(ValueError, match="divisible"):
        is_n_m_sparse(np.ones(6), 2, 4)
    with pytest.raises(ValueError, match="N:M"):
        prune(np.ones((2, 4)), structure="4:2")


@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 3)), elements=st.integers(0, 5).map(float)),
       st.data())
@settings(max_examples=60, deadline=None)
def test_pareto_front_against_brute_force(points, data):
    maximize = tuple(data.draw(st.lists(st.booleans(), min_size=points.shape[1], max_size=points.shape[1])))
    sign = np.where(maximize, 1, -1)
    expected = [i for i in range(len(points))
                if not any(np.all(points[j] * sign >= points[i] * sign) and np.any(points[j] * sign > points[i] * sign)
                           for j in range(len(points)))]
    assert list(pareto_front(points, maximize, return_indices=True)) == expected
