"""jit's hot path (the last plain-array signature goes straight to native code) must never change
what a call returns: a different shape, dtype, layout, pytree or argument kind takes the full path."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp


def _native(jf):
    return jf._last_native is not None


def test_hot_path_is_armed_and_matches_numpy():
    jf = tj.jit(lambda x, y: cnp.sin(x) * y + 1.0)
    x = np.linspace(-1, 1, 7, dtype=np.float32)
    y = np.full(7, 3.0, np.float32)
    first = jf(x, y)
    assert _native(jf)
    for _ in range(3):
        np.testing.assert_allclose(jf(x, y), np.sin(x) * y + 1.0, rtol=1e-6, atol=1e-6)
    assert jf.trace_count == 1
    np.testing.assert_array_equal(first, jf(x, y))


def test_signature_changes_take_the_full_path():
    jf = tj.jit(lambda x: x * 2 + 1)
    a = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(jf(a), a * 2 + 1)
    b = np.arange(6, dtype=np.float64).reshape(2, 3)           # other dtype and shape
    np.testing.assert_array_equal(jf(b), b * 2 + 1)
    c = np.arange(12, dtype=np.float32)[::2]                     # not contiguous
    np.testing.assert_array_equal(jf(c), c * 2 + 1)
    assert float(jf(1.5)) == 4.0                                 # a Python scalar
    np.testing.assert_array_equal(jf(a), a * 2 + 1)
    with pytest.raises(TypeError):
        jf(a, a)                                                 # wrong arity is still an error


def test_pytree_outputs_and_inputs_keep_their_structure():
    jf = tj.jit(lambda x: {"double": x * 2, "pair": (x + 1, x.sum())})
    x = np.arange(4, dtype=np.float32)
    for _ in range(2):
        out = jf(x)
        assert set(out) == {"double", "pair"}
        np.testing.assert_array_equal(out["double"], x * 2)
        np.testing.assert_array_equal(out["pair"][0], x + 1)
        assert float(out["pair"][1]) == 6.0
    jg = tj.jit(lambda p: p["w"] @ p["b"])                       # dict input: never the flat hot path
    p = {"w": np.eye(3, dtype=np.float32), "b": np.ones(3, np.float32)}
    np.testing.assert_array_equal(jg(p), np.ones(3, np.float32))
    np.testing.assert_array_equal(jg(p), np.ones(3, np.float32))


def test_outputs_are_fresh_arrays_each_call():
    jf = tj.jit(lambda x: x + 1)
    x = np.zeros(3, np.float32)
    a = jf(x)
    b = jf(x)
    a[0] = 42
    assert b[0] == 1 and a is not b


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["f32_3", "f64_3", "f32_2x2", "i32_3", "strided", "scalar"]),
                min_size=1, max_size=8))
def test_any_sequence_of_signatures_gives_numpy_results(kinds):
    jf = tj.jit(lambda x: x * 3 - 1)
    make = {"f32_3": lambda: np.arange(3, dtype=np.float32),
            "f64_3": lambda: np.arange(3, dtype=np.float64) / 7,
            "f32_2x2": lambda: np.arange(4, dtype=np.float32).reshape(2, 2),
            "i32_3": lambda: np.arange(3, dtype=np.int32) - 1,
            "strided": lambda: np.arange(6, dtype=np.float32)[::2],
            "scalar": lambda: np.float32(2.5)}
    for kind in kinds:
        x = make[kind]()
        out = np.asarray(jf(x))
        expect = np.asarray(x * 3 - 1)
        assert out.shape == expect.shape and out.dtype == expect.dtype
        np.testing.assert_array_equal(out, expect)
