"""Frontend: a quantised ONNX graph to the layer IR, one handler per ONNX ``op_type``.

Every node is checked here, before any other work: an unsupported op, a float (unquantised) weight, a
dynamic weight, a bit width outside 2..8 or a shape the tile cannot take raises :class:`CompileError`
naming the node.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import CompileError, node_error
from .hostops import HOST, Typing, onnx_host_domains, onnx_host_ops
from .ir import HostStep, Model, QConst, QSpec, Tensor, TileLayer, bits_of_range

__all__ = ["load_onnx", "import_model", "HOST_OPS"]

QONNX_DOMAINS = ("qonnx.custom_op.general", "finn.custom_op.general")

# code range of each ONNX integer element type
_RANGES = {
    onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.INT8: (-128, 127),
    onnx.TensorProto.UINT16: (0, 65535), onnx.TensorProto.INT16: (-32768, 32767),
    onnx.TensorProto.INT32: (-(1 << 31), (1 << 31) - 1),
}
if hasattr(onnx.TensorProto, "UINT4"):
    _RANGES[onnx.TensorProto.UINT4] = (0, 15)
    _RANGES[onnx.TensorProto.INT4] = (-8, 7)
_NP_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127), np.dtype(np.uint16): (0, 65535),
              np.dtype(np.int16): (-32768, 32767), np.dtype(np.int32): (-(1 << 31), (1 << 31) - 1)}

_HOST_BY_ONNX = onnx_host_ops()
_HOST_DOMAIN = onnx_host_domains()
MS_DOMAIN = "com.microsoft"
#: onnxruntime contrib operators the frontend accepts (QGemm runs on the tile, the others on the host)
MS_OPS = ("QGemm", *(op for op, d in _HOST_DOMAIN.items() if d == MS_DOMAIN))
#: ONNX ops the runtime may run on the host (Clip also when it folds into a quantizer's range, MatMul only for
#: activation x activation products).
HOST_OPS = (*_HOST_BY_ONNX, "Clip")


def sort_nodes(graph) -> bool:
    """Reorder ``graph.node`` topologically in place (nodes a pass appended go before their consumers).

    Returns False, leaving the graph unchanged, when some node's inputs can never all be produced (a cycle
    or a dangling input); callers turn that into their own one-line error.
    """
    have = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    nodes, out = list(graph.node), []
    while nodes:
        rest = []
        for n in nodes:
            if all(x in have for x in n.input):
                out.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(nodes):
            return False
        nodes = rest
    del graph.node[:]
    graph.node.extend(out)
    return True


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Read an ONNX file; any failure is a one-line :class:`CompileError`."""
    try:
        model = onnx.load(str(path))
    except FileNotFoundError:
        raise CompileError(f"cannot read {path}: no such file") from None
    except Exception as e:
        raise CompileError(f"cannot read {path}: not an ONNX model ({type(e).__name__})") from None
    if not model.graph.node:
        raise CompileError(f"cannot read {path}: not an ONNX model (empty graph)")
    return model


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Ctx:
    def __init__(self, model: onnx.ModelProto):
        self.consts: dict[str, np.ndarray] = {}
        self.qconsts: dict[str, QConst] = {}  # quantised constants (codes) and dequantised constants
        self.tensors: dict[str, Tensor] = {}
        self.steps: list = []
        for init in model.graph.initializer:
            self.consts[init.name] = numpy_helper.to_array(init)
        self.inputs = []
        self.declared = {}  # input name -> its shape as the model declares it (symbolic dims by name)
        for vi in model.graph.input:
            if vi.name in self.consts:
                continue  # an input with an initializer is a constant
            t = vi.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in t.shape.dim)
            self.declared[vi.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else
                                      (d.dim_param or "?") for d in t.shape.dim]
            et = t.elem_type
            if et in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
                self.tensors[vi.name] = Tensor(vi.name, "float", shape)
            elif et in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8):
                lo, hi = _RANGES[et]
                dt = "uint8" if lo == 0 else "int8"
                self.tensors[vi.name] = Tensor(vi.name, "codes", shape, QSpec(1.0, 0, lo, hi), dt)
            else:
                raise CompileError(f"graph input {vi.name!r}: element type "
                                   f"{onnx.TensorProto.DataType.Name(et)} not supported (float, uint8 or int8)")
            self.inputs.append(vi.name)
        self.outputs = [vo.name for vo in model.graph.output]

    # helpers ---------------------------------------------------------------------------------------
    def const(self, node, name: str, what: str) -> np.ndarray:
        if name in self.consts:
            return self.consts[name]
        raise node_error(node.name, node.op_type, f"{what} {name!r} must be a constant initializer")

    def tensor(self, node, name: str) -> Tensor:
        t = self.tensors.get(name)
        if t is None:
            if name in self.consts or name in self.qconsts:
                raise node_error(node.name, node.op_type, f"constant input {name!r} where an activation is expected")
            raise node_error(node.name, node.op_type, f"input {name!r} is not produced by any supported node")
        return t

    def add(self, t: Tensor) -> None:
        self.tensors[t.name] = t


