"""The two LLVM optimization pipelines: which programs get which, and that the cheap one computes
what O3 computes (it only saves compile time; see codegen.pipeline_for)."""
import numpy as np
from hypothesis import given, settings, strategies as st

import compiler as tj
import compiler.lax as lax
import compiler.numpy as cnp
import runtime
from runtime import llvm
from runtime.llvm import codegen
from runtime.llvm.abi import NativeFunction

from llvm_checks import guarded_call


def plan_of(f, *args, threads=1):
    return llvm._plan(tj.make_jaxpr(f)(*args), threads)


def compiled_with(pipeline, f, *args):
    closed = tj.make_jaxpr(f)(*args)
    sig = tuple(str(v.aval) for v in closed.jaxpr.invars)
    kernel = llvm._build(closed, 1, sig, pipeline=pipeline)
    assert kernel.pipeline == pipeline
    return NativeFunction(kernel, llvm.prepare_consts([v.aval for v in closed.jaxpr.constvars], closed.consts))


def chain(x):
    return lax.logistic(0.75 * cnp.log(x / 2) + x + cnp.log(3 * x))


def test_small_elementwise_and_reduction_programs_get_the_light_pipeline():
    x = np.ones((64, 48), np.float32)
    assert codegen.pipeline_for(plan_of(chain, x)) == "light"
    assert codegen.pipeline_for(plan_of(lambda x: cnp.sum(cnp.exp(x), axis=1), x)) == "light"
    assert codegen.pipeline_for(plan_of(lambda x: cnp.cumsum(x, axis=0) + x.T.sum(), x)) == "light"
    assert codegen.pipeline_for(plan_of(tj.grad(lambda x: cnp.sum(cnp.tanh(x) ** 2)), x)) == "light"


def test_large_arrays_and_loops_get_o3():
    big = np.ones(codegen.LIGHT_MAX_ELEMS + 1, np.float32)
    assert codegen.pipeline_for(plan_of(chain, big)) == "full"
    assert codegen.pipeline_for(plan_of(lambda x: cnp.sum(x) * 2.0, big)) == "full"
    small = np.ones(100, np.float32)
    assert codegen.pipeline_for(plan_of(lambda x: lax.fori_loop(0, 10, lambda i, y: cnp.tanh(y), x), small)) \
        == "full"


def test_gemm_programs_get_o3_even_inside_control_flow():
    a = np.ones((128, 128), np.float32)
    assert codegen.pipeline_for(plan_of(lambda a: a @ a, a)) == "full"

    def body(carry, _):
        return carry @ carry * 0.5, None
    assert codegen.pipeline_for(plan_of(lambda a: lax.scan(body, a, None, length=3)[0], a)) == "full"
    assert codegen.pipeline_for(plan_of(lambda a: lax.cond(a[0, 0] > 0, lambda a: a @ a, lambda a: a, a), a)) \
        == "full"


def test_a_lone_group_is_one_native_function():
    """The kernel of a single fused loop is inlined into the exported function: code generation
    costs close to a millisecond per function."""
    x = np.ones(1000, np.float32)
    text = llvm.llvm_ir(tj.make_jaxpr(chain)(x), optimized=True)
    defined = [line for line in text.splitlines() if line.startswith("define")]
    assert len(defined) == 1, defined


