"""Every command loads its model one way: a spec, a checkpoint (its input shape and dtype) or a run folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import save_checkpoint
from spiralprune.pipeline.ledger import append_entry
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.prune import PruneConfig, prune
from spiralprune.pipeline.source import load_source
from tests.ledger_entries import ledger_entry

DEMO = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"
TEXT = "spiralprune.pipeline.zoo.text_transformer:text_transformer?vocab_size=50&seq_len=8&d_model=16&nhead=4&dim_feedforward=32"


def test_a_spec_has_no_recorded_input() -> None:
    source = load_source(DEMO)
    assert (source.base_spec, source.plans, source.input_shape, source.input_dtype) == (DEMO, [], None, "float32")
    with pytest.raises(InputError, match="has no recorded input shape: pass --input-shape"):
        source.example()
    assert source.example([2, 1, 16, 16]).shape == (2, 1, 16, 16)
    with pytest.raises(InputError, match=r"does not accept float32 input of shape \[1, 3, 16, 16\]"):
        source.example([1, 3, 16, 16])


def test_a_checkpoint_brings_its_plans_shape_and_dtype(tmp_path: Path) -> None:
    model = build_model(TEXT)
    example = torch.zeros(1, 8, dtype=torch.int64)
    model, plan = prune(model, example, PruneConfig(ratio=0.5))
    save_checkpoint(tmp_path / "text", base_spec=TEXT, plans=[plan], model=model, input_shape=[1, 8], input_dtype="int64")
    source = load_source(str(tmp_path / "text"))
    assert (source.base_spec, source.input_shape, source.input_dtype) == (TEXT, [1, 8], "int64")
    assert [p.groups for p in source.plans] == [plan.groups]
    assert source.example().dtype == torch.int64  # token ids, not float zeros
    assert source.name == str(tmp_path / "text")


def test_a_run_folder_stands_for_its_last_accepted_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    model = build_model(DEMO)
    save_checkpoint(run / "teacher" / "model", base_spec=DEMO, plans=[], model=model, input_shape=[1, 1, 16, 16])
    (run / "ledger.jsonl").touch()
    assert load_source(str(run)).name == str(run / "teacher" / "model")
    pruned, plan = prune(model, torch.zeros(1, 1, 16, 16), PruneConfig(ratio=0.5))
    save_checkpoint(run / "steps" / "step-01-try-1" / "model", base_spec=DEMO, plans=[plan], model=pruned,
                    input_shape=[1, 1, 16, 16])
    append_entry(run / "ledger.jsonl", ledger_entry(1))
    source = load_source(str(run))
    assert source.name == str(run / "steps" / "step-01-try-1" / "model")
    assert len(source.plans) == 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("torchvision:not_a_net", "unknown torchvision model"),
        ("no_such_pkg.mod:f", "cannot import no_such_pkg.mod"),
        ("spiralprune.pipeline.zoo.digits_resnet:missing", "has no callable 'missing'"),
        ("spiralprune.pipeline.zoo.digits_resnet:digits_resnet?bogus=1", "unexpected keyword argument"),
        ("/does/not/exist", "neither an existing checkpoint or run directory"),
        ("spiralprune.pipeline.specs:resolve_callable", "missing"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(InputError, match=message):
        load_source(spec)
