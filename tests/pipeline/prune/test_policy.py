"""How many channels each group loses and which ones: ratios, round_to, heads, per-layer and global ranking."""

from __future__ import annotations

import torch

from spiralprune.pipeline.prune import PruneConfig
from spiralprune.pipeline.prune.group import PrunableGroup
from spiralprune.pipeline.prune.policy import choose_removals


def prunable(root: str, channels: int, unit: int = 1) -> PrunableGroup:
    # The policy reads names, sizes and units only; the Torch-Pruning group is not needed here.
    return PrunableGroup(group=None, root=root, members=(root,), channels=channels, unit=unit)


def ascending(channels: int) -> torch.Tensor:
    return torch.arange(channels, dtype=torch.float32) + 1


def test_local_ratio_removes_the_lowest_scored_channels() -> None:
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    (removed,) = choose_removals([prunable("a", 10)], [scores], PruneConfig(ratio=0.3))
    assert removed == [1, 3, 4]


def test_round_to_rounds_the_kept_count_to_the_nearest_multiple() -> None:
    cfg = PruneConfig(ratio=0.3, round_to=8)
    removed = choose_removals([prunable("a", 64), prunable("b", 16), prunable("c", 8)],
                              [ascending(64), ascending(16), ascending(8)], cfg)
    # kept 44.8 -> 48 and 11.2 -> 8; a group of 8 channels stays whole
    assert [n - len(r) for n, r in zip((64, 16, 8), removed)] == [48, 8, 8]


def test_attention_groups_lose_whole_heads_by_mean_score() -> None:
    scores = torch.tensor([9.0, 9, 9, 9, 1, 1, 1, 1, 5, 5, 5, 5, 2, 2, 2, 2])  # 4 heads of 4 channels
    (removed,) = choose_removals([prunable("attn.q_proj", 16, unit=4)], [scores], PruneConfig(ratio=0.5, round_to=8))
    assert removed == [4, 5, 6, 7, 12, 13, 14, 15]


def test_per_layer_ratio_uses_the_most_specific_prefix() -> None:
    cfg = PruneConfig(ratio=0.5, per_layer={"layer4": 0.25, "layer4.1": 0.0})
    groups = [prunable("layer3.0.conv1", 8), prunable("layer4.0.conv1", 8), prunable("layer4.1.conv1", 8)]
    removed = choose_removals(groups, [ascending(8)] * 3, cfg)
    assert [len(r) for r in removed] == [4, 2, 0]


def test_unscored_groups_are_kept() -> None:
    assert choose_removals([prunable("a", 8)], [None], PruneConfig()) == [[]]


def test_global_ranking_takes_more_from_the_weaker_group() -> None:
    weak, strong = torch.linspace(0.1, 0.5, 8), torch.linspace(1.0, 2.0, 8)
    removed = choose_removals([prunable("a", 8), prunable("b", 8)], [weak, strong],
                              PruneConfig(ratio=0.5, global_pruning=True))
    assert [len(r) for r in removed] == [7, 1]  # every group keeps at least one channel


def test_global_ranking_respects_round_to_and_leaves_heads_local() -> None:
    cfg = PruneConfig(ratio=0.5, global_pruning=True, round_to=4)
    groups = [prunable("a", 16), prunable("b", 16), prunable("attn.q_proj", 8, unit=2)]
    scores = [torch.linspace(0.1, 0.4, 16), torch.linspace(1.0, 2.0, 16), ascending(8)]
    removed = choose_removals(groups, scores, cfg)
    assert all((16 - len(r)) % 4 == 0 for r in removed[:2])
    assert removed[2] == [0, 1, 2, 3]  # 2 of 4 heads, ranked inside the attention layer
