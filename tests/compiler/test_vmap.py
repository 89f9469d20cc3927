"""vmap against a Python loop over the batch, for each kind of batching rule and the fallback."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp

rng = np.random.default_rng(0)


def loop(f, in_axes, args, out_axis=0):
    size = next(a.shape[ax] for a, ax in zip(args, in_axes) if ax is not None)
    outs = [f(*[a if ax is None else np.take(a, i, axis=ax) for a, ax in zip(args, in_axes)])
            for i in range(size)]
    return np.stack([np.asarray(o) for o in outs], axis=out_axis)


CASES = {
    "elementwise_broadcast": (lambda x, y: cnp.exp(x) * y + 1.0, ((5, 3), (3,)), (0, None)),
    "batched_scalar_vs_array": (lambda s, y: s * y, ((4,), (4, 3)), (0, 0)),
    "matmul_both": (lambda x, w: cnp.tanh(x @ w), ((6, 2, 3), (6, 3, 4)), (0, 0)),
    "matmul_lhs": (lambda x, w: x @ w, ((2, 6, 3), (3, 4)), (1, None)),
    "matmul_rhs": (lambda x, w: x @ w, ((2, 3), (3, 4, 6)), (None, 2)),
    "reductions": (lambda x: x.max(axis=0) + x.sum() + cnp.argmax(x, axis=0), ((4, 3, 5),), (0,)),
    "reshape_transpose": (lambda x: x.reshape(6, 2).T[:, ::2], ((3, 3, 4),), (1,)),
    "concat_pad": (lambda x, y: cnp.pad(cnp.concatenate([x, y]), 1), ((4, 2), (4, 3)), (0, 0)),
    "cumsum_slice": (lambda x: cnp.cumsum(x, axis=1)[1:, 1], ((5, 3, 4),), (0,)),
    "gather_batched_indices": (lambda x, i: x[i], ((5,), (4, 2)), (None, 0), {1}),
    "gather_both_batched": (lambda x, i: x[i], ((4, 5), (4, 2)), (0, 0), {1}),
    "dynamic_index": (lambda x, i: x[i], ((4, 5), (4,)), (0, 0), {1}),
    "pooling": (lambda x: tj.lax.reduce_window(x, "max", (1, 2, 2), (1, 2, 2), ((0, 0),) * 3),
                ((3, 2, 4, 4),), (0,)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_vmap_matches_loop(name):
    f, shapes, in_axes, *int_args = CASES[name]
    int_args = int_args[0] if int_args else set()
    args = [rng.integers(0, 4, size=s).astype(np.int32) if i in int_args else rng.standard_normal(s)
            for i, s in enumerate(shapes)]
    got = tj.vmap(f, in_axes=in_axes)(*args)
    np.testing.assert_allclose(got, loop(f, in_axes, args), rtol=1e-12, atol=1e-12)


def test_vmap_of_grad_and_grad_of_vmap():
    w = rng.standard_normal((3, 4))
    f = lambda x: cnp.sum(cnp.tanh(x @ w) ** 2)
    xs = rng.standard_normal((5, 3))
    per_example = np.stack([tj.grad(f)(x) for x in xs])
    np.testing.assert_allclose(tj.vmap(tj.grad(f))(xs), per_example, rtol=1e-12)
    np.testing.assert_allclose(tj.grad(lambda xs: tj.vmap(f)(xs).sum())(xs), per_example, rtol=1e-12)
    np.testing.assert_allclose(tj.jit(tj.vmap(tj.grad(f)))(xs), per_example, rtol=1e-12)


def test_vmap_control_flow():
    xs = rng.standard_normal((6, 3)).astype(np.float32)
    h = lambda v: tj.lax.cond(v.sum() > 0, lambda a: a * 2, lambda a: -a, v)
    np.testing.assert_allclose(tj.vmap(h)(xs), loop(h, (0,), [xs]))
    doubling = lambda v: tj.lax.while_loop(lambda s: s[0] < v, lambda s: (s[0] + 1.0, s[1] * 2), (0.0, 1.0))[1]
    limits = np.array([1.0, 3.0, 0.0, 2.5], np.float32)
    np.testing.assert_array_equal(tj.vmap(doubling)(limits), [2 ** np.ceil(v) for v in limits])
    sc = lambda v: tj.lax.scan(lambda c, x: (c + x, c * x), 0.0, v)
    carry, ys = tj.vmap(sc)(xs)
    for i, x in enumerate(xs):
        np.testing.assert_allclose(carry[i], sc(x)[0], rtol=1e-6)
        np.testing.assert_allclose(ys[i], sc(x)[1], rtol=1e-6)


@given(st.integers(1, 4), st.integers(0, 2), st.integers(0, 2))
@settings(max_examples=20, deadline=None)
def test_in_and_out_axes(batch, in_axis, out_axis):
    x = rng.standard_normal((batch, 2, 3))
    x = np.moveaxis(x, 0, in_axis)
    f = lambda v: cnp.sin(v) @ np.ones((3, 2)) if v.shape[-1] == 3 else v
    got = tj.vmap(f, in_axes=in_axis, out_axes=out_axis)(x)
    expected = np.stack([np.sin(np.take(x, i, axis=in_axis)) @ np.ones((3, 2)) for i in range(batch)],
                        axis=out_axis)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_vmap_errors_are_clear():
    with pytest.raises(ValueError, match="one batch size"):
        tj.vmap(lambda a, b: a + b)(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="out of range"):
        tj.vmap(lambda a: a, in_axes=2)(np.ones(3))
