"""The three case studies of examples/: their configs are valid and consistent with their data builders,
and a shortened run of each (the real config with little data, one epoch, a small model) goes end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from spiralprune.pipeline.casestudies.images import IMAGE_DIR, build_image_folder
from spiralprune.pipeline.casestudies.speech import CLASSES as KEYWORD_CLASSES
from spiralprune.pipeline.casestudies.speech import FRAMES, N_MELS
from spiralprune.pipeline.casestudies.text import SEQ_LEN, TOPICS, VOCAB_SIZE
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.config import load_config
from spiralprune.pipeline.ledger import read_ledger
from spiralprune.pipeline.models import build_model, split_spec
from tests.examples.tiny_cases import TINY_SEQ_LEN, TINY_VOCAB
from tests.pipeline.casestudies.debian import needs_espeak, needs_fashion_mnist, needs_fortunes

ROOT = Path(__file__).resolve().parents[2]
CASES = ("image", "text", "speech")


def config_path(case: str) -> Path:
    return ROOT / "examples" / case / "config.yaml"


@pytest.mark.parametrize("case", CASES)
def test_config_is_valid_and_its_model_takes_its_input(case: str) -> None:
    config = load_config(config_path(case))
    model = build_model(config.model).eval()
    dtype = torch.int64 if case == "text" else torch.float32
    with torch.no_grad():
        out = model(torch.zeros(config.input_shape, dtype=dtype))
    assert out.shape == (config.input_shape[0], config.num_classes)
    assert (ROOT / "examples" / case / "README.md").is_file()


def test_configs_match_what_their_builders_write() -> None:
    image = load_config(config_path("image"))
    assert Path(image.data.source) == IMAGE_DIR and image.num_classes == 10
    text = load_config(config_path("text"))
    kwargs = split_spec(text.model)[1]
    assert text.data.source == "spiralprune.pipeline.casestudies.text:fortunes_datasets"
    assert (kwargs["vocab_size"], kwargs["seq_len"], kwargs["num_classes"]) == (VOCAB_SIZE, SEQ_LEN, len(TOPICS))
    assert text.input_shape == [1, SEQ_LEN] and text.num_classes == len(TOPICS)
    speech = load_config(config_path("speech"))
    assert speech.data.source == "spiralprune.pipeline.casestudies.speech:keyword_datasets"
    assert speech.input_shape == [1, FRAMES, N_MELS] and speech.num_classes == len(KEYWORD_CLASSES)


def shortened(case: str, model: str, source: str, input_shape: list[int], per_layer: dict | None = None) -> dict:
    """The real config with a small model, little data, one epoch, one step and a loose budget.

    A loose budget lets the ratio search settle on the smallest ratio it tries, which removes nothing
    from a tiny layer; ``per_layer`` fixes the ratio of the layers whose pruning a test checks.
    """
    config = yaml.safe_load(config_path(case).read_text())
    config.update(model=model, input_shape=input_shape, data={**config["data"], "source": source})
    config["teacher_training"] = {**config["teacher_training"], "epochs": 1, "batch_size": 16}
    config["distill"] = {**config["distill"], "epochs": 1, "batch_size": 16}
    config["target"] = {
        **config["target"],
        "threads": 1,
        "profile": {"warmup_s": 0.05, "block_s": 0.005, "min_rounds": 6, "min_duration_s": 0.05, "max_duration_s": 0.5},
    }
    config["budget"] = {"latency": {"statistic": "p50", "max_ms": 1000.0}, "accuracy": {"min": 0.0},
                        "parity": {"samples": 32}}
    # per_layer ratios (to check the layers a test is about) belong to the uniform allocation.
    allocation = "uniform" if per_layer else config["schedule"].get("allocation", "latency")
    config["schedule"] = {**config["schedule"], "max_steps": 1, "patience": 0, "allocation": allocation}
    config["prune"] = {**config["prune"], "per_layer": per_layer or {}}
    return config


def run_shortened(config: dict, tmp_path: Path) -> tuple[dict, dict]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out)]) == 0
    (entry,) = read_ledger(out / "ledger.jsonl")
    report = json.loads((out / "report.json").read_text())
    assert entry.accepted and entry.parity["passed"]
    assert entry.params < report["teacher"]["params"]
    assert 0 <= entry.metrics["f1_macro"] <= 1
    plan = json.loads((out / entry.dir / "plan.json").read_text())["plan"]
    return entry, plan


@pytest.mark.slow
@needs_fashion_mnist
def test_shortened_image_run(tmp_path: Path) -> None:
    folder = build_image_folder(tmp_path / "images", train_per_class=8, val_per_class=4)
    config = shortened("image", "torchvision:mobilenet_v3_small?num_classes=10", str(folder), [1, 3, 32, 32])
    run_shortened(config, tmp_path)


@pytest.mark.slow
@needs_fortunes
def test_shortened_text_run_removes_heads_and_feed_forward_width(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = (
        "spiralprune.pipeline.zoo.text_transformer:text_transformer"
        f"?vocab_size={TINY_VOCAB}&seq_len={TINY_SEQ_LEN}&d_model=32&nhead=4&dim_feedforward=64"
        f"&num_layers=1&num_classes={len(TOPICS)}"
    )
    config = shortened("text", model, "tests.examples.tiny_cases:tiny_fortunes", [1, TINY_SEQ_LEN], {"encoder": 0.5})
    _, plan = run_shortened(config, tmp_path)
    units = {group["unit"] for group in plan["groups"]}
    roots = {group["root"] for group in plan["groups"]}
    assert 8 in units, "no attention head was removed"
    assert any(root.endswith("linear1") for root in roots), "the feed-forward width was not pruned"


@pytest.mark.slow
@needs_espeak
def test_shortened_speech_run_prunes_the_lstm(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model = f"spiralprune.pipeline.zoo.lstm:lstm_classifier?n_features={N_MELS}&hidden=32&num_classes={len(KEYWORD_CLASSES)}"
    config = shortened("speech", model, "tests.examples.tiny_cases:tiny_keywords", [1, FRAMES, N_MELS], {"lstm": 0.5})
    _, plan = run_shortened(config, tmp_path)
    assert "lstm" in {group["root"] for group in plan["groups"]}


@pytest.mark.parametrize("case", ["segmentation", "detection"])
def test_task_case_config_is_valid_and_its_model_gives_the_task_s_outputs(case: str) -> None:
    from spiralprune.pipeline.tasks import outputs_of

    config = load_config(config_path(case))
    assert config.task.kind == case and config.data.source == f"spiralprune.pipeline.casestudies.scenes:{case}"
    model = build_model(config.model).eval()
    with torch.no_grad():
        config.task_model().check(outputs_of(model(torch.zeros(config.input_shape))), config.input_shape[0], config.model)
    assert (ROOT / "examples" / case / "README.md").is_file()
