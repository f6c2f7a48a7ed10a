"""Profile one model on every backend available here (run it on a GPU host).

    python benchmarks/profiler_gpu.py [--batch 1,8] [--json-dir DIR]

Exports torchvision's ResNet-18 (random weights, 10 classes) at 32x32 to ONNX, then profiles it
on each available backend; the torch backends get the module itself and run on CUDA when torch
sees a GPU. Unavailable backends are listed with the reason.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends import get_backend, list_backends
from spiralprune.deploy.fingerprint import target_fingerprint
from spiralprune.deploy.profiler import ProfileSettings, profile_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--json-dir", type=Path, default=None)
    args = parser.parse_args()
    batches = [int(b) for b in args.batch.split(",")]

    import torch
    import torchvision

    fp = target_fingerprint("-", threads=None, precision="fp32")
    print(f"cpu {fp['cpu']} ({fp['physical_cores']} physical cores), gpu {fp['gpu']}, libraries {fp['libraries']}")
    module = torchvision.models.resnet18(num_classes=10).eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "resnet18-32.onnx"
        torch.onnx.export(
            module, (torch.randn(1, 3, 32, 32),), str(onnx_path), dynamo=False,
            input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        )
        for name, ok, reason in list_backends():
            if not ok:
                print(f"{name:14s} unavailable: {reason}")
                continue
            options = {"module": module, "device": device} if "module" in get_backend(name).option_names else {}
            try:
                profile = profile_model(onnx_path, name, batch_sizes=batches, settings=ProfileSettings(),
                                        cache_dir=Path(tmp) / "cache", backend_options=options)
            except InputError as exc:
                print(f"{name:14s} failed: {exc}")
                continue
            for m in profile.measurements:
                s = m.stats
                print(f"{name:14s} batch {m.batch:3d}: p50 {s['p50']:.4f} p90 {s['p90']:.4f} p99 {s['p99']:.4f} ms "
                      f"cv {100 * s['cv']:5.1f} % n {len(m.samples_ms):6d} {m.stop_reason} "
                      f"{'stable' if m.stable else 'UNSTABLE'} timer={profile.runner_settings.get('timer')}")
            if args.json_dir is not None:
                profile.save(args.json_dir / f"{name}.json")


if __name__ == "__main__":
    main()
