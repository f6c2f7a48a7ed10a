import dataclasses

from spiralprune.core.atomic import write_bytes
from spiralprune.deploy.backends.engine_cache import EngineSpec, Evicted, build_key, evict

SPEC = EngineSpec(
    onnx_sha256="ab" * 32, trt_version="10.7.0", gpu="NVIDIA H100 80GB HBM3 (sm_90)",
    builder_flags=("FP16",), strongly_typed=False, workspace_bytes=1 << 30, batch_sizes=(1, 8),
)


def test_every_field_changes_the_key():
    changes = dict(
        onnx_sha256="cd" * 32, trt_version="10.8.0", gpu="NVIDIA A100", builder_flags=(),
        strongly_typed=True, workspace_bytes=1 << 31, batch_sizes=(1, 16),
    )
    keys = {SPEC.key()} | {dataclasses.replace(SPEC, **{k: v}).key() for k, v in changes.items()}
    assert len(keys) == 1 + len(changes)
    assert SPEC.key() == EngineSpec(**dataclasses.asdict(SPEC) | {"builder_flags": ("FP16",), "batch_sizes": (1, 8)}).key()


def test_timing_cache_is_shared_per_version_and_gpu(tmp_path):
    other_model = dataclasses.replace(SPEC, onnx_sha256="cd" * 32, builder_flags=())
    assert SPEC.timing_cache_path(tmp_path) == other_model.timing_cache_path(tmp_path)
    assert SPEC.timing_cache_path(tmp_path) != dataclasses.replace(SPEC, gpu="A100").timing_cache_path(tmp_path)
    assert SPEC.timing_cache_path(tmp_path).name == "timing-10-7-0-NVIDIA-H100-80GB-HBM3-sm-90.cache"


def test_save_writes_engine_and_its_spec_atomically(tmp_path):
    path = SPEC.save(tmp_path / "cache", b"engine-bytes")
    assert path == SPEC.engine_path(tmp_path / "cache") and path.read_bytes() == b"engine-bytes"
    assert '"trt_version": "10.7.0"' in path.with_suffix(".json").read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, path.with_suffix(".json").name])
    write_bytes(path, b"new")
    assert path.read_bytes() == b"new"


def test_evict_removes_every_build_but_the_kept_keys_and_what_no_key_names(tmp_path):
    """One build's files are named by its key: ONNX Runtime's optimized graph and its facts, a TensorRT engine and
    its spec, ONNX Runtime's TensorRT engine folder, a temporary file a killed build left. Timing caches (shared by
    every build on a GPU) and anything else no key names stay."""
    kept, gone, folder = build_key({"model": 1}), build_key({"model": 2}), build_key({"model": 3})
    for name in (f"{kept}.onnx", f"{kept}.json", f"{gone}.onnx", f"{gone}.json", f".{gone}.onnx.x1y2.tmp",
                 f"{kept}.engine", "timing-10-7-0-H100.cache", "TensorrtExecutionProvider_cache_sm90.timing",
                 "notes.txt"):
        (tmp_path / name).write_bytes(b"x" * 1000)
    (tmp_path / folder).mkdir()
    for name in ("a.engine", "a.profile"):
        (tmp_path / folder / name).write_bytes(b"y" * 500_000)
    evicted = evict(tmp_path, {kept})
    assert evicted == Evicted(files=5, bytes=3 * 1000 + 1_000_000)
    assert evicted.record() == {"evicted": 5, "evicted_mb": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
        f"{kept}.engine", f"{kept}.json", f"{kept}.onnx", "TensorrtExecutionProvider_cache_sm90.timing", "notes.txt",
        "timing-10-7-0-H100.cache"])
    assert evict(tmp_path, {kept}) == Evicted() and evict(tmp_path / "absent", set()) == Evicted()
