"""Run TensorFlow.js graph models (``model.json`` + ``.bin`` weight shards) as torch modules.

A TF.js graph model is a frozen TensorFlow GraphDef in JSON (``modelTopology.node``: name, op,
inputs, attrs) plus a ``weightsManifest`` naming every ``Const`` tensor's dtype, shape and
optional quantization, laid out back to back across the shard files. Format reference:
tfjs-converter's ``tensorflowjs/converters`` and ``tfjs-core/src/io/io_utils.ts``
(``decodeWeights``); op semantics follow the TensorFlow op definitions (NHWC layout, SAME
padding with the extra row/column at the bottom/right).

``TfjsGraph`` parses the graph once, keeps only the nodes that the requested outputs depend
on, orders them topologically and runs them as plain torch ops. Tensors keep TF's NHWC layout
throughout; convolutions view them as channels-last NCHW, so the permutes cost no copies.
Constant tensors are buffers (``.to(device)`` moves them) and every op is differentiable with
respect to the inputs. Ops outside ``SUPPORTED_OPS`` fail at construction, naming the op.
The op table lives in ``tfjs_ops`` (re-exported here: ``SUPPORTED_OPS``, ``same_padding``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reconstruction.recognizers.backbones.tfjs_ops import (
    BINARY,
    CONV_OPS,
    STATIC_ARGS,
    SUPPORTED_OPS,
    UNARY,
    Node,
    TfjsGraphError,
    attr_bool,
    attr_float,
    conv_op,
    fused_tail,
    inline_const,
    matmul_op,
    node_ref,
    pool_op,
    same_padding,
)

__all__ = [
    "SUPPORTED_OPS",
    "TfjsGraph",
    "TfjsGraphError",
    "graph_ops",
    "load_weights",
    "same_padding",
]


_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "bool": np.dtype("u1"),
}


def _decode_weight(raw: bytes, offset: int, spec: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """Decode one manifest entry at ``offset``; return the array and the next offset."""
    shape = [int(d) for d in spec["shape"]]
    count = int(np.prod(shape)) if shape else 1
    quant = spec.get("quantization")
    stored = quant["dtype"] if quant else spec["dtype"]
    if stored not in _DTYPES:
        raise TfjsGraphError(f"weight {spec['name']!r}: unsupported dtype {stored!r}")
    dtype = _DTYPES[stored]
    end = offset + count * dtype.itemsize
    if end > len(raw):
        raise TfjsGraphError(f"weight {spec['name']!r} runs past the end of the weight shards")
    values = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    if quant and stored in ("uint8", "uint16"):
        # Affine quantization: original = q * scale + min (tfjs-core io_utils.decodeWeights).
        values = values.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    target = spec["dtype"]
    if target == "float32":
        values = values.astype(np.float32)
    elif target == "int32":
        values = np.rint(values).astype(np.int32) if quant else values.astype(np.int32)
    elif target == "bool":
        values = values.astype(bool)
    elif target != stored:
        raise TfjsGraphError(f"weight {spec['name']!r}: unsupported dtype {target!r}")
    return values.reshape(shape).copy(), end


def load_weights(manifest: Sequence[Mapping[str, Any]], directory: Path) -> dict[str, np.ndarray]:
    """Read every weight of a ``weightsManifest`` from the shard files in ``directory``."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        raw = b"".join((directory / path).read_bytes() for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            weights[spec["name"]], offset = _decode_weight(raw, offset, spec)
        if offset != len(raw):
            raise TfjsGraphError(
                f"weight shards {group['paths']} hold {len(raw)} bytes, manifest uses {offset}"
            )
    return weights


@dataclass(frozen=True)
class _Step:
    """One op to run: ``fn(*tensors)`` where tensors come from the environment or buffers."""

    name: str
    fn: Callable[..., Tensor]
    args: tuple[tuple[str, str], ...]  # ("env", node name) or ("buf", buffer name)


