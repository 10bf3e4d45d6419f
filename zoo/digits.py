"""Small digits networks (MLP, CNN, residual CNN) trained with torch, their float ONNX graphs, onnxruntime's
static quantizer, a hand-written mixed-precision CNN (QCDQ or QONNX) and a brevitas QCDQ export.

The compiler's tests, the README example and the benchmarks use these. Training takes seconds.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .data import digits
from .fit import fit

__all__ = ["brevitas_cnn", "float_onnx", "mixed_cnn", "ort_quantize", "train"]


# -- float networks (torch) and their ONNX graphs ---------------------------------------------------

def _torch_nets():
    import torch
    from torch import nn

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(64, 32), nn.Linear(32, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
            x = nn.functional.max_pool2d(torch.relu(self.c2(x)), 2)
            return self.fc(x.flatten(1))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = torch.relu(x + self.b(torch.relu(self.a(x))))
            x = torch.relu(self.down(x))
            return self.fc(x.mean(dim=(2, 3)))

    class Mix(nn.Module):
        """A residual CNN with the ops onnxruntime's QOperator format turns into com.microsoft kernels: a
        residual Add, an average-pool branch beside a strided-conv branch with a sigmoid, their Concat, a leaky
        ReLU and a global average pool."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.a, self.b = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
            self.mix = nn.Conv2d(16, 16, 3, padding=1)
            self.fc = nn.Linear(16, 10)

        def forward(self, x):
            s = nn.functional.leaky_relu(self.stem(x), 0.1)
            h = torch.relu(s + self.b(torch.relu(self.a(s))))
            h = torch.cat([nn.functional.avg_pool2d(h, 2), torch.sigmoid(self.down(h))], dim=1)
            h = torch.relu(self.mix(h))
            return self.fc(h.mean(dim=(2, 3)))

    return {"mlp": MLP, "cnn": CNN, "resnet": ResNet, "mix": Mix}


def train(kind: str, epochs: int = 12, seed: int = 0):
    """Train a small float network on digits; returns the torch module (eval mode)."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny networks: threads only contend with the other test workers
    xtr, ytr, _, _ = digits()
    net = _torch_nets()[kind]()
    return fit(net, xtr, ytr, epochs=epochs, lr=1e-2, seed=seed)


def _p(net, name):
    return net.state_dict()[name].detach().numpy().astype(np.float32)


def float_onnx(kind: str, net) -> onnx.ModelProto:
    """The float ONNX graph of a trained network (written with onnx.helper: exact ops, dynamic batch)."""
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def conv(x, pre, out, stride=1):
        nodes.append(helper.make_node("Conv", [x, init(pre + ".w", _p(net, pre + ".weight")),
                                               init(pre + ".b", _p(net, pre + ".bias"))], [out], name=pre,
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride]))
        return out

    def gemm(x, pre, out):
        nodes.append(helper.make_node("Gemm", [x, init(pre + ".w", _p(net, pre + ".weight")),
                                               init(pre + ".b", _p(net, pre + ".bias"))], [out], name=pre, transB=1))
        return out

    def op(t, ins, out, **kw):
        nodes.append(helper.make_node(t, ins, [out], name=out, **kw))
        return out

    if kind == "mlp":
        h = op("Flatten", ["x"], "flat")
        h = op("Relu", [gemm(h, "fc1", "fc1_out")], "relu1")
        gemm(h, "fc2", "y")
    elif kind == "cnn":
        h = op("Relu", [conv("x", "c1", "c1_out")], "relu1")
        h = op("MaxPool", [h], "pool1", kernel_shape=[2, 2], strides=[2, 2])
        h = op("Relu", [conv(h, "c2", "c2_out")], "relu2")
        h = op("MaxPool", [h], "pool2", kernel_shape=[2, 2], strides=[2, 2])
        gemm(op("Flatten", [h], "flat"), "fc", "y")
    elif kind == "resnet":
        s = op("Relu", [conv("x", "stem", "stem_out")], "relu0")
        h = op("Relu", [conv(s, "a", "a_out")], "relu1")
        h = op("Add", [s, conv(h, "b", "b_out")], "res")
        h = op("Relu", [h], "relu2")
        h = op("Relu", [conv(h, "down", "down_out", stride=2)], "relu3")
        h = op("GlobalAveragePool", [h], "gap")
        gemm(op("Flatten", [h], "flat"), "fc", "y")
    elif kind == "mix":
        s = op("LeakyRelu", [conv("x", "stem", "stem_out")], "lrelu0", alpha=0.1)
        h = op("Relu", [conv(s, "a", "a_out")], "relu1")
        h = op("Relu", [op("Add", [s, conv(h, "b", "b_out")], "res")], "relu2")
        p = op("AveragePool", [h], "avg", kernel_shape=[2, 2], strides=[2, 2])
        d = op("Sigmoid", [conv(h, "down", "down_out", stride=2)], "sig")
        h = op("Relu", [conv(op("Concat", [p, d], "cat", axis=1), "mix", "mix_out")], "relu3")
        h = op("GlobalAveragePool", [h], "gap")
        gemm(op("Flatten", [h], "flat"), "fc", "y")
    else:
        raise ValueError(kind)
    g = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    return m


def ort_quantize(model: onnx.ModelProto, calib: np.ndarray, path, per_channel: bool = False,
                 weight_type: str = "QInt8", quant_format: str = "QDQ", input_name: str = "x") -> onnx.ModelProto:
    """onnxruntime's static quantizer (uint8 activations; ``weight_type`` "QInt8": int8 symmetric weights,
    "QUInt8": uint8 asymmetric weights with a zero point), every op type it quantizes by default.

    ``quant_format``: "QDQ" (QuantizeLinear/DequantizeLinear pairs) or "QOperator" (QLinearConv, and
    onnxruntime's ``com.microsoft`` QLinearAdd, QGemm, QLinearConcat, QLinear*Pool, QLinearSigmoid, ...)."""
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{input_name: calib[i:i + 64]} for i in range(0, len(calib), 64)])

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "float.onnx"
        onnx.save(model, src)
        quantize_static(str(src), str(path), Reader(), quant_format=QuantFormat[quant_format],
                        per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType[weight_type])
    return onnx.load(str(path))


