"""One run of a bundle on the device: verify, record the facts, check the power state, build the engine
(or reuse the cached one), profile it while ``tegrastats`` runs, and write ``results/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from spiralprune.core.atomic import write_json

from .engine_cache import ENGINE_FILE, build_engine, cache_entry
from .errors import say
from .facts import device_facts
from .manifest import verify_bundle
from .power import check_power
from .results import measurement, profile_json, read_trace
from .runtimes import ort_commands, trtexec_commands
from .steps import fill, run_step
from .tegrastats import Tegrastats


def run(bundle: Path, manifest_sha256: str, cache: Path) -> None:
    manifest = verify_bundle(bundle, manifest_sha256)
    target, backend, settings = manifest["target"], manifest["backend"], manifest["profile_settings"]
    results = bundle / "results"
    results.mkdir(exist_ok=True)
    facts = device_facts()
    check_power(target["power"], facts)
    tag, commands = trtexec_commands(manifest, facts) if backend == "trtexec" else ort_commands(manifest, facts)
    cache.mkdir(parents=True, exist_ok=True)
    engine_dir = cache_entry(cache, manifest["engine_key"], tag)
    times, layers, layer_info = results / "times.json", results / "layers.json", results / "layer-info.json"
    values = {
        "python": sys.executable,
        "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1),
        "engine": str(engine_dir / ENGINE_FILE),
        "timing_cache": str(cache / f"timing-{tag}.cache"),
        "times": str(times),
        "layers": str(layers),
        "layer_info": str(layer_info),
    }
    cached = build_engine(manifest, bundle, engine_dir, commands, values, results)

    profile_argv = fill(commands["profile"], values)
    say("profiling: " + " ".join(profile_argv))
    with Tegrastats(results / "tegrastats.log") as tegrastats:
        output = run_step("profile-failed", profile_argv, bundle, results / "profile.log",
                          settings["warmup_s"] + settings["max_duration_s"] + 600)
    facts["tegrastats"] = tegrastats.summary()
    trace = read_trace(manifest, output, times, layers, layer_info)
    for consumed in (times, layers, layer_info):  # their samples and layers go into profile.json
        if consumed.exists():
            consumed.unlink()
    m = measurement(manifest["batch"], manifest["model"]["input_shapes"], trace, settings)
    say(f"{len(m['samples_ms'])} samples in {len(m['round_sizes'])} rounds, p50 {m['stats']['p50']:.3f} ms, "
        f"robust cv {m['stats']['robust_cv']:.1%}")

    runner_settings = {
        "engine": values["engine"],
        "engine_from_cache": cached,
        "precision": target["precision"],
        "runtime": tag,
        "build_command": fill(commands["build"], values),
        "profile_command": profile_argv,
        **trace.get("runner_settings", {}),
    }
    if backend == "trtexec":
        trtexec = target["trtexec"]
        runner_settings.update(trtexec=trtexec["path"], tensorrt=facts["tensorrt"], dla=trtexec["dla"],
                               workspace_mib=trtexec["workspace_mib"])
    write_json(results / "device.json", facts)
    write_json(results / "run.json", {"engine_from_cache": cached, "runtime": tag, "engine_dir": str(engine_dir)})
    write_json(results / "profile.json", profile_json(manifest, facts, runner_settings, m))