def _spec(node, scale, zp, lo, hi, axis, ndim) -> QSpec:
    scale = np.asarray(scale, dtype=np.float64)
    zp = np.asarray(zp if zp is not None else 0)
    if scale.size > 1 or zp.size > 1:
        ax = axis if axis >= 0 else axis + ndim
    else:
        ax = None
        scale, zp = scale.reshape(()), zp.reshape(())
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise node_error(node.name, node.op_type, "scale must be finite and positive")
    if np.any(zp != np.round(zp)):
        raise node_error(node.name, node.op_type, "zero point must be an integer")
    return QSpec(scale, zp.astype(np.int64), lo, hi, ax)


def _broadcast(spec: QSpec, shape) -> tuple[np.ndarray, np.ndarray]:
    s, z = spec.scale, spec.zero_point
    if spec.axis is not None and len(shape) > 1:
        bshape = [1] * len(shape)
        bshape[spec.axis] = -1
        s, z = s.reshape(bshape), z.reshape(bshape)
    return s, z


def _check_bits(node, spec: QSpec, what: str) -> None:
    b = spec.bits
    if not 2 <= b <= 8:
        raise node_error(node.name, node.op_type, f"{what} bit width {b} outside 2..8")


# -- handlers -------------------------------------------------------------------------------------

def _constant(ctx: _Ctx, node) -> None:
    a = _attrs(node)
    if "value" in a:
        ctx.consts[node.output[0]] = numpy_helper.to_array(a["value"])
    else:
        key = next(iter(a))
        ctx.consts[node.output[0]] = np.asarray(a[key])


def _quantize_linear(ctx: _Ctx, node) -> None:
    a = _attrs(node)
    x = node.input[0]
    scale = ctx.const(node, node.input[1], "scale")
    zp = ctx.const(node, node.input[2], "zero point") if len(node.input) > 2 and node.input[2] else None
    if zp is None:
        lo, hi = 0, 255
    else:
        rng = _NP_RANGES.get(np.asarray(zp).dtype)
        if rng is None:
            raise node_error(node.name, node.op_type, f"zero point type {np.asarray(zp).dtype} not supported")
        lo, hi = rng
    if x in ctx.consts:
        w = np.asarray(ctx.consts[x], dtype=np.float64)
        spec = _spec(node, scale, zp, lo, hi, a.get("axis", 1), w.ndim)
        s, z = _broadcast(spec, w.shape)
        codes = np.clip(np.round(w / s) + z, lo, hi).astype(np.int32)
        ctx.qconsts[node.output[0]] = QConst(codes, spec)
        return
    t = ctx.tensor(node, x)
    if t.kind != "float":
        raise node_error(node.name, node.op_type, f"input {x!r} is already quantized")
    spec = _spec(node, scale, zp, lo, hi, a.get("axis", 1), len(t.shape))
    if not spec.per_tensor:
        raise node_error(node.name, node.op_type, "per-channel quantization of an activation is not supported")
    dt = "uint8" if lo >= 0 else "int8"
    if hi - lo > 255:
        raise node_error(node.name, node.op_type, f"activation bit width {bits_of_range(lo, hi)} outside 2..8")
    ctx.steps.append(HostStep(node.name, "Quantize", [x], [node.output[0]], {"spec": spec}))
    ctx.add(Tensor(node.output[0], "codes", t.shape, spec, dt))


def _dequantize_linear(ctx: _Ctx, node) -> None:
    a = _attrs(node)
    q = node.input[0]
    scale = ctx.const(node, node.input[1], "scale")
    zp = ctx.const(node, node.input[2], "zero point") if len(node.input) > 2 and node.input[2] else None
    if q in ctx.qconsts or q in ctx.consts:
        if q in ctx.qconsts:
            qc = ctx.qconsts[q]
            codes, lo, hi = qc.codes, qc.spec.lo, qc.spec.hi
        else:
            raw = np.asarray(ctx.consts[q])
            rng = _NP_RANGES.get(raw.dtype)
            if rng is None:
                raise node_error(node.name, node.op_type, f"constant {q!r} of type {raw.dtype} is not integer codes")
            codes, (lo, hi) = raw.astype(np.int32), rng
        spec = _spec(node, scale, zp, lo, hi, a.get("axis", 1), codes.ndim)
        ctx.qconsts[node.output[0]] = QConst(codes, spec)  # a dequantised constant, kept as codes + spec
        return
    t = ctx.tensor(node, q)
    if t.kind != "codes":
        raise node_error(node.name, node.op_type, f"input {q!r} is not quantized codes")
    spec = _spec(node, scale, zp, t.spec.lo, t.spec.hi, a.get("axis", 1), len(t.shape))
    if not spec.per_tensor:
        raise node_error(node.name, node.op_type, "per-channel dequantization of an activation is not supported")
    ctx.steps.append(HostStep(node.name, "Dequantize", [q], [node.output[0]], {"spec": spec}))
    ctx.add(Tensor(node.output[0], "float", t.shape))


