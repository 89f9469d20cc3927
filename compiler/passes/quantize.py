"""quantize: store weights in fewer bits (and optionally compute matmuls on integers).

Weights are the program's constvars (captured parameters) plus the inputs named in
``weight_argnums``; only floating-point weights with 2 or more dimensions are quantized. Each becomes
a low-precision constant and a scale (and a zero point when affine), dequantized where the program
reads it, so the program keeps its signature and verifies.

- int8 / int4: ``q = clip(round(w / scale) + zero_point)``, the scale per output channel (the weight's
  free axis in its first matmul/convolution, else axis 0) or per tensor; symmetric or affine.
- fp16 / bf16: a cast. fp8 (e4m3fn): scaled so the largest magnitude of a channel maps to 448.
- activations="int8" with int8 symmetric weights: each matmul reading a weight, and each convolution
  whose kernel is a weight, runs on integers, ``int8 x int8 -> int32`` (dot_general /
  conv_general_dilated with preferred_element_type=i32), then rescales by the activation scale times
  the weight's per-output-channel scale; the activation scale comes from ``calibration`` inputs
  (static) or from each batch (dynamic). Symmetric scales have no zero point, so a convolution's zero
  padding is the quantized zero and the integer result is exact. Other activation types are
  simulated by a cast there and back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import ml_dtypes
import numpy as np

from ..ir.core import ClosedJaxpr, DTYPES, Eqn, Jaxpr, Literal, ShapedArray, Var, f32
from ..primitives import elementwise as E, linalg as L, reductions as R, structural as S
from ..tracing import bind

WEIGHT_TYPES = ("int8", "int4", "fp16", "bf16", "fp8")
ACTIVATION_TYPES = (None, "int8", "fp16", "bf16", "fp8")
_STORAGE = {"int8": DTYPES["i8"], "int4": DTYPES["i4"], "fp16": DTYPES["f16"], "bf16": DTYPES["bf16"],
            "fp8": DTYPES["f8_e4m3fn"]}
_QRANGE = {"int8": (-128, 127), "int4": (-8, 7)}
_FP8_MAX = float(ml_dtypes.finfo(ml_dtypes.float8_e4m3fn).max)


class _Emitter:
    """Appends equations (typed by each primitive's shape rule) to a list."""

    def __init__(self):
        self.eqns: list[Eqn] = []

    def __call__(self, prim, *inputs, **params):
        outs = [Var(a) for a in prim.abstract_eval([a.aval for a in inputs], params)]
        self.eqns.append(Eqn(prim, list(inputs), outs, params))
        return outs if prim.multiple_results else outs[0]


def _lit(value, dtype=f32) -> Literal:
    return Literal(value, ShapedArray((), dtype))


def _channel_axis(jaxpr: Jaxpr, w: Var) -> int | None:
    """The weight's output-channel axis: its free axis in the first matmul/convolution using it."""
    for eqn in jaxpr.eqns:
        if eqn.primitive is L.dot_general and w in eqn.inputs:
            side = eqn.inputs.index(w)
            (ca, cb), (ba, bb) = eqn.params["dimension_numbers"]
            contract, batch = (ca, ba) if side == 0 else (cb, bb)
            free = [d for d in range(w.aval.ndim) if d not in contract and d not in batch]
            return free[0] if len(free) == 1 else None
        if eqn.primitive is L.conv_general_dilated and eqn.inputs[1] is w:
            return 0                  # the kernel is OIHW: its output features are axis 0
    return 0 if w.aval.ndim >= 2 else None


@dataclass
class _Quantized:
    storage: np.ndarray
    scale: np.ndarray | None          # broadcastable to the weight, f32
    zero_point: np.ndarray | None     # same shape as scale, stored in the storage type's range
    axis: int | None


def _quantize_array(w: np.ndarray, kind: str, axis: int | None, symmetric: bool) -> _Quantized:
    reduce_axes = tuple(d for d in range(w.ndim) if d != axis) if axis is not None else None
    storage = _STORAGE[kind]
    if kind in ("fp16", "bf16"):
        return _Quantized(w.astype(storage.np), None, None, axis)
    amax = np.max(np.abs(w), axis=reduce_axes, keepdims=True).astype(np.float32)
    if kind == "fp8":
        scale = np.where(amax > 0, amax / _FP8_MAX, 1.0).astype(np.float32)
        return _Quantized((w / scale).astype(storage.np), scale, None, axis)
    qmin, qmax = _QRANGE[kind]
    if symmetric:
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        q = np.clip(np.round(w / scale), -qmax, qmax)
        return _Quantized(q.astype(storage.np), scale, None, axis)
    lo = np.minimum(np.min(w, axis=reduce_axes, keepdims=True), 0).astype(np.float32)
    hi = np.maximum(np.max(w, axis=reduce_axes, keepdims=True), 0).astype(np.float32)
    scale = np.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0).astype(np.float32)
    zero = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    q = np.clip(np.round(w / scale) + zero, qmin, qmax)
    return _Quantized(q.astype(storage.np), scale, zero.astype(storage.np), axis)


