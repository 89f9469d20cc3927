"""The public transformations: make_jaxpr and jit (the AD and batching transforms live beside them).

Each takes a Python function and returns a Python function, so they compose. jit is the one place
where the compiler hands a Jaxpr to a backend (runtime/).
"""
from __future__ import annotations

import contextlib
import functools
import gc
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

import runtime
import runtime.interpreter as _interpreter

from . import numpy as cnp
from . import tracing
from .ir.core import ClosedJaxpr, Jaxpr, Literal, ShapedArray
from .passes import DEFAULT_PASSES, run_passes
from .passes.fold import fold_constants
from .passes.remat import remat as remat_pass
from .primitives.control import checkpoint as checkpoint_p
from .tracing import Tracer, aval_of, trace
from .transforms import ad as _ad
from .transforms.batching import batch_eval
from .tree_util import tree_flatten, tree_unflatten

# outside any trace, a primitive runs on the numpy interpreter (looked up at call time, so that
# importing runtime first works too)
tracing.eager_apply = lambda prim, args, params: _interpreter.apply_primitive(prim, args, params)

# jit compiles to native code; a program using a primitive the LLVM backend cannot lower yet runs on
# the numpy interpreter instead (with a warning naming the primitive).
DEFAULT_BACKEND = "llvm"


def _normalize_argnums(static_argnums, nargs: int) -> tuple[int, ...]:
    nums = (static_argnums,) if isinstance(static_argnums, int) else tuple(static_argnums)
    out = []
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"static_argnums {n} out of range for {nargs} positional arguments")
        out.append(n % nargs)
    return tuple(sorted(set(out)))


def _split_static(fun: Callable, args: Sequence[Any], static: tuple[int, ...]):
    """A function of the dynamic arguments only, with the static ones fixed."""
    static_vals = {i: args[i] for i in static}
    dynamic = [a for i, a in enumerate(args) if i not in static_vals]

    def dyn_fun(*dyn, **kwargs):
        it = iter(dyn)
        full = [static_vals[i] if i in static_vals else next(it) for i in range(len(args))]
        return fun(*full, **kwargs)

    return dyn_fun, dynamic, tuple((i, _hashable(static_vals[i])) for i in static)


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        raise TypeError(f"static arguments must be hashable, got {type(x).__name__}") from None


def make_jaxpr(fun: Callable, static_argnums=()) -> Callable[..., ClosedJaxpr]:
    """``make_jaxpr(f)(*args)`` traces f at the types of args and returns the ClosedJaxpr."""
    @functools.wraps(fun)
    def traced(*args, **kwargs):
        static = _normalize_argnums(static_argnums, len(args))
        dyn_fun, dynamic, _ = _split_static(fun, args, static)
        closed, _, _ = trace(dyn_fun, dynamic, kwargs)
        return closed
    return traced


