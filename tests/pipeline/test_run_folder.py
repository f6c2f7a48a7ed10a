"""A run folder's result: the last accepted ledger line (its checkpoint, or its ONNX file), else the teacher."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.ledger import append_entry
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.run_folder import RunFolder, last_accepted
from tests.ledger_entries import ledger_entry

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"


def _run(root: Path, lines: list[tuple[bool, str | None]], *, teacher: bool = True) -> RunFolder:
    """A run folder whose ledger has one line per (accepted, kind); every step has its files."""
    folder = RunFolder(root)
    model = build_model(SPEC)
    if teacher:
        save_checkpoint(folder.teacher_checkpoint(), base_spec=SPEC, plans=[], model=model, input_shape=[1, 1, 16, 16])
        folder.teacher_onnx.write_bytes(b"teacher")
    folder.root.mkdir(parents=True, exist_ok=True)
    folder.ledger.touch()
    for number, (accepted, kind) in enumerate(lines, start=1):
        name = f"steps/{kind or f'step-{number:02d}-try-1'}"
        (root / name).mkdir(parents=True)
        (root / name / "model.onnx").write_bytes(name.encode())
        if kind != "quantize":
            save_checkpoint(root / name / "model", base_spec=SPEC, plans=[], model=model, input_shape=[1, 1, 16, 16])
        append_entry(folder.ledger, ledger_entry(number, dir=name, accepted=accepted, kind=kind or "step"))
    return folder


def test_the_result_is_the_last_accepted_step(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run", [(True, None), (True, None), (False, None)])
    assert RunFolder.holds_run(folder.root)
    assert folder.result_onnx() == folder.root / "steps" / "step-02-try-1" / "model.onnx"
    assert folder.result_checkpoint() == folder.root / "steps" / "step-02-try-1" / "model"


def test_an_accepted_int8_stage_ships_its_onnx_but_export_goes_on_from_the_float_step(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run", [(True, None), (True, "quantize")])
    entries = folder.entries()
    assert last_accepted(entries).kind == "quantize"
    assert last_accepted(entries, with_checkpoint=True).dir == "steps/step-01-try-1"
    assert folder.result_onnx() == folder.root / "steps" / "quantize" / "model.onnx"
    assert folder.result_checkpoint() == folder.root / "steps" / "step-01-try-1" / "model"


def test_without_an_accepted_step_the_result_is_the_teacher(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run", [(False, None)])
    assert last_accepted(folder.entries()) is None
    assert folder.result_onnx() == folder.teacher_onnx
    assert folder.result_checkpoint() == folder.teacher_checkpoint()


def test_a_run_with_nothing_to_ship_says_so(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run", [(False, None)], teacher=False)
    with pytest.raises(InputError, match="holds no exported model yet"):
        folder.result_onnx()
    with pytest.raises(InputError, match="holds no model checkpoint yet"):
        folder.result_checkpoint()
    assert not RunFolder.holds_run(tmp_path)


def test_a_ledger_line_leading_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = _run(tmp_path / "run", [(True, None)])
    with pytest.raises(InputError, match="run folder"):
        folder.of(ledger_entry(dir="../elsewhere"), "model")


def test_a_run_folder_written_before_a_key_was_added_resumes_but_another_config_does_not(tmp_path: Path) -> None:
    """An upgrade adds keys with defaults (``schedule.channel_spread``, ``parity.outputs``): the config.json
    an earlier spiral wrote lacks them and means the same run; a changed value is another run."""
    import json

    from spiralprune.pipeline.config import parse_config
    from tests.conftest import tiny_config

    config = parse_config(tiny_config()).model_dump(mode="json")
    folder = RunFolder(tmp_path / "run")
    folder.start(config, resume=False)
    older = json.loads(folder.config.read_text())
    del older["schedule"]["channel_spread"], older["budget"]["parity"]["outputs"]
    folder.config.write_text(json.dumps(older))
    folder.start(config, resume=True)
    changed = {**config, "schedule": {**config["schedule"], "channel_spread": "uniform"}}
    with pytest.raises(InputError, match="was started with a different config; --resume needs the same one"):
        folder.start(changed, resume=True)


@pytest.mark.parametrize("prefix", ["spiral.", ""])
def test_a_run_folder_written_before_the_rename_resumes_under_todays_names(tmp_path: Path, prefix: str) -> None:
    """Its config.json names spiral's zoo ``spiral.…`` (or, earlier, with no package prefix at all) and
    lacks the keys added since: the same run (the detector benchmark's cached spirals were refused as another
    config); resuming writes today's names. The same config with one value changed is still another run."""
    import json

    from spiralprune.pipeline.config import parse_config
    from tests.conftest import tiny_config

    config = parse_config(tiny_config()).model_dump(mode="json")
    folder = RunFolder(tmp_path / "run")
    folder.start(config, resume=False)
    older = {**config, "model": config["model"].replace("spiralprune.", prefix, 1)}
    older["schedule"] = {k: v for k, v in config["schedule"].items() if k != "channel_spread"}
    assert older["model"] != config["model"]
    folder.config.write_text(json.dumps(older))
    folder.start(config, resume=True)
    assert json.loads(folder.config.read_text()) == config
    folder.config.write_text(json.dumps({**older, "model": older["model"].replace("width=8", "width=16")}))
    with pytest.raises(InputError, match="was started with a different config; --resume needs the same one"):
        folder.start(config, resume=True)
