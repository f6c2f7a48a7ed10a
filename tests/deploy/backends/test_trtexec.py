"""trtexec command lines per version; running it needs a GPU host (see test_registry)."""

from pathlib import Path

import numpy as np

from spiralprune.deploy.backends.trtexec import build_command, input_file, shape_arg, trace_command

DYNAMIC = {"input": (["batch", 3, 16, 16], np.dtype(np.float32))}
STATIC = {"input": ([1, 3, 16, 16], np.dtype(np.float32))}


def build(version, **kw):
    args = dict(flags=(), workspace_bytes=1 << 30, inputs=DYNAMIC, batch_sizes=[1, 8], timing_cache=None)
    return build_command("trtexec", version, Path("m.onnx"), Path("c/e.engine"), **{**args, **kw})


def test_shape_arg_sets_only_the_dynamic_batch():
    assert shape_arg(DYNAMIC, 8) == "input:8x3x16x16"
    two = {**DYNAMIC, "ids": ([None, 7], np.dtype(np.int64))}
    assert shape_arg(two, 2) == "input:2x3x16x16,ids:2x7"


def test_10x_build_uses_mem_pool_size_precision_flags_profiles_and_timing_cache():
    cmd = build((10, 7, 0), flags=("FP16", "SPARSE_WEIGHTS"), timing_cache=Path("c/t.cache"))
    assert cmd == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=c/e.engine", "--memPoolSize=workspace:1024", "--skipInference",
        "--profilingVerbosity=detailed", "--fp16", "--sparsity=enable",
        "--minShapes=input:1x3x16x16", "--optShapes=input:1x3x16x16", "--maxShapes=input:8x3x16x16",
        "--timingCacheFile=c/t.cache",
    ]


def test_old_8x_build_uses_workspace_and_static_models_get_no_shapes():
    cmd = build((8, 2, 1), flags=("INT8",), inputs=STATIC)
    assert "--workspace=1024" in cmd and "--int8" in cmd
    assert not any(a.startswith(("--memPoolSize", "--minShapes")) for a in cmd)
    assert "--memPoolSize=workspace:1024" in build((8, 4, 1))


def test_11x_build_has_no_precision_flags_because_builder_flags_has_none():
    from spiralprune.deploy.backends.tensorrt_build import builder_flags

    cmd = build((11, 0, 0), flags=builder_flags("11.0.0", "fp16", False))
    assert not {"--fp16", "--int8"} & set(cmd)


def test_trace_command_per_version():
    args = dict(warmup_ms=300, duration_s=1, iterations=30, export_times=Path("t.json"))
    cmd10 = trace_command("trtexec", (10, 16, 0), Path("e.engine"), "input:4x3x16x16", **args)
    assert cmd10 == [
        "trtexec", "--loadEngine=e.engine", "--shapes=input:4x3x16x16", "--warmUp=300", "--duration=1",
        "--iterations=30", "--useSpinWait", "--exportTimes=t.json", "--percentile=90,95,99",
    ]
    cmd8 = trace_command("trtexec", (8, 6, 1), Path("e.engine"), "input:4x3x16x16", **args)
    assert cmd8 == cmd10[:-1]


def test_a_layer_profile_is_a_separate_profiling_run_of_the_same_trtexec_call():
    """The timed queries are not profiled: trtexec profiles the layers in a run of its own after them."""
    args = dict(warmup_ms=300, duration_s=1, iterations=30, export_times=Path("t.json"))
    plain = trace_command("trtexec", (10, 16, 0), Path("e.engine"), "input:1x3x16x16", **args)
    cmd = trace_command("trtexec", (10, 16, 0), Path("e.engine"), "input:1x3x16x16", **args,
                        export_layers=(Path("p.json"), Path("l.json")))
    assert cmd == [*plain, "--dumpProfile", "--separateProfileRun", "--exportProfile=p.json", "--exportLayerInfo=l.json"]



def test_the_trace_loads_the_inputs_it_is_given():
    """trtexec makes up random inputs unless it loads files: spiral feeds it the arrays every backend gets
    (real images for a graph with NMS), each written raw under a name trtexec's list syntax can hold."""
    args = dict(warmup_ms=300, duration_s=1, iterations=30, export_times=Path("t.json"))
    plain = trace_command("trtexec", (10, 16, 0), Path("e.engine"), "input:1x3x16x16", **args)
    cmd = trace_command("trtexec", (10, 16, 0), Path("e.engine"), "input:1x3x16x16", **args,
                        load_inputs={"input": Path("inputs/input.bin"), "ids:0": Path("inputs/ids_0.bin")})
    assert cmd == [*plain, "--loadInputs='input':inputs/input.bin,'ids:0':inputs/ids_0.bin"]
    assert input_file("ids:0") == "ids_0.bin" and input_file("input") == "input.bin"