# -- mixed precision, written by hand as QCDQ or QONNX -----------------------------------------------

def mixed_cnn(net, calib: np.ndarray, bits, style: str = "qcdq") -> onnx.ModelProto:
    """The digits CNN with per-layer (weight bits, activation bits): ``bits`` = [(w, a) for c1, c2, fc] where
    ``a`` is the width of the layer's *input*; weights per-channel symmetric narrow, activations unsigned.

    ``style`` 'qcdq': QuantizeLinear -> Clip -> DequantizeLinear (onnxruntime runs it); 'qonnx': QONNX
    ``Quant`` nodes with bit-width inputs.
    """
    import torch

    # activation ranges from calibration (max of each layer input)
    with torch.no_grad():
        x = torch.from_numpy(calib)
        r1 = torch.relu(net.c1(x))
        p1 = torch.nn.functional.max_pool2d(r1, 2)
        r2 = torch.relu(net.c2(p1))
        p2 = torch.nn.functional.max_pool2d(r2, 2)
    ranges = [1.0, float(p1.max()), float(p2.max())]
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def qact(x, name, bits_a, amax):
        scale = np.float32(amax / ((1 << bits_a) - 1))
        if style == "qcdq":
            nodes.append(helper.make_node("QuantizeLinear", [x, init(name + ".s", scale),
                                                             init(name + ".z", np.uint8(0))], [name + ".q"]))
            nodes.append(helper.make_node("Clip", [name + ".q", init(name + ".lo", np.uint8(0)),
                                                   init(name + ".hi", np.uint8((1 << bits_a) - 1))], [name + ".c"]))
            nodes.append(helper.make_node("DequantizeLinear", [name + ".c", name + ".s", name + ".z"], [name]))
        else:
            nodes.append(helper.make_node("Quant", [x, init(name + ".s", scale), init(name + ".z", np.float32(0)),
                                                    init(name + ".b", np.float32(bits_a))], [name],
                                          domain="qonnx.custom_op.general", signed=0, narrow=0,
                                          rounding_mode="ROUND"))
        return name

    def qweight(w, name, bits_w):
        lim = (1 << (bits_w - 1)) - 1
        axis_shape = (-1,) + (1,) * (w.ndim - 1)
        amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
        scale = (np.maximum(amax, 1e-8) / lim).astype(np.float32)
        codes = np.clip(np.round(w / scale.reshape(axis_shape)), -lim, lim).astype(np.int8)
        if style == "qcdq":
            init(name + ".q", codes)
            nodes.append(helper.make_node("Clip", [name + ".q", init(name + ".lo", np.int8(-lim)),
                                                   init(name + ".hi", np.int8(lim))], [name + ".c"]))
            nodes.append(helper.make_node("DequantizeLinear", [name + ".c", init(name + ".s", scale),
                                                               init(name + ".z", np.zeros(len(scale), np.int8))],
                                          [name], axis=0))
        else:
            nodes.append(helper.make_node("Quant", [init(name + ".f", w), init(name + ".s", scale.reshape(axis_shape)),
                                                    init(name + ".z", np.float32(0)),
                                                    init(name + ".b", np.float32(bits_w))], [name],
                                          domain="qonnx.custom_op.general", signed=1, narrow=1,
                                          rounding_mode="ROUND"))
        return name

    (w1, a1), (w2, a2), (w3, a3) = bits
    h = qact("x", "x_q", a1, ranges[0])
    nodes.append(helper.make_node("Conv", [h, qweight(_p(net, "c1.weight"), "c1.w", w1),
                                           init("c1.b", _p(net, "c1.bias"))], ["c1"],
                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c1"))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="relu1"))
    nodes.append(helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"))
    h = qact("p1", "p1_q", a2, ranges[1])
    nodes.append(helper.make_node("Conv", [h, qweight(_p(net, "c2.weight"), "c2.w", w2),
                                           init("c2.b", _p(net, "c2.bias"))], ["c2"],
                                  kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="c2"))
    nodes.append(helper.make_node("Relu", ["c2"], ["r2"], name="relu2"))
    nodes.append(helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], name="pool2"))
    nodes.append(helper.make_node("Flatten", ["p2"], ["f"], name="flat"))
    h = qact("f", "f_q", a3, ranges[2])
    wq = qweight(_p(net, "fc.weight"), "fc.w", w3)
    nodes.append(helper.make_node("Gemm", [h, wq, init("fc.b", _p(net, "fc.bias"))], ["y"], transB=1, name="fc"))
    g = helper.make_graph(nodes, f"mixed_{style}",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    opsets = [helper.make_opsetid("", 17)]
    if style == "qonnx":
        opsets.append(helper.make_opsetid("qonnx.custom_op.general", 1))
    return helper.make_model(g, opset_imports=opsets)


def brevitas_cnn(path, seed: int = 0) -> onnx.ModelProto:
    """A mixed-precision CNN (w4/a8, w3/a5, w6/a4) exported by brevitas' QCDQ exporter (random weights; batch 4)."""
    import warnings

    import torch

    # brevitas and torch.export warn about their own internals (deprecations), not about this model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        import brevitas.nn as qnn
        from brevitas.export import export_onnx_qcdq

    torch.manual_seed(seed)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
            self.c1 = qnn.QuantConv2d(1, 8, 3, padding=1, weight_bit_width=4, return_quant_tensor=True)
            self.r1 = qnn.QuantReLU(bit_width=5, return_quant_tensor=True)
            self.c2 = qnn.QuantConv2d(8, 8, 3, padding=1, weight_bit_width=3, return_quant_tensor=True)
            self.r2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(8 * 8 * 8, 10, bias=True, weight_bit_width=6)

        def forward(self, x):
            x = self.r1(self.c1(self.inp(x)))
            x = self.r2(self.c2(x))
            return self.fc(x.flatten(1))

    net = Net().eval()
    x = torch.rand(4, 1, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        with torch.no_grad():
            net(x)  # calibrate the activation scales
        export_onnx_qcdq(net, args=x, export_path=str(path), opset_version=18)
    return onnx.load(str(path))