@contextlib.contextmanager
def _gc_paused():
    """Tracing and compiling allocate many small objects that all stay alive until the end, so
    Python's cyclic collector would rescan them again and again (superlinear in program size)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Lowered:
    """A function traced and prepared for one input signature: inspect it, then compile it."""

    def __init__(self, closed: ClosedJaxpr, in_tree, out_tree, backend: str):
        self.closed, self.in_tree, self.out_tree, self.backend = closed, in_tree, out_tree, backend
        self._compiled = None
        self.compile_seconds: float | None = None

    def as_text(self, dialect: str = "jaxpr") -> str:
        if dialect == "jaxpr":
            return str(self.closed)
        if dialect == "llvm":
            from runtime.llvm import llvm_ir
            return llvm_ir(self.closed)
        raise ValueError(f"as_text: unknown dialect {dialect!r}; expected 'jaxpr' or 'llvm'")

    def compile(self) -> Callable:
        if self._compiled is None:
            start = time.perf_counter()
            self.backend_used = self.backend
            try:
                with _gc_paused():
                    self._compiled = runtime.compile(self.closed, self.backend)
            except NotImplementedError as e:
                if self.backend != "llvm":
                    raise
                warnings.warn(f"the LLVM backend cannot run this program yet ({e}); it runs on the numpy "
                              f"interpreter", RuntimeWarning, stacklevel=3)
                self.backend_used = "numpy"
                self._compiled = runtime.compile(self.closed, "numpy")
            self.compile_seconds = time.perf_counter() - start
        return self._compiled

    def __call__(self, *flat_args):
        # any numpy array is accepted here: views (strided, broadcast) and unaligned buffers are
        # copied into the C-contiguous layout native code requires
        flat_args = [np.require(a, requirements="CA") if isinstance(a, np.ndarray) and not (
            a.flags.c_contiguous and a.flags.aligned) else a for a in flat_args]
        return self.compile()(*flat_args)


class Jitted:
    """The result of ``jit(f)``: traces once per input signature, caches, and runs on a backend."""

    def __init__(self, fun: Callable, backend: str | None, static_argnums, passes=None):
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.passes = DEFAULT_PASSES if passes is None else tuple(passes)
        self.backend = backend or DEFAULT_BACKEND
        if self.backend not in runtime.BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; expected 'numpy' or 'llvm'")
        self.static_argnums = static_argnums
        self._cache: dict = {}
        self._fast: dict = {}           # (tree, cheap per-leaf signature) -> Lowered, for the common call
        self._last_native = None        # (call_if_exact, single output?, out tree) of the last flat-array call
        self.trace_count = 0

    def _key_and_dynamic(self, args, kwargs):
        static = _normalize_argnums(self.static_argnums, len(args))
        dyn_fun, dynamic, static_key = _split_static(self.fun, args, static)
        leaves, in_tree = tree_flatten((tuple(dynamic), dict(kwargs)))
        signature = tuple((a.shape, a.dtype, a.weak_type) for a in map(aval_of, leaves))
        return (in_tree, signature, static_key), dyn_fun, dynamic, leaves

    def lower(self, *args, **kwargs) -> Lowered:
        key, dyn_fun, dynamic, _ = self._key_and_dynamic(args, kwargs)
        lowered = self._cache.get(key)
        if lowered is None:
            with _gc_paused():
                closed, in_tree, out_tree = trace(dyn_fun, dynamic, kwargs)
                self.trace_count += 1
                lowered = Lowered(run_passes(closed, self.passes), in_tree, out_tree, self.backend)
            self._cache[key] = lowered
        return lowered

    def __call__(self, *args, **kwargs):
        last = self._last_native
        if last is not None and not kwargs:
            # the hot path: the same flat array arguments as last time; the native function checks
            # count, shapes, dtypes and layout itself (and declines when anything differs)
            outs = last[0](args)
            if outs is not None:
                return outs[0] if last[1] else tree_unflatten(last[2], outs)
        fast_key = None
        if not kwargs and not self.static_argnums:
            # the common call: arrays and scalars, no static arguments; a signature cheaper than
            # building types, looked up first
            leaves, tree = tree_flatten(args)
            fast_key = (tree, tuple((x.shape, x.dtype) if type(x) is np.ndarray else type(x)
                                    for x in leaves))
            lowered = self._fast.get(fast_key)
            if lowered is not None:
                return tree_unflatten(lowered.out_tree, lowered(*leaves))
        key, dyn_fun, dynamic, leaves = self._key_and_dynamic(args, kwargs)
        if any(isinstance(x, Tracer) for x in leaves):
            return self.fun(*args, **kwargs)     # inside another trace: inline into it
        lowered = self._cache.get(key) or self.lower(*args, **kwargs)
        if fast_key is not None:
            self._fast[fast_key] = lowered
        outs = lowered(*leaves)
        self._remember_native(lowered, args, leaves, kwargs)
        return tree_unflatten(lowered.out_tree, outs)

    def _remember_native(self, lowered: Lowered, args, leaves, kwargs) -> None:
        """Arm the hot path when the call was plain: positional arrays only, compiled natively."""
        call_if_exact = getattr(lowered._compiled, "call_if_exact", None)
        if (call_if_exact is None or kwargs or self.static_argnums or len(leaves) != len(args)
                or not all(type(a) is np.ndarray for a in args)):
            return
        single = lowered.out_tree.node_type is None
        self._last_native = (call_if_exact, single, lowered.out_tree)


def jit(fun: Callable | None = None, *, backend: str | None = None, static_argnums=(), passes=None):
    """Compile ``fun`` for each new input signature (shapes, dtypes, static values) and cache it.

    Usable as ``@jit``, ``@jit(backend="numpy")`` or ``jit(f, static_argnums=(1,))``. The clean-up
    passes (simplify, cse, dce) run on the traced program first; ``passes=()`` turns them off.
    """
    if fun is None:
        return lambda f: Jitted(f, backend, static_argnums, passes)
    return Jitted(fun, backend, static_argnums, passes)


# ----------------------------------------------------------------------------------------------
# Automatic differentiation
# ----------------------------------------------------------------------------------------------

def _argnums_tuple(argnums, nargs: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for n in nums:
        if not -nargs <= n < nargs:
            raise ValueError(f"argnums {n} out of range for a function called with {nargs} positional "
                             f"arguments")
    return tuple(n % nargs for n in nums)


def _replace_args(fun: Callable, args: Sequence[Any], nums: tuple[int, ...], kwargs: dict):
    """fun as a function of the arguments at positions ``nums`` only."""
    def of_selected(*selected):
        full = list(args)
        for n, v in zip(nums, selected):
            full[n] = v
        return fun(*full, **kwargs)
    return of_selected


def _as_array(x, like_aval):
    """A tangent or cotangent value as an array (or tracer) of the primal's dtype and shape."""
    x = cnp.asarray(x, like_aval.dtype) if not isinstance(x, Tracer) else x
    if aval_of(x).shape != like_aval.shape:
        raise TypeError(f"expected a tangent/cotangent of shape {like_aval.shape}, got {aval_of(x).shape}")
    return x