def _calibrate(closed: ClosedJaxpr, targets: set, calibration) -> dict:
    """Largest |activation| entering each target matmul or convolution, over the calibration inputs."""
    amax: dict = {}
    for args in calibration:
        types = [ShapedArray(tuple(np.shape(a)), closed.jaxpr.invars[i].aval.dtype) for i, a in enumerate(args)]
        if len(args) != len(closed.jaxpr.invars) or any(
                t.shape != v.aval.shape for t, v in zip(types, closed.jaxpr.invars)):
            raise ValueError(f"calibration inputs must match the program's inputs "
                             f"({', '.join(str(v.aval) for v in closed.jaxpr.invars)}), got shapes "
                             f"{[tuple(np.shape(a)) for a in args]}")
        env = dict(zip(closed.jaxpr.constvars, closed.consts))
        env.update(zip(closed.jaxpr.invars, [np.asarray(a) for a in args]))
        for k, eqn in enumerate(closed.jaxpr.eqns):
            ins = [a.value if isinstance(a, Literal) else env[a] for a in eqn.inputs]
            if k in targets:
                amax[k] = max(amax.get(k, 0.0), float(np.max(np.abs(ins[targets[k]]))) if ins[targets[k]].size else 0.0)
            outs = bind(eqn.primitive, ins, eqn.params)
            env.update(zip(eqn.outvars, outs if eqn.primitive.multiple_results else [outs]))
    return amax


