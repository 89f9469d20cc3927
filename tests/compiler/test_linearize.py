"""linearize: the derivative at a point as a program of the tangents only (partial evaluation)."""
import numpy as np

import compiler as tj
import compiler.numpy as cnp
from compiler.passes import fold_constants


def test_linearize_equals_jvp_and_keeps_only_tangent_work():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3))
    f = lambda x: cnp.tanh(w @ x) * cnp.exp(x[0])
    x = rng.standard_normal(3)
    out, f_jvp = tj.linearize(f, x)
    np.testing.assert_allclose(out, np.tanh(w @ x) * np.exp(x[0]), rtol=1e-12)
    for t in rng.standard_normal((3, 3)):
        np.testing.assert_allclose(f_jvp(t), tj.jvp(f, (x,), (t,))[1], rtol=1e-12)
    # no transcendental is recomputed: exp and tanh were evaluated once, at linearization
    names = {e.primitive.name for e in f_jvp.jaxpr.eqns}
    assert not names & {"tanh", "exp"}, names


def test_fold_constants_evaluates_what_is_known():
    c = np.array([1.0, 2.0])
    closed = tj.make_jaxpr(lambda x: x * cnp.exp(c) + cnp.sin(2.0))(np.ones(2))
    folded = fold_constants(closed)
    assert [e.primitive.name for e in folded.eqns] == ["mul", "add"]
    import runtime
    x = np.array([0.5, -1.0])
    np.testing.assert_allclose(runtime.eval_jaxpr(folded, x)[0], x * np.exp(c) + np.sin(2.0))
