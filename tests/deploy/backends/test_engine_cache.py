import dataclasses

from spiralprune.core.atomic import write_bytes
from spiralprune.deploy.backends.engine_cache import EngineSpec

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
