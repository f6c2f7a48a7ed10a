"""What the device sends back: the measurement read from the profile step's trace and ``profile.json`` in
the schema of ``spiralprune.deploy.profiler.Profile`` (written whole or not at all by ``spiralprune.core.atomic``).
Its measurement carries the layers' profile (``spiralprune.deploy.layer_profile.LayerProfile.record``: ONNX
Runtime's per round, or trtexec's separate profiling run) explained against the measured rounds; the host checks
the layers and explains them again (``spiralprune.deploy.remote.read_device_profile``)."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import DeviceError

SCHEMA_VERSION = 1  # spiralprune.deploy.profiler.SCHEMA_VERSION


def measurement(batch: int, shapes: dict, trace: dict, settings: dict) -> dict:
    """A ``spiralprune.deploy.profiler.Measurement`` as JSON, with the rounds the gate judges and the layers'
    profile explained against them (``settings``: the manifest's profile settings)."""
    from spiralprune.deploy.layer_profile import LayerProfile
    from spiralprune.deploy.stats import robust_cv, summarize
    from spiralprune.deploy.verdict import round_statistic

    samples = [float(s) for s in trace["samples_ms"]]
    stats = summarize(samples)
    stats["robust_cv"] = robust_cv(samples)
    sizes = [int(n) for n in trace["round_sizes"]]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    rounds = [round_statistic(samples[a:a + n], "p50") for a, n in zip(starts, sizes)]
    layers = trace.get("layers")
    return {
        "batch": batch,
        "input_shapes": shapes,
        "warmup_iterations": int(trace["warmup_iterations"]),
        "warmup_s": float(trace["warmup_s"]),
        "samples_ms": samples,
        "stats": stats,
        "stable": stats["robust_cv"] <= settings["cv_threshold"],
        "stop_reason": trace["stop_reason"],
        "throughput_per_s": batch * 1e3 / stats["mean"] if stats["mean"] > 0 else float("inf"),
        "round_sizes": sizes,
        "cpu_wait": [None if w is None else float(w) for w in trace.get("cpu_wait", [])],
        "layers": None if layers is None else LayerProfile.from_dict(layers).record(rounds, settings["confidence"]),
    }


def consecutive_rounds(samples: int, block_calls: int) -> list:
    """Round sizes for samples a tool timed back to back (trtexec): consecutive blocks of ``block_calls``."""
    sizes = [block_calls] * (samples // block_calls)
    return sizes + ([samples % block_calls] if samples % block_calls else [])


def read_trace(manifest: dict, output: str, times: Path, layers: Path, layer_info: Path) -> dict:
    """Warm-up, per-query samples and their rounds from the profile command's output and times file, and
    the layers' profile (ONNX Runtime's, in the times file; trtexec's, from its profile and layer files)."""
    if manifest["backend"] == "ort-cpu":
        return json.loads(times.read_text())
    from spiralprune.core.errors import InputError
    from spiralprune.deploy.tensorrt_layers import parse_trtexec_profile
    from spiralprune.deploy.trtexec_parse import parse_export_times, parse_summary

    try:
        summary = parse_summary(output)
        records = parse_export_times(times.read_text(), skip=summary.warmup_queries or 0)
        profile = parse_trtexec_profile(layers.read_text(), layer_info.read_text())
    except (InputError, OSError) as exc:
        raise DeviceError("profile-failed", f"cannot read the trtexec results: {exc}") from None
    return {
        "samples_ms": [float(r["computeMs"]) for r in records],
        "round_sizes": consecutive_rounds(len(records), manifest["profile_settings"]["block_calls"]),
        "warmup_iterations": summary.warmup_queries or 0,
        "warmup_s": (summary.warmup_ms or 0.0) / 1e3,
        "stop_reason": "external_trace",
        "layers": profile.to_dict(),
        "runner_settings": {"throughput_qps": summary.throughput_qps, "timer": "trtexec --exportTimes (computeMs)",
                            "copies_included": False,
                            "layers": "trtexec --dumpProfile --separateProfileRun, after the timed queries"},
    }


def profile_json(manifest: dict, facts: dict, runner_settings: dict, m: dict) -> dict:
    """``profile.json``: one measurement, the device's facts as its fingerprint, and how it was run.

    ``physical_cores`` is what the device says about its cores (``spiralprune.deploy.device_runner.facts``), null
    where it says nothing, never the logical count.
    """
    backend, target = manifest["backend"], manifest["target"]
    return {
        "schema_version": SCHEMA_VERSION,
        "backend": backend,
        "model_path": manifest["model"]["file"],
        "model_sha256": manifest["model"]["sha256"],
        "fingerprint": {
            "backend": backend,
            "cpu": facts["cpu"],
            "machine": facts["machine"],
            "physical_cores": facts["physical_cores"],
            "logical_cores": facts["logical_cores"],
            "threads": runner_settings.get("threads"),
            "os": facts["os"],
            "python": facts["python"],
            "libraries": {key: facts[key] for key in ("onnxruntime", "numpy", "tensorrt") if key in facts},
            "gpu": {"name": facts["model"], "tensorrt": facts["tensorrt"]} if backend == "trtexec" else None,
            "precision": target["precision"],
            "device": facts,
        },
        "runner_settings": runner_settings,
        "settings": {**manifest["profile_settings"], "inputs": manifest["model"]["inputs"]},
        "measurements": [m],
    }