class TfjsGraph(nn.Module):
    """A TF.js graph model as a torch module; ``forward`` takes NHWC float tensors."""

    def __init__(
        self,
        model: Mapping[str, Any],
        weights: Mapping[str, np.ndarray],
        outputs: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        nodes = [
            Node(n["name"], n["op"], tuple(n.get("input", ())), n.get("attr", {}))
            for n in model["modelTopology"]["node"]
        ]
        self._nodes = {node.name: node for node in nodes}
        self._weights = weights
        self.input_names: tuple[str, ...] = tuple(n.name for n in nodes if n.op == "Placeholder")
        self.output_names: tuple[str, ...] = tuple(
            node_ref(name) for name in (outputs or self._default_outputs(model, nodes))
        )
        self._buffer_of: dict[tuple[str, str], str] = {}
        self._steps: list[_Step] = [self._compile(node) for node in self._order()]
        self._last_use = self._lifetimes()

    @classmethod
    def from_path(cls, model_json: Path, outputs: Sequence[str] | None = None) -> TfjsGraph:
        """Load ``model.json`` and its weight shards from the same folder."""
        model = json.loads(Path(model_json).read_text())
        if model.get("format", "graph-model") != "graph-model":
            raise TfjsGraphError(f"{model_json}: format {model['format']!r} is not a graph model")
        weights = load_weights(model["weightsManifest"], Path(model_json).parent)
        return cls(model, weights, outputs)

    @staticmethod
    def _default_outputs(model: Mapping[str, Any], nodes: Sequence[Node]) -> list[str]:
        signature = model.get("signature", {}).get("outputs")
        if signature:
            return [spec.get("name", key) for key, spec in signature.items()]
        consumed = {node_ref(i.lstrip("^")) for node in nodes for i in node.inputs}
        return [n.name for n in nodes if n.name not in consumed and n.op != "Const"]

    def _order(self) -> list[Node]:
        """Nodes the outputs depend on, inputs first (iterative DFS; graphs can be deep)."""
        for name in self.output_names:
            if name not in self._nodes:
                raise TfjsGraphError(f"output {name!r} is not a node of the graph")
        order: list[Node] = []
        state: dict[str, int] = {}  # 1: visiting, 2: done
        for root in self.output_names:
            stack: list[tuple[str, bool]] = [(root, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(self._nodes[name])
                    continue
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise TfjsGraphError(f"graph has a cycle through {name!r}")
                if name not in self._nodes:
                    raise TfjsGraphError(f"input {name!r} is not a node of the graph")
                state[name] = 1
                stack.append((name, True))
                for dep in reversed(self._nodes[name].inputs):
                    if not dep.startswith("^") and state.get(node_ref(dep)) != 2:
                        stack.append((node_ref(dep), False))
        for node in order:
            if node.op not in SUPPORTED_OPS:
                raise TfjsGraphError(
                    f"unsupported TF op {node.op!r} (node {node.name!r}); "
                    f"supported: {', '.join(sorted(SUPPORTED_OPS))}"
                )
        return [node for node in order if node.op != "Const"]

    def _const(self, name: str) -> np.ndarray:
        node = self._nodes.get(node_ref(name))
        if node is None or node.op != "Const":
            raise TfjsGraphError(f"{name!r} must be a constant")
        if node.name in self._weights:
            return np.asarray(self._weights[node.name])
        return inline_const(node)

    def _buffer(self, name: str, form: str = "") -> tuple[str, str]:
        """Register constant ``name`` (optionally converted to a torch layout) once as a buffer."""
        key = (node_ref(name), form)
        if key not in self._buffer_of:
            value = self._const(name)
            if value.dtype.kind == "f":
                value = value.astype(np.float32)
            tensor = torch.from_numpy(np.ascontiguousarray(value))
            if form == "conv":  # (kH, kW, in, out) -> (out, in, kH, kW)
                tensor = tensor.permute(3, 2, 0, 1)
            elif form == "depthwise":  # (kH, kW, in, mult) -> (in * mult, 1, kH, kW)
                kh, kw, cin, mult = tensor.shape
                tensor = tensor.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
            buffer_name = f"const_{len(self._buffer_of)}"
            self.register_buffer(buffer_name, tensor.contiguous())
            self._buffer_of[key] = buffer_name
        return ("buf", self._buffer_of[key])

    def _arg(self, name: str, form: str = "") -> tuple[str, str]:
        ref = node_ref(name)
        if self._nodes[ref].op == "Const":
            return self._buffer(ref, form)
        if form:
            raise TfjsGraphError(f"{name!r}: only constant convolution filters are supported")
        return ("env", ref)

    def _compile(self, node: Node) -> _Step:
        """Turn one node into a step with its static attributes bound."""
        inputs = [i for i in node.inputs if not i.startswith("^")]
        op = node.op
        if op == "Placeholder":
            return _Step(node.name, lambda x: x, (("input", node.name),))
        if op in CONV_OPS:
            depthwise = "Depthwise" in op
            conv = conv_op(node, depthwise)
            filt = self._arg(inputs[1], "depthwise" if depthwise else "conv")
            if op.startswith("_Fused") or op.startswith("Fused"):
                tail, n_args = fused_tail(node)
                extra = tuple(self._arg(i) for i in inputs[2 : 2 + n_args])

                def fused_conv(x: Tensor, w: Tensor, *args: Tensor) -> Tensor:
                    return tail(conv(x, w), list(args))

                return _Step(node.name, fused_conv, (self._arg(inputs[0]), filt, *extra))
            return _Step(node.name, conv, (self._arg(inputs[0]), filt))
        if op in ("MatMul", "_FusedMatMul"):
            matmul = matmul_op(node)
            operands = (self._arg(inputs[0]), self._arg(inputs[1]))
            if op == "MatMul":
                return _Step(node.name, matmul, operands)
            tail, n_args = fused_tail(node)
            extra = tuple(self._arg(i) for i in inputs[2 : 2 + n_args])

            def fused_matmul(a: Tensor, b: Tensor, *args: Tensor) -> Tensor:
                return tail(matmul(a, b), list(args))

            return _Step(node.name, fused_matmul, (*operands, *extra))
        if op in ("MaxPool", "AvgPool"):
            return _Step(node.name, pool_op(node, op[:3].lower()), (self._arg(inputs[0]),))
        if op == "LeakyRelu":
            alpha = attr_float(node.attr, "alpha", 0.2)
            return _Step(node.name, lambda x: F.leaky_relu(x, alpha), (self._arg(inputs[0]),))
        if op in STATIC_ARGS:
            return self._compile_static(node, inputs)
        if op in BINARY:
            fn = BINARY[op]
            return _Step(node.name, fn, (self._arg(inputs[0]), self._arg(inputs[1])))
        return _Step(node.name, UNARY[op], (self._arg(inputs[0]),))

    def _compile_static(self, node: Node, inputs: list[str]) -> _Step:
        """Ops whose trailing inputs (axes, shapes, paddings) are read once as integers."""
        op = node.op
        if op == "ConcatV2":
            axis = int(self._const(inputs[-1]))
            args = tuple(self._arg(i) for i in inputs[:-1])
            return _Step(node.name, lambda *xs: torch.cat(xs, dim=axis), args)
        static = self._const(inputs[1]).astype(np.int64)
        x = (self._arg(inputs[0]),)
        if op == "Mean":
            axes = tuple(int(a) for a in np.atleast_1d(static))
            keep = attr_bool(node.attr, "keep_dims")
            return _Step(node.name, lambda t: t.mean(dim=axes, keepdim=keep), x)
        if op == "Reshape":
            shape = tuple(int(s) for s in static)
            return _Step(node.name, lambda t: t.reshape(shape), x)
        # Pad: paddings (rank, 2) as (before, after) per dim; F.pad lists the last dim first.
        flat = [int(v) for pair in static[::-1] for v in pair]
        return _Step(node.name, lambda t: F.pad(t, flat), x)

    def _lifetimes(self) -> list[tuple[str, ...]]:
        """For each step, the intermediates it reads for the last time (freed right after)."""
        last: dict[str, int] = {}
        for index, step in enumerate(self._steps):
            for kind, name in step.args:
                if kind == "env":
                    last[name] = index
        for name in self.output_names:
            last[name] = len(self._steps)
        frees: list[set[str]] = [set() for _ in self._steps]
        for name, index in last.items():
            if index < len(self._steps):
                frees[index].add(name)
        return [tuple(sorted(names)) for names in frees]

    @property
    def ops(self) -> list[str]:
        """The op of every step, in execution order."""
        return [self._nodes[step.name].op for step in self._steps]

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        """Run the graph on NHWC inputs given in ``input_names`` order."""
        if len(inputs) != len(self.input_names):
            raise TfjsGraphError(f"expected inputs {self.input_names}, got {len(inputs)} tensors")
        feeds = dict(zip(self.input_names, inputs, strict=True))
        env: dict[str, Tensor] = {}
        for step, frees in zip(self._steps, self._last_use, strict=True):
            args = []
            for kind, name in step.args:
                if kind == "env":
                    args.append(env[name])
                elif kind == "input":
                    args.append(feeds[name])
                else:
                    args.append(getattr(self, name))
            env[step.name] = step.fn(*args)
            for name in frees:
                del env[name]
        outputs = tuple(env[name] for name in self.output_names)
        return outputs[0] if len(outputs) == 1 else outputs

    def extra_repr(self) -> str:
        return f"inputs={list(self.input_names)}, outputs={list(self.output_names)}, " + (
            f"steps={len(self._steps)}"
        )


def graph_ops(model: Mapping[str, Any]) -> Iterable[str]:
    """Every distinct op in a model.json topology (handy when adding support for a model)."""
    return sorted({node["op"] for node in model["modelTopology"]["node"]})
