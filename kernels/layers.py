"""The prunable layers of a model as operator signatures, from an ONNX file or a torch module.

From ONNX: every ``Conv``, ``Gemm``, ``MatMul`` with a weight initializer, ``LSTM`` (one direction),
and attention cores (``MatMul → [Mul|Div|Add]* → Softmax → MatMul`` on activations), with shapes
from ONNX shape inference at a fixed batch. From torch: forward hooks on ``Conv2d``, ``Linear``,
single-layer unidirectional ``LSTM`` and attention record the shapes of one real forward pass.
Attention is ``nn.MultiheadAttention`` (its packed projections included) or any module with integer
``num_heads`` and ``head_dim`` and a ``batch_first`` flag whose projections are ``Linear`` children
(such as spiral's head-prunable ``SplitAttention``): only its core is added, the children are
hooked as linear layers. ``untimed_layers`` names the layers of a torch model that compute
substantially but have no operator here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from spiralprune.core.errors import InputError
from spiralprune.kernels.ops import LSTM, Attention, Conv, Linear, OpSignature


@dataclass(frozen=True)
class Layer:
    """One operator of a model: ``name`` is the torch module name or the ONNX node name."""

    name: str
    op: OpSignature


# ---- ONNX ----------------------------------------------------------------------------------


def onnx_layers(path: Path, batch: int = 1) -> list[Layer]:
    """The convolutions, linear layers, LSTMs and attention cores of the ONNX model at ``path``."""
    try:
        model = onnx.load(str(path))
    except (OSError, DecodeError) as exc:
        raise InputError(f"cannot read ONNX model {path}: {exc}") from exc
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    for value in graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    }
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def shape(name: str) -> list[int]:
        dims = shapes.get(name)
        if dims is None or any(d is None for d in dims):
            raise InputError(f"{path}: the shape of '{name}' is not static at batch {batch}; export with fixed shapes")
        return dims  # type: ignore[return-value]

    layers = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv" and node.input[1] in initializers:
            layers.append(Layer(name, _onnx_conv(shape(node.input[0]), initializers[node.input[1]], attrs)))
        elif node.op_type == "Gemm" and node.input[1] in initializers:
            a = shape(node.input[0])
            w = list(initializers[node.input[1]].dims)
            rows, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
            out = w[0] if attrs.get("transB", 0) else w[1]
            layers.append(Layer(name, Linear((rows,), k, out, bias=len(node.input) > 2 and bool(node.input[2]))))
        elif node.op_type == "MatMul" and node.input[1] in initializers and len(initializers[node.input[1]].dims) == 2:
            a = shape(node.input[0])
            k, out = initializers[node.input[1]].dims
            bias = any(
                c.op_type == "Add" and any(i in initializers and len(initializers[i].dims) == 1 for i in c.input)
                for c in consumers.get(node.output[0], [])
            )
            layers.append(Layer(name, Linear(tuple(a[:-1]), k, out, bias=bias)))
        elif node.op_type == "LSTM":
            layers.append(Layer(name, _onnx_lstm(name, shape(node.input[0]), attrs)))
        elif node.op_type == "Softmax":
            attention = _onnx_attention(node, producers, consumers, initializers, shape)
            if attention is not None:
                layers.append(Layer(name, attention))
    return layers


def _onnx_conv(x: list[int], weight: onnx.TensorProto, attrs: dict) -> Conv:
    if len(x) != 4:
        raise InputError(f"only 2-D convolutions are modelled; got an input of shape {x}")
    out_channels, _, kh, kw = weight.dims
    strides = tuple(attrs.get("strides", [1, 1]))
    dilations = tuple(attrs.get("dilations", [1, 1]))
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(x[2:], (kh, kw), strides, dilations):
            total = max(0, (math.ceil(size / s) - 1) * s + d * (k - 1) + 1 - size)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if auto_pad == "SAME_UPPER" else (large, small))
        padding = (pads[0][0], pads[1][0], pads[0][1], pads[1][1])
    else:
        p = list(attrs.get("pads", [0, 0, 0, 0]))
        padding = (p[0], p[1], p[2], p[3])
    return Conv(x[0], x[1], out_channels, x[2], x[3], (kh, kw), strides, padding, dilations, attrs.get("group", 1))


def _onnx_lstm(name: str, x: list[int], attrs: dict) -> LSTM:
    direction = attrs.get("direction", b"forward")
    if (direction.decode() if isinstance(direction, bytes) else direction) == "bidirectional":
        raise InputError(f"LSTM '{name}' is bidirectional; only one-direction LSTMs are modelled")
    if not attrs.get("hidden_size"):  # optional in the ONNX spec, but ONNX Runtime and torch's export need it
        raise InputError(f"LSTM '{name}' has no hidden_size attribute; ONNX Runtime cannot run it either")
    steps, batch, features = (x[1], x[0], x[2]) if attrs.get("layout", 0) else x
    return LSTM(batch, steps, features, attrs["hidden_size"])


def _onnx_attention(softmax, producers, consumers, initializers, shape) -> Attention | None:
    """``softmax`` as the middle of an attention core, or None when it is not one."""
    source = producers.get(softmax.input[0])
    while source is not None and source.op_type in ("Mul", "Div", "Add", "Where", "Cast"):
        activations = [i for i in source.input if i in producers and i not in initializers]
        source = producers.get(activations[0]) if activations else None
    if source is None or source.op_type != "MatMul" or any(i in initializers for i in source.input):
        return None
    sink = consumers.get(softmax.output[0], [])
    while len(sink) == 1 and sink[0].op_type in ("Cast", "Dropout"):
        sink = consumers.get(sink[0].output[0], [])
    if not any(n.op_type == "MatMul" for n in sink):
        return None
    q, scores = shape(source.input[0]), shape(source.output[0])
    if len(q) == 4:
        return Attention(q[0], q[1], q[2], q[3], kv_len=scores[3])
    if len(q) == 3:  # batch and heads folded into one dimension
        return Attention(1, q[0], q[1], q[2], kv_len=scores[2])
    return None


# ---- torch ---------------------------------------------------------------------------------


def torch_layers(model, example_input) -> list[Layer]:
    """The ``Conv2d``, ``Linear``, LSTM and attention calls of one forward pass, in call order."""
    import torch
    from torch import nn

    layers: list[Layer] = []

    def conv_hook(name: str):
        def hook(module: nn.Conv2d, args: tuple, _output) -> None:
            layers.append(Layer(name, _torch_conv(module, tuple(args[0].shape))))

        return hook

    def linear_hook(name: str):
        def hook(module: nn.Linear, args: tuple, _output) -> None:
            leading = tuple(args[0].shape[:-1]) or (1,)
            op = Linear(leading, module.in_features, module.out_features, module.bias is not None)
            layers.append(Layer(name, op))

        return hook

    def lstm_hook(name: str):
        def hook(module: nn.LSTM, args: tuple, _output) -> None:
            layers.append(Layer(name, _torch_lstm(module, args[0])))

        return hook

    def attention_hook(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, _output) -> None:
            query = tuple((args[0] if args else kwargs["query"]).shape)
            key = tuple((args[1] if len(args) > 1 else kwargs["key"]).shape)
            if isinstance(module, nn.MultiheadAttention):
                layers.extend(_torch_attention(name, module, query, key))
            else:
                layers.append(Layer(name, _attention_core(module, query, key)))

        return hook

    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif _timed_lstm(module):
            handles.append(module.register_forward_hook(lstm_hook(name)))
        elif isinstance(module, nn.MultiheadAttention) or _head_split_attention(module):
            handles.append(module.register_forward_hook(attention_hook(name), with_kwargs=True))
        elif isinstance(module, nn.Linear) and not _inside_attention(model, name):
            handles.append(module.register_forward_hook(linear_hook(name)))
    modes = [(module, module.training) for module in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(example_input)
    finally:
        for module, training in modes:
            module.training = training
        for handle in handles:
            handle.remove()
    return layers


def untimed_layers(model) -> list[tuple[str, str]]:
    """(module name, class name) of each layer that computes substantially but no table operator times.

    Recurrent layers other than a single-layer unidirectional LSTM without projection, recurrent
    cells, and convolutions other than ``Conv2d`` (1-D, 3-D, transposed). Norms, activations,
    pooling and embeddings are cheap next to these and left to the predictor's calibration.
    """
    from torch import nn

    untimed = []
    for name, module in model.named_modules():
        recurrent = isinstance(module, (nn.RNNBase, nn.RNNCellBase)) and not _timed_lstm(module)
        convolution = isinstance(module, nn.modules.conv._ConvNd) and not isinstance(module, nn.Conv2d)
        if recurrent or convolution:
            untimed.append((name, type(module).__name__))
    return untimed


def _timed_lstm(module) -> bool:
    from torch import nn

    return (
        isinstance(module, nn.LSTM) and module.num_layers == 1 and not module.bidirectional and not module.proj_size
    )


def _torch_lstm(module, x) -> LSTM:
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(x, PackedSequence):  # steps: the longest sequence; batch: how many sequences start
        return LSTM(int(x.batch_sizes[0]), len(x.batch_sizes), module.input_size, module.hidden_size)
    if x.dim() == 2:  # unbatched
        return LSTM(1, x.shape[0], module.input_size, module.hidden_size)
    batch, steps = (x.shape[0], x.shape[1]) if module.batch_first else (x.shape[1], x.shape[0])
    return LSTM(batch, steps, module.input_size, module.hidden_size)


def _head_split_attention(module) -> bool:
    return all(isinstance(getattr(module, a, None), int) for a in ("num_heads", "head_dim")) and hasattr(
        module, "batch_first"
    )


def _inside_attention(model, name: str) -> bool:
    from torch import nn

    parent = name.rpartition(".")[0]
    return bool(name) and isinstance(model.get_submodule(parent) if parent else model, nn.MultiheadAttention)


def _torch_conv(module, x: tuple[int, ...]) -> Conv:
    if len(x) == 3:  # unbatched input
        x = (1, *x)
    kh, kw = module.kernel_size
    dh, dw = module.dilation
    if module.padding == "valid":
        padding = (0, 0, 0, 0)
    elif module.padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        padding = (th // 2, tw // 2, th - th // 2, tw - tw // 2)
    else:
        ph, pw = module.padding
        padding = (ph, pw, ph, pw)
    return Conv(
        x[0], module.in_channels, module.out_channels, x[2], x[3], (kh, kw), tuple(module.stride), padding,
        (dh, dw), module.groups,
    )


def _attention_dims(module, query: tuple[int, ...], key: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(batch, query length, embedding width, key length) of one attention call."""
    if len(query) == 2:
        return 1, query[0], query[1], key[0]
    if module.batch_first:
        return query[0], query[1], query[2], key[1]
    return query[1], query[0], query[2], key[0]


