"""ACT's vision stage (ResNet + 1x1 projection) written directly as a LiteRT .tflite flatbuffer.

Why not a converter: ``litert-torch`` 0.10 (the only release that accepts torch 2.13) pulls
``litert-converter`` -> ``xdsl==0.28`` which caps ``typing-extensions<4.13``, while this project
pins 4.16 (torch, pydantic); older releases cap torch < 2.13; ``onnx2tf`` needs TensorFlow. The
ResNet graph is small and regular, so we emit it with the flatbuffer schema that ai-edge-litert
ships: frozen batch-norms folded into the convolutions, explicit PAD + VALID convolutions (PyTorch's
symmetric padding differs from TFLite SAME on stride 2), NHWC inside, and the same interface as
the ONNX graph (input ``images`` [N, 3, H, W], output ``cam_tokens`` [N, h*w, D]).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class Unsupported(RuntimeError):
    """The module contains something this writer does not emit."""


class _Writer:
    def __init__(self) -> None:
        from ai_edge_litert import schema_py_generated as s

        self.s = s
        self.tensors: list = []
        self.buffers: list = [s.BufferT()]  # buffer 0 is the empty sentinel
        self.ops: list = []
        self.opcodes: dict[int, int] = {}
        self.codes: list = []

    def tensor(self, name: str, shape, data: np.ndarray | None = None, dtype=np.float32) -> int:
        s = self.s
        t = s.TensorT()
        t.name = name
        t.shape = [int(x) for x in shape]
        t.type = {np.dtype(np.float32): s.TensorType.FLOAT32,
                  np.dtype(np.int32): s.TensorType.INT32}[np.dtype(dtype)]
        if data is not None:
            b = s.BufferT()
            # a uint8 ndarray packs with one memcpy (CreateNumpyVector); bytes pack byte by byte
            b.data = np.ascontiguousarray(data, dtype=dtype).reshape(-1).view(np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs, outputs, opt_type=0, opts=None) -> None:
        s = self.s
        if code not in self.opcodes:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self.codes.append(oc)
            self.opcodes[code] = len(self.codes) - 1
        o = s.OperatorT()
        o.opcodeIndex = self.opcodes[code]
        o.inputs, o.outputs = list(inputs), list(outputs)
        o.builtinOptionsType, o.builtinOptions = opt_type, opts
        self.ops.append(o)

    def finish(self, inputs, outputs) -> bytes:
        import flatbuffers

        s = self.s
        sg = s.SubGraphT()
        sg.tensors, sg.operators = self.tensors, self.ops
        sg.inputs, sg.outputs, sg.name = list(inputs), list(outputs), "main"
        m = s.ModelT()
        m.version = 3
        m.operatorCodes, m.subgraphs, m.buffers = self.codes, [sg], self.buffers
        m.description = "edgevla: ACT vision stage"
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def _fold(conv, bn) -> tuple[np.ndarray, np.ndarray]:
    """conv (no bias) + frozen BN -> OHWI weights and bias."""
    w = conv.weight.detach().double().numpy()
    b = conv.bias.detach().double().numpy() if conv.bias is not None else np.zeros(w.shape[0])
    if bn is not None:
        eps = getattr(bn, "eps", 1e-5)
        scale = bn.weight.double().numpy() / np.sqrt(bn.running_var.double().numpy() + eps)
        b = (b - bn.running_mean.double().numpy()) * scale + bn.bias.double().numpy()
        w = w * scale[:, None, None, None]
    return w.transpose(0, 2, 3, 1).astype(np.float32), b.astype(np.float32)


class _ResNetEmitter:
    def __init__(self, n: int) -> None:
        self.w = _Writer()
        self.n = n
        self.k = 0

    def _name(self, p: str) -> str:
        self.k += 1
        return f"{p}_{self.k}"

    def pad(self, x: int, shape, ph: int, pw: int) -> tuple[int, list[int]]:
        if ph == 0 and pw == 0:
            return x, shape
        s = self.w.s
        paddings = self.w.tensor(self._name("pads"), [4, 2],
                                 np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], np.int32), np.int32)
        out_shape = [shape[0], shape[1] + 2 * ph, shape[2] + 2 * pw, shape[3]]
        y = self.w.tensor(self._name("pad"), out_shape)
        self.w.op(s.BuiltinOperator.PAD, [x, paddings], [y], s.BuiltinOptions.PadOptions,
                  s.PadOptionsT())
        return y, out_shape

    def conv(self, x: int, shape, conv, bn, relu: bool) -> tuple[int, list[int]]:
        s = self.w.s
        if conv.groups != 1:
            raise Unsupported("grouped convolutions")
        ph, pw = (conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 2)
        if isinstance(ph, str):
            raise Unsupported(f"padding mode {conv.padding!r}")
        x, shape = self.pad(x, shape, ph, pw)
        wgt, bias = _fold(conv, bn)
        kh, kw = wgt.shape[1:3]
        sh, sw = conv.stride
        dh, dw = conv.dilation
        oh = (shape[1] - dh * (kh - 1) - 1) // sh + 1
        ow = (shape[2] - dw * (kw - 1) - 1) // sw + 1
        wt = self.w.tensor(self._name("w"), wgt.shape, wgt)
        bt = self.w.tensor(self._name("b"), bias.shape, bias)
        out_shape = [shape[0], oh, ow, wgt.shape[0]]
        y = self.w.tensor(self._name("conv"), out_shape)
        o = s.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW = s.Padding.VALID, sh, sw
        o.dilationHFactor, o.dilationWFactor = dh, dw
        o.fusedActivationFunction = (s.ActivationFunctionType.RELU if relu
                                     else s.ActivationFunctionType.NONE)
        self.w.op(s.BuiltinOperator.CONV_2D, [x, wt, bt], [y], s.BuiltinOptions.Conv2DOptions, o)
        return y, out_shape

    def maxpool(self, x: int, shape, pool) -> tuple[int, list[int]]:
        s = self.w.s
        k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
        st = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
        p = pool.padding if isinstance(pool.padding, int) else pool.padding[0]
        if pool.ceil_mode or (pool.dilation not in (1, (1, 1))):
            raise Unsupported("max-pool with ceil_mode/dilation")
        # Zero padding equals -inf padding here: the input comes out of a ReLU (>= 0).
        x, shape = self.pad(x, shape, p, p)
        oh, ow = (shape[1] - k) // st + 1, (shape[2] - k) // st + 1
        out_shape = [shape[0], oh, ow, shape[3]]
        y = self.w.tensor(self._name("pool"), out_shape)
        o = s.Pool2DOptionsT()
        o.padding, o.strideH, o.strideW, o.filterHeight, o.filterWidth = s.Padding.VALID, st, st, k, k
        self.w.op(s.BuiltinOperator.MAX_POOL_2D, [x], [y], s.BuiltinOptions.Pool2DOptions, o)
        return y, out_shape

    def add_relu(self, a: int, b: int, shape) -> int:
        s = self.w.s
        y = self.w.tensor(self._name("add"), shape)
        o = s.AddOptionsT()
        o.fusedActivationFunction = s.ActivationFunctionType.RELU
        self.w.op(s.BuiltinOperator.ADD, [a, b], [y], s.BuiltinOptions.AddOptions, o)
        return y

    def block(self, x: int, shape, blk) -> tuple[int, list[int]]:
        name = type(blk).__name__
        if name == "BasicBlock":
            h, hs = self.conv(x, shape, blk.conv1, blk.bn1, relu=True)
            h, hs = self.conv(h, hs, blk.conv2, blk.bn2, relu=False)
        elif name == "Bottleneck":
            h, hs = self.conv(x, shape, blk.conv1, blk.bn1, relu=True)
            h, hs = self.conv(h, hs, blk.conv2, blk.bn2, relu=True)
            h, hs = self.conv(h, hs, blk.conv3, blk.bn3, relu=False)
        else:
            raise Unsupported(f"ResNet block type {name}")
        if blk.downsample is not None:
            idn, _ = self.conv(x, shape, blk.downsample[0], blk.downsample[1], relu=False)
        else:
            idn = x
        return self.add_relu(h, idn, hs), hs


def export_act_vision(policy, path: str | Path) -> Path:
    """Write ACT's vision stage as .tflite; same I/O as vision.onnx."""
    from edgevla.deploy.export.act import layout_of  # torch at import: only when exporting

    s_layout = layout_of(policy)
    bb = policy.model.backbone
    names = list(dict(bb.named_children()))
    expected = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    if names != expected:
        raise Unsupported(f"backbone children {names}, expected a torchvision ResNet {expected}")
    n = s_layout.n_cameras
    h, w = s_layout.image_hw
    e = _ResNetEmitter(n)
    s = e.w.s
    x_in = e.w.tensor("images", [n, 3, h, w])
    perm = e.w.tensor("perm_nhwc", [4], np.array([0, 2, 3, 1], np.int32), np.int32)
    x = e.w.tensor("nhwc", [n, h, w, 3])
    e.w.op(s.BuiltinOperator.TRANSPOSE, [x_in, perm], [x], s.BuiltinOptions.TransposeOptions,
           s.TransposeOptionsT())
    shape = [n, h, w, 3]
    x, shape = e.conv(x, shape, bb.conv1, bb.bn1, relu=True)
    x, shape = e.maxpool(x, shape, bb.maxpool)
    for layer in (bb.layer1, bb.layer2, bb.layer3, bb.layer4):
        for blk in layer:
            x, shape = e.block(x, shape, blk)
    x, shape = e.conv(x, shape, policy.model.encoder_img_feat_input_proj, None, relu=False)
    # NHWC [N, h, w, D] reshaped is exactly ONNX's flatten(2).transpose(1, 2) of NCHW.
    out_shape = [n, shape[1] * shape[2], shape[3]]
    new_shape = e.w.tensor("tokens_shape", [3], np.array(out_shape, np.int32), np.int32)
    y = e.w.tensor("cam_tokens", out_shape)
    ro = s.ReshapeOptionsT()
    ro.newShape = out_shape
    e.w.op(s.BuiltinOperator.RESHAPE, [x, new_shape], [y], s.BuiltinOptions.ReshapeOptions, ro)
    path = Path(path)
    path.write_bytes(e.w.finish([x_in], [y]))
    return path