def _zeros(aval):
    return cnp.zeros(aval.shape, aval.dtype)


def _check_differentiable(args: Sequence[Any], argnums: Sequence[int], what: str):
    for n, arg in zip(argnums, args):
        leaves, tree = tree_flatten(arg)
        for k, x in enumerate(leaves):
            a = aval_of(x)
            if not a.dtype.is_float:
                where = f"argument {n}" + (f" (leaf {k} of {tree})" if len(leaves) > 1 or tree.node_type else "")
                raise TypeError(f"{what} requires floating-point inputs, but {where} is {a} (integer and "
                                f"boolean values have no derivative; leave them out of argnums)")


def jvp(fun: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
    """Forward mode: ``(fun(*primals), d fun(primals) . tangents)``."""
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("jvp expects primals and tangents as tuples (one entry per argument)")
    p_leaves, p_tree = tree_flatten(tuple(primals))
    t_leaves, t_tree = tree_flatten(tuple(tangents))
    if p_tree != t_tree:
        raise TypeError(f"primals and tangents must have the same structure, got {p_tree} and {t_tree}")
    closed, _, out_tree = trace(fun, primals)
    t_flat = [_as_array(t, aval_of(p)) for p, t in zip(p_leaves, t_leaves)]
    outs, out_tangents = _ad.jvp_eval(closed.jaxpr, closed.consts, p_leaves, t_flat)
    out_tangents = [t if t is not None else _zeros(aval_of(o)) for o, t in zip(outs, out_tangents)]
    return tree_unflatten(out_tree, outs), tree_unflatten(out_tree, out_tangents)


def linearize(fun: Callable, *primals):
    """``(fun(*primals), f_jvp)``: f_jvp(*tangents) applies the derivative at primals without
    recomputing fun. The JVP program is traced with the primals known and the tangents unknown, and
    constant folding evaluates everything that does not depend on the tangents (partial evaluation):
    what is left is the linear map, with the residuals as its constants."""
    p_leaves, p_tree = tree_flatten(tuple(primals))
    closed, _, out_tree = trace(fun, primals)
    tangent_avals = [aval_of(p).strip_weak() for p in p_leaves]
    box = []

    def primal_and_tangent(*tangents):
        outs, touts = _ad.jvp_eval(closed.jaxpr, closed.consts, p_leaves, list(tangents))
        box.append(outs)
        return outs + [t if t is not None else _zeros(aval_of(o)) for o, t in zip(outs, touts)]

    linear = fold_constants(tracing.trace_flat(primal_and_tangent, tangent_avals))
    n_out = len(linear.jaxpr.outvars) // 2
    primal_outs = [_read_folded(linear, a) for a in linear.jaxpr.outvars[:n_out]]
    j = linear.jaxpr
    used = {a for e in j.eqns for a in e.inputs} | set(j.outvars[n_out:])
    keep = [k for k, v in enumerate(j.constvars) if v in used]
    tangent_program = ClosedJaxpr(Jaxpr([j.constvars[k] for k in keep], j.invars, j.eqns, j.outvars[n_out:]),
                                  [linear.consts[k] for k in keep])

    def f_jvp(*tangents):
        t_leaves, t_tree = tree_flatten(tuple(tangents))
        if t_tree != p_tree:
            raise TypeError(f"f_jvp expects tangents shaped like the primals {p_tree}, got {t_tree}")
        ts = [_as_array(t, a) for t, a in zip(t_leaves, tangent_avals)]
        return tree_unflatten(out_tree, _ad.eval_inline(tangent_program.jaxpr, tangent_program.consts, ts))

    f_jvp.jaxpr = tangent_program            # the linear program, for inspection
    return tree_unflatten(out_tree, primal_outs), f_jvp


def _read_folded(closed: ClosedJaxpr, atom):
    """The value of an output that folding made known (primal outputs never depend on tangents)."""
    if isinstance(atom, Literal):
        return atom.value
    return closed.consts[closed.jaxpr.constvars.index(atom)]


def vjp(fun: Callable, *primals, has_aux: bool = False):
    """Reverse mode: ``(fun(*primals), vjp_fn)`` with ``vjp_fn(out_cotangent) -> input cotangents``."""
    p_leaves, p_tree = tree_flatten(tuple(primals))
    closed, _, out_tree = trace(fun, primals)
    outs, backward = _ad.vjp_eval(closed.jaxpr, closed.consts, p_leaves)
    out = tree_unflatten(out_tree, outs)
    if has_aux:
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError("with has_aux=True the function must return a pair (output, aux)")
        out, aux = out
    main_leaves, main_tree = tree_flatten(out)

    def vjp_fn(cotangent):
        ct_leaves, ct_tree = tree_flatten(cotangent)
        if ct_tree != main_tree:
            raise TypeError(f"the cotangent must have the output's structure {main_tree}, got {ct_tree}")
        cts = [_as_array(c, aval_of(o)) for c, o in zip(ct_leaves, main_leaves)]
        cts += [None] * (len(outs) - len(cts))              # aux outputs get no cotangent
        grads = backward(cts)
        grads = [g if g is not None else _zeros(aval_of(p)) for g, p in zip(grads, p_leaves)]
        return tree_unflatten(p_tree, grads)

    return (out, vjp_fn, aux) if has_aux else (out, vjp_fn)


def value_and_grad(fun: Callable, argnums=0, has_aux: bool = False):
    """``(fun(*args), d fun / d args[argnums])`` for a scalar-valued float function."""
    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args))
        selected = [args[n] for n in nums]
        _check_differentiable(selected, nums, "grad")
        results = vjp(_replace_args(fun, args, nums, kwargs), *selected, has_aux=has_aux)
        value, vjp_fn = results[0], results[1]
        value_leaves, value_tree = tree_flatten(value)
        if value_tree.node_type is not None or aval_of(value_leaves[0]).shape != () or \
                not aval_of(value_leaves[0]).dtype.is_float:
            got = ", ".join(str(aval_of(v)) for v in value_leaves) + (
                f" in a {value_tree}" if value_tree.node_type is not None else "")
            raise TypeError(f"grad requires a function returning one float scalar, got ({got}); use "
                            f"jacrev/vjp for other outputs" + (" or has_aux=True for extra outputs"
                                                              if not has_aux else ""))
        grads = vjp_fn(np.ones((), aval_of(value_leaves[0]).dtype.np))
        grads = grads[0] if isinstance(argnums, int) else tuple(grads)
        return ((value, results[2]) if has_aux else value), grads
    return wrapped


