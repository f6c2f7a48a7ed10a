"""Hostile model folders through the real commands: code named inside a file is never run unless allowed.

Each command that loads a checkpoint is given one whose ``spiral.json`` names hostile code; the
command must exit 2 with the one refusal line, and the code must not have run (no ``PWNED`` file, the
current directory's module not imported). Paths inside checkpoints and ledgers must stay inside their
folder; oversized or malformed files are refused with one line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from tiny_spiral import TINY_MODEL, tiny_config

from spiralprune.pipeline.checkpoint import MANIFEST, MAX_MANIFEST_BYTES, WEIGHTS, save_checkpoint
from spiralprune.pipeline.cli import COMMANDS, main
from spiralprune.pipeline.config import parse_config
from spiralprune.pipeline.distill import ddp
from spiralprune.pipeline.ledger import MAX_LINE_BYTES
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.report.run import REPORT_SCHEMA_VERSION
from tests.ledger_entries import ledger_entry

SHAPE = [1, 1, 16, 16]
SHAPE_ARG = "1,1,16,16"
# A module that exists only in the current directory: importing it is running it.
LOCAL_MODULE = "spiral_trust_local"
LOCAL_SOURCE = """
from pathlib import Path
from torch import nn

Path("PWNED").touch()


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 3))
"""
HOSTILE_SPECS = [
    "os:system?command=touch%20PWNED",
    "subprocess:run?args=[touch,PWNED]",
    "builtins:exec?source=open('PWNED','w')",
    "importlib:import_module?name=" + LOCAL_MODULE,
    f"{LOCAL_MODULE}:tiny",
]


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A current directory holding the local module, importable as from ``python -m`` (cwd on sys.path)."""
    work = tmp_path / "cwd"
    work.mkdir()
    (work / f"{LOCAL_MODULE}.py").write_text(LOCAL_SOURCE)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    sys.modules.pop(LOCAL_MODULE, None)
    yield work
    sys.modules.pop(LOCAL_MODULE, None)


def checkpoint(directory: Path, spec: str = TINY_MODEL) -> Path:
    """A real checkpoint of the tiny zoo model whose manifest then names ``spec``."""
    save_checkpoint(directory, base_spec=TINY_MODEL, plans=[], model=build_model(TINY_MODEL), input_shape=SHAPE)
    manifest = json.loads((directory / MANIFEST).read_text())
    (directory / MANIFEST).write_text(json.dumps({**manifest, "base_spec": spec}))
    return directory


def refusal(folder: Path, spec: str) -> str:
    module, target = spec.partition(":")[0], spec.partition("?")[0]
    return (f"spiralprune: error: {folder / MANIFEST} names code from module {module!r} ({target!r}); spiral imports no "
            "code named inside a file it reads unless you allow it: if you trust this folder (your own checkpoints "
            "record the spec you gave), pass --trust-model-code or set trust_model_code: true in your run config")


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# ---- every command that loads a checkpoint, with the checkpoint where it reads one from -------------
# Each takes the checkpoint folder and a scratch folder; returns the argv and where the checkpoint now is.