def _quant(ctx: _Ctx, node) -> None:
    """QONNX ``Quant``: quantise and dequantise in one node (a bit-width input, signed/narrow attributes)."""
    a = _attrs(node)
    x = node.input[0]
    scale = ctx.const(node, node.input[1], "scale")
    zp = ctx.const(node, node.input[2], "zero point")
    bw = np.asarray(ctx.const(node, node.input[3], "bit width")).reshape(-1)
    if bw.size != 1 or bw[0] != np.round(bw[0]):
        raise node_error(node.name, node.op_type, f"bit width {bw.tolist()} is not one integer")
    bits = int(bw[0])
    if not 2 <= bits <= 8:
        raise node_error(node.name, node.op_type, f"bit width {bits} outside 2..8")
    if a.get("rounding_mode", b"ROUND") not in (b"ROUND", "ROUND"):
        raise node_error(node.name, node.op_type, f"rounding_mode {a['rounding_mode']!r} not supported (ROUND)")
    signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
    if signed:
        lo, hi = -(1 << (bits - 1)) + (1 if narrow else 0), (1 << (bits - 1)) - 1
    else:
        lo, hi = 0, (1 << bits) - 1 - (1 if narrow else 0)
    scale = np.asarray(scale, dtype=np.float64)
    zp = np.asarray(zp, dtype=np.float64)
    if x in ctx.consts:
        w = np.asarray(ctx.consts[x], dtype=np.float64)
        # QONNX broadcasts scale like numpy: a per-channel scale has shape (C, 1, 1, 1) or (1, C)
        axis = None
        if scale.size > 1:
            axis = int(np.argmax(scale.shape))
        codes = np.clip(np.round(w / scale + zp), lo, hi).astype(np.int32)
        spec = _spec(node, scale.reshape(-1) if axis is not None else scale, zp.reshape(-1) if zp.size > 1 else zp,
                     lo, hi, axis if axis is not None else 0, w.ndim)
        if spec.axis is not None and zp.size == 1:
            spec = QSpec(spec.scale, np.full(spec.scale.shape, int(zp.reshape(-1)[0])), lo, hi, spec.axis)
        ctx.qconsts[node.output[0]] = QConst(codes, spec)
        return
    t = ctx.tensor(node, x)
    if t.kind != "float":
        raise node_error(node.name, node.op_type, f"input {x!r} is not a float activation")
    if scale.size != 1 or zp.size != 1:
        raise node_error(node.name, node.op_type, "per-channel quantization of an activation is not supported")
    spec = _spec(node, scale.reshape(()), zp.reshape(()), lo, hi, 0, len(t.shape))
    codes = node.output[0] + "::codes"
    ctx.steps.append(HostStep(node.name, "Quantize", [x], [codes], {"spec": spec}))
    ctx.add(Tensor(codes, "codes", t.shape, spec, "uint8" if lo >= 0 else "int8"))
    ctx.steps.append(HostStep(node.name + "::dq", "Dequantize", [codes], [node.output[0]], {"spec": spec}))
    ctx.add(Tensor(node.output[0], "float", t.shape))


def _clip(ctx: _Ctx, node) -> None:
    x = node.input[0]
    lo = ctx.const(node, node.input[1], "min") if len(node.input) > 1 and node.input[1] else None
    hi = ctx.const(node, node.input[2], "max") if len(node.input) > 2 and node.input[2] else None
    a = _attrs(node)
    lo = lo if lo is not None else a.get("min")
    hi = hi if hi is not None else a.get("max")
    if x in ctx.qconsts:  # QCDQ weights: int codes -> Clip -> DequantizeLinear
        qc = ctx.qconsts[x]
        l_, h_ = int(lo) if lo is not None else qc.spec.lo, int(hi) if hi is not None else qc.spec.hi
        ctx.qconsts[node.output[0]] = QConst(np.clip(qc.codes, l_, h_), qc.spec.narrowed(l_, h_))
        return
    if x in ctx.consts:
        raw = np.asarray(ctx.consts[x])
        rng = _NP_RANGES.get(raw.dtype)
        if rng is not None:  # integer codes (QCDQ weights): the Clip sets their bit width
            l_ = max(rng[0], int(np.asarray(lo))) if lo is not None else rng[0]
            h_ = min(rng[1], int(np.asarray(hi))) if hi is not None else rng[1]
            ctx.qconsts[node.output[0]] = QConst(np.clip(raw.astype(np.int32), l_, h_), QSpec(1.0, 0, l_, h_))
            return
        ctx.consts[node.output[0]] = np.clip(raw, lo, hi)
        return
    t = ctx.tensor(node, x)
    if t.kind == "codes":
        l_ = int(np.asarray(lo)) if lo is not None else t.spec.lo
        h_ = int(np.asarray(hi)) if hi is not None else t.spec.hi
        spec = t.spec.narrowed(l_, h_)
        ctx.steps.append(HostStep(node.name, "ClipCodes", [x], [node.output[0]], {"lo": spec.lo, "hi": spec.hi}))
        ctx.add(Tensor(node.output[0], "codes", t.shape, spec, t.dtype))
        return
    ctx.steps.append(HostStep(node.name, "Clip", [x], [node.output[0]],
                              {"lo": None if lo is None else float(np.asarray(lo)),
                               "hi": None if hi is None else float(np.asarray(hi))}))
    ctx.add(Tensor(node.output[0], t.kind, t.shape, t.spec, t.dtype))