def grad(fun: Callable, argnums=0, has_aux: bool = False):
    """The gradient of a scalar-valued function: ``grad(f)(x)`` has x's structure and types."""
    vg = value_and_grad(fun, argnums, has_aux)

    @functools.wraps(fun)
    def wrapped(*args, **kwargs):
        (value_aux, g) = vg(*args, **kwargs)
        return (g, value_aux[1]) if has_aux else g
    return wrapped


def _jacobian(fun: Callable, argnums, forward: bool):
    def jac(*args, **kwargs):
        nums = _argnums_tuple(argnums, len(args))
        selected = tuple(args[n] for n in nums)
        f = _replace_args(fun, args, nums, kwargs)
        in_leaves, in_tree = tree_flatten(selected)
        _check_differentiable(selected, nums, "jacfwd" if forward else "jacrev")
        in_avals = [aval_of(x) for x in in_leaves]
        closed, _, out_tree = trace(f, selected)
        out_avals = closed.out_avals
        # jac[o][i] has shape out_o.shape + in_i.shape
        if forward:
            outs = None
            columns = [[[] for _ in in_avals] for _ in out_avals]
            for i, a in enumerate(in_avals):
                for k in range(a.size):
                    basis = [_basis(b, k) if j == i else _zeros(b) for j, b in enumerate(in_avals)]
                    outs, touts = _ad.jvp_eval(closed.jaxpr, closed.consts, in_leaves, basis)
                    for o, t in enumerate(touts):
                        columns[o][i].append(t if t is not None else _zeros(out_avals[o]))
            blocks = [[_assemble(columns[o][i], -1, out_avals[o].shape + in_avals[i].shape, in_avals[i])
                       for i in range(len(in_avals))] for o in range(len(out_avals))]
        else:
            _, backward = _ad.vjp_eval(closed.jaxpr, closed.consts, in_leaves)
            rows = [[[] for _ in in_avals] for _ in out_avals]
            for o, a in enumerate(out_avals):
                for k in range(a.size):
                    cts = [_basis(b, k) if j == o else None for j, b in enumerate(out_avals)]
                    for i, g in enumerate(backward(cts)):
                        rows[o][i].append(g if g is not None else _zeros(in_avals[i]))
            blocks = [[_assemble(rows[o][i], 0, out_avals[o].shape + in_avals[i].shape, in_avals[i])
                       for i in range(len(in_avals))] for o in range(len(out_avals))]
        per_out = [tree_unflatten(in_tree, row) for row in blocks]
        per_out = [r[0] if isinstance(argnums, int) else r for r in per_out]
        return tree_unflatten(out_tree, per_out)
    return jac