def quantize(closed: ClosedJaxpr, weights: str = "int8", activations: str | None = None,
             per_channel: bool = True, symmetric: bool = True, calibration: Sequence | None = None,
             weight_argnums: Sequence[int] = ()) -> ClosedJaxpr:
    if weights not in WEIGHT_TYPES:
        raise ValueError(f"weights must be one of {WEIGHT_TYPES}, got {weights!r}")
    if activations not in ACTIVATION_TYPES:
        raise ValueError(f"activations must be one of {ACTIVATION_TYPES}, got {activations!r}")
    if activations == "int8" and (weights != "int8" or not symmetric):
        raise ValueError("integer matmuls (activations='int8') need symmetric int8 weights")
    if weight_argnums and calibration is None:
        raise ValueError("quantizing input weights (weight_argnums) needs their values: pass calibration "
                         "inputs; the first calibration input's weights are used")
    jaxpr = closed.jaxpr
    values = dict(zip(jaxpr.constvars, closed.consts))
    if weight_argnums:
        values.update({jaxpr.invars[i]: np.asarray(calibration[0][i]) for i in weight_argnums})
    weight_vars = [v for v, x in values.items()
                   if v.aval.dtype.is_float and v.aval.ndim >= 2 and isinstance(x, np.ndarray)]
    quantized = {v: _quantize_array(np.asarray(values[v], np.float32), weights,
                                    _channel_axis(jaxpr, v) if per_channel else None, symmetric)
                 for v in weight_vars}

    emit = _Emitter()
    new_consts: list[tuple[Var, Any]] = [(v, c) for v, c in zip(jaxpr.constvars, closed.consts)
                                         if v not in quantized]
    replaced_inputs = {}
    stored: dict = {}

    def const(value) -> Var:
        v = Var(ShapedArray(tuple(np.shape(value)), DTYPES[_dtype_name(value)]))
        new_consts.append((v, value))
        return v

    for v, q in quantized.items():
        sv = const(q.storage)
        stored[v] = (sv, const(q.scale) if q.scale is not None else None)
        w = emit(E.convert_element_type, sv, new_dtype=f32)
        if q.zero_point is not None:
            w = emit(E.sub, w, _broadcast(emit, emit(E.convert_element_type, const(q.zero_point), new_dtype=f32),
                                          v.aval.shape))
        if q.scale is not None:
            w = emit(E.mul, w, _broadcast(emit, stored[v][1], v.aval.shape))
        if v.aval.dtype != f32:
            w = emit(E.convert_element_type, w, new_dtype=v.aval.dtype)
        replaced_inputs[v] = w

    # the matmuls that read a quantized weight and the convolutions whose kernel is one, and which
    # operand is the activation
    targets = {k: 1 - e.inputs.index(next(a for a in e.inputs if a in quantized))
               for k, e in enumerate(jaxpr.eqns)
               if e.primitive is L.dot_general and any(a in quantized for a in e.inputs)
               and not all(a in quantized for a in e.inputs)}
    targets.update({k: 0 for k, e in enumerate(jaxpr.eqns)
                    if e.primitive is L.conv_general_dilated and e.inputs[1] in quantized
                    and e.inputs[0] not in quantized and quantized[e.inputs[1]].axis in (None, 0)})
    static_amax = _calibrate(closed, targets, calibration) if (calibration is not None and activations) else {}

    rename = dict(replaced_inputs)
    for k, eqn in enumerate(jaxpr.eqns):
        inputs = [rename.get(a, a) if isinstance(a, Var) else a for a in eqn.inputs]
        if k in targets and activations is not None:
            side = targets[k]
            x, w_var = inputs[side], eqn.inputs[1 - side]
            if activations == "int8":
                integer = _integer_conv if eqn.primitive is L.conv_general_dilated else _integer_matmul
                y = integer(emit, eqn, x, side, w_var, quantized[w_var], stored[w_var], static_amax.get(k))
                rename[eqn.outvars[0]] = y
                continue
            inputs[side] = _round_trip(emit, x, _STORAGE[activations], static_amax.get(k))
        outs = emit(eqn.primitive, *inputs, **eqn.params)
        outs = outs if eqn.primitive.multiple_results else [outs]
        rename.update(zip(eqn.outvars, outs))
    from .dce import dce
    outvars = [rename.get(a, a) if isinstance(a, Var) else a for a in jaxpr.outvars]
    return dce(ClosedJaxpr(Jaxpr([v for v, _ in new_consts], jaxpr.invars, emit.eqns, outvars),
                           [c for _, c in new_consts]))


def _dtype_name(value) -> str:
    from ..ir.core import dtype
    return dtype(np.asarray(value).dtype).name


def _broadcast(emit, v: Var, shape) -> Var:
    if v.aval.shape == tuple(shape):
        return v
    dims = tuple(range(len(shape)))
    return emit(S.broadcast_in_dim, v, shape=tuple(shape), broadcast_dimensions=dims)


def _activation_scale(emit, x: Var, amax: float | None, qmax: float):
    """A scalar (binary primitives take it against any shape): the static scale from calibration, or
    the batch's own max |x| (dynamic quantization)."""
    d = x.aval.dtype
    if amax is not None:
        return _lit(amax / qmax if amax > 0 else 1.0, d)
    m = emit(R.reduce_max, emit(E.abs_, x), axes=tuple(range(x.aval.ndim)))
    positive = emit(E.gt, m, _lit(0.0, d))
    return emit(E.select_n, positive, _lit(1.0, d), emit(E.div, m, _lit(qmax, d)))


def _round_trip(emit, x: Var, storage, amax):
    """Simulate a low-precision activation: cast (scaled for fp8) and back."""
    if storage.name == "f8_e4m3fn":
        scale = _activation_scale(emit, x, amax, _FP8_MAX)
        low = emit(E.convert_element_type, emit(E.div, x, scale), new_dtype=storage)
        return emit(E.mul, emit(E.convert_element_type, low, new_dtype=x.aval.dtype), scale)
    return emit(E.convert_element_type, emit(E.convert_element_type, x, new_dtype=storage), new_dtype=x.aval.dtype)


def _quantize_activation(emit, x: Var, amax):
    """(int8 x, its scale): x / scale rounded and clipped to [-127, 127] (symmetric)."""
    d = x.aval.dtype
    scale_x = _activation_scale(emit, x, amax, 127.0)
    clipped = emit(E.min_, emit(E.max_, emit(E.round_, emit(E.div, x, scale_x)), _lit(-127.0, d)), _lit(127.0, d))
    return emit(E.convert_element_type, clipped, new_dtype=DTYPES["i8"]), scale_x


