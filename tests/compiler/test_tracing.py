"""Tracing: pytrees, closures, jit caching, static arguments, and the errors a user meets."""
import numpy as np
import pytest

import compiler as tj
import compiler.numpy as cnp
from compiler.ir import ConcretizationError, ShapeError, verify


def test_pytrees_in_and_out():
    def f(params, x):
        w, b = params["w"], params["b"]
        y = x @ w + b
        return {"y": y, "stats": (y.sum(), [y.max(), None])}

    params = {"w": np.arange(6.0, dtype=np.float32).reshape(3, 2), "b": np.array([1.0, -1.0], np.float32)}
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    out = tj.jit(f)(params, x)
    y = x @ params["w"] + params["b"]
    np.testing.assert_allclose(out["y"], y)
    np.testing.assert_allclose(out["stats"][0], y.sum())
    np.testing.assert_allclose(out["stats"][1][0], y.max())
    assert out["stats"][1][1] is None
    assert isinstance(out["stats"][1], list)


def test_closure_over_array_becomes_constvar():
    w = np.array([1.0, 2.0, 3.0], np.float32)
    closed = tj.make_jaxpr(lambda x: x * w)(np.ones(3, np.float32))
    assert len(closed.jaxpr.constvars) == 1
    assert closed.consts[0] is w
    assert str(closed).startswith("{ lambda a:f32[3] ; b:f32[3]. let")


def test_jit_caches_by_signature_and_retraces_on_new_shape_or_dtype():
    calls = []

    def f(x):
        calls.append(1)
        return x * 2

    jf = tj.jit(f)
    jf(np.ones(3, np.float32))
    jf(np.zeros(3, np.float32))
    assert len(calls) == 1                      # same signature: cached
    jf(np.ones(4, np.float32))
    assert len(calls) == 2                      # new shape: retrace
    jf(np.ones(4, np.float64))
    assert len(calls) == 3                      # new dtype: retrace
    np.testing.assert_array_equal(jf(np.ones(4, np.float64)), np.full(4, 2.0))
    assert len(calls) == 3


def test_static_argnums():
    def f(x, n):
        for _ in range(n):                      # Python control flow on a static value is fine
            x = x + 1
        return x

    jf = tj.jit(f, static_argnums=1)
    np.testing.assert_array_equal(jf(np.zeros(2, np.float32), 3), [3.0, 3.0])
    np.testing.assert_array_equal(jf(np.zeros(2, np.float32), 5), [5.0, 5.0])
    assert jf.trace_count == 2


def test_lower_shows_the_jaxpr_it_runs():
    lowered = tj.jit(lambda x: cnp.exp(x) + 1).lower(np.ones(3, np.float32))
    text = lowered.as_text("jaxpr")
    assert "exp" in text and "add" in text
    np.testing.assert_allclose(lowered.compile()(np.zeros(3, np.float32))[0], np.full(3, 2.0))


def test_python_if_on_tracer_raises_concretization_error():
    def f(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(ConcretizationError, match="lax.cond"):
        tj.jit(f)(1.0)


def test_shape_error_names_primitive_shapes_and_user_line():
    def f(a, b):
        return a @ b                            # the offending line

    with pytest.raises(ShapeError) as info:
        tj.make_jaxpr(f)(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32))
    msg = str(info.value)
    assert "matmul" in msg or "dot_general" in msg
    assert "(2, 3)" in msg and "(4, 5)" in msg
    assert "test_tracing.py" in msg and "a @ b" in msg


def test_broadcast_error_names_both_shapes():
    with pytest.raises(ShapeError, match=r"\(3,\).*\(4,\)"):
        tj.make_jaxpr(lambda a, b: a + b)(np.ones(3, np.float32), np.ones(4, np.float32))


def test_jit_rejects_wrong_argument_types_when_calling_lowered():
    lowered = tj.jit(lambda x: x + 1).lower(np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"expected f32\[3\], got f64\[3\]"):
        lowered(np.ones(3, np.float64))
    with pytest.raises(TypeError, match="expected 1 arguments"):
        lowered(np.ones(3, np.float32), np.ones(3, np.float32))


def test_nested_make_jaxpr_captures_outer_tracers():
    def outer(x):
        inner = tj.make_jaxpr(lambda y: y * x)(1.0)
        assert len(inner.jaxpr.constvars) == 1       # x, captured from the outer trace
        return x + 1

    verify(tj.make_jaxpr(outer)(np.ones(2, np.float32)).jaxpr)


def test_leaked_tracer_is_reported():
    leaked = []
    tj.make_jaxpr(lambda x: leaked.append(x) or x)(1.0)
    with pytest.raises(tj.UnexpectedTracerError):
        cnp.exp(leaked[0])


def test_eager_cnp_outside_any_trace():
    x = np.array([0.0, 1.0], np.float32)
    np.testing.assert_allclose(cnp.exp(x), np.exp(x), rtol=1e-6)
    assert cnp.exp(x).dtype == np.float32


def test_weak_python_scalars_keep_array_dtype():
    closed = tj.make_jaxpr(lambda x: x * 2 + 1.5)(np.ones(2, np.float16))
    assert all(v.aval.dtype.name == "f16" for e in closed.eqns for v in e.outvars)


def test_jit_inside_jit_inlines():
    inner = tj.jit(lambda x: x * 3)
    outer = tj.jit(lambda x: inner(x) + 1)
    np.testing.assert_allclose(outer(np.ones(2, np.float32)), [4.0, 4.0])
    assert "mul" in outer.lower(np.ones(2, np.float32)).as_text()
