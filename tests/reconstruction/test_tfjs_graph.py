"""The TF.js graph executor, op by op, on tiny synthetic graphs against numpy references."""

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reconstruction.recognizers.backbones.tfjs_graph import (
    SUPPORTED_OPS,
    TfjsGraph,
    TfjsGraphError,
    load_weights,
    same_padding,
)

RNG = np.random.default_rng(0)


def _s(text: str) -> dict[str, str]:
    return {"s": base64.b64encode(text.encode()).decode()}


def _ints(values: list[int]) -> dict[str, Any]:
    return {"list": {"i": [str(v) for v in values]}}


def _node(name: str, op: str, inputs: list[str] = (), **attr: Any) -> dict[str, Any]:
    return {"name": name, "op": op, "input": list(inputs), "attr": attr}


def _graph(nodes: list[dict], weights: dict[str, np.ndarray], output: str) -> TfjsGraph:
    """A graph with placeholder ``x`` plus ``nodes`` and a Const node per weight."""
    consts = [_node(name, "Const") for name in weights]
    model = {"modelTopology": {"node": [_node("x", "Placeholder"), *consts, *nodes]}}
    return TfjsGraph(model, weights, outputs=[output])


def _run(graph: TfjsGraph, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return graph(torch.from_numpy(x)).numpy()


def _conv_reference(
    x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]
) -> np.ndarray:
    """Plain NHWC convolution: x (N,H,W,C), w (kH,kW,C,O), pads (top,bottom,left,right)."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw = w.shape[:2]
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def _depthwise_reference(
    x: np.ndarray, w: np.ndarray, stride: int, pads: tuple[int, int, int, int]
) -> np.ndarray:
    """TF depthwise conv: w (kH,kW,C,M); output channel c*M + m uses input channel c."""
    channels, mult = w.shape[2:]
    outs = []
    for c in range(channels):
        for m in range(mult):
            kernel = w[:, :, c : c + 1, m : m + 1]
            outs.append(_conv_reference(x[..., c : c + 1], kernel, stride, pads))
    return np.concatenate(outs, axis=-1)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(5, 3, 2, (1, 1)), (6, 3, 2, (0, 1)), (7, 4, 1, (1, 2)), (4, 1, 2, (0, 0)), (8, 3, 2, (0, 1))],
)
def test_same_padding_puts_the_extra_pixel_after(
    size: int, kernel: int, stride: int, expected: tuple[int, int]
) -> None:
    assert same_padding(size, kernel, stride) == expected


@pytest.mark.parametrize(("size", "stride"), [(7, 2), (6, 2), (5, 1), (9, 3)])
def test_conv2d_same_padding_matches_tf_on_odd_and_even_sizes(size: int, stride: int) -> None:
    x = RNG.standard_normal((2, size, size + 1, 3)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 3, 4)).astype(np.float32)
    strides = _ints([1, stride, stride, 1])
    graph = _graph(
        [_node("y", "Conv2D", ["x", "w"], strides=strides, padding=_s("SAME"))], {"w": w}, "y"
    )
    pads = (*same_padding(size, 3, stride), *same_padding(size + 1, 3, stride))
    expected = _conv_reference(x, w, stride, pads)
    out = _run(graph, x)
    assert out.shape == (2, -(-size // stride), -(-(size + 1) // stride), 4)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_conv2d_valid_padding_after_explicit_pad_node() -> None:
    x = RNG.standard_normal((1, 6, 6, 2)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 2, 5)).astype(np.float32)
    paddings = np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=np.int32)
    nodes = [
        _node("p", "Pad", ["x", "paddings"]),
        _node("y", "Conv2D", ["p", "w"], strides=_ints([1, 2, 2, 1]), padding=_s("VALID")),
    ]
    out = _run(_graph(nodes, {"paddings": paddings, "w": w}, "y"), x)
    np.testing.assert_allclose(out, _conv_reference(x, w, 2, (1, 1, 1, 1)), atol=1e-4)


@pytest.mark.parametrize(("stride", "padding"), [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_depthwise_conv_with_channel_multiplier(stride: int, padding: str) -> None:
    x = RNG.standard_normal((2, 7, 7, 3)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 3, 2)).astype(np.float32)
    node = _node(
        "y",
        "DepthwiseConv2dNative",
        ["x", "w"],
        strides=_ints([1, stride, stride, 1]),
        padding=_s(padding),
    )
    pads = (*same_padding(7, 3, stride),) * 2 if padding == "SAME" else (0, 0, 0, 0)
    expected = _depthwise_reference(x, w, stride, pads)
    out = _run(_graph([node], {"w": w}, "y"), x)
    assert out.shape[-1] == 6
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_fused_conv_applies_bias_then_relu6() -> None:
    x = RNG.standard_normal((1, 5, 5, 2)).astype(np.float32) * 4
    w = RNG.standard_normal((3, 3, 2, 3)).astype(np.float32)
    b = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    node = _node(
        "y",
        "_FusedConv2D",
        ["x", "w", "b"],
        strides=_ints([1, 2, 2, 1]),
        padding=_s("SAME"),
        fused_ops={"list": {"s": [_s("BiasAdd")["s"], _s("Relu6")["s"]]}},
        num_args={"i": "1"},
    )
    expected = np.clip(_conv_reference(x, w, 2, (1, 1, 1, 1)) + b, 0, 6)
    out = _run(_graph([node], {"w": w, "b": b}, "y"), x)
    assert (out == 6).any()
    assert (out == 0).any()
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_fused_depthwise_conv_with_prelu() -> None:
    x = RNG.standard_normal((1, 6, 6, 2)).astype(np.float32)
    w = RNG.standard_normal((3, 3, 2, 1)).astype(np.float32)
    b = np.array([0.1, -0.2], dtype=np.float32)
    alpha = np.array([0.25, 0.5], dtype=np.float32)
    node = _node(
        "y",
        "FusedDepthwiseConv2dNative",
        ["x", "w", "b", "alpha"],
        strides=_ints([1, 2, 2, 1]),
        padding=_s("SAME"),
        fused_ops={"list": {"s": [_s("BiasAdd")["s"], _s("Prelu")["s"]]}},
        num_args={"i": "2"},
    )
    pre = _depthwise_reference(x, w, 2, (0, 1, 0, 1)) + b
    expected = np.where(pre > 0, pre, pre * alpha)
    out = _run(_graph([node], {"w": w, "b": b, "alpha": alpha}, "y"), x)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_prelu_op_and_maximum_minimum_form_agree() -> None:
    x = RNG.standard_normal((2, 3, 3, 4)).astype(np.float32)
    alpha = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    zero = np.array(0.0, dtype=np.float32)
    nodes = [
        _node("prelu", "Prelu", ["x", "alpha"]),
        _node("pos", "Maximum", ["zero", "x"]),
        _node("neg", "Minimum", ["zero", "x"]),
        _node("scaled", "Mul", ["alpha", "neg"]),
        _node("manual", "AddV2", ["pos", "scaled"]),
        _node("diff", "Sub", ["prelu", "manual"]),
    ]
    weights = {"alpha": alpha, "zero": zero}
    expected = np.where(x > 0, x, x * alpha)
    np.testing.assert_allclose(_run(_graph(nodes, weights, "prelu"), x), expected, atol=1e-6)
    np.testing.assert_allclose(_run(_graph(nodes, weights, "diff"), x), 0.0, atol=1e-6)


def test_fused_matmul_with_bias_and_relu_and_transpose() -> None:
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    w = RNG.standard_normal((5, 4)).astype(np.float32)
    b = RNG.standard_normal(5).astype(np.float32)
    node = _node(
        "y",
        "_FusedMatMul",
        ["x", "w", "b"],
        transpose_b={"b": True},
        fused_ops={"list": {"s": [_s("BiasAdd")["s"], _s("Relu")["s"]]}},
        num_args={"i": "1"},
    )
    out = _run(_graph([node], {"w": w, "b": b}, "y"), x)
    np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), atol=1e-5)


def test_max_and_avg_pool_same_excludes_padding_from_average() -> None:
    x = RNG.standard_normal((1, 5, 5, 2)).astype(np.float32)
    attrs = {"ksize": _ints([1, 2, 2, 1]), "strides": _ints([1, 2, 2, 1]), "padding": _s("SAME")}
    # SAME with k=2, s=2 on 5: output 3, one padded row/column after (bottom/right).
    avg = _run(_graph([_node("y", "AvgPool", ["x"], **attrs)], {}, "y"), x)
    top = _run(_graph([_node("y", "MaxPool", ["x"], **attrs)], {}, "y"), x)
    assert avg.shape == top.shape == (1, 3, 3, 2)
    np.testing.assert_allclose(avg[0, 0, 0], x[0, :2, :2].mean(axis=(0, 1)), atol=1e-6)
    np.testing.assert_allclose(avg[0, 2, 2], x[0, 4, 4], atol=1e-6)
    np.testing.assert_allclose(avg[0, 2, 0], x[0, 4, :2].mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(top[0, 1, 2], x[0, 2:4, 4].max(axis=0), atol=1e-6)


def test_mean_reshape_concat_and_bias_add() -> None:
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    weights = {
        "axes": np.array([1, 2], dtype=np.int32),
        "shape": np.array([-1, 10], dtype=np.int32),
        "axis": np.array(1, dtype=np.int32),
        "bias": np.arange(10, dtype=np.float32),
    }
    nodes = [
        _node("m", "Mean", ["x", "axes"], keep_dims={"b": False}),
        _node("c", "ConcatV2", ["m", "m", "axis"]),
        _node("b", "BiasAdd", ["c", "bias"]),
        _node("r", "Reshape", ["x", "shape"]),
        _node("i", "Identity", ["r"]),
    ]
    m = x.mean(axis=(1, 2))
    out = _run(_graph(nodes, weights, "b"), x)
    np.testing.assert_allclose(out, np.concatenate([m, m], axis=1) + weights["bias"], atol=1e-6)
    # TF reshapes in row-major NHWC order.
    np.testing.assert_array_equal(_run(_graph(nodes, weights, "i"), x), x.reshape(-1, 10))


def test_elementwise_ops_broadcast_scalar_constants_like_tf() -> None:
    x = RNG.uniform(0, 255, (1, 2, 2, 3)).astype(np.float32)
    weights = {"mean": np.array([127.5], np.float32), "scale": np.array([0.0078125], np.float32)}
    nodes = [_node("s", "Sub", ["x", "mean"]), _node("y", "Mul", ["s", "scale"])]
    out = _run(_graph(nodes, weights, "y"), x)
    np.testing.assert_allclose(out, (x - 127.5) * 0.0078125, atol=1e-6)


def test_unknown_op_fails_at_construction_naming_it() -> None:
    nodes = [_node("y", "FancyOp", ["x"])]
    with pytest.raises(TfjsGraphError, match="FancyOp"):
        _graph(nodes, {}, "y")


def test_unused_branches_are_pruned_so_their_ops_need_no_support() -> None:
    nodes = [_node("y", "Relu", ["x"]), _node("z", "FancyOp", ["x"])]
    graph = _graph(nodes, {}, "y")
    assert graph.ops == ["Placeholder", "Relu"]
    assert "FancyOp" not in SUPPORTED_OPS


def test_module_is_differentiable_and_moves_its_buffers() -> None:
    w = RNG.standard_normal((3, 3, 2, 2)).astype(np.float32)
    node = _node("y", "Conv2D", ["x", "w"], strides=_ints([1, 1, 1, 1]), padding=_s("SAME"))
    graph = _graph([node], {"w": w}, "y")
    x = torch.randn(1, 4, 4, 2, requires_grad=True)
    graph(x).square().sum().backward()
    assert x.grad is not None
    assert x.grad.abs().sum() > 0
    doubled = graph.double()
    assert all(b.dtype == torch.float64 for b in doubled.buffers())
    assert doubled(x.detach().double()).dtype == torch.float64


def test_load_weights_decodes_float16_and_uint8_quantization(tmp_path: Path) -> None:
    half = np.array([[1.5, -2.25], [0.125, 3.0]], dtype=np.float16)
    quantized = np.array([0, 128, 255], dtype=np.uint8)
    ints = np.array([7, -3], dtype=np.int32)
    (tmp_path / "group1-shard1of2.bin").write_bytes(half.tobytes() + quantized.tobytes()[:1])
    (tmp_path / "group1-shard2of2.bin").write_bytes(quantized.tobytes()[1:] + ints.tobytes())
    manifest = [
        {
            "paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"],
            "weights": [
                {
                    "name": "half",
                    "shape": [2, 2],
                    "dtype": "float32",
                    "quantization": {"dtype": "float16", "original_dtype": "float32"},
                },
                {
                    "name": "q",
                    "shape": [3],
                    "dtype": "float32",
                    "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
                },
                {"name": "ints", "shape": [2], "dtype": "int32"},
            ],
        }
    ]
    weights = load_weights(manifest, tmp_path)
    assert weights["half"].dtype == np.float32
    np.testing.assert_array_equal(weights["half"], half.astype(np.float32))
    np.testing.assert_allclose(weights["q"], [-1.0, 63.0, 126.5])
    np.testing.assert_array_equal(weights["ints"], ints)


def test_from_path_reads_model_json_and_default_outputs(tmp_path: Path) -> None:
    w = np.arange(4, dtype=np.float32).reshape(2, 2)
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    model = {
        "format": "graph-model",
        "modelTopology": {
            "node": [
                _node("x", "Placeholder"),
                _node("w", "Const"),
                _node("y", "MatMul", ["x", "w"]),
            ]
        },
        "weightsManifest": [
            {"paths": ["w.bin"], "weights": [{"name": "w", "shape": [2, 2], "dtype": "float32"}]}
        ],
    }
    (tmp_path / "model.json").write_text(json.dumps(model))
    graph = TfjsGraph.from_path(tmp_path / "model.json")
    assert graph.output_names == ("y",)
    np.testing.assert_allclose(_run(graph, np.ones((1, 2), np.float32)), [[2.0, 4.0]])