def _assemble(parts, axis: int, shape, like):
    """Stack per-element derivatives (along ``axis``) into a Jacobian block of ``shape``."""
    if not parts:
        return cnp.zeros(shape, like.dtype)
    return cnp.reshape(cnp.stack(parts, axis), shape)


def _basis(aval, k: int):
    """The k-th unit vector of a value of type aval."""
    e = np.zeros(aval.size, aval.dtype.np)
    e[k] = 1
    return e.reshape(aval.shape)


def jacfwd(fun: Callable, argnums=0):
    """The Jacobian by forward mode (one JVP per input element); shape out.shape + in.shape."""
    return _jacobian(fun, argnums, forward=True)


def jacrev(fun: Callable, argnums=0):
    """The Jacobian by reverse mode (one VJP per output element); shape out.shape + in.shape."""
    return _jacobian(fun, argnums, forward=False)


def hessian(fun: Callable, argnums=0):
    """Forward-over-reverse: jacfwd(jacrev(fun))."""
    return jacfwd(jacrev(fun, argnums), argnums)


def checkpoint(fun: Callable, policy: str | None = None, **options):
    """Rematerialize ``fun`` under reverse mode: the backward pass recomputes its intermediates from
    its inputs instead of keeping them alive (memory for compute). Alias: ``remat``.

    policy None / "nothing_saveable": keep only the inputs. Other policies ("every_k" with k=...,
    "sqrt", "memory_budget" with budget_bytes=..., "dots_saveable") cut fun into several checkpointed
    segments with compiler.passes.remat."""

    @functools.wraps(fun)
    def wrapped(*args):
        closed, _, out_tree = trace(fun, args)
        leaves = tree_flatten(args)[0]
        if policy not in (None, "nothing_saveable"):
            program = remat_pass(closed, policy, **options)
            return tree_unflatten(out_tree, _ad.eval_inline(program.jaxpr, program.consts, leaves))
        j = closed.jaxpr
        body = Jaxpr([], j.constvars + j.invars, j.eqns, j.outvars)
        outs = checkpoint_p.bind(*closed.consts, *leaves, jaxpr=body, policy=policy)
        return tree_unflatten(out_tree, outs)
    return wrapped


