"""Checkpoints rebuild from base spec + plans, check every shape and never unpickle anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import MANIFEST, WEIGHTS, load_checkpoint, save_checkpoint
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.prune import PruneConfig, prune

DEMO = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"
TEXT = "spiralprune.pipeline.zoo.text_transformer:text_transformer?vocab_size=50&seq_len=8&d_model=16&nhead=4&dim_feedforward=32"
SHAPE = [1, 1, 16, 16]


def _pruned_twice(tmp_path: Path) -> tuple[torch.nn.Module, list, Path]:
    torch.manual_seed(0)
    model, example, plans = build_model(DEMO), torch.randn(2, 1, 16, 16), []
    for ratio in (0.25, 0.5):
        model, plan = prune(model, example, PruneConfig(ratio=ratio))
        plans.append(plan)
    directory = tmp_path / "ckpt"
    save_checkpoint(directory, base_spec=DEMO, plans=plans, model=model, input_shape=SHAPE, metadata={"step": 2})
    return model.eval(), plans, directory


def test_round_trip_after_two_steps_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, plans, directory = _pruned_twice(tmp_path)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.load must not be called while loading a checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    loaded, meta = load_checkpoint(directory)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert meta["plans"] == plans and meta["metadata"] == {"step": 2} and meta["base_spec"] == DEMO
    assert sorted(p.name for p in directory.iterdir()) == [WEIGHTS, MANIFEST]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_token_models_replay_with_integer_example_inputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokens = torch.randint(0, 50, (2, 8))
    model, plan = prune(build_model(TEXT), tokens, PruneConfig(ratio=0.5))
    save_checkpoint(tmp_path / "t", base_spec=TEXT, plans=[plan], model=model, input_shape=[1, 8], input_dtype="int64")
    loaded, _ = load_checkpoint(tmp_path / "t")
    with torch.no_grad():
        assert torch.equal(loaded(tokens), model.eval()(tokens))


def test_saving_over_an_existing_checkpoint_replaces_it(tmp_path: Path) -> None:
    _, _, directory = _pruned_twice(tmp_path)
    base = build_model(DEMO)
    save_checkpoint(directory, base_spec=DEMO, plans=[], model=base, input_shape=SHAPE)
    loaded, meta = load_checkpoint(directory)
    assert meta["plans"] == [] and meta["metadata"] == {}
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in base.parameters())


def _edit_manifest(directory: Path, **changes: object) -> None:
    manifest = json.loads((directory / MANIFEST).read_text())
    manifest.update(changes)
    (directory / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / MANIFEST).unlink(), "has no spiral.json"),
        (lambda d: (d / MANIFEST).write_text("{not json"), "spiral.json is unreadable"),
        (lambda d: _edit_manifest(d, schema_version=7), "schema_version 7"),
        (lambda d: _edit_manifest(d, shapes=[]), "lacks a valid shapes"),
        (lambda d: (d / WEIGHTS).write_bytes((d / WEIGHTS).read_bytes()[:100]), "safetensors is missing or corrupt"),
        (lambda d: (d / WEIGHTS).unlink(), "model.safetensors is missing or corrupt"),
        (lambda d: _edit_manifest(d, base_spec=DEMO.replace("width=8", "width=12")), "plan 1 of 2: pruning plan"),
        (lambda d: _edit_manifest(d, plans=[{"version": 1}]), "malformed pruning plan"),
        (lambda d: _edit_manifest(d, base_spec="torchvision:no_such_net"), "unknown torchvision model"),
    ],
)
def test_broken_checkpoints_are_one_line_errors(tmp_path: Path, damage, message: str) -> None:
    _, _, directory = _pruned_twice(tmp_path)
    damage(directory)
    with pytest.raises(InputError, match=message) as info:
        load_checkpoint(directory)
    assert "\n" not in str(info.value)


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    _, plans, directory = _pruned_twice(tmp_path)
    other = tmp_path / "other"
    save_checkpoint(other, base_spec=DEMO, plans=plans[:1], model=prune(build_model(DEMO), torch.randn(2, 1, 16, 16),
                                                                        PruneConfig(ratio=0.25))[0], input_shape=SHAPE)
    (directory / WEIGHTS).write_bytes((other / WEIGHTS).read_bytes())
    with pytest.raises(InputError, match=r"in model.safetensors, but the architecture rebuilt"):
        load_checkpoint(directory)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