def _prune(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    return ["prune", str(folder), "--input-shape", SHAPE_ARG, "--out", str(tmp / "pruned")], folder


def _run(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    config = write_yaml(tmp / "config.yaml", tiny_config(model=str(folder), teacher_training=None))
    return ["run", str(config), "--out", str(tmp / "run")], folder


def _run_resume(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    """A run folder from someone else: its trained teacher is a checkpoint the resumed run reloads."""
    config = write_yaml(tmp / "config.yaml", tiny_config())
    run = tmp / "run"
    (run / "teacher").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(parse_config(tiny_config()).model_dump(mode="json")))
    folder.rename(run / "teacher" / "model")
    return ["run", str(config), "--out", str(run), "--resume"], run / "teacher" / "model"


def _gate(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    budget = write_yaml(tmp / "budget.yaml", {"latency": {"statistic": "p50", "max_ms": 1000.0}})
    return ["gate", str(folder), "--backend", "ort-cpu", "--budget", str(budget)], folder


def _gate_baseline(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    budget = write_yaml(tmp / "budget.yaml", {"latency": {"statistic": "p50", "max_ms": 1000.0}})
    return ["gate", TINY_MODEL, "--input-shape", SHAPE_ARG, "--backend", "ort-cpu", "--budget", str(budget),
            "--baseline-model", str(folder)], folder


def _deploy(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    return ["deploy", str(folder), "--target", "local-cpu", "--host", "device.invalid",
            "--out", str(tmp / "deploy")], folder


def _profile(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    return ["profile", str(folder), "--backend", "torch", "--json", str(tmp / "profile.json")], folder


def _export(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    return ["export", str(folder), "--out", str(tmp / "model.onnx")], folder


def _quantize(folder: Path, tmp: Path) -> tuple[list[str], Path]:
    return ["quantize", str(folder), "--data", "digits", "--out", str(tmp / "model.int8.onnx")], folder


LOADS_CHECKPOINTS: dict[str, Callable[[Path, Path], tuple[list[str], Path]]] = {
    "prune": _prune, "run": _run, "run-resume": _run_resume, "gate": _gate, "gate-baseline": _gate_baseline,
    "deploy": _deploy, "profile": _profile, "export": _export, "quantize": _quantize,
}
# Commands that never rebuild a model from a folder, and why; a new command must join one of the two.
READS_NO_CHECKPOINT = {
    "demo": "runs the packaged config, whose model is spiral's zoo",
    "compare": "reads profiles and reports as numbers",
    "report": "reads a run's report and ledger as data (see the ledger tests below)",
    "targets": "lists target YAML files",
    "join": "runs node 0's job files, which carry node 0's permissions: a job's checkpoints are refused as on node 0",
}


def test_every_command_is_in_the_battery() -> None:
    names = {name for name, command in COMMANDS.items() if command.loads_models}
    assert names == {name.split("-")[0] for name in LOADS_CHECKPOINTS}
    assert set(COMMANDS) - names == set(READS_NO_CHECKPOINT)


@pytest.mark.parametrize("spec", HOSTILE_SPECS)
@pytest.mark.parametrize("command", LOADS_CHECKPOINTS)
def test_code_named_in_a_checkpoint_is_refused(
    command: str, spec: str, cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, folder = LOADS_CHECKPOINTS[command](checkpoint(tmp_path / "downloaded", spec), tmp_path)
    capsys.readouterr()

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == refusal(folder, spec)
    assert err.count("spiralprune: error:") == 1
    assert not (cwd / "PWNED").exists()
    assert LOCAL_MODULE not in sys.modules


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]&stamp=2020-01-01",
         "keyword arguments must be plain JSON values"),
        ("spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=!!binary%20AAAA",
         "keyword arguments must be plain JSON values"),
        ("spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=[", "malformed keyword arguments after '?'"),
    ],
)
def test_keyword_arguments_from_a_file_are_plain_json(
    spec: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_prune(checkpoint(tmp_path / "downloaded", spec), tmp_path)[0]) == 2
    assert capsys.readouterr().err == f"spiralprune: error: model '{spec}': {message}\n"


def test_spiral_zoo_and_torchvision_load_without_asking(tmp_path: Path) -> None:
    assert main(_prune(checkpoint(tmp_path / "zoo"), tmp_path)[0]) == 0
    spec, folder = "torchvision:resnet18?num_classes=10", tmp_path / "tv"
    save_checkpoint(folder, base_spec=spec, plans=[], model=build_model(spec), input_shape=[1, 3, 32, 32])
    assert main(["prune", str(folder), "--input-shape", "1,3,32,32", "--out", str(tmp_path / "tv-pruned")]) == 0


@pytest.mark.parametrize("prefix", ["", "spiral."])
def test_specs_from_before_the_spiralprune_names_load_its_zoo(prefix: str, tmp_path: Path) -> None:
    """Checkpoints and configs from before spiral's ``spiral.*`` names name the zoo without a prefix, and those
    from before the import name ``spiralprune`` with ``spiral.``: that is spiralprune's zoo, not whatever package
    of that name is installed (``spiral`` is another distribution's import name)."""
    legacy = prefix + TINY_MODEL.removeprefix("spiralprune.")
    assert main(_prune(checkpoint(tmp_path / "old", legacy), tmp_path)[0]) == 0  # read from a checkpoint
    assert type(build_model(legacy)) is type(build_model(TINY_MODEL))  # typed
    assert legacy.partition(".")[0] not in sys.modules


def _trusted_checkpoint(cwd: Path) -> Path:
    """The user's own factory, from their own directory: its checkpoint records the spec they gave."""
    model = build_model(f"{LOCAL_MODULE}:tiny")
    del sys.modules[LOCAL_MODULE]
    (cwd / "PWNED").unlink()
    folder = cwd / "mine"
    save_checkpoint(folder, base_spec=f"{LOCAL_MODULE}:tiny", plans=[], model=model, input_shape=SHAPE)
    return folder


def test_a_trusted_user_factory_loads_with_the_flag(cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _trusted_checkpoint(cwd)
    argv = ["prune", str(folder), "--input-shape", SHAPE_ARG, "--out", str(cwd / "pruned")]
    assert main(argv) == 2
    assert capsys.readouterr().err == refusal(folder, f"{LOCAL_MODULE}:tiny") + "\n"
    assert not (cwd / "PWNED").exists()

    assert main([*argv, "--trust-model-code"]) == 0
    assert (cwd / "pruned" / MANIFEST).is_file() and (cwd / "PWNED").exists()


def test_trust_model_code_in_the_run_config_allows_it(cwd: Path, tmp_path: Path, capsys) -> None:
    """The run gets past the refusal: the factory is imported and its model checked (3 classes, not 10)."""
    folder = _trusted_checkpoint(cwd)
    config = write_yaml(tmp_path / "config.yaml",
                        tiny_config(model=str(folder), teacher_training=None, trust_model_code=True))
    assert main(["run", str(config), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"spiralprune: error: model '{folder}' outputs shape [1, 3]; expected [batch, num_classes=10]")
    assert (cwd / "PWNED").exists()
    assert "trust_model_code" not in json.loads((tmp_path / "run" / "config.json").read_text())


def test_a_run_reloads_its_own_checkpoints_of_the_factory_its_config_names(cwd: Path, tmp_path: Path, capsys) -> None:
    """A resumed run's teacher checkpoint records the config's own factory: loaded without the flag."""
    spec = f"{LOCAL_MODULE}:tiny"
    argv, _ = _run_resume(_trusted_checkpoint(cwd), tmp_path)
    write_yaml(Path(argv[1]), tiny_config(model=spec))
    stored = parse_config(tiny_config(model=spec)).model_dump(mode="json")
    (tmp_path / "run" / "config.json").write_text(json.dumps(stored))
    assert main(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"spiralprune: error: model '{spec}' outputs shape [1, 3]; expected [batch, num_classes=10]")


@pytest.mark.parametrize("trusted", [False, True])
def test_a_distillation_job_names_checkpoints_under_the_same_rule(
    trusted: bool, cwd: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``python -m spiralprune.pipeline.distill.ddp JOB.json``: its ``trust_model_code`` key allows what the flag allows."""
    folder = _trusted_checkpoint(cwd)
    job = {"student": {"spec": str(folder)}, "data": {"source": "no-such-data", "input_shape": SHAPE},
           "output_dir": str(tmp_path / "out"), "trust_model_code": trusted}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert ddp.main([str(tmp_path / "job.json")]) == 2
    expected = ("data 'no-such-data' does not exist and is not a 'package.module:factory' spec" if trusted
                else refusal(folder, f"{LOCAL_MODULE}:tiny").removeprefix("spiralprune: error: "))
    assert capsys.readouterr().err == f"spiralprune distill: error: {expected}\n"
    assert (cwd / "PWNED").exists() == trusted


# ---- paths inside a checkpoint, and damaged files ----------------------------------------------


def _outside(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / "elsewhere" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return path


def _link_out(folder: Path, name: str, tmp: Path) -> None:
    target = _outside(tmp, name, (folder / name).read_bytes())
    (folder / name).unlink()
    (folder / name).symlink_to(target)


def _header(length: int) -> Callable[[Path, Path], None]:
    return lambda folder, tmp: (folder / WEIGHTS).write_bytes(length.to_bytes(8, "little") + b"{}")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f, t: _link_out(f, WEIGHTS, t), "checkpoint {f}: 'model.safetensors' points outside {f}"),
        (lambda f, t: _link_out(f, MANIFEST, t), "checkpoint {f}: 'spiral.json' points outside {f}"),
        (lambda f, t: os.truncate(f / MANIFEST, MAX_MANIFEST_BYTES + 1),
         "checkpoint {f}: spiral.json is larger than 64 MiB"),
        (lambda f, t: (f / MANIFEST).write_text((f / MANIFEST).read_text()[:40]),
         "checkpoint {f}: spiral.json is unreadable ("),
        (lambda f, t: (f / MANIFEST).write_text("[]"), "checkpoint {f}: schema_version None is not 1"),
        (_header(1 << 60), "checkpoint {f}: model.safetensors is missing or corrupt "
                           "(Error while deserializing header: header too large)"),
        (lambda f, t: (f / WEIGHTS).write_bytes((f / WEIGHTS).read_bytes()[:200]),
         "checkpoint {f}: model.safetensors is missing or corrupt (Error while deserializing header: "),
        (lambda f, t: os.truncate(f / WEIGHTS, 3), "checkpoint {f}: model.safetensors is missing or corrupt "
                                                   "(Error while deserializing header: header too small)"),
    ],
    ids=["weights-symlink", "manifest-symlink", "giant-manifest", "truncated-manifest", "manifest-not-object",
         "giant-header", "truncated-weights", "tiny-weights"],
)
def test_escaping_or_damaged_checkpoints_are_refused(
    damage: Callable[[Path, Path], None], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = checkpoint(tmp_path / "downloaded")
    damage(folder, tmp_path)
    assert main(_prune(folder, tmp_path)[0]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spiralprune: error: {message.format(f=folder)}") and err.count("\n") == 1


# ---- run folders: ledger lines are data, and their step folders stay inside the run ------------


def _run_folder(tmp: Path) -> Path:
    run = tmp / "run"
    (run / "steps" / "step-1").mkdir(parents=True)
    (run / "report.json").write_text(json.dumps({"schema_version": REPORT_SCHEMA_VERSION}))
    (run / "ledger.jsonl").write_bytes(ledger_entry(dir="steps/step-1").model_dump_json().encode() + b"\n")
    return run


def _symlinked_step(tmp: Path) -> bytes:
    (tmp / "elsewhere").mkdir()
    (tmp / "run" / "steps" / "linked").symlink_to(tmp / "elsewhere")
    return json.dumps({"dir": "steps/linked", "accepted": True}).encode() + b"\n"


LEDGER_LINES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "dotdot": (lambda t: b'{"dir": "../../elsewhere", "accepted": true}\n',
               "{ledger}: line 2: step folder '../../elsewhere' points outside {run}"),
    "absolute": (lambda t: b'{"dir": "/etc", "accepted": true}\n',
                 "{ledger}: line 2: step folder '/etc' points outside {run}"),
    "symlink": (_symlinked_step, "{ledger}: line 2: step folder 'steps/linked' points outside {run}"),
    "not-json": (lambda t: b"os:system\n",
                 "{ledger}: line 2 is not JSON (Expecting value: line 1 column 1 (char 0))"),
    "not-object": (lambda t: b'["steps"]\n',
                   "{ledger}: line 2 is not a ledger entry (a JSON object with a string 'dir')"),
    "dir-not-string": (lambda t: b'{"dir": {"a": 1}}\n',
                       "{ledger}: line 2 is not a ledger entry (a JSON object with a string 'dir')"),
    "giant-line": (lambda t: b" " * (MAX_LINE_BYTES + 1) + b"\n", "{ledger}: line 2 is longer than 1024 KiB"),
}


def _report(run: Path, tmp: Path) -> list[str]:
    return ["report", str(run), "--markdown", str(tmp / "report.md")]


def _deploy_run(run: Path, tmp: Path) -> list[str]:
    return ["deploy", str(run), "--target", "local-cpu", "--host", "device.invalid", "--out", str(tmp / "deploy")]


@pytest.mark.parametrize("command", [_report, _deploy_run], ids=["report", "deploy"])
@pytest.mark.parametrize("kind", LEDGER_LINES)
def test_hostile_ledger_lines_are_refused(
    kind: str, command: Callable[[Path, Path], list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, message = LEDGER_LINES[kind]
    run = _run_folder(tmp_path)
    with open(run / "ledger.jsonl", "ab") as ledger:
        ledger.write(make(tmp_path))
    assert main(command(run, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "spiralprune: error: " + message.format(ledger=run / "ledger.jsonl", run=run)
    assert err.count("spiralprune: error:") == 1
    assert not (tmp_path / "report.md").exists()


# ---- a run folder resumed: what it holds stays inside it, and its config is data ------------------


def _resume_folder(tmp: Path) -> tuple[Path, Path]:
    config = write_yaml(tmp / "config.yaml", tiny_config())
    run = tmp / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(parse_config(tiny_config()).model_dump(mode="json")))
    return config, run


def _teacher_linked_out(run: Path, tmp: Path) -> None:
    checkpoint(tmp / "elsewhere")
    (run / "teacher").mkdir()
    (run / "teacher" / "model").symlink_to(tmp / "elsewhere")


def _step_model_linked_out(run: Path, tmp: Path) -> None:
    checkpoint(tmp / "elsewhere")
    (run / "steps" / "step-01-try-1").mkdir(parents=True)
    (run / "steps" / "step-01-try-1" / "model").symlink_to(tmp / "elsewhere")
    (run / "ledger.jsonl").write_text(ledger_entry(1).model_dump_json() + "\n")


RESUMED: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "teacher-symlink": (_teacher_linked_out, "run folder: 'teacher/model' points outside {run}"),
    "step-model-symlink": (_step_model_linked_out, "run folder: 'steps/step-01-try-1/model' points outside {run}"),
    "config-not-json": (lambda run, tmp: (run / "config.json").write_text("os:system"),
                        "{run}/config.json is not a spiralprune run config (Expecting value: line 1 column 1 (char 0))"),
    "config-not-object": (lambda run, tmp: (run / "config.json").write_text("[1]"),
                          "{run}/config.json is not a spiralprune run config (not a JSON object)"),
    "config-giant": (lambda run, tmp: (run / "config.json").write_bytes(b" " * (2 << 20)),
                     "{run}/config.json is not a spiralprune run config (larger than 1024 KiB)"),
    "config-symlink": (lambda run, tmp: ((run / "config.json").unlink(), (tmp / "c.json").write_text("{}"),
                                         (run / "config.json").symlink_to(tmp / "c.json")),
                       "run folder: 'config.json' points outside {run}"),
}


@pytest.mark.parametrize("kind", RESUMED)
def test_a_resumed_run_folder_is_read_as_data(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damage, message = RESUMED[kind]
    config, run = _resume_folder(tmp_path)
    damage(run, tmp_path)
    assert main(["run", str(config), "--out", str(run), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "spiralprune: error: " + message.format(run=run)
    assert err.count("spiralprune: error:") == 1


def test_a_checkpoints_pretrained_weights_keyword_is_not_fetched(tmp_path: Path, monkeypatch) -> None:
    """A spec read from a checkpoint rebuilds without its weights keywords: the checkpoint holds the weights,
    and a file cannot make spiral reach for the network (TORCH_HOME empty, no route to the download host)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec, folder = "torchvision:resnet18?num_classes=10", tmp_path / "tv"
    save_checkpoint(folder, base_spec=spec, plans=[], model=build_model(spec), input_shape=[1, 3, 32, 32])
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "base_spec": f"{spec}&weights=DEFAULT"}))
    assert main(["prune", str(folder), "--input-shape", "1,3,32,32", "--out", str(tmp_path / "pruned")]) == 0
    assert not (tmp_path / "torch").exists()