def _rescale(emit, acc: Var, scale_x, stored, q: _Quantized, d, position: int) -> Var:
    """acc (int32) * activation scale * the weight's scale, per channel along output axis ``position``."""
    y = emit(E.mul, emit(E.convert_element_type, acc, new_dtype=d), scale_x)
    weight_scale = stored[1] if d == f32 else emit(E.convert_element_type, stored[1], new_dtype=d)
    if q.axis is None:
        return emit(E.mul, y, emit(S.reshape, weight_scale, new_sizes=()))
    sw = emit(S.reshape, weight_scale, new_sizes=(weight_scale.aval.size,))
    sw = emit(S.broadcast_in_dim, sw, shape=acc.aval.shape, broadcast_dimensions=(position,))
    return emit(E.mul, y, sw)


def _integer_conv(emit, eqn: Eqn, x: Var, side: int, w_var: Var, q: _Quantized, stored, amax):
    """int8 x int8 -> int32 conv_general_dilated, then y = acc * (activation scale * weight scale);
    the kernel's output-feature axis (0) is the result's channel axis (1)."""
    xq, scale_x = _quantize_activation(emit, x, amax)
    acc = emit(L.conv_general_dilated, xq, stored[0], **{**eqn.params, "preferred_element_type": DTYPES["i32"]})
    return _rescale(emit, acc, scale_x, stored, q, x.aval.dtype, 1)


def _integer_matmul(emit, eqn: Eqn, x: Var, side: int, w_var: Var, q: _Quantized, stored, amax):
    """int8 x int8 -> int32 dot_general, then y = acc * (activation scale * weight scale)."""
    xq, scale_x = _quantize_activation(emit, x, amax)
    operands = [xq, stored[0]] if side == 0 else [stored[0], xq]
    acc = emit(L.dot_general, *operands, dimension_numbers=eqn.params["dimension_numbers"],
               preferred_element_type=DTYPES["i32"])
    # the weight's per-channel scale goes where its free axis lands in the output: last when the
    # weight is on the right, right after the batch axes when it is on the left
    (_, _), (ba, _) = eqn.params["dimension_numbers"]
    position = acc.aval.ndim - 1 if side == 0 else len(ba)
    return _rescale(emit, acc, scale_x, stored, q, x.aval.dtype, position)


@dataclass
class QuantizationReport:
    max_abs_error: float
    mean_abs_error: float
    relative_error: float          # ||quantized - float|| / ||float||
    weight_bytes_float: int
    weight_bytes_quantized: int

    def __str__(self) -> str:
        return (f"relative error {self.relative_error:.3g}, max |error| {self.max_abs_error:.3g}, mean "
                f"|error| {self.mean_abs_error:.3g}; weights {self.weight_bytes_float:,} B -> "
                f"{self.weight_bytes_quantized:,} B")


def quantization_report(float_program: ClosedJaxpr, quantized_program: ClosedJaxpr,
                        inputs: Sequence[Sequence[Any]]) -> QuantizationReport:
    """Error of the quantized program against the float one on sample inputs, and the weight bytes."""
    from ..transforms.ad import eval_inline
    errs, refs = [], []
    for args in inputs:
        ref = [np.asarray(o, np.float64) for o in eval_inline(float_program.jaxpr, float_program.consts, args)]
        got = [np.asarray(o, np.float64) for o in eval_inline(quantized_program.jaxpr, quantized_program.consts, args)]
        errs.extend((g - r).ravel() for g, r in zip(got, ref))
        refs.extend(r.ravel() for r in ref)
    e, r = np.concatenate(errs), np.concatenate(refs)
    size = lambda closed: sum(np.asarray(c).nbytes if np.asarray(c).dtype.itemsize >= 1 else 0
                              for c in closed.consts)
    quant_bytes = sum((np.asarray(c).size + 1) // 2 if np.asarray(c).dtype == ml_dtypes.int4 else np.asarray(c).nbytes
                      for c in quantized_program.consts)
    return QuantizationReport(float(np.max(np.abs(e))) if e.size else 0.0, float(np.mean(np.abs(e))) if e.size else 0.0,
                              float(np.linalg.norm(e) / max(np.linalg.norm(r), 1e-30)), size(float_program),
                              quant_bytes)
