"""Building a TensorRT engine from ONNX with the Python API, for TensorRT 10.x and 11.x.

10.x: weakly typed networks; precision comes from builder flags (FP16, INT8), INT8 from the Q/DQ
nodes of an ONNX quantized beforehand (no calibrator). 11.x: networks are strongly typed and the
precision flags are gone, so the precision is that of the ONNX tensors, cast beforehand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spiralprune.core.atomic import write_bytes
from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.engine_cache import EngineSpec


def trt_major(version: str) -> int:
    return int(version.split(".")[0])


def builder_flags(version: str, precision: str, sparse_weights: bool) -> tuple[str, ...]:
    """Names of the ``trt.BuilderFlag`` members to set."""
    flags = []
    if trt_major(version) < 11:
        flags += {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}[precision]
    if sparse_weights:
        flags.append("SPARSE_WEIGHTS")
    return tuple(flags)


def onnx_precision_problem(model_path: Path, version: str, precision: str) -> str | None:
    """Why this ONNX cannot give ``precision`` on this TensorRT, or None when it can."""
    if precision == "fp32":
        return None
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    ops = {node.op_type for node in model.graph.node}
    if precision == "int8" and not {"QuantizeLinear", "DequantizeLinear"} & ops:
        return (
            f"{model_path} has no QuantizeLinear/DequantizeLinear nodes: INT8 on TensorRT needs an ONNX "
            "quantized beforehand (QDQ, e.g. onnxruntime.quantization); calibration is not supported"
        )
    if precision == "fp16" and trt_major(version) >= 11:
        fp16 = onnx.TensorProto.FLOAT16
        typed = any(t.data_type == fp16 for t in model.graph.initializer) or any(
            node.op_type == "Cast" and any(a.name == "to" and a.i == fp16 for a in node.attribute)
            for node in model.graph.node
        )
        if not typed:
            return (
                f"TensorRT {version} builds strongly typed networks and {model_path} holds no float16 "
                "tensors: convert the ONNX to FP16 first"
            )
    return None


def build_engine(trt: Any, model_path: Path, spec: EngineSpec, timing_cache: Path | None) -> bytes:
    """Parse, configure and build; reuse and update the timing cache file when one is given."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    strongly_typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if spec.strongly_typed and strongly_typed_flag is not None:
        network_flags |= 1 << int(strongly_typed_flag)
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(model_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse {model_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    # The engine's layer information then names the ONNX nodes of every layer (``spiralprune.deploy.tensorrt_layers``).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for flag in spec.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if any(-1 in tuple(t.shape) for t in inputs):
        profile = builder.create_optimization_profile()
        low, opt, high = min(spec.batch_sizes), spec.batch_sizes[0], max(spec.batch_sizes)
        for tensor in inputs:
            shape = list(tensor.shape)
            if -1 in shape[1:]:
                raise InputError(f"input '{tensor.name}' has dynamic dimensions besides the batch: {shape}")
            dims = [[b if shape[0] == -1 else shape[0], *shape[1:]] for b in (low, opt, high)]
            profile.set_shape(tensor.name, *dims)
        config.add_optimization_profile(profile)

    if timing_cache is not None:
        data = timing_cache.read_bytes() if timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError(f"TensorRT could not build an engine for {model_path} (its log above says why)")
    if timing_cache is not None:
        write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))
