"""Single-operator ONNX graphs with a layer's exact shapes: the units that latency tables time.

Each signature is a frozen dataclass: ``key()`` names it in a table, ``graph()`` builds a one-operator
ONNX model (input ``x`` or ``q``/``k``/``v``, weights as seeded random initializers) and ``resized``
gives the same operator at other channel counts, which is how a pruned layer's latency is looked up.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spiralprune.kernels import OPSET


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, list[int]], output: list[int],
           initializers: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output)],
        initializer=[numpy_helper.from_array(a, n) for n, a in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="spiralprune.kernels")
    model.ir_version = 8
    return model


def _weights(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 0.05


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution; depthwise when ``groups == in_channels`` (``resized`` keeps it depthwise).

    The graph always has a bias: exported models fold BatchNorm into one, and it costs nothing extra.
    """

    kind: ClassVar[str] = "conv"
    batch: int
    in_channels: int
    out_channels: int
    height: int
    width: int
    kernel: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)  # ONNX order: top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if min(self.batch, self.in_channels, self.out_channels, self.height, self.width, self.groups) < 1:
            raise ValueError(f"conv sizes must be positive: {self}")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"conv channels {self.in_channels}->{self.out_channels} not divisible by groups {self.groups}"
            )

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def output_hw(self) -> tuple[int, int]:
        top, left, bottom, right = self.padding
        h = (self.height + top + bottom - self.dilation[0] * (self.kernel[0] - 1) - 1) // self.stride[0] + 1
        w = (self.width + left + right - self.dilation[1] * (self.kernel[1] - 1) - 1) // self.stride[1] + 1
        return h, w

    def key(self) -> str:
        k, s, d, p = self.kernel, self.stride, self.dilation, self.padding
        return (
            f"conv:b{self.batch}:i{self.in_channels}:o{self.out_channels}:h{self.height}:w{self.width}"
            f":k{k[0]}x{k[1]}:s{s[0]}x{s[1]}:p{','.join(map(str, p))}:d{d[0]}x{d[1]}:g{self.groups}"
        )

    def macs(self) -> int:
        h, w = self.output_hw
        per_output = (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1]
        return self.batch * self.out_channels * h * w * per_output

    def resized(self, in_channels: int | None = None, out_channels: int | None = None) -> Conv:
        cin = self.in_channels if in_channels is None else in_channels
        cout = self.out_channels if out_channels is None else out_channels
        if self.depthwise:
            # A depthwise layer has one channel count: pruning its input prunes its output alike.
            multiplier = self.out_channels // self.in_channels
            channels = in_channels if in_channels is not None else cout // multiplier
            return dataclasses.replace(self, in_channels=channels, out_channels=channels * multiplier, groups=channels)
        return dataclasses.replace(self, in_channels=cin, out_channels=cout)

    def graph(self) -> onnx.ModelProto:
        inits = {
            "w": _weights((self.out_channels, self.in_channels // self.groups, *self.kernel)),
            "b": _weights((self.out_channels,), seed=1),
        }
        node = helper.make_node(
            "Conv", ["x", "w", "b"], ["y"], kernel_shape=list(self.kernel), strides=list(self.stride),
            pads=[self.padding[0], self.padding[1], self.padding[2], self.padding[3]],
            dilations=list(self.dilation), group=self.groups,
        )
        h, w = self.output_hw
        return _model(
            [node], {"x": [self.batch, self.in_channels, self.height, self.width]},
            [self.batch, self.out_channels, h, w], inits, self.key(),
        )


@dataclass(frozen=True)
class Linear:
    """``y = x @ W.T + b`` on ``x`` of shape ``leading + (in_features,)``: Gemm on 2-D, MatMul(+Add) above."""

    kind: ClassVar[str] = "linear"
    leading: tuple[int, ...]
    in_features: int
    out_features: int
    bias: bool = True

    def __post_init__(self) -> None:
        if not self.leading or min(*self.leading, self.in_features, self.out_features) < 1:
            raise ValueError(f"linear sizes must be positive: {self}")

    @property
    def in_channels(self) -> int:
        return self.in_features

    @property
    def out_channels(self) -> int:
        return self.out_features

    def key(self) -> str:
        rows = "x".join(map(str, self.leading))
        return f"linear:x{rows}:i{self.in_features}:o{self.out_features}:bias{int(self.bias)}"

    def macs(self) -> int:
        return math.prod(self.leading) * self.in_features * self.out_features

    def resized(self, in_channels: int | None = None, out_channels: int | None = None) -> Linear:
        return dataclasses.replace(
            self,
            in_features=self.in_features if in_channels is None else in_channels,
            out_features=self.out_features if out_channels is None else out_channels,
        )

    def graph(self) -> onnx.ModelProto:
        inits = {"w": _weights((self.out_features, self.in_features))}
        if self.bias:
            inits["b"] = _weights((self.out_features,), seed=1)
        if len(self.leading) == 1:
            nodes = [helper.make_node("Gemm", ["x", "w", *(["b"] if self.bias else [])], ["y"], transB=1)]
        else:
            inits["w"] = np.ascontiguousarray(inits["w"].T)
            product = "xw" if self.bias else "y"
            nodes = [helper.make_node("MatMul", ["x", "w"], [product])]
            if self.bias:
                nodes.append(helper.make_node("Add", [product, "b"], ["y"]))
        return _model(
            nodes, {"x": [*self.leading, self.in_features]}, [*self.leading, self.out_features], inits, self.key()
        )


@dataclass(frozen=True)
class Attention:
    """Scaled dot-product attention core, ``softmax(q @ k.T * scale) @ v``, over ``heads`` heads.

    Its channel count is the number of heads (pruning removes whole heads); ``resized`` takes the
    new head count as either argument.
    """

    kind: ClassVar[str] = "attention"
    batch: int
    heads: int
    seq_len: int
    head_dim: int
    kv_len: int | None = None  # keys' length; None (self-attention) becomes ``seq_len``

    def __post_init__(self) -> None:
        if self.kv_len is None:
            object.__setattr__(self, "kv_len", self.seq_len)
        if min(self.batch, self.heads, self.seq_len, self.head_dim, self.kv_len) < 1:
            raise ValueError(f"attention sizes must be positive: {self}")

    @property
    def in_channels(self) -> int:
        return self.heads

    @property
    def out_channels(self) -> int:
        return self.heads

    def key(self) -> str:
        return f"attention:b{self.batch}:h{self.heads}:q{self.seq_len}:kv{self.kv_len}:d{self.head_dim}"

    def macs(self) -> int:
        return 2 * self.batch * self.heads * self.seq_len * self.kv_len * self.head_dim

    def resized(self, in_channels: int | None = None, out_channels: int | None = None) -> Attention:
        heads = in_channels if in_channels is not None else out_channels
        return self if heads is None else dataclasses.replace(self, heads=heads)

    def graph(self) -> onnx.ModelProto:
        b, h, s, t, d = self.batch, self.heads, self.seq_len, self.kv_len, self.head_dim
        nodes = [
            helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", ["q", "kt"], ["scores"]),
            helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
            helper.make_node("Softmax", ["scaled"], ["probs"], axis=-1),
            helper.make_node("MatMul", ["probs", "v"], ["y"]),
        ]
        scale = np.array(1.0 / math.sqrt(d), dtype=np.float32)
        return _model(
            nodes, {"q": [b, h, s, d], "k": [b, h, t, d], "v": [b, h, t, d]}, [b, h, s, d], {"scale": scale}, self.key()
        )


@dataclass(frozen=True)
class LSTM:
    """One layer of a unidirectional LSTM without projection over ``seq_len`` steps, zero initial state.

    Its channels are the input size and the hidden units (pruning removes hidden units). The graph is
    the ONNX ``LSTM`` node torch exports for ``nn.LSTM`` (gate weights ``w``, recurrences ``r``, both
    biases ``b``) with its full output sequence ``y`` of shape ``[seq_len, 1, batch, hidden_size]``.
    """

    kind: ClassVar[str] = "lstm"
    batch: int
    seq_len: int
    input_size: int
    hidden_size: int

    def __post_init__(self) -> None:
        if min(self.batch, self.seq_len, self.input_size, self.hidden_size) < 1:
            raise ValueError(f"lstm sizes must be positive: {self}")

    @property
    def in_channels(self) -> int:
        return self.input_size

    @property
    def out_channels(self) -> int:
        return self.hidden_size

    def key(self) -> str:
        return f"lstm:b{self.batch}:t{self.seq_len}:i{self.input_size}:h{self.hidden_size}"

    def macs(self) -> int:
        return self.seq_len * self.batch * 4 * self.hidden_size * (self.input_size + self.hidden_size)

    def resized(self, in_channels: int | None = None, out_channels: int | None = None) -> LSTM:
        return dataclasses.replace(
            self,
            input_size=self.input_size if in_channels is None else in_channels,
            hidden_size=self.hidden_size if out_channels is None else out_channels,
        )

    def graph(self) -> onnx.ModelProto:
        t, b, i, h = self.seq_len, self.batch, self.input_size, self.hidden_size
        inits = {"w": _weights((1, 4 * h, i)), "r": _weights((1, 4 * h, h), seed=1), "b": _weights((1, 8 * h), seed=2)}
        node = helper.make_node("LSTM", ["x", "w", "r", "b"], ["y"], hidden_size=h)
        return _model([node], {"x": [t, b, i]}, [t, 1, b, h], inits, self.key())


def empty_graph() -> onnx.ModelProto:
    """An Identity on one float: what a backend charges for a call that computes nothing."""
    return _model([helper.make_node("Identity", ["x"], ["y"])], {"x": [1]}, [1], {}, "empty")


OpSignature = Conv | Linear | Attention | LSTM
OP_KINDS: dict[str, type] = {cls.kind: cls for cls in (Conv, Linear, Attention, LSTM)}