def _attention_core(module, query: tuple[int, ...], key: tuple[int, ...]) -> Attention:
    batch, length, _, kv_len = _attention_dims(module, query, key)
    return Attention(batch, module.num_heads, length, module.head_dim, kv_len=kv_len)


def _torch_attention(name: str, module, query: tuple[int, ...], key: tuple[int, ...]) -> list[Layer]:
    """In-projection(s), the attention core and the out-projection of one ``MultiheadAttention`` call."""
    embed = query[-1]
    bias = module.in_proj_bias is not None
    rows, kv_rows = query[:-1], key[:-1]
    if module._qkv_same_embed_dim:
        projections = [Layer(f"{name}.in_proj", Linear(rows, embed, 3 * embed, bias))]
    else:
        projections = [
            Layer(f"{name}.q_proj", Linear(rows, embed, embed, bias)),
            Layer(f"{name}.k_proj", Linear(kv_rows, module.kdim, embed, bias)),
            Layer(f"{name}.v_proj", Linear(kv_rows, module.vdim, embed, bias)),
        ]
    out = module.out_proj
    return [
        *projections,
        Layer(name, _attention_core(module, query, key)),
        Layer(f"{name}.out_proj", Linear(rows, out.in_features, out.out_features, out.bias is not None)),
    ]
