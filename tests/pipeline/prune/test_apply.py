"""The architecture matrix: every architecture pruned at 30 % (round_to 8) and 50 % with the l1 criterion.

Each pruned model must run, compute exactly what the original computes with the removed channels
zeroed, export to ONNX and agree with ONNX Runtime, have fewer parameters, respect round_to and keep
its stem and output layer, and come back bit-exact from a checkpoint (checked once per architecture).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from architectures import ARCHITECTURES, HEAVY, Architecture, built, output_tolerance
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import load_checkpoint, save_checkpoint
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.prune import (
    PruneConfig,
    PruningPlan,
    apply_plan,
    plan_pruning,
    prune,
    zero_removed,
)
from spiralprune.pipeline.prune.attention import SplitAttention
from spiralprune.pipeline.specs import trusting_model_code

SETTINGS = {0.3: 8, 0.5: None}  # ratio -> round_to


@dataclass
class Case:
    name: str
    arch: Architecture
    cfg: PruneConfig
    original: nn.Module
    pruned: nn.Module
    plan: PruningPlan
    example: Tensor


def _params(name: str, ratio: float | None = None):
    marks = [pytest.mark.slow] if name in HEAVY else []
    return pytest.param((name, ratio) if ratio else name, id=f"{name}-{ratio}" if ratio else name, marks=marks)


MATRIX = [n for n in ARCHITECTURES if n != "demo"]


@cache
def pruned_case(name: str, ratio: float) -> Case:
    arch = ARCHITECTURES[name]
    cfg = PruneConfig(criterion="l1", ratio=ratio, round_to=SETTINGS[ratio])
    original = built(name)
    example = arch.example()
    pruned, plan = prune(copy.deepcopy(original), example, cfg)
    return Case(name, arch, cfg, original, pruned.eval(), plan, example)


@pytest.fixture(scope="module", params=[_params(n, r) for n in MATRIX for r in SETTINGS])
def case(request: pytest.FixtureRequest) -> Case:
    return pruned_case(*request.param)


def test_pruned_model_computes_the_original_with_removed_channels_zeroed(case: Case) -> None:
    with torch.no_grad():
        pruned = case.pruned(case.example)
        reference = zero_removed(case.original, case.plan, case.example).eval()(case.example)
        original = case.original(case.example)
    tolerance = output_tolerance(reference)
    torch.testing.assert_close(pruned, reference, rtol=1e-4, atol=tolerance)
    # The comparison has power: what was removed mattered to the output.
    assert float((pruned - original).abs().max()) > 100 * tolerance


def test_parameter_count_drops_and_output_shape_stays(case: Case) -> None:
    before = sum(p.numel() for p in case.original.parameters())
    after = sum(p.numel() for p in case.pruned.parameters())
    assert after < before
    with torch.no_grad():
        assert case.pruned(case.example).shape == case.original(case.example).shape


def test_round_to_and_ratio_are_respected(case: Case) -> None:
    assert case.plan.groups
    for group in case.plan.groups:
        kept = group.channels - len(group.removed)
        if group.unit > 1:  # attention: whole heads, round(heads * (1 - ratio)) of them kept
            assert len(group.removed) % group.unit == 0
            heads = group.channels // group.unit
            assert kept // group.unit == max(1, round(heads * (1 - case.cfg.ratio)))
        elif case.cfg.round_to and group.channels > case.cfg.round_to:
            assert kept % case.cfg.round_to == 0
        else:
            assert abs(kept - group.channels * (1 - case.cfg.ratio)) <= 1


def test_stem_and_output_layer_keep_their_channels(case: Case) -> None:
    pruned = dict(case.pruned.named_modules())
    convs = [(n, m) for n, m in case.original.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if convs:
        stem_name, stem = convs[0]
        assert pruned[stem_name].out_channels == stem.out_channels
    head_name, head = [(n, m) for n, m in case.original.named_modules() if isinstance(m, nn.Linear)][-1]
    assert pruned[head_name].out_features == head.out_features


def test_attention_loses_whole_heads(case: Case) -> None:
    attentions = [m for m in case.pruned.modules() if isinstance(m, SplitAttention)]
    if case.name not in ("vit", "text_transformer"):
        assert not attentions
        return
    assert attentions
    for attn in attentions:
        assert attn.q_proj.out_features == attn.num_heads * attn.head_dim
        assert attn.num_heads < 4


def test_onnx_runtime_matches_torch(case: Case, tmp_path: Path) -> None:
    path = export_onnx(case.pruned, case.example, tmp_path / "model.onnx", simplify=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: case.example.numpy()})
    with torch.no_grad():
        torch_out = case.pruned(case.example).numpy()
    np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(torch_out).max()))


@pytest.mark.parametrize("name", [_params(n) for n in MATRIX])
def test_checkpoint_round_trip_is_exact(name: str, tmp_path: Path) -> None:
    case = pruned_case(name, 0.5)  # once per architecture: the ratio does not change what is saved
    save_checkpoint(
        tmp_path / "ckpt", base_spec=case.arch.spec, plans=[case.plan], model=case.pruned,
        input_shape=list(case.arch.input_shape), input_dtype=case.arch.input_dtype,
    )
    with trusting_model_code(False, typed=[case.arch.spec]):  # the spec this test gave, as `spiralprune run` does
        loaded, meta = load_checkpoint(tmp_path / "ckpt")
    assert meta["plans"] == [case.plan]
    with torch.no_grad():
        assert torch.equal(loaded(case.example), case.pruned(case.example))


# ---- replay and refusal ------------------------------------------------------------------------


def test_replay_on_a_fresh_model_gives_the_identical_structure() -> None:
    arch = ARCHITECTURES["demo"]
    model, example = arch.build(), arch.example()
    plan = plan_pruning(model, example, PruneConfig(ratio=0.4, round_to=8))
    first = apply_plan(arch.build(), plan, example)
    second = apply_plan(arch.build(), PruningPlan.from_dict(plan.to_dict()), example)
    assert {n: p.shape for n, p in first.named_parameters()} == {n: p.shape for n, p in second.named_parameters()}


def test_plan_for_another_architecture_is_refused() -> None:
    demo, mobilenet = ARCHITECTURES["demo"], ARCHITECTURES["mobilenet_v3_small"]
    plan = plan_pruning(demo.build(), demo.example(), PruneConfig())
    with pytest.raises(InputError, match="pruning plan does not fit this model"):
        apply_plan(mobilenet.build(), plan, mobilenet.example())


def test_plan_for_another_width_is_refused() -> None:
    narrow = ARCHITECTURES["demo"]
    plan = plan_pruning(narrow.build(), narrow.example(), PruneConfig(ratio=0.5))
    wide = Architecture(narrow.spec.replace("width=16", "width=24"), narrow.input_shape)
    with pytest.raises(InputError, match=r"output channels, the plan expects"):
        apply_plan(wide.build(), plan, wide.example())


def test_plan_whose_coupling_differs_is_refused() -> None:
    arch = ARCHITECTURES["demo"]
    plan = plan_pruning(arch.build(), arch.example(), PruneConfig(ratio=0.5))
    group = plan.groups[0]
    tampered = PruningPlan(plan.criterion, plan.ratio, (type(group)(group.root, ("elsewhere",), group.channels,
                                                                        group.removed, group.unit),))
    with pytest.raises(InputError, match="coupled to"):
        apply_plan(arch.build(), tampered, arch.example())


class _WithGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.rnn = nn.GRU(16, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(self.proj(x))[0][:, -1])


class _TwoLayerLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.lstm(x)[0][:, -1])


@pytest.mark.parametrize(("model", "named"), [(_WithGRU(), "layer 'rnn' (GRU)"), (_TwoLayerLSTM(), "layer 'lstm'")])
def test_a_layer_that_blocks_torch_pruning_is_named_in_one_line(model: nn.Module, named: str) -> None:
    with pytest.raises(InputError) as info:
        prune(model, torch.randn(2, 5, 8), PruneConfig())
    assert named in str(info.value) and "blocks pruning" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_model_failing_on_the_example_input_names_the_layer() -> None:
    arch = ARCHITECTURES["demo"]
    with pytest.raises(InputError, match=r"layer 'stem.0' \(Conv2d\) failed while Torch-Pruning traced"):
        plan_pruning(arch.build(), torch.randn(2, 3, 32, 32), PruneConfig())


def test_apply_keeps_training_mode_and_frozen_parameters() -> None:
    arch = ARCHITECTURES["demo"]
    model = arch.build().train()
    model.fc.requires_grad_(False)
    plan = plan_pruning(model, arch.example(), PruneConfig(ratio=0.5))
    apply_plan(model, plan, arch.example())
    assert model.training and model.layer1.training
    assert not model.fc.weight.requires_grad and model.layer1[0].conv1.weight.requires_grad