def jaxpr_as_fun(closed: ClosedJaxpr) -> Callable:
    """A Python function that runs a ClosedJaxpr (flat arguments, list of flat outputs) by binding its
    equations: so a program from the parser or a pass can be jitted, differentiated or vmapped."""
    def fun(*args):
        return _ad.eval_inline(closed.jaxpr, closed.consts, args)
    return fun


remat = checkpoint


# ----------------------------------------------------------------------------------------------
# Vectorization
# ----------------------------------------------------------------------------------------------

def _broadcast_prefix(spec, tree, what: str) -> list:
    """One axis spec per leaf: an int/None applies to a whole argument, a tuple/list gives one per
    positional argument (as JAX's in_axes)."""
    leaves_per_arg = [tree_flatten(a)[0] for a in tree]
    if spec is None or isinstance(spec, int):
        return [spec for leaves in leaves_per_arg for _ in leaves]
    if not isinstance(spec, (tuple, list)) or len(spec) != len(tree):
        raise ValueError(f"vmap {what} must be an int, None, or a tuple with one entry per argument "
                         f"({len(tree)}), got {spec!r}")
    out = []
    for s, leaves in zip(spec, leaves_per_arg):
        if s is not None and not isinstance(s, int):
            raise ValueError(f"vmap {what} entries must be int or None, got {s!r}")
        out.extend([s] * len(leaves))
    return out


def vmap(fun: Callable, in_axes=0, out_axes=0):
    """Vectorize ``fun`` over axis ``in_axes`` of its arguments; outputs stack the results on
    ``out_axes``. Every primitive has a batching rule, so the result is one batched program."""

    @functools.wraps(fun)
    def batched(*args):
        axes = _broadcast_prefix(in_axes, args, "in_axes")
        leaves, in_tree = tree_flatten(tuple(args))
        leaves = [cnp._operand(x) if not isinstance(x, (Tracer, np.ndarray)) else x for x in leaves]
        sizes = set()
        for x, ax in zip(leaves, axes):
            if ax is not None:
                nd = len(aval_of(x).shape)
                if not -nd <= ax < nd:
                    raise ValueError(f"vmap in_axes {ax} out of range for an argument of shape "
                                     f"{aval_of(x).shape}")
                sizes.add(aval_of(x).shape[ax])
        if len(sizes) != 1:
            raise ValueError(f"vmap needs one batch size, got sizes {sorted(sizes)} for in_axes {in_axes}"
                             if sizes else "vmap needs at least one argument with a batch axis")
        size = sizes.pop()
        dims = [None if ax is None else ax % len(aval_of(x).shape) for x, ax in zip(leaves, axes)]
        avals = []
        for x, d in zip(leaves, dims):
            a = aval_of(x)
            avals.append(a if d is None else ShapedArray(a.shape[:d] + a.shape[d + 1:], a.dtype, a.weak_type))
        box = []

        def flat_fun(*tracers):
            out = fun(*tree_unflatten(in_tree, list(tracers)))
            out_leaves, out_tree = tree_flatten(out)
            box.append(out_tree)
            return out_leaves

        closed = tracing.trace_flat(flat_fun, avals)
        outs, out_dims = batch_eval(closed.jaxpr, closed.consts, leaves, dims, size)
        out_tree = box[0]
        o_axes = [out_axes] * len(outs) if out_axes is None or isinstance(out_axes, int) else \
            _broadcast_prefix(out_axes, tree_unflatten(out_tree, outs) if isinstance(
                tree_unflatten(out_tree, outs), tuple) else (tree_unflatten(out_tree, outs),), "out_axes")
        results = []
        for o, d, ax in zip(outs, out_dims, o_axes):
            if ax is None:
                if d is not None:
                    raise ValueError("vmap out_axes=None needs an output that does not depend on the "
                                     "batched inputs")
                results.append(o)
                continue
            if d is None:
                o = cnp.broadcast_to(cnp.asarray(o), (size,) + tuple(aval_of(cnp._operand(o)).shape))
                d = 0
            results.append(cnp.moveaxis(o, d, ax))
        return tree_unflatten(out_tree, results)
    return batched