def test_groups_doing_the_same_work_on_different_buffers_share_one_body():
    """A layer stack's GEMMs (and its gradient's) differ only in the buffers they use: the module
    keeps one body per distinct piece of work (KernelGen: the bodies take buffer addresses), and
    the results are still each layer's own, on one thread and on two."""
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((96, 96)) / 10).astype(np.float32) for _ in range(6)]
    x = rng.standard_normal((96, 96)).astype(np.float32)

    def loss(ws, x):
        for w in ws:
            x = cnp.tanh(x @ w)
        return cnp.sum(x * x)
    closed = tj.make_jaxpr(tj.grad(loss))(ws, x)
    for threads in (1, 2):
        text = codegen.generate(llvm._plan(closed, threads)).text
        defined = [line.split("@")[1].split("(")[0].strip('"') for line in text.splitlines()
                   if line.startswith("define")]
        groups = [n for n in defined if n.startswith("group") and not n.endswith(".body")]
        bodies = [n for n in defined if n.endswith(".body")]
        assert len(groups) >= 24 and len(bodies) <= len(groups) // 3, (threads, groups, bodies)

    acts = [x]
    for w in ws:
        acts.append(np.tanh(acts[-1] @ w))
    g, want = 2 * acts[-1], [None] * len(ws)
    for i in reversed(range(len(ws))):
        g = g * (1 - acts[i + 1] ** 2)
        want[i] = acts[i].T @ g
        g = g @ ws[i].T
    sig = tuple(str(v.aval) for v in closed.jaxpr.invars)
    consts = llvm.prepare_consts([v.aval for v in closed.jaxpr.constvars], closed.consts)
    for threads in (1, 2):
        got = NativeFunction(llvm._build(closed, threads, sig), consts)(*ws, x)
        for gi, wi in zip(got, want):
            np.testing.assert_allclose(gi, wi, rtol=2e-3, atol=2e-3 * float(np.abs(wi).max()))


def test_the_gemm_micro_kernel_is_compiled_once_per_process():
    """GEMM programs name their micro-kernel rather than define it (it was close to half of a lone
    matmul's LLVM time); the first link compiles it, and every program after that reuses it."""
    from runtime.llvm import gemm
    rng = np.random.default_rng(1)
    shapes = [((70, 50), (50, 90)), ((128, 33), (33, 64))]
    names, compiled = set(), []
    for sa, sb in shapes:
        a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
        closed = tj.make_jaxpr(lambda a, b: a @ b)(a, b)
        text = llvm.llvm_ir(closed)
        declared = {line.split("@")[1].split("(")[0].strip('"') for line in text.splitlines()
                    if line.startswith("declare") and "tracejit_ukernel_" in line}
        assert declared and not any(line.startswith("define") and "ukernel" in line for line in text.splitlines())
        names |= declared
        np.testing.assert_allclose(tj.jit(lambda a, b: a @ b)(a, b), a @ b, rtol=1e-4, atol=1e-4)
        compiled.append(len(gemm._UKERNEL_TRACKERS))
    assert len(names) == 1 and next(iter(names)) in gemm._UKERNELS
    assert compiled[1] == compiled[0]              # the second program compiled no micro-kernel


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.sampled_from(["chain", "softmax", "norm", "cumsum"]), st.integers(0, 2**31 - 1))
def test_light_and_full_pipelines_agree(n, which, seed):
    """Equal up to where LLVM fuses a multiply and an add (FMA contraction is allowed, and O1 and O3
    code generation choose differently): a few ulp."""
    progs = {
        "chain": chain,
        "softmax": lambda x: cnp.exp(x - cnp.max(x, axis=-1, keepdims=True)) / cnp.sum(
            cnp.exp(x - cnp.max(x, axis=-1, keepdims=True)), axis=-1, keepdims=True),
        "norm": lambda x: (x - cnp.mean(x, axis=0)) / cnp.sqrt(cnp.var(x, axis=0) + 1e-5),
        "cumsum": lambda x: cnp.cumsum(cnp.tanh(x), axis=-1) * 2.0,
    }
    f = progs[which]
    x = np.random.default_rng(seed).uniform(0.1, 4.0, (3, n)).astype(np.float32)
    light = guarded_call(compiled_with("light", f, x), x)
    full = guarded_call(compiled_with("full", f, x), x)
    ref = runtime.eval_jaxpr(tj.make_jaxpr(f)(x), x)
    for a, b, r in zip(light, full, ref):
        np.testing.assert_array_max_ulp(a, b, maxulp=4)
        np.testing.assert_allclose(a, r, rtol=2e-5, atol=1e-6)
