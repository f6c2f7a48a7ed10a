"""Bundles: their files and checksums, and the exact trtexec command lines for every target and TensorRT version."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from spiralprune.core.atomic import umask
from spiralprune.core.errors import InputError
from spiralprune.deploy import device_runner
from spiralprune.deploy.bundle import MODEL_FILE, RUNNER, RUNNER_FILES, build_bundle
from spiralprune.deploy.device_runner import MANIFEST
from spiralprune.deploy.target_profiles import list_targets, load_target, parse_target

TRTEXEC_TARGETS = [name for name in list_targets() if load_target(name).backend == "trtexec"]
TRTEXEC_CASES = [(name, version) for name in TRTEXEC_TARGETS for version in load_target(name).trtexec.tensorrt]
SHAPE = "input:1x3x16x16"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fp16_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A graph already in FP16 inside (what TensorRT 11, which has no precision flags, needs for FP16)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input"], ["half"], to=TensorProto.FLOAT16),
         helper.make_node("Relu", ["half"], ["relu"]),
         helper.make_node("Cast", ["relu"], ["output"], to=TensorProto.FLOAT)],
        "fp16", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, 16, 16])],
    )
    path = tmp_path_factory.mktemp("fp16") / "fp16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_layout_checksums_and_manifest(tiny_onnx: Path, tmp_path: Path) -> None:
    bundle = build_bundle(tiny_onnx, load_target("local-cpu"), tmp_path / "bundle")
    files = {str(p.relative_to(bundle.root)) for p in bundle.root.rglob("*") if p.is_file()}
    assert files == {MANIFEST, MODEL_FILE, *RUNNER_FILES}
    manifest = json.loads((bundle.root / MANIFEST).read_text())
    assert manifest == bundle.manifest and sha(bundle.root / MANIFEST) == bundle.manifest_sha256
    assert manifest["files"] == {name: sha(bundle.root / name) for name in files - {MANIFEST}}
    package = Path(device_runner.__file__).parent  # the runner is shipped whole, each module with its sha256
    assert {f"runner/spiralprune/deploy/device_runner/{p.name}" for p in package.glob("*.py")} <= set(manifest["files"])
    assert (bundle.root / MODEL_FILE).read_bytes() == tiny_onnx.read_bytes()
    assert manifest["model"]["sha256"] == sha(tiny_onnx) and manifest["model"]["input_shapes"] == {"input": [1, 3, 16, 16]}
    assert manifest["target"]["name"] == "local-cpu" and "ssh" not in manifest["target"]
    versions = manifest["versions"]
    assert versions["onnx"] == onnx.__version__ and versions["model_opsets"]["ai.onnx"] >= 13
    assert {"spiral", "python", "onnxruntime", "model_ir_version"} <= set(versions)


def test_cpu_target_commands(tiny_onnx: Path, tmp_path: Path) -> None:
    commands = build_bundle(tiny_onnx, load_target("local-cpu"), tmp_path / "b").manifest["commands"]
    assert commands["build"] == ["{python}", "-m", RUNNER, "ort-build", "--model", MODEL_FILE, "--engine", "{engine}",
                                 "--threads", "2"]
    assert commands["profile"][:12] == ["{python}", "-m", RUNNER, "ort-profile", "--engine", "{engine}", "--model",
                                        MODEL_FILE, "--times", "{times}", "--threads", "2"]
    settings = json.loads(commands["profile"][commands["profile"].index("--settings") + 1])
    assert settings == dataclasses.asdict(load_target("local-cpu").measure.profile) and settings["min_rounds"] == 10


@pytest.mark.parametrize(("name", "version"), TRTEXEC_CASES)
def test_trtexec_command_lines(tiny_onnx: Path, tmp_path: Path, name: str, version: str) -> None:
    target = load_target(name)
    commands = build_bundle(tiny_onnx, target, tmp_path / "b").manifest["commands"][version]
    major = int(version.split(".")[0])
    if major >= 11:  # no precision flags: FP16 needs an FP16 ONNX, and this one is FP32
        assert "strongly typed" in commands["unsupported"] and "convert the ONNX to FP16" in commands["unsupported"]
        return
    trtexec, mib = target.trtexec.path, target.trtexec.workspace_mib
    m = target.measure.profile
    assert commands["build"] == [
        trtexec, f"--onnx={MODEL_FILE}", "--saveEngine={engine}", f"--memPoolSize=workspace:{mib}", "--skipInference",
        "--profilingVerbosity=detailed", "--fp16", f"--minShapes={SHAPE}", f"--optShapes={SHAPE}", f"--maxShapes={SHAPE}", "--timingCacheFile={timing_cache}",
    ]
    assert commands["profile"] == [
        trtexec, "--loadEngine={engine}", f"--shapes={SHAPE}", f"--warmUp={round(m.warmup_s * 1000)}",
        f"--duration={round(m.min_duration_s)}", f"--iterations={m.min_rounds * m.block_calls}", "--useSpinWait",
        "--exportTimes={times}", *(["--percentile=90,95,99"] if major >= 10 else []),
        "--dumpProfile", "--separateProfileRun", "--exportProfile={layers}", "--exportLayerInfo={layer_info}",
    ]


def test_tensorrt_11_builds_an_fp16_onnx_without_precision_flags(fp16_onnx: Path, tmp_path: Path) -> None:
    commands = build_bundle(fp16_onnx, load_target("x86-gpu"), tmp_path / "b").manifest["commands"]
    assert "--fp16" in commands["10"]["build"]
    assert "--fp16" not in commands["11"]["build"] and "--int8" not in commands["11"]["build"]


def test_dla_with_gpu_fallback_at_build_and_load(tiny_onnx: Path, tmp_path: Path) -> None:
    data = load_target("jetson-agx-orin").model_dump(mode="json")
    data["trtexec"]["dla"] = {"core": 1, "gpu_fallback": True}
    commands = build_bundle(tiny_onnx, parse_target(data, "dla"), tmp_path / "b").manifest["commands"]
    for per_version in commands.values():
        for step in ("build", "profile"):
            assert per_version[step][-2:] == ["--useDLACore=1", "--allowGPUFallback"]
    data["trtexec"]["dla"] = {"core": 0, "gpu_fallback": False}
    commands = build_bundle(tiny_onnx, parse_target(data, "dla"), tmp_path / "c").manifest["commands"]
    assert commands["10.3"]["build"][-1] == "--useDLACore=0"


def test_int8_without_qdq_is_refused_before_shipping(tiny_onnx: Path, tmp_path: Path) -> None:
    data = load_target("jetson-orin-nano").model_dump(mode="json")
    data["precision"] = "int8"
    with pytest.raises(InputError, match="no QuantizeLinear/DequantizeLinear"):
        build_bundle(tiny_onnx, parse_target(data, "int8"), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_engine_key_follows_the_onnx_and_build_flags_only(tiny_onnx: Path, static_onnx: Path, tmp_path: Path) -> None:
    nano = load_target("jetson-orin-nano")
    key = build_bundle(tiny_onnx, nano, tmp_path / "a").engine_key
    assert build_bundle(tiny_onnx, nano, tmp_path / "a").engine_key == key
    data = nano.model_dump(mode="json")
    data["measure"]["profile"]["min_rounds"] = 999  # a profile setting: the same engine serves
    assert build_bundle(tiny_onnx, parse_target(data, "t"), tmp_path / "b").engine_key == key
    data["precision"] = "fp32"
    assert build_bundle(tiny_onnx, parse_target(data, "t"), tmp_path / "c").engine_key != key
    assert build_bundle(static_onnx, nano, tmp_path / "d").engine_key != key


def test_rebuilding_replaces_the_bundle(tiny_onnx: Path, tmp_path: Path) -> None:
    target = load_target("local-cpu")
    build_bundle(tiny_onnx, target, tmp_path / "b")
    (tmp_path / "b" / "stale.txt").write_text("left from before")
    build_bundle(tiny_onnx, target, tmp_path / "b")
    assert not (tmp_path / "b" / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no staging directory left behind
    # The bundle folder gets the mode mkdir would give it (a mkdtemp staging folder is 0700).
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o777 & ~umask()


def test_bad_models_fail_locally(tiny_onnx: Path, tmp_path: Path) -> None:
    target = load_target("local-cpu")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(InputError, match="cannot read ONNX model"):
        build_bundle(corrupt, target, tmp_path / "b")
    with pytest.raises(InputError, match="not an .onnx file"):
        build_bundle(tmp_path / "model.pt", target, tmp_path / "b")
    data = target.model_dump(mode="json")
    data["measure"]["batch"] = 4
    static = tmp_path / "static.onnx"
    proto = onnx.load(str(tiny_onnx))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(proto, str(static))
    with pytest.raises(InputError, match="static batch of 1; the target measures batch 4"):
        build_bundle(static, parse_target(data, "t"), tmp_path / "b")
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    onnx.save(proto, str(static))
    with pytest.raises(InputError, match="dynamic dimensions besides the batch"):
        build_bundle(static, target, tmp_path / "b")
