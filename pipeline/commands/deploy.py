"""``spiralprune deploy MODEL --target NAME``: build and measure on the device itself, then gate.

TensorRT engines are not portable across GPUs or TensorRT versions, so a device's number has to be
measured on the device: bundle the ONNX, copy it over SSH, verify it there, build the engine there
(or reuse the one cached for the same ONNX and flags), profile it there, fetch the profile and the
device's facts, and gate them against the target's budget with the rules of ``spiralprune gate``.
The device profiles the layers too (ONNX Runtime's or trtexec's, ``spiralprune.deploy.device_runner``): the
report shows where the device's time goes, and with ``--explain`` the same layers measured on this host
(ONNX Runtime on its CPU) beside them.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from spiralprune.deploy.target_profiles import ALIASES, list_targets
from spiralprune.pipeline.commands import add_weights_argument, parse_shape
from spiralprune.pipeline.commands.gate import summary

def add_arguments(parser: argparse.ArgumentParser) -> None:
    aliases = ", ".join(f"{a} = {t}" for a, t in ALIASES.items())
    parser.add_argument(
        "model",
        help="an .onnx file, a spiralprune run directory (its last accepted step, else its teacher), "
             "or a model spec / checkpoint with --input-shape",
    )
    add_weights_argument(parser)
    parser.add_argument("--target", required=True,
                        help=f"a target name ({', '.join(list_targets())}; {aliases}) or a target YAML file")
    parser.add_argument("--host", help="the device to deploy to, replacing the target's ssh.host")
    parser.add_argument("--out", type=Path, help="where the bundle and results go (default: runs/deploy/<target>)")
    parser.add_argument("--json", type=Path, help="write the gate report with the device's facts as JSON")
    parser.add_argument("--markdown", type=Path,
                        help="write a Markdown summary (a pull-request comment): the checks and where the device's time goes")
    parser.add_argument("--html", type=Path, help="write a self-contained HTML report: the checks, plots and the device's layers")
    parser.add_argument("--input-shape", help="input shape to export a model spec with, e.g. 1,3,224,224")
    parser.add_argument("--data", help="validation samples the device feeds when the graph's work depends on its "
                                       "inputs' values (NMS in it, say): digits, an ImageFolder or package.module:factory")
    parser.add_argument("--explain", action="store_true",
                        help="also profile the model's layers on this host (ort-cpu) and show them beside the device's")


def run(args: argparse.Namespace) -> int:
    from spiralprune.deploy.bundle import MODEL_FILE, build_bundle
    from spiralprune.deploy.model_file import ModelFile
    from spiralprune.deploy.profiler import profile_model
    from spiralprune.deploy.remote import deploy_bundle, read_device_profile
    from spiralprune.deploy.target_profiles import load_target
    from spiralprune.pipeline.gate.budget import GateBudget
    from spiralprune.deploy.backends.onnx_io import data_dependent_ops
    from spiralprune.pipeline.gate.prepare import data_feed, feed_note, prepare_model, validation_set
    from spiralprune.pipeline.gate.checks import run_gate
    from spiralprune.pipeline.gate.report import GateContext, gate_html, gate_json, gate_markdown
    from spiralprune.pipeline.report.attribution import device_html, device_markdown
    from spiralprune.pipeline.report.outputs import write_outputs

    target = load_target(args.target, host_override=args.host)
    print(f"deploying to {target.name} at {target.host}")
    # The device's rounds are judged at the confidence the target measures with.
    budget = GateBudget(**dict(target.budget), profile=target.measure.profile)
    out: Path = args.out or Path("runs") / "deploy" / target.name
    with tempfile.TemporaryDirectory(prefix="spiral-deploy-") as work:
        shape = parse_shape(args.input_shape) if args.input_shape else None
        candidate = prepare_model(args.model, Path(work), shape, weights=args.weights)
        onnx_path = candidate.onnx_path
        feed = data_feed(onnx_path, validation_set(args.data, candidate.input_shape))
        bundle = build_bundle(onnx_path, target, out / "bundle", given=feed)
        dependent = data_dependent_ops(onnx_path)
    print(f"bundle: {bundle.root} ({onnx_path}, sha256 {bundle.manifest['model']['sha256'][:16]}, "
          f"engine key {bundle.engine_key})")
    note = feed_note(dependent, feed)
    if note:
        print(note)

    # What an earlier deploy left must not pass for this one's outcome if this one fails.
    (out / "deploy.json").unlink(missing_ok=True)
    shutil.rmtree(out / "results", ignore_errors=True)
    result = deploy_bundle(bundle, target, out / "results", echo=lambda line: print(f"  {line}"))
    print(f"engine: {'reused from the device cache' if result.engine_from_cache else 'built on the device'}")
    profile = read_device_profile(result.profile_path, target.measure.profile.confidence)
    shipped = ModelFile.of(bundle.root / MODEL_FILE)  # what the budget's size limits judge, counted on this host
    gate = run_gate(budget, profile=profile, file=shipped)
    for line in [*(check.line() for check in gate.checks), *gate.notes]:
        print(line)
    device_layers = profile.measurement().layers
    host_layers = None
    if args.explain and device_layers is not None:
        print("profiling the layers on this host (ort-cpu) to compare")
        host_layers = profile_model(bundle.root / MODEL_FILE, "ort-cpu", batch_sizes=[target.measure.batch],
                                    threads=target.measure.threads,
                                    settings=target.measure.profile, layers=True).measurement().layers
    why_not = profile.runner_settings.get("layers")
    print_layers(device_layers, host_layers, why_not)
    context = GateContext(args.model, f"{target.name} ({result.host})", profile, file=shipped)
    device = device_layers and device_layers["explanation"]
    host = host_layers and host_layers["explanation"]
    report = {
        **gate_json(gate, context),
        "deploy": {
            "target": target.model_dump(mode="json"),
            "host": result.host,
            "bundle": str(bundle.root),
            "manifest_sha256": bundle.manifest_sha256,
            "engine_key": bundle.engine_key,
            "engine_from_cache": result.engine_from_cache,
            "device": result.device,
            "results": str(result.results_dir),
        },
        "layers": {"device": device, "host": host},
    }
    written = write_outputs([
        (out / "deploy.json", lambda: report), (args.json, lambda: report),
        (args.markdown, lambda: gate_markdown(gate, context, device_markdown(device, host, why_not))),
        (args.html, lambda: gate_html(gate, context, device_html(device, host, why_not))),
    ])
    for path in written:
        print(f"wrote {path}")
    print(f"spiralprune deploy to {target.name} ({result.host}) {summary(gate)}")
    return gate.exit_code


def print_layers(device: dict | None, host: dict | None, why_not: str | None) -> None:
    """Where the device's time goes, its slowest layers beside this host's where measured."""
    from spiralprune.pipeline.report.attribution import device_headers, device_rows, explain_summary

    if device is None:
        print(f"layers: the device gave no per-layer profile ({why_not or 'not profiled'})")
        return
    explanation = device["explanation"]
    print(f"where the device's time goes: {explain_summary(explanation)}")
    for line in explanation["findings"]:
        print(f"- {line}")
    if host is not None:
        print(f"on this host: {explain_summary(host['explanation'])}")
    rows = [list(device_headers(host is not None)), *device_rows(explanation, host and host["explanation"])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  " + "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