def _weight(ctx: _Ctx, node, name: str) -> QConst:
    if name in ctx.qconsts:
        return ctx.qconsts[name]
    if name in ctx.consts:
        raise node_error(node.name, node.op_type, f"weight {name!r} is a float constant: the model is not quantized")
    raise node_error(node.name, node.op_type, f"weight {name!r} is not a constant (dynamic weights are not supported)")


def _activation(ctx: _Ctx, node, name: str) -> Tensor:
    if name in ctx.consts or name in ctx.qconsts:
        raise node_error(node.name, node.op_type, f"input {name!r} is a constant; expected an activation")
    return ctx.tensor(node, name)


def _conv_geometry(node, x_shape, w_shape) -> tuple[dict, tuple]:
    """The conv dict (kernel, strides, explicit pads, dilations) and the output shape; ``auto_pad`` is resolved
    to explicit pads here as ONNX defines it (SAME_UPPER puts the odd pad at the end, SAME_LOWER at the start)."""
    a = _attrs(node)
    if len(w_shape) != 4 or len(x_shape) != 4:
        raise node_error(node.name, node.op_type, "only 2-D convolutions (NCHW) are supported")
    group = int(a.get("group", 1))
    if group < 1 or x_shape[1] % group or w_shape[0] % group:
        raise node_error(node.name, node.op_type, f"group = {group} does not divide the input channels {x_shape[1]} "
                         f"and output channels {w_shape[0]}")
    k = tuple(int(v) for v in w_shape[2:])
    ks = a.get("kernel_shape")
    if ks is not None and tuple(ks) != k:
        raise node_error(node.name, node.op_type, f"kernel_shape {list(ks)} != weight kernel {list(k)}")
    strides = tuple(int(v) for v in a.get("strides", (1, 1)))
    dil = tuple(int(v) for v in a.get("dilations", (1, 1)))
    if len(strides) != 2 or len(dil) != 2 or min(strides) < 1 or min(dil) < 1:
        raise node_error(node.name, node.op_type, f"strides {list(strides)} and dilations {list(dil)} must be two "
                         "positive integers each")
    ap = a.get("auto_pad", b"NOTSET")
    ap = ap.decode() if isinstance(ap, bytes) else ap
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0, 0, 0, 0]
        for i in range(2):
            out = -(-x_shape[2 + i] // strides[i])
            total = max(0, (out - 1) * strides[i] + dil[i] * (k[i] - 1) + 1 - x_shape[2 + i])
            small, big = total // 2, total - total // 2
            pads[i], pads[i + 2] = (small, big) if ap == "SAME_UPPER" else (big, small)
        pads = tuple(pads)
    elif ap == "VALID":
        pads = (0, 0, 0, 0)
    elif ap == "NOTSET":
        pads = tuple(int(v) for v in a.get("pads", (0, 0, 0, 0)))
        if len(pads) != 4 or min(pads) < 0:
            raise node_error(node.name, node.op_type, f"pads {list(pads)} must be four non-negative integers")
    else:
        raise node_error(node.name, node.op_type, f"auto_pad = {ap} not supported (NOTSET, VALID, SAME_UPPER, "
                         "SAME_LOWER)")
    if x_shape[1] != w_shape[1] * group:
        raise node_error(node.name, node.op_type, f"input channels {x_shape[1]} != weight channels {w_shape[1]}"
                         + (f" x group {group}" if group > 1 else ""))
    oh = (x_shape[2] + pads[0] + pads[2] - dil[0] * (k[0] - 1) - 1) // strides[0] + 1
    ow = (x_shape[3] + pads[1] + pads[3] - dil[1] * (k[1] - 1) - 1) // strides[1] + 1
    if oh < 1 or ow < 1:
        raise node_error(node.name, node.op_type, f"output size {oh}x{ow} is empty")
    return ({"kernel": k, "strides": strides, "pads": pads, "dilations": dil},
            (x_shape[0], w_shape[0], oh, ow))


def _groups(node) -> int:
    return int(_attrs(node).get("group", 1))


def _bias(ctx: _Ctx, node, name: str | None) -> np.ndarray | None:
    if not name:
        return None
    if name in ctx.qconsts:
        return ctx.qconsts[name].real().reshape(-1)
    if name in ctx.consts:
        return np.asarray(ctx.consts[name], dtype=np.float64).reshape(-1)
    raise node_error(node.name, node.op_type, f"bias {name!r} is not a constant")


def _conv(ctx: _Ctx, node) -> None:
    x = _activation(ctx, node, node.input[0])
    w = _weight(ctx, node, node.input[1])
    conv, out_shape = _conv_geometry(node, x.shape, w.codes.shape)
    bias = _bias(ctx, node, node.input[2] if len(node.input) > 2 else None)
    _require_weight_axis(node, w, 0)
    ctx.steps.append(TileLayer(node.name, "Conv", x.name, node.output[0], w, bias=bias, conv=conv,
                               in_shape=x.shape, out_shape=out_shape, groups=_groups(node)))
    ctx.add(Tensor(node.output[0], "float", out_shape))


def _require_weight_axis(node, w: QConst, axis: int) -> None:
    if w.spec.axis is not None and w.spec.axis != axis:
        raise node_error(node.name, node.op_type, f"per-channel weight scale along axis {w.spec.axis}: only the "
                         f"output-channel axis {axis} is supported")


def _transpose_qconst(w: QConst) -> QConst:
    ax = None if w.spec.axis is None else 1 - w.spec.axis
    return QConst(w.codes.T, QSpec(w.spec.scale, w.spec.zero_point, w.spec.lo, w.spec.hi, ax))


def _gemm(ctx: _Ctx, node) -> None:
    a = _attrs(node)
    if a.get("transA", 0):
        raise node_error(node.name, node.op_type, "transA = 1 not supported")
    x = _activation(ctx, node, node.input[0])
    w = _weight(ctx, node, node.input[1])
    if w.codes.ndim != 2:
        raise node_error(node.name, node.op_type, "weight must be 2-D")
    if a.get("transB", 0):
        w = _transpose_qconst(w)
    _require_weight_axis(node, w, 1)
    alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
    if alpha != 1.0:
        w = QConst(w.codes, QSpec(w.spec.scale * alpha, w.spec.zero_point, w.spec.lo, w.spec.hi, w.spec.axis))
    bias = _bias(ctx, node, node.input[2] if len(node.input) > 2 else None)
    if bias is not None:
        bias = bias * beta
        if bias.size == 1:
            bias = np.full(w.codes.shape[1], bias[0])
    if len(x.shape) != 2 or x.shape[1] != w.codes.shape[0]:
        raise node_error(node.name, node.op_type, f"input shape {x.shape} does not match weight {w.codes.shape}")
    out_shape = (x.shape[0], w.codes.shape[1])
    ctx.steps.append(TileLayer(node.name, "Gemm", x.name, node.output[0], w, bias=bias, in_shape=x.shape,
                               out_shape=out_shape))
    ctx.add(Tensor(node.output[0], "float", out_shape))


def _matmul(ctx: _Ctx, node) -> None:
    A, B = node.input[0], node.input[1]
    if B in ctx.qconsts or B in ctx.consts:
        x = _activation(ctx, node, A)
        w = _weight(ctx, node, B)
        if w.codes.ndim != 2:
            raise node_error(node.name, node.op_type, "constant weight must be 2-D")
        _require_weight_axis(node, w, 1)
        if x.shape[-1] != w.codes.shape[0]:
            raise node_error(node.name, node.op_type, f"input shape {x.shape} does not match weight {w.codes.shape}")
        out_shape = tuple(x.shape[:-1]) + (w.codes.shape[1],)
        ctx.steps.append(TileLayer(node.name, "MatMul", x.name, node.output[0], w, in_shape=x.shape,
                                   out_shape=out_shape))
        ctx.add(Tensor(node.output[0], "float", out_shape))
        return
    if A in ctx.qconsts or A in ctx.consts:
        raise node_error(node.name, node.op_type, "constant left operand not supported (weights must be the right "
                         "operand)")
    # both operands are activations: attention-style product, run on the host and counted separately
    _host(ctx, node)


def _qlinear(ctx: _Ctx, node) -> None:
    """QLinearConv (x, xs, xz, w, ws, wz, ys, yz, B) and QLinearMatMul (a, as, az, b, bs, bz, ys, yz)."""
    i = node.input
    x = _activation(ctx, node, i[0])
    if x.kind != "codes":
        raise node_error(node.name, node.op_type, f"input {i[0]!r} is not quantized codes")
    xs, xz = ctx.const(node, i[1], "scale"), ctx.const(node, i[2], "zero point")
    raw = np.asarray(ctx.const(node, i[3], "weight"))
    if raw.dtype not in _NP_RANGES:
        raise node_error(node.name, node.op_type, f"weight type {raw.dtype} is not integer codes")
    ws, wz = ctx.const(node, i[4], "scale"), ctx.const(node, i[5], "zero point")
    ys, yz = ctx.const(node, i[6], "scale"), ctx.const(node, i[7], "zero point")
    conv = node.op_type == "QLinearConv"
    wlo, whi = _NP_RANGES[raw.dtype]
    w = QConst(raw.astype(np.int32), _spec(node, ws, wz, wlo, whi, 0 if conv else 1, raw.ndim))
    in_spec = _spec(node, xs, xz, x.spec.lo, x.spec.hi, 0, len(x.shape))
    ylo, yhi = _NP_RANGES[np.asarray(yz).dtype]
    out_spec = _spec(node, ys, yz, ylo, yhi, 0, 1)
    dt = "uint8" if ylo >= 0 else "int8"
    if conv:
        _require_weight_axis(node, w, 0)
        cg, out_shape = _conv_geometry(node, x.shape, raw.shape)
        bias_int = None
        if len(i) > 8 and i[8]:
            bias_int = np.asarray(ctx.const(node, i[8], "bias"), dtype=np.int64).reshape(-1)
        layer = TileLayer(node.name, node.op_type, x.name, node.output[0], w, bias_int=bias_int, conv=cg,
                          in_spec=in_spec, out_spec=out_spec, in_shape=x.shape, out_shape=out_shape,
                          groups=_groups(node))
    else:
        if raw.ndim == 3:
            _batched_matmul(ctx, node, x, w, dict(in_spec=in_spec, out_spec=out_spec), Tensor(
                "", "codes", (), out_spec, dt))
            return
        _require_weight_axis(node, w, 1)
        if raw.ndim != 2 or x.shape[-1] != raw.shape[0]:
            raise node_error(node.name, node.op_type, f"input shape {x.shape} does not match weight {raw.shape}")
        out_shape = tuple(x.shape[:-1]) + (raw.shape[1],)
        layer = TileLayer(node.name, node.op_type, x.name, node.output[0], w, in_spec=in_spec, out_spec=out_spec,
                          in_shape=x.shape, out_shape=out_shape)
    ctx.steps.append(layer)
    ctx.add(Tensor(node.output[0], "codes", out_shape, out_spec, dt))


def _qgemm(ctx: _Ctx, node) -> None:
    """onnxruntime's QGemm (A, a_scale, a_zp, B, b_scale, b_zp, C, y_scale, y_zp; alpha, transA, transB): the
    int32 bias C at scale ``a_scale * b_scale`` added to the accumulator, the output requantised with
    ``alpha * a_scale * b_scale / y_scale`` (quant_gemm.cc), or read back as float without y_scale."""
    i = list(node.input) + [""] * 9
    a = _attrs(node)
    if a.get("transA", 0):
        raise node_error(node.name, node.op_type, "transA = 1 not supported")
    x = _activation(ctx, node, i[0])
    if x.kind != "codes":
        raise node_error(node.name, node.op_type, f"input {i[0]!r} is not quantized codes")
    xs, xz = ctx.const(node, i[1], "scale"), ctx.const(node, i[2], "zero point")
    raw = np.asarray(ctx.const(node, i[3], "weight"))
    if raw.dtype not in _NP_RANGES or raw.ndim != 2:
        raise node_error(node.name, node.op_type, f"weight must be 2-D integer codes, got {raw.dtype} {raw.shape}")
    ws, wz = np.asarray(ctx.const(node, i[4], "scale")), ctx.const(node, i[5], "zero point")
    alpha = float(a.get("alpha", 1.0))
    wlo, whi = _NP_RANGES[raw.dtype]
    w = QConst(raw.astype(np.int32), _spec(node, ws * alpha, wz, wlo, whi, 0 if a.get("transB", 0) else 1, raw.ndim))
    if a.get("transB", 0):
        w = _transpose_qconst(w)
    _require_weight_axis(node, w, 1)
    if len(x.shape) != 2 or x.shape[1] != w.codes.shape[0]:
        raise node_error(node.name, node.op_type, f"input shape {x.shape} does not match weight {w.codes.shape}")
    N = w.codes.shape[1]
    bias_int = None
    if i[6]:
        c = np.asarray(ctx.const(node, i[6], "bias C"), dtype=np.int64)
        if c.size not in (1, N) or (c.ndim == 2 and c.shape[0] != 1):
            raise node_error(node.name, node.op_type,
                             f"bias C of shape {c.shape}: only a scalar or ({N},) is supported")
        bias_int = np.broadcast_to(c.reshape(-1), (N,)).copy()
    in_spec = _spec(node, xs, xz, x.spec.lo, x.spec.hi, 0, 2)
    out_shape = (x.shape[0], N)
    if bool(i[7]) != bool(i[8]):
        raise node_error(node.name, node.op_type, "y_scale and y_zero_point must be given together")
    if i[7]:
        ys, yz = ctx.const(node, i[7], "scale"), ctx.const(node, i[8], "zero point")
        ylo, yhi = _NP_RANGES[np.asarray(yz).dtype]
        out_spec = _spec(node, ys, yz, ylo, yhi, 0, 1)
        ctx.steps.append(TileLayer(node.name, node.op_type, x.name, node.output[0], w, bias_int=bias_int,
                                   in_spec=in_spec, out_spec=out_spec, in_shape=x.shape, out_shape=out_shape))
        ctx.add(Tensor(node.output[0], "codes", out_shape, out_spec, "uint8" if ylo >= 0 else "int8"))
    else:
        ctx.steps.append(TileLayer(node.name, node.op_type, x.name, node.output[0], w, bias_int=bias_int,
                                   in_spec=in_spec, in_shape=x.shape, out_shape=out_shape))
        ctx.add(Tensor(node.output[0], "float", out_shape))


def _batched_matmul(ctx: _Ctx, node, x: Tensor, w: QConst, fields: dict, out: Tensor) -> None:
    """``x (G, M, K) @ w (G, K, N)`` with a constant 3-D weight: one tile layer with a block-diagonal weight
    (``groups = G``) between host reshapes: (G, M, K) -> (M, G*K) -> tile -> (M, G*N) -> (G, M, N)."""
    G, K, N = w.codes.shape
    if len(x.shape) != 3 or x.shape[0] != G or x.shape[2] != K:
        raise node_error(node.name, node.op_type, f"input shape {x.shape} does not match the batched weight "
                         f"{w.codes.shape} (expected ({G}, M, {K}))")
    if not w.spec.per_tensor:
        raise node_error(node.name, node.op_type, "a batched (3-D) weight needs a per-tensor scale and zero point")
    M = x.shape[1]
    base = node.output[0]
    t1, t2, t3, t4 = (f"{base}::{s}" for s in ("t", "flat", "mm", "split"))
    ctx.steps.append(HostStep(node.name + "::t", "Transpose", [x.name], [t1], {"perm": [1, 0, 2]}))
    ctx.add(Tensor(t1, x.kind, (M, G, K), x.spec, x.dtype))
    ctx.steps.append(HostStep(node.name + "::flat", "Reshape", [t1], [t2], {"shape": [M, G * K]}))
    ctx.add(Tensor(t2, x.kind, (M, G * K), x.spec, x.dtype))
    ctx.steps.append(TileLayer(node.name, node.op_type, t2, t3, w, in_shape=(M, G * K), out_shape=(M, G * N),
                               groups=G, **fields))
    ctx.add(Tensor(t3, out.kind, (M, G * N), out.spec, out.dtype))
    ctx.steps.append(HostStep(node.name + "::split", "Reshape", [t3], [t4], {"shape": [M, G, N]}))
    ctx.add(Tensor(t4, out.kind, (M, G, N), out.spec, out.dtype))
    ctx.steps.append(HostStep(node.name + "::tb", "Transpose", [t4], [base], {"perm": [1, 0, 2]}))
    ctx.add(Tensor(base, out.kind, (G, M, N), out.spec, out.dtype))


def _integer(ctx: _Ctx, node) -> None:
    """ConvInteger (x, w, xz, wz) and MatMulInteger (a, b, az, bz): int32 accumulator outputs."""
    i = list(node.input) + [""] * 4
    x = _activation(ctx, node, i[0])
    if x.kind != "codes":
        raise node_error(node.name, node.op_type, f"input {i[0]!r} is not integer codes")
    if i[1] not in ctx.consts:
        raise node_error(node.name, node.op_type, f"weight {i[1]!r} is not a constant (dynamic weights are not "
                         "supported)")
    raw = np.asarray(ctx.consts[i[1]])
    if raw.dtype not in _NP_RANGES:
        raise node_error(node.name, node.op_type, f"weight type {raw.dtype} is not integer codes")
    xz = ctx.const(node, i[2], "zero point") if i[2] else 0
    wz = ctx.const(node, i[3], "zero point") if i[3] else 0
    conv = node.op_type == "ConvInteger"
    wlo, whi = _NP_RANGES[raw.dtype]
    wz = np.asarray(wz)
    w = QConst(raw.astype(np.int32), _spec(node, np.ones(wz.shape) if wz.size > 1 else 1.0, wz, wlo, whi,
                                           0 if conv else 1, raw.ndim))
    in_spec = _spec(node, 1.0, np.asarray(xz).reshape(()), x.spec.lo, x.spec.hi, 0, len(x.shape))
    if conv:
        cg, out_shape = _conv_geometry(node, x.shape, raw.shape)
        layer = TileLayer(node.name, node.op_type, x.name, node.output[0], w, conv=cg, in_spec=in_spec,
                          out_dtype="int32", in_shape=x.shape, out_shape=out_shape, groups=_groups(node))
    else:
        if raw.ndim == 3:
            _batched_matmul(ctx, node, x, w, dict(in_spec=in_spec, out_dtype="int32"),
                            Tensor("", "int", (), None, "int32"))
            return
        if raw.ndim != 2 or x.shape[-1] != raw.shape[0]:
            raise node_error(node.name, node.op_type, f"input shape {x.shape} does not match weight {raw.shape}")
        out_shape = tuple(x.shape[:-1]) + (raw.shape[1],)
        layer = TileLayer(node.name, node.op_type, x.name, node.output[0], w, in_spec=in_spec, out_dtype="int32",
                          in_shape=x.shape, out_shape=out_shape)
    ctx.steps.append(layer)
    ctx.add(Tensor(node.output[0], "int", out_shape, None, "int32"))


# -- host ops ----------------------------------------------------------------------------------------------

def _fold_constant(ctx: _Ctx, node) -> None:
    """A node whose inputs are all constants: evaluated once here (onnx's reference implementation)."""
    from onnx.reference import ReferenceEvaluator

    vals = {}
    for n in node.input:
        if not n:
            continue
        if n in ctx.consts:
            vals[n] = np.asarray(ctx.consts[n])
        elif n in ctx.qconsts:
            vals[n] = ctx.qconsts[n].real().astype(np.float32)
        else:
            raise node_error(node.name, node.op_type, f"input {n!r} is not produced by any supported node")
    ins = [onnx.helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for n, v in vals.items()]
    outs = [onnx.helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o]
    g = onnx.helper.make_graph([node], "fold", ins, outs)
    try:
        res = ReferenceEvaluator(onnx.helper.make_model(g)).run(None, vals)
    except Exception as e:  # the reference implementation's own message, on one line
        raise node_error(node.name, node.op_type, f"cannot evaluate on its constant inputs: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    for o, v in zip([o for o in node.output if o], res):
        ctx.consts[o] = np.asarray(v)


def _host(ctx: _Ctx, node) -> None:
    """A node the runtime executes on the host: the common checks here, the op's own shape inference in
    :data:`cimtile.compiler.hostops.HOST`. A node of constants only is evaluated here instead."""
    op = node.op_type
    ins = [n for n in node.input]
    acts = [ctx.tensors[n] for n in ins if n and n in ctx.tensors]
    if op == "Transpose" and ins[0] in ctx.qconsts:  # a quantized weight transposed (torch's dynamo export)
        qc = ctx.qconsts[ins[0]]
        perm = list(_attrs(node).get("perm", range(qc.codes.ndim)[::-1]))
        ax = None if qc.spec.axis is None else perm.index(qc.spec.axis)
        sp = qc.spec
        ctx.qconsts[node.output[0]] = QConst(np.transpose(qc.codes, perm), QSpec(sp.scale, sp.zero_point, sp.lo,
                                                                                 sp.hi, ax))
        return
    if not acts:
        _fold_constant(ctx, node)
        return
    for n in ins:
        if n and n not in ctx.tensors and n not in ctx.consts:
            if n in ctx.qconsts:
                ctx.consts[n] = ctx.qconsts[n].real().astype(np.float32)
            else:
                raise node_error(node.name, op, f"input {n!r} is not produced by any supported node")
    t0 = acts[0]
    attrs = _attrs(node)
    t = Typing(node.name, op, attrs, ins, list(node.output), acts,
               lambda n: ctx.tensors[n].shape if n in ctx.tensors else np.shape(ctx.consts[n]),
               lambda n, what: ctx.const(node, n, what),
               t0.shape, t0.kind, t0.spec, t0.dtype, dict(attrs),
               value_of=lambda n: ctx.tensors[n].value if n in ctx.tensors else None)
    name = _HOST_BY_ONNX[op]
    HOST[name].infer(t)
    outs = [o for o in node.output]
    if t.out_shapes is None and len([o for o in outs if o]) > 1:
        raise node_error(node.name, op, "only the first output is supported")
    if t.out_shapes is None:
        outs = outs[:1]
    ctx.steps.append(HostStep(node.name, name, t.step_inputs if t.step_inputs is not None else ins, outs,
                              t.step_attrs))
    for o, shape in zip(outs, t.out_shapes or [t.shape]):
        ctx.add(Tensor(o, t.kind, tuple(shape), t.spec, t.dtype, value=t.value if len(outs) == 1 else None))


#: Lowering table keyed by ONNX op_type.
HANDLERS = {
    "Constant": _constant, "QuantizeLinear": _quantize_linear, "DequantizeLinear": _dequantize_linear,
    "Quant": _quant, "Clip": _clip, "Conv": _conv, "Gemm": _gemm, "MatMul": _matmul,
    "QLinearConv": _qlinear, "QLinearMatMul": _qlinear, "QGemm": _qgemm,
    "ConvInteger": _integer, "MatMulInteger": _integer,
    **{op: _host for op in HOST_OPS if op not in ("Clip", "MatMul")},  # Clip, MatMul: their handlers decide
}


def import_model(model: onnx.ModelProto, require_tile: bool = True) -> Model:
    """Build the layer IR of a quantised ONNX model (raises :class:`CompileError` on anything unsupported).

    ``require_tile``: refuse a model with no layer for the tile (False: host steps only, for testing them)."""
    ctx = _Ctx(model)
    if not ctx.inputs:
        raise CompileError("the model has no (non-constant) input")
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"
    _check_supported(model)
    for node in model.graph.node:
        if _foreign(node):
            raise node_error(node.name, node.op_type, f"operator of domain {node.domain!r} not supported")
        h = HANDLERS.get(node.op_type)
        if h is None:
            raise node_error(node.name, node.op_type, "unsupported operator")
        h(ctx, node)
    for o in ctx.outputs:
        if o not in ctx.tensors:
            raise CompileError(f"graph output {o!r} is not computed from the input (constant outputs not supported)")
    if require_tile and not any(isinstance(s, TileLayer) for s in ctx.steps):
        raise CompileError("no Conv, Gemm or MatMul with a quantized constant weight: nothing runs on the tile")
    consts = {k: v for k, v in ctx.consts.items()}
    return Model(ctx.tensors, ctx.steps, ctx.inputs, ctx.outputs, consts,
                 meta={"input_shapes": {n: ctx.declared[n] for n in ctx.inputs}})


def _foreign(node) -> bool:
    """True for an operator of a domain the frontend does not take (QONNX's Quant and onnxruntime's
    com.microsoft operators of :data:`MS_OPS` are taken; a standard op type in another domain is not)."""
    d = node.domain
    if not d or d == "ai.onnx":
        return node.op_type in MS_OPS
    if d in QONNX_DOMAINS:
        return node.op_type != "Quant"
    if d == MS_DOMAIN:
        return node.op_type not in MS_OPS
    return True


def _check_supported(model: onnx.ModelProto) -> None:
    """Every unsupported op type of the model in one error (first node of each), so the whole gap shows."""
    bad: dict[str, str] = {}
    for node in model.graph.node:
        key = node.op_type if not node.domain or node.domain == "ai.onnx" else f"{node.domain}.{node.op_type}"
        if (_foreign(node) or node.op_type not in HANDLERS) and key not in bad:
            bad[key] = node.name
    if not bad:
        return
    if len(bad) == 1:
        (op, name), = bad.items()
        raise node_error(name, op, "unsupported operator")
    raise CompileError(f"{len(bad)} unsupported operator types: "
                       + ", ".join(f"{op} (first: node {name!r})" for op, name in bad.items()))
