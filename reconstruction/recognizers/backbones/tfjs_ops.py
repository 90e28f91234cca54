"""The TF ops a TF.js graph model may use, as torch functions (the table ``TfjsGraph`` compiles).

Op semantics follow the TensorFlow op definitions: NHWC layout, SAME padding with the extra
row/column at the bottom/right; convolutions view NHWC tensors as channels-last NCHW. A node's
static attributes (strides, paddings, fused activations) are bound once, at compile time.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BINARY",
    "CONV_OPS",
    "STATIC_ARGS",
    "SUPPORTED_OPS",
    "UNARY",
    "Node",
    "TfjsGraphError",
    "attr_bool",
    "attr_float",
    "conv_op",
    "fused_tail",
    "inline_const",
    "matmul_op",
    "node_ref",
    "pool_op",
    "same_padding",
]


class TfjsGraphError(ValueError):
    """A graph model that this executor cannot parse or run."""


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF's SAME padding (before, after) for one spatial dimension; the extra pixel goes after."""
    out = -(-size // stride)
    effective = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    attr: Mapping[str, Any]


def node_ref(name: str) -> str:
    """Strip the ``:0`` output suffix; other output indices are not produced by supported ops."""
    base, _, index = name.partition(":")
    if index not in ("", "0"):
        raise TfjsGraphError(f"input {name!r}: only the first output of a node is supported")
    return base


def _attr_str(attr: Mapping[str, Any], key: str, default: str = "") -> str:
    value = attr.get(key)
    return base64.b64decode(value["s"]).decode() if value and "s" in value else default


def _attr_strs(attr: Mapping[str, Any], key: str) -> list[str]:
    values = attr.get(key, {}).get("list", {}).get("s", [])
    return [base64.b64decode(v).decode() for v in values]


def _attr_ints(attr: Mapping[str, Any], key: str, default: Sequence[int]) -> list[int]:
    values = attr.get(key, {}).get("list", {}).get("i")
    return [int(v) for v in values] if values else list(default)


def _attr_int(attr: Mapping[str, Any], key: str, default: int) -> int:
    value = attr.get(key)
    return int(value["i"]) if value and "i" in value else default


def attr_float(attr: Mapping[str, Any], key: str, default: float) -> float:
    value = attr.get(key)
    return float(value["f"]) if value and "f" in value else default


def attr_bool(attr: Mapping[str, Any], key: str, default: bool = False) -> bool:
    value = attr.get(key)
    return bool(value["b"]) if value and "b" in value else default


def inline_const(node: Node) -> np.ndarray:
    """Decode a ``Const`` whose value is inlined in the graph rather than in the manifest."""
    tensor = node.attr.get("value", {}).get("tensor")
    if tensor is None:
        raise TfjsGraphError(f"Const {node.name!r} has no value in the manifest or the graph")
    shape = [int(d.get("size", 0)) for d in tensor.get("tensorShape", {}).get("dim", [])]
    for key, dtype in (("floatVal", np.float32), ("intVal", np.int32), ("boolVal", bool)):
        if key in tensor:
            values = np.asarray(tensor[key], dtype=dtype)
            count = int(np.prod(shape)) if shape else 1
            return np.broadcast_to(values, (count,)).reshape(shape).copy()
    raise TfjsGraphError(f"Const {node.name!r}: unsupported inline value {sorted(tensor)}")


# --- op implementations -----------------------------------------------------------------------


def _pad_nchw(x: Tensor, pads: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad (top, bottom, left, right) of an NCHW tensor."""
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _spatial_pads(
    attr: Mapping[str, Any], x: Tensor, kernel: Sequence[int], strides: Sequence[int], dil: int
) -> list[int]:
    """(top, bottom, left, right) for SAME, VALID or EXPLICIT padding of an NHWC input."""
    padding = _attr_str(attr, "padding", "VALID")
    if padding == "VALID":
        return [0, 0, 0, 0]
    if padding == "SAME":
        top, bottom = same_padding(x.shape[1], kernel[0], strides[0], dil)
        left, right = same_padding(x.shape[2], kernel[1], strides[1], dil)
        return [top, bottom, left, right]
    if padding == "EXPLICIT":
        explicit = _attr_ints(attr, "explicit_paddings", [0] * 8)
        return explicit[2:6]
    raise TfjsGraphError(f"unsupported padding {padding!r}")


def _check_nhwc(node: Node) -> None:
    layout = _attr_str(node.attr, "data_format", "NHWC")
    if layout != "NHWC":
        raise TfjsGraphError(f"{node.op} {node.name!r}: data_format {layout} is not supported")


def conv_op(node: Node, depthwise: bool) -> Callable[[Tensor, Tensor], Tensor]:
    """Conv2D / DepthwiseConv2dNative on NHWC input with a torch-layout (OIHW) weight."""
    _check_nhwc(node)
    strides = _attr_ints(node.attr, "strides", [1, 1, 1, 1])[1:3]
    dilations = _attr_ints(node.attr, "dilations", [1, 1, 1, 1])[1:3]
    if dilations[0] != dilations[1]:
        raise TfjsGraphError(f"{node.op} {node.name!r}: unequal dilations are not supported")

    def run(x: Tensor, weight: Tensor) -> Tensor:
        kernel = weight.shape[2:]
        pads = _spatial_pads(node.attr, x, kernel, strides, dilations[0])
        groups = x.shape[3] if depthwise else 1
        nchw = x.permute(0, 3, 1, 2)  # (B, C, H, W) view, channels-last in memory
        if pads[0] == pads[1] and pads[2] == pads[3]:
            out = F.conv2d(nchw, weight, None, strides, (pads[0], pads[2]), dilations, groups)
        else:
            out = F.conv2d(_pad_nchw(nchw, pads), weight, None, strides, 0, dilations, groups)
        return out.permute(0, 2, 3, 1)  # back to (B, H, W, C)

    return run


def pool_op(node: Node, kind: str) -> Callable[[Tensor], Tensor]:
    """MaxPool / AvgPool; TF's SAME average excludes the padded cells from the count."""
    _check_nhwc(node)
    kernel = _attr_ints(node.attr, "ksize", [1, 1, 1, 1])[1:3]
    strides = _attr_ints(node.attr, "strides", [1, 1, 1, 1])[1:3]

    def run(x: Tensor) -> Tensor:
        pads = _spatial_pads(node.attr, x, kernel, strides, 1)
        nchw = x.permute(0, 3, 1, 2)
        if kind == "max":
            out = F.max_pool2d(_pad_nchw(nchw, pads, float("-inf")), kernel, strides)
        elif not any(pads):
            out = F.avg_pool2d(nchw, kernel, strides)
        else:
            total = F.avg_pool2d(_pad_nchw(nchw, pads), kernel, strides, divisor_override=1)
            ones = _pad_nchw(torch.ones_like(nchw[:1, :1]), pads)
            count = F.avg_pool2d(ones, kernel, strides, divisor_override=1)
            out = total / count
        return out.permute(0, 2, 3, 1)

    return run


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "Relu": torch.relu,
    "Relu6": lambda x: x.clamp(0.0, 6.0),
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Elu": F.elu,
    "Selu": F.selu,
}


def _prelu(x: Tensor, alpha: Tensor) -> Tensor:
    return torch.where(x > 0, x, x * alpha)


def fused_tail(node: Node) -> tuple[Callable[[Tensor, list[Tensor]], Tensor], int]:
    """The epilogue of a fused op (BiasAdd/FusedBatchNorm + activation) and its arg count."""
    fused = _attr_strs(node.attr, "fused_ops")
    epsilon = attr_float(node.attr, "epsilon", 0.0)
    alpha = attr_float(node.attr, "leakyrelu_alpha", 0.2)
    head, *rest = fused or [""]
    if head == "BiasAdd":
        used = 1
    elif head in ("FusedBatchNorm", "FusedBatchNormV3"):
        used = 4
    else:
        raise TfjsGraphError(f"{node.op} {node.name!r}: unsupported fused ops {fused}")
    if len(rest) > 1 or (rest and rest[0] not in (*_ACTIVATIONS, "Prelu", "LeakyRelu")):
        raise TfjsGraphError(f"{node.op} {node.name!r}: unsupported fused ops {fused}")
    activation = rest[0] if rest else ""
    n_args = used + (activation == "Prelu")

    def run(x: Tensor, args: list[Tensor]) -> Tensor:
        if used == 1:
            x = x + args[0]
        else:
            scale, offset, mean, variance = args[:4]
            x = (x - mean) * torch.rsqrt(variance + epsilon) * scale + offset
        if activation == "Prelu":
            return _prelu(x, args[used])
        if activation == "LeakyRelu":
            return F.leaky_relu(x, alpha)
        return _ACTIVATIONS[activation](x) if activation else x

    return run, n_args


def matmul_op(node: Node) -> Callable[[Tensor, Tensor], Tensor]:
    transpose_a = attr_bool(node.attr, "transpose_a")
    transpose_b = attr_bool(node.attr, "transpose_b")

    def run(a: Tensor, b: Tensor) -> Tensor:
        return (a.mT if transpose_a else a) @ (b.mT if transpose_b else b)

    return run


BINARY: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Add": torch.add,
    "AddV2": torch.add,
    "BiasAdd": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "RealDiv": torch.div,
    "Maximum": torch.maximum,
    "Minimum": torch.minimum,
    "SquaredDifference": lambda a, b: (a - b).square(),
    "Prelu": _prelu,
}

UNARY: dict[str, Callable[[Tensor], Tensor]] = {
    **_ACTIVATIONS,
    "Identity": lambda x: x,
    "Neg": torch.neg,
    "Sqrt": torch.sqrt,
    "Rsqrt": torch.rsqrt,
    "Square": torch.square,
    "Softmax": lambda x: torch.softmax(x, dim=-1),
}

# Ops whose listed inputs after the first are compile-time integer constants (axes, shapes).
STATIC_ARGS = {"Mean", "Reshape", "Pad", "ConcatV2"}
CONV_OPS = {"Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"}

SUPPORTED_OPS: frozenset[str] = frozenset(
    {"Const", "Placeholder", "MatMul", "_FusedMatMul", "MaxPool", "AvgPool", "LeakyRelu"}
    | CONV_OPS
    | STATIC_ARGS
    | set(BINARY)
    | set(UNARY)
)
