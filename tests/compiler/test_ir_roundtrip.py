"""The jaxpr text format round-trips: print -> parse -> print is the identity, and the parsed program
is the same program (same structure, same literal bits, same params) computing the same values.

The truth each test checks against is independent of the printer: the original Jaxpr object (its
structure, compared variable-by-variable up to renaming), the numbers the original program computes
(numpy interpreter), hand-written numpy references, and the SPEC.md text block for the one example
whose exact text the contract fixes.
"""
from __future__ import annotations

import math
import os

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import compiler as tj
import compiler.numpy as cnp
import runtime
from compiler.ir import (DTYPES, ClosedJaxpr, Eqn, Jaxpr, Literal, PRIMITIVES, ShapedArray, Var, parse,
                         verify)
from compiler.ir.core import DType

bf16 = ml_dtypes.bfloat16
# IR_FUZZ_EXAMPLES=5000 runs a long fuzzing session
SETTINGS = settings(max_examples=int(os.environ.get("IR_FUZZ_EXAMPLES", 120)), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------------------------
# Independent checks: structural equality of two programs, bitwise equality of values
# ----------------------------------------------------------------------------------------------

def _bits(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x)
    return x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.itemsize in (1, 2, 4, 8) else x


def _isnan(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind in "biu":
        return np.zeros(x.shape, bool)
    return np.isnan(x.astype(np.float64))


def assert_same_values(got, want):
    """Equal count, dtypes, shapes and bits (any NaN equals any NaN)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        same = (_bits(g) == _bits(w)) | (_isnan(g) & _isnan(w))
        assert same.all(), (g, w)


def _same_scalar(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, (float, np.floating)) or not isinstance(b, (float, np.floating)):
            return False
        a, b = float(a), float(b)
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)) and bool(a) == bool(b)
    if isinstance(a, (int, np.integer)) or isinstance(b, (int, np.integer)):
        return isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)) and int(a) == int(b)
    return type(a) is type(b) and a == b


def assert_same_param(p, q, path="param"):
    if isinstance(p, (Jaxpr, ClosedJaxpr)):
        assert isinstance(q, (Jaxpr, ClosedJaxpr)), path
        assert_same_program(p.jaxpr if isinstance(p, ClosedJaxpr) else p,
                            q.jaxpr if isinstance(q, ClosedJaxpr) else q)
    elif isinstance(p, (tuple, list)):
        assert isinstance(q, tuple) and len(p) == len(q), (path, p, q)
        for i, (a, b) in enumerate(zip(p, q)):
            assert_same_param(a, b, f"{path}[{i}]")
    elif isinstance(p, DType):
        assert isinstance(q, DType) and p == q, (path, p, q)
    elif p is None:
        assert q is None, path
    else:
        assert _same_scalar(p, q), (path, p, q)


def assert_same_program(a: Jaxpr, b: Jaxpr):
    """a and b are the same program up to the names of variables (alpha-equivalence)."""
    env: dict[int, Var] = {}

    def bind(va, vb):
        assert isinstance(vb, Var) and va.aval.same_type(vb.aval), (va, vb)
        env[id(va)] = vb

    def same_atom(x, y):
        if isinstance(x, Literal):
            assert isinstance(y, Literal) and x.aval.same_type(y.aval), (x, y)
            assert_same_values([np.asarray(y.value)], [np.asarray(x.value)])
        else:
            assert isinstance(y, Var) and env[id(x)] is y, (x, y)

    assert len(a.constvars) == len(b.constvars) and len(a.invars) == len(b.invars)
    for va, vb in zip(a.constvars + a.invars, b.constvars + b.invars):
        bind(va, vb)
    assert len(a.eqns) == len(b.eqns)
    for ea, eb in zip(a.eqns, b.eqns):
        assert ea.primitive is eb.primitive
        assert list(ea.params) == list(eb.params), (ea.params, eb.params)
        for k in ea.params:
            assert_same_param(ea.params[k], eb.params[k], f"{ea.primitive.name}.{k}")
        assert len(ea.inputs) == len(eb.inputs) and len(ea.outvars) == len(eb.outvars)
        for x, y in zip(ea.inputs, eb.inputs):
            same_atom(x, y)
        for va, vb in zip(ea.outvars, eb.outvars):
            bind(va, vb)
    assert len(a.outvars) == len(b.outvars)
    for x, y in zip(a.outvars, b.outvars):
        same_atom(x, y)


def check_roundtrip(closed: ClosedJaxpr, *flat_args) -> ClosedJaxpr:
    """print -> parse -> print is the identity, the parse is the same program, same values."""
    verify(closed)
    text = str(closed)
    parsed = parse(text, consts=closed.consts)
    assert str(parsed) == text
    assert_same_program(closed.jaxpr, parsed.jaxpr)
    want = runtime.eval_jaxpr(closed, *flat_args)
    got = runtime.eval_jaxpr(parsed, *flat_args)
    assert_same_values(got, want)
    # printing is a fixed point from the parsed side too (parse of the reprint gives the same text)
    assert str(parse(str(parsed), consts=closed.consts)) == text
    return parsed


def roundtrip_fn(f, *args):
    closed = tj.make_jaxpr(f)(*args)
    flat = tj.tree_flatten(args)[0]
    parsed = check_roundtrip(closed, *flat)
    return closed, parsed, runtime.eval_jaxpr(parsed, *flat)


def assert_close(got, want, dtype=None):
    got = np.asarray(got)
    want = np.asarray(want)
    dt = np.dtype(dtype) if dtype is not None else got.dtype
    if dt.kind in "biu":
        np.testing.assert_array_equal(got, want)
        return
    tol = {8: 1e-12, 4: 2e-6, 2: 2e-2}[dt.itemsize]
    np.testing.assert_allclose(got.astype(np.float64), np.asarray(want, np.float64), rtol=tol, atol=tol)


def rng_array(shape, dtype, seed=0, low=-3.0, high=3.0):
    r = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return r.random(shape) < 0.5
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return r.integers(max(info.min, -100), min(info.max, 100), size=shape, endpoint=True).astype(dt)
    return r.uniform(low, high, size=shape).astype(dt)


# ----------------------------------------------------------------------------------------------
# The SPEC example: the exact text is the contract
# ----------------------------------------------------------------------------------------------

SPEC_TEXT = """\
{ lambda ; a:f32[] b:f32[]. let
    c:f32[] = div a 2.0:f32[]
    d:f32[] = log c
    e:f32[] = mul 0.75:f32[] d
    f:f32[] = add e a
    g:f32[] = mul 3.0:f32[] b
    h:f32[] = log g
    i:f32[] = add f h
    j:f32[] = logistic i
  in (j,) }"""


def _spec_fn(x1, x2):
    return tj.lax.logistic(0.75 * cnp.log(x1 / 2) + x1 + cnp.log(3 * x2))


def test_spec_example_text_is_exact():
    closed = tj.make_jaxpr(_spec_fn)(1.0, 0.5)
    assert str(closed) == SPEC_TEXT
    parsed = parse(SPEC_TEXT)
    assert str(parsed) == SPEC_TEXT
    assert_same_program(closed.jaxpr, parsed.jaxpr)


def test_spec_example_parsed_computes_sigmoid_formula():
    parsed = parse(SPEC_TEXT)
    for x1, x2 in [(1.0, 0.5), (2.5, 3.0), (0.1, 10.0)]:
        z = 0.75 * math.log(x1 / 2) + x1 + math.log(3 * x2)
        want = 1 / (1 + math.exp(-z))
        (got,) = runtime.eval_jaxpr(parsed, np.float32(x1), np.float32(x2))
        assert got.dtype == np.float32 and got.shape == ()
        assert abs(float(got) - want) < 1e-6


# ----------------------------------------------------------------------------------------------
# Many traced programs: (function, args, numpy reference or None)
# ----------------------------------------------------------------------------------------------

W32 = np.arange(12, dtype=np.float32).reshape(3, 4) / 7 - 0.5
IDX = np.array([2, 0, 1, 1], np.int32)
MASK = np.array([True, False, True, True])
F64_VEC = np.array([1e-300, -2.5, 1e300], np.float64)


def _float_ops(x, y):
    return (cnp.exp(x) * 2.0 - cnp.sin(y) / 3.0, cnp.tanh(x) + cnp.sqrt(cnp.abs(y)),
            cnp.maximum(x, y), x < y, cnp.log1p(cnp.abs(x)), -x, cnp.cos(y) ** 2)


def _float_ops_ref(x, y):
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    return (np.exp(x64) * 2.0 - np.sin(y64) / 3.0, np.tanh(x64) + np.sqrt(np.abs(y64)),
            np.maximum(x64, y64), x64 < y64, np.log1p(np.abs(x64)), -x64, np.cos(y64) ** 2)


def _int_ops(x, y):
    return x * 3 + y, x // y, x % y, cnp.maximum(x, y), cnp.minimum(x, 7), x > y, x == y, x & y, x | y


def _int_ops_ref(x, y):
    dt = x.dtype.type
    return (x * dt(3) + y, x // y, x % y, np.maximum(x, y), np.minimum(x, dt(7)), x > y, x == y,
            x & y, x | y)


def _bool_ops(p, q):
    return p & q, p | ~q, p ^ q, cnp.where(p, 1.5, -2.5), cnp.logical_not(p), cnp.where(q, p, False)


def _bool_ops_ref(p, q):
    return (p & q, p | ~q, p ^ q, np.where(p, np.float32(1.5), np.float32(-2.5)), ~p, np.where(q, p, False))


def _literals_f32(x):
    return (x + np.float32(np.inf), x * np.float32(-np.inf), cnp.where(x > 0, np.float32(np.nan), x),
            x - 1e-5, x * -3.25, cnp.maximum(x, -np.inf), x + 3.4028234663852886e38, x * -0.0)


def _literals_f32_ref(x):
    f = np.float32
    return (x + f(np.inf), x * f(-np.inf), np.where(x > 0, f(np.nan), x), x - f(1e-5), x * f(-3.25),
            np.maximum(x, f(-np.inf)), x + f(3.4028234663852886e38), x * f(-0.0))


def _literals_ints(a, b, c, d):
    return a + 2 ** 40, a * -7, a - 2 ** 62, b + 2147483647, c - np.int8(-128), d + np.uint8(255), b * -1


def _literals_ints_ref(a, b, c, d):
    return (a + np.int64(2 ** 40), a * np.int64(-7), a - np.int64(2 ** 62), b + np.int32(2147483647),
            c - np.int8(-128), d + np.uint8(255), b * np.int32(-1))


def _literals_small_floats(h, x):
    return h + np.float16(65504), h * np.float16(-1e-4), x + 1e-300, x * 1.7976931348623157e308


def _literals_small_floats_ref(h, x):
    with np.errstate(over="ignore"):
        return h + np.float16(65504), h * np.float16(-1e-4), x + 1e-300, x * 1.7976931348623157e308


def _literals_bf16(g):
    return g * bf16(3.140625), g - bf16(-1e30), cnp.maximum(g, bf16(np.inf))


def _literals_bf16_ref(g):
    g = g.astype(np.float32)
    return g * np.float32(3.140625), g - np.float32(bf16(-1e30)), np.maximum(g, np.float32(np.inf))


def _bf16_moves(g):
    """bf16 through ops that do no arithmetic, and casts in and out."""
    return (cnp.reshape(g, (6,)), g.T, cnp.concatenate([g, g]), g[:, ::-1], (g.astype(np.float32) * 2).astype(bf16),
            cnp.where(g.astype(np.float32) > 0, g, g[0]), g.astype(np.int8), cnp.full((2,), bf16(-np.inf)))




def _reductions(x):
    return (x.sum(axis=(0, 2)), cnp.max(x, axis=1, keepdims=True), cnp.min(x), cnp.prod(x, axis=-1),
            cnp.mean(x, axis=0), cnp.argmax(x, axis=1), cnp.cumsum(x, axis=2))


def _reductions_ref(x):
    return (x.sum(axis=(0, 2)), np.max(x, axis=1, keepdims=True), np.min(x), np.prod(x, axis=-1),
            np.mean(x, axis=0), np.argmax(x, axis=1).astype(np.int32), np.cumsum(x, axis=2))


def _structural(x):
    return (cnp.reshape(x, (4, 6)), cnp.transpose(x, (2, 0, 1)), cnp.moveaxis(x, 0, -1),
            cnp.expand_dims(x, 1), cnp.squeeze(x[:, :1, :], axis=1), cnp.concatenate([x, x * 2], axis=1),
            cnp.stack([x[0], x[1]], axis=0), cnp.broadcast_to(x[0, 0], (5, 4)), x[::-1, 1:, ::2],
            cnp.swapaxes(x, 0, 2), cnp.clip(x, -1.0, 1.0), x.T)


def _structural_ref(x):
    return (np.reshape(x, (4, 6)), np.transpose(x, (2, 0, 1)), np.moveaxis(x, 0, -1), np.expand_dims(x, 1),
            np.squeeze(x[:, :1, :], axis=1), np.concatenate([x, x * 2], axis=1), np.stack([x[0], x[1]]),
            np.broadcast_to(x[0, 0], (5, 4)), x[::-1, 1:, ::2], np.swapaxes(x, 0, 2), np.clip(x, -1, 1), x.T)


def _linalg(a, b, c):
    return a @ b, cnp.einsum("bij,bjk->bik", c, c), cnp.dot(a[0], b), cnp.matmul(c, c)


def _linalg_ref(a, b, c):
    return a @ b, np.einsum("bij,bjk->bik", c, c), np.dot(a[0], b), np.matmul(c, c)


def _indexing(x, i):
    return (x[IDX], x[i], x[MASK.nonzero()[0]], tj.lax.dynamic_update_slice(x, x[:2] * 0, (i,)),
            cnp.where(MASK, x, 0.0), tj.lax.dynamic_slice(x, (i,), (2,)))


def _indexing_ref(x, i):
    j = min(max(int(i), 0), len(x) - 2)
    upd = x.copy()
    upd[j:j + 2] = 0
    return x[IDX], x[min(max(int(i), 0), len(x) - 1)], x[MASK.nonzero()[0]], upd, np.where(MASK, x, 0), x[j:j + 2]


def _consts(x):
    return x @ W32 + W32.sum(), x[:, IDX % 3], cnp.where(MASK, W32[0], -1.0), F64_VEC * 2


def _consts_ref(x):
    return x @ W32 + W32.sum(), x[:, IDX % 3], np.where(MASK, W32[0], np.float32(-1)), F64_VEC * 2


def _astype(x):
    return (x.astype(np.int8), x.astype(np.uint8), x.astype(bf16), x.astype(np.float16), x.astype(np.bool_),
            x.astype(np.int64), (x > 0).astype(np.float64))


def _lax_misc(x):
    return (tj.lax.rsqrt(cnp.abs(x) + 1), tj.lax.erf(x), cnp.power(cnp.abs(x), 1.5), x ** 3, cnp.floor(x),
            cnp.round(x), cnp.sign(x), cnp.logaddexp(x, -x), cnp.heaviside(x, 0.5), cnp.fmod(x, 0.7),
            tj.lax.stop_gradient(x), tj.lax.integer_pow(x, -2), cnp.isnan(x), cnp.isinf(1 / x))


def _conv_pool(x, w):
    y = tj.lax.conv_general_dilated(x, w, (1, 2), ((1, 1), (0, 1)), rhs_dilation=(1, 1))
    z = tj.lax.reduce_window(x, "max", (1, 1, 2, 2), (1, 1, 2, 1), ((0, 0), (0, 0), (0, 1), (1, 0)))
    s = tj.lax.reduce_window(x, "sum", (1, 1, 3, 1), (1, 1, 1, 1), ((0, 0), (0, 0), (1, 1), (0, 0)))
    return y, z, s, cnp.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)), constant_values=-1.5)


def _nested_control(x, n):
    """Sub-jaxprs nested two levels deep: while(cond(...)), scan(cond(while(...)))."""
    def body(i, c):
        return tj.lax.cond(c.sum() > 0, lambda a: a * 2.0, lambda a: a - 1.0, c)
    z = tj.lax.fori_loop(0, n, body, x)              # traced bound: a while loop

    def step(c, xx):
        inner = tj.lax.cond(xx > 0, lambda q: tj.lax.while_loop(lambda t: t < 10.0, lambda t: t * 2.0, q),
                            lambda q: q - W32[0, 0], xx)
        return c + xx, inner
    c, ys = tj.lax.scan(step, np.float32(0.0), x[0])
    return z, c, ys


def _nested_control_ref(x, n):
    z = x.copy()
    for _ in range(int(n)):
        z = z * np.float32(2) if z.sum() > 0 else z - np.float32(1)
    ys = []
    for xx in x[0]:
        if xx > 0:
            t = xx
            while t < 10:
                t = t * np.float32(2)
            ys.append(t)
        else:
            ys.append(xx - W32[0, 0])
    return z, x[0].sum(), np.array(ys, np.float32)


def _scan_variants(xs):
    def step(carry, x):
        a, (b, k) = carry
        return (a + x.sum(), (b * 0.5 + x, k + 1)), (a, x * 2, k)
    final, ys = tj.lax.scan(step, (np.float32(0), (np.zeros(3, np.float32), np.int32(0))), xs, reverse=True)
    fl = tj.lax.fori_loop(1, 4, lambda i, v: v * i.astype(np.float32), xs[0])      # static bounds: a scan
    sw = tj.lax.switch(2, [lambda v: v, lambda v: v + 1, lambda v: v * W32[0, :3]], xs[1])
    return final, ys, fl, sw


def _checkpointed(x):
    f = tj.checkpoint(lambda y: cnp.sin(y) * W32[0, :3], policy="dots_saveable")
    g = tj.checkpoint(lambda y: cnp.exp(y).sum())
    return f(x), g(x)


def _mlp_loss(params, x, y):
    w1, b1, w2 = params
    h = cnp.tanh(x @ w1 + b1)
    logits = h @ w2
    logp = logits - cnp.log(cnp.sum(cnp.exp(logits), axis=-1, keepdims=True))
    return -cnp.mean(cnp.sum(logp * y, axis=-1))


_MLP_ARGS = ((rng_array((4, 5), np.float32, 1), rng_array((5,), np.float32, 2), rng_array((5, 3), np.float32, 3)),
             rng_array((6, 4), np.float32, 4), np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]])


def _scalar_fn(x):
    return cnp.sum(cnp.sin(x) * x ** 2 + tj.lax.logistic(x))


PROGRAMS = [
    ("spec", _spec_fn, (np.float32(1.0), np.float32(0.5)), None),
    *[(f"float_ops_{np.dtype(d).name}", _float_ops,
       (rng_array((2, 3), d, 1), rng_array((2, 3), d, 2)), _float_ops_ref)
      for d in (np.float64, np.float32, np.float16, bf16)],
    ("literals_bf16", _literals_bf16, (rng_array((3,), bf16, 9),), _literals_bf16_ref),
    ("bf16_moves", _bf16_moves, (rng_array((2, 3), bf16, 9),), None),
    *[(f"int_ops_{np.dtype(d).name}", _int_ops,
       (rng_array((5,), d, 3), (np.abs(rng_array((5,), d, 4)) % 50 + 1).astype(d)), _int_ops_ref)
      for d in (np.int64, np.int32, np.int8, np.uint8)],
    ("bool_ops", _bool_ops, (rng_array((4,), np.bool_, 5), rng_array((4,), np.bool_, 6)), _bool_ops_ref),
    ("literals_f32", _literals_f32, (rng_array((6,), np.float32, 7),), _literals_f32_ref),
    ("literals_ints", _literals_ints, (np.arange(3, dtype=np.int64), np.arange(3, dtype=np.int32) - 3,
                                       np.array([-1, 0, 127], np.int8), np.array([0, 1, 255], np.uint8)),
     _literals_ints_ref),
    ("literals_small_floats", _literals_small_floats,
     (rng_array((3,), np.float16, 8), rng_array((3,), np.float64, 10)),
     _literals_small_floats_ref),
    ("reductions", _reductions, (rng_array((2, 3, 4), np.float32, 11),), _reductions_ref),
    ("reductions_i32", lambda x: (x.sum(axis=1), cnp.max(x), cnp.prod(x, axis=0)),
     (rng_array((3, 2), np.int32, 12),), lambda x: (x.sum(axis=1), x.max(), x.prod(axis=0))),
    ("structural", _structural, (rng_array((2, 3, 4), np.float32, 13),), _structural_ref),
    ("linalg", _linalg, (rng_array((2, 3), np.float64, 14), rng_array((3, 4), np.float64, 15),
                         rng_array((2, 3, 3), np.float64, 16)), _linalg_ref),
    ("indexing", _indexing, (rng_array((4,), np.float32, 17), np.int32(1)), _indexing_ref),
    ("indexing_clamped", _indexing, (rng_array((4,), np.float32, 17), np.int32(7)), _indexing_ref),
    ("consts", _consts, (rng_array((2, 3), np.float32, 18),), _consts_ref),
    ("astype", _astype, (rng_array((5,), np.float32, 19) * 40,), None),
    ("lax_misc", _lax_misc, (rng_array((7,), np.float32, 20),), None),
    ("conv_pool", _conv_pool, (rng_array((1, 2, 5, 5), np.float32, 21), rng_array((3, 2, 2, 2), np.float32, 22)),
     None),
    ("nested_control", _nested_control, (rng_array((3, 4), np.float32, 23), np.int32(3)), _nested_control_ref),
    ("scan_variants", _scan_variants, (rng_array((4, 3), np.float32, 24),), None),
    ("checkpoint", _checkpointed, (rng_array((3,), np.float32, 25),), None),
    ("grad_mlp", tj.grad(_mlp_loss), _MLP_ARGS, None),
    ("value_and_grad_mlp", tj.value_and_grad(_mlp_loss, argnums=(0, 1)), _MLP_ARGS, None),
    ("grad_checkpoint", tj.grad(lambda x: _checkpointed(x)[0].sum() + _checkpointed(x)[1]),
     (rng_array((3,), np.float32, 26),), None),
    ("grad_scan", tj.grad(lambda xs: _scan_variants(xs)[0][0] + _scan_variants(xs)[1][1].sum()),
     (rng_array((4, 3), np.float32, 27),), None),
    ("vmap", tj.vmap(lambda x, y: (x @ W32).sum() * y), (rng_array((5, 3), np.float32, 28),
                                                          rng_array((5,), np.float32, 29)), None),
    ("jvp", lambda x: tj.jvp(_scalar_fn, (x,), (cnp.ones_like(x),)), (rng_array((3,), np.float32, 30),), None),
    ("hessian", tj.hessian(_scalar_fn), (rng_array((3,), np.float64, 31),), None),
    ("jacrev", tj.jacrev(lambda x: cnp.tanh(x) * x[::-1]), (rng_array((3,), np.float32, 32),), None),
    ("zero_inputs", lambda: (cnp.arange(5) * 2, cnp.eye(3, dtype=np.float32), cnp.full((2,), -np.inf)), (), None),
    ("zero_inputs_consts", lambda: W32 * 2, (), lambda: W32 * 2),
    ("zero_outputs", lambda x: (), (np.float32(1.0),), None),
    ("literal_and_passthrough_outputs", lambda x, y: (x, 1.0, y, x, -7, True, np.float16(np.nan)),
     (rng_array((2,), np.float32, 33), np.int8(-3)), None),
    ("multiple_scalar_inputs", lambda a, b, c, d: (a + b, c & d, a * 2.5),
     (np.float64(-0.0), np.float64(np.nan), np.bool_(True), np.bool_(False)), None),
]


@pytest.mark.parametrize("name,fn,args,ref", PROGRAMS, ids=[p[0] for p in PROGRAMS])
def test_traced_programs_round_trip(name, fn, args, ref):
    closed, parsed, got = roundtrip_fn(fn, *args)
    assert len(parsed.jaxpr.invars) == len(tj.tree_flatten(args)[0])
    if ref is not None:
        want = ref(*args)
        want = list(want) if isinstance(want, tuple) else [want]
        want = tj.tree_flatten(want)[0]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == np.shape(w)
            assert_close(g, w, g.dtype)


def test_programs_cover_every_dtype_and_param_kind():
    """The program list above really exercises what it claims (guards against a silent shrink)."""
    dtypes, prims, param_kinds = set(), set(), set()

    def walk(j: Jaxpr, depth: int):
        for v in j.constvars + j.invars:
            dtypes.add(v.aval.dtype.name)
        for e in j.eqns:
            prims.add(e.primitive.name)
            for v in e.outvars:
                dtypes.add(v.aval.dtype.name)
            for value in e.params.values():
                kinds(value, depth)

    def kinds(value, depth):
        if isinstance(value, Jaxpr):
            param_kinds.add(f"jaxpr_depth{depth + 1}")
            walk(value, depth + 1)
        elif isinstance(value, tuple):
            param_kinds.add("tuple")
            if any(isinstance(v, tuple) for v in value):
                param_kinds.add("nested_tuple")
            for v in value:
                kinds(v, depth)
        else:
            param_kinds.add(type(value).__name__)

    for _, fn, args, _ in PROGRAMS:
        walk(tj.make_jaxpr(fn)(*args).jaxpr, 0)
    assert {"f64", "f32", "f16", "bf16", "i64", "i32", "i8", "u8", "bool"} <= dtypes
    # (string params do not come out of tracing; test_every_param_value_round_trips covers them)
    assert {"tuple", "nested_tuple", "DType", "bool", "int", "NoneType",
            "jaxpr_depth1", "jaxpr_depth2", "jaxpr_depth3"} <= param_kinds
    assert {"cond", "while", "scan", "checkpoint", "dot_general", "conv_general_dilated",
            "reduce_window_max", "gather", "dynamic_slice", "pad", "iota", "select_n"} <= prims


# ----------------------------------------------------------------------------------------------
# Literals and params, value by value
# ----------------------------------------------------------------------------------------------

def _literal_program(value, dtype_name: str) -> Jaxpr:
    d = DTYPES[dtype_name]
    a = Var(ShapedArray((), d))
    b = Var(ShapedArray((), d))
    lit = Literal(value, ShapedArray((), d))
    return Jaxpr([], [a], [Eqn(PRIMITIVES["stop_gradient"], [lit], [b], {})], [b, lit, a])


_SPECIAL = [np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-5, -1e-5, 65504.0, -2.5, 1e-45, 3.4e38, -1e308, 1.5]


def _float_bits(dtype_name: str):
    """Every bit pattern of the type (so every value, NaN payloads included), and the usual suspects."""
    np_dt = DTYPES[dtype_name].np
    nbits = np_dt.itemsize * 8
    as_type = st.sampled_from(_SPECIAL).map(lambda v: _cast_quiet(v, np_dt))
    return st.one_of(as_type, st.integers(0, 2 ** nbits - 1).map(
        lambda bits: np.array(bits, np.dtype(f"u{np_dt.itemsize}")).view(np_dt)[()]))


def _cast_quiet(v, np_dt):
    with np.errstate(all="ignore"):
        return np.asarray(v, np_dt)[()]


@SETTINGS
@given(st.one_of(
    *[_float_bits(n).map(lambda v, n=n: (v, n)) for n in ("f64", "f32", "f16", "bf16", "f8_e4m3fn", "f8_e5m2")],
    *[st.integers(*(lambda i: (int(i.min), int(i.max)))(
        np.iinfo(DTYPES[n].np) if n != "i4" else ml_dtypes.iinfo(ml_dtypes.int4))).map(lambda v, n=n: (v, n))
      for n in ("i64", "i32", "i16", "i8", "i4", "u64", "u32", "u16", "u8")],
    st.booleans().map(lambda v: (v, "bool"))))
def test_every_literal_value_round_trips_bit_exactly(value_and_dtype):
    value, name = value_and_dtype
    j = _literal_program(value, name)
    text = str(j)
    parsed = parse(text).jaxpr
    assert str(parsed) == text
    assert_same_program(j, parsed)
    stored = np.asarray(Literal(value, ShapedArray((), DTYPES[name])).value)
    outs = runtime.eval_jaxpr(ClosedJaxpr(parsed, []), stored)
    assert_same_values(outs, [stored, stored, stored])


_PARAM_LEAVES = st.one_of(
    st.integers(-2 ** 70, 2 ** 70), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-5, -1e-300, 5e-324, math.inf, -math.inf, math.nan, -2.5, 1e300]),
    st.text(max_size=12), st.sampled_from(list(DTYPES.values())))
_PARAM_VALUES = st.recursive(_PARAM_LEAVES, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12)


def _checkpoint_eqn(policy) -> Jaxpr:
    """checkpoint's shape rule accepts any ``policy``: a carrier for arbitrary param values."""
    x, y = Var(ShapedArray((2,), DTYPES["f32"])), Var(ShapedArray((2,), DTYPES["f32"]))
    ix, iy = Var(ShapedArray((2,), DTYPES["f32"])), Var(ShapedArray((2,), DTYPES["f32"]))
    body = Jaxpr([], [ix], [Eqn(PRIMITIVES["neg"], [ix], [iy], {})], [iy])
    return Jaxpr([], [x], [Eqn(PRIMITIVES["checkpoint"], [x], [y], {"jaxpr": body, "policy": policy})], [y])


@SETTINGS
@given(_PARAM_VALUES)
def test_every_param_value_round_trips(policy):
    j = _checkpoint_eqn(policy)
    text = str(j)
    parsed = parse(text).jaxpr
    assert str(parsed) == text
    assert_same_program(j, parsed)


@pytest.mark.parametrize("s", ['', '"', '\\', '\\"', '"\\', 'a\\\\"b', '\n\t', 'in', '}', ']', "é∂", '\\n'])
def test_string_params_with_escapes_round_trip(s):
    parsed = parse(str(_checkpoint_eqn(s))).jaxpr
    assert parsed.eqns[0].params["policy"] == s


def test_names_skip_reserved_words_in_long_programs():
    """Past 26 variables the printer uses two and three letters; `in`, `inf`, `nan`, `let` are never
    names (the parser would read them as keywords), and the program still means the same."""
    def f(x):
        for i in range(800):
            x = x + np.float32(i % 7)
        return x
    closed, parsed, got = roundtrip_fn(f, np.float32(0.5))
    names = {line.split(":")[0].strip() for line in str(closed).splitlines()[1:-1]}
    assert len(names) == 800
    assert not names & {"in", "inf", "nan", "let", "lambda", "True", "False", "None"}
    assert float(got[0]) == 0.5 + sum(i % 7 for i in range(800))


def test_sub_jaxprs_nested_five_deep():
    def f(x):
        def level(k):
            if k == 0:
                return lambda v: v * 2.0
            return lambda v: tj.lax.cond(v.sum() > 0, level(k - 1), lambda u: u - float(k), v)
        return level(5)(x)
    for x in (np.ones(2, np.float32), -np.ones(2, np.float32)):
        _, _, got = roundtrip_fn(f, x)
        want = x * 2 if x.sum() > 0 else x - 5
        assert_close(got[0], want)


# ----------------------------------------------------------------------------------------------
# Random programs (hypothesis)
# ----------------------------------------------------------------------------------------------

FLOATS = [np.float64, np.float32, np.float16, bf16]
INTS = [np.int64, np.int32, np.int8, np.uint8]
ALL_DTYPES = FLOATS + INTS + [np.bool_]
SPECIAL_FLOATS = [np.inf, -np.inf, np.nan, -0.0, 0.0, 1e-5, -2.5, 3.0, 1e30, -7.0, 0.1]


def _shapes():
    return st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


def _input_array(data, shape, dtype, seed):
    arr = rng_array(shape, dtype, seed)
    if _kind(dtype) == "f" and arr.size and data.draw(st.booleans(), label="specials"):
        flat = arr.reshape(-1)
        k = data.draw(st.integers(0, arr.size - 1))
        with np.errstate(over="ignore"):
            flat[k] = data.draw(st.sampled_from(SPECIAL_FLOATS))
    return arr


def _literal_for(data, dtype):
    dt = np.dtype(dtype)
    if _kind(dt) == "f":
        v = data.draw(st.sampled_from(SPECIAL_FLOATS))
        with np.errstate(over="ignore"):
            return dt.type(v) if data.draw(st.booleans()) else float(v)
    if dt == np.bool_:
        return data.draw(st.booleans())
    if dt.kind in "iu":
        info = np.iinfo(dt)
        v = data.draw(st.one_of(st.integers(-5, 5), st.sampled_from([int(info.min), int(info.max)])))
        v = min(max(v, int(info.min)), int(info.max))
        return dt.type(v) if data.draw(st.booleans()) or not -2 ** 31 <= v < 2 ** 31 else v
    raise AssertionError(dt)


UNARY_FLOAT = [cnp.exp, cnp.log, cnp.sin, cnp.cos, cnp.tanh, cnp.sqrt, cnp.abs, cnp.negative, cnp.log1p,
               cnp.expm1, cnp.floor, cnp.square, cnp.sign, tj.lax.logistic, lambda x: x ** 3]
UNARY_INT = [cnp.negative, cnp.abs, cnp.square, cnp.sign, lambda x: x // 3, lambda x: x % 5]
BINARY = [cnp.add, cnp.subtract, cnp.multiply, cnp.maximum, cnp.minimum, cnp.less, cnp.greater_equal,
          cnp.equal, lambda x, y: cnp.where(x > y, x, y)]
BINARY_FLOAT = [cnp.divide, cnp.power]
REDUCTIONS = [cnp.sum, cnp.max, cnp.min, cnp.prod, cnp.mean]


def _kind(dtype) -> str:
    dt = np.dtype(dtype)
    return "f" if dt == np.dtype(bf16) else dt.kind


def _random_op(data, vals):
    x = data.draw(st.sampled_from(vals), label="x")
    dt = np.dtype(x.dtype)
    kind = data.draw(st.sampled_from(["unary", "binary", "literal", "reduce", "reshape", "transpose",
                                      "broadcast", "astype", "concat", "slice"]), label="op")
    if kind == "unary":
        if _kind(dt) == "f":
            return data.draw(st.sampled_from(UNARY_FLOAT))(x)
        if dt.kind in "iu":
            return data.draw(st.sampled_from(UNARY_INT))(x)
        return cnp.logical_not(x)
    if kind == "binary":
        partners = [v for v in vals if _broadcastable(v.shape, x.shape)]
        y = data.draw(st.sampled_from(partners), label="y")
        ops = BINARY + (BINARY_FLOAT if _kind(dt) == "f" else [])
        if dt == np.bool_ or y.dtype == np.bool_:
            ops = [cnp.logical_and, cnp.logical_or, cnp.logical_xor, cnp.equal, cnp.not_equal]
            x, y = x.astype(np.bool_), y.astype(np.bool_)
        return data.draw(st.sampled_from(ops))(x, y)
    if kind == "literal":
        lit = _literal_for(data, dt)
        if dt == np.bool_:
            return data.draw(st.sampled_from([cnp.logical_and, cnp.logical_or, cnp.equal]))(x, lit)
        op = data.draw(st.sampled_from([cnp.add, cnp.multiply, cnp.maximum, cnp.minimum, cnp.less,
                                        lambda a, b: cnp.where(a > b, b, a), lambda a, b: cnp.subtract(b, a)]))
        if op in (cnp.add, cnp.multiply) and data.draw(st.booleans()):
            return op(lit, x)
        return op(x, lit)
    if kind == "reduce":
        axes = data.draw(st.one_of(st.none(), st.sets(st.integers(0, max(x.ndim - 1, 0)), max_size=x.ndim)
                                   .map(tuple)))
        if x.ndim == 0:
            axes = None
        fn = data.draw(st.sampled_from(REDUCTIONS if dt != np.bool_ else [cnp.max, cnp.min]))
        if fn is cnp.mean and _kind(dt) != "f":
            fn = cnp.sum
        return fn(x, axis=axes, keepdims=data.draw(st.booleans()))
    if kind == "reshape":
        target = data.draw(st.sampled_from([(-1,), (1, -1), (-1, 1), x.shape[::-1] if x.size == int(
            np.prod(x.shape[::-1])) else (-1,)]))
        return cnp.reshape(x, target)
    if kind == "transpose":
        return cnp.transpose(x, data.draw(st.permutations(range(x.ndim)))) if x.ndim else x
    if kind == "broadcast":
        n = data.draw(st.integers(1, 3))
        return cnp.broadcast_to(x, (n,) + tuple(x.shape))
    if kind == "astype":
        return x.astype(data.draw(st.sampled_from(ALL_DTYPES)))
    if kind == "concat":
        if x.ndim == 0:
            return cnp.stack([x, x])
        return cnp.concatenate([x, x], axis=data.draw(st.integers(0, x.ndim - 1)))
    if kind == "slice":
        if x.ndim == 0 or x.shape[0] == 0:
            return x
        return x[data.draw(st.integers(0, x.shape[0] - 1)):][::data.draw(st.sampled_from([1, 2, -1]))]
    raise AssertionError(kind)


def _broadcastable(a, b) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


@SETTINGS
@given(st.data())
def test_random_programs_round_trip(data):
    n_in = data.draw(st.integers(0, 3), label="n_inputs")
    specs = [(data.draw(_shapes()), data.draw(st.sampled_from(ALL_DTYPES))) for _ in range(n_in)]
    args = [_input_array(data, s, d, seed=i) for i, (s, d) in enumerate(specs)]
    const = _input_array(data, data.draw(_shapes()), data.draw(st.sampled_from(ALL_DTYPES)), seed=99)
    n_ops = data.draw(st.integers(1, 12), label="n_ops")

    def f(*xs):
        vals = list(xs) + [tj.lax.stop_gradient(const)]     # a closed-over array: a constvar
        for _ in range(n_ops):
            try:
                vals.append(_random_op(data, vals))
            except (TypeError, ValueError, tj.ShapeError):
                pass                            # an op numpy itself would reject: skip it
        k = data.draw(st.integers(1, len(vals)), label="n_outputs")
        return tuple(vals[-k:])

    with np.errstate(over="ignore"):       # numpy warns when a Python 1e30 becomes f16 inf
        closed = tj.make_jaxpr(f)(*args)
    check_roundtrip(closed, *args)


# ----------------------------------------------------------------------------------------------
# Programs that come out of the passes, and shapes of program tracing never makes
# ----------------------------------------------------------------------------------------------

def _pass_programs():
    from compiler import passes
    w = rng_array((4, 3), np.float32, 40)

    def f(x):
        h = cnp.tanh(x @ w) * 1.0 + 0.0
        return cnp.sum(-(-h) * 2.0, axis=0), cnp.exp(x).sum()

    x = rng_array((2, 4), np.float32, 41)
    j = tj.make_jaxpr(f)(x)
    g = tj.make_jaxpr(tj.grad(lambda v: f(v)[0].sum()))(x)
    return x, [
        ("simplify", lambda: passes.simplify(j)), ("cse", lambda: passes.cse(j)), ("dce", lambda: passes.dce(j)),
        ("quantize_int8", lambda: passes.quantize(j, weights="int8")),
        ("quantize_int4", lambda: passes.quantize(j, weights="int4")),
        ("quantize_fp8", lambda: passes.quantize(j, weights="fp8")),
        ("quantize_bf16", lambda: passes.quantize(j, weights="bf16")),
        ("remat_every_k", lambda: passes.remat(g, policy="every_k", k=2)),
        ("remat_sqrt", lambda: passes.remat(g, policy="sqrt")),
        ("remat_dots_saveable", lambda: passes.remat(g, policy="dots_saveable")),
    ]


@pytest.mark.parametrize("which", [name for name, _ in _pass_programs()[1]])
def test_programs_from_passes_round_trip(which):
    x, programs = _pass_programs()
    closed = dict(programs)[which]()
    check_roundtrip(closed, x)


def test_equation_without_outputs_round_trips():
    """remat can leave a checkpoint whose results are all unused: an equation with no outputs."""
    a = Var(ShapedArray((2,), DTYPES["f32"]))
    ia, ib = Var(ShapedArray((2,), DTYPES["f32"])), Var(ShapedArray((2,), DTYPES["f32"]))
    body = Jaxpr([], [ia], [Eqn(PRIMITIVES["exp"], [ia], [ib], {})], [])
    j = Jaxpr([], [a], [Eqn(PRIMITIVES["checkpoint"], [a], [], {"jaxpr": body, "policy": None})], [a])
    verify(j)
    text = str(j)
    parsed = parse(text)
    assert str(parsed) == text
    assert_same_program(j, parsed.jaxpr)
    assert parsed.jaxpr.eqns[0].outvars == [] and parsed.jaxpr.eqns[0].primitive.name == "checkpoint"
    assert_same_values(runtime.eval_jaxpr(parsed, np.ones(2, np.float32)), [np.ones(2, np.float32)])


@pytest.mark.parametrize("params", [
    {"policy": np.zeros(2)}, {"policy": lambda x: x}, {"policy": {"a": 1}}, {"policy": object()},
    {"policy": None, "in": 1}, {"policy": None, "not a name": 1}, {"policy": None, "inf": 2},
    {"policy": ClosedJaxpr(Jaxpr([], [], [], []), [np.zeros(1)])},
])
def test_printer_never_prints_what_it_cannot_read_back(params):
    """A value the text format cannot carry makes the printer refuse (TypeError) -- or, if it prints,
    the text must read back to the same program."""
    x, y = Var(ShapedArray((2,), DTYPES["f32"])), Var(ShapedArray((2,), DTYPES["f32"]))
    ix = Var(ShapedArray((2,), DTYPES["f32"]))
    body = Jaxpr([], [ix], [], [ix])
    j = Jaxpr([], [x], [Eqn(PRIMITIVES["checkpoint"], [x], [y], {"jaxpr": body, **params})], [y])
    try:
        text = str(j)
    except TypeError:
        return
    parsed = parse(text)
    assert str(parsed) == text
    assert_same_program(j, parsed.jaxpr)
