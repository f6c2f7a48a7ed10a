"""``sensitivity``: per channel, the measured loss rise of removing a growing share of its group."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from architectures import ARCHITECTURES, built

from spiralprune.pipeline.prune import PrunableModel, PruneConfig, zero_removed
from spiralprune.pipeline.prune.criteria import get_criterion
from spiralprune.pipeline.prune.plan import PrunedGroup, PruningPlan
from spiralprune.pipeline.prune.sensitivity import SENSITIVITY_BATCHES, _envelope_slopes, sensitivity_counts

SENSITIVITY = get_criterion("sensitivity")


def _loss(model, calibration) -> float:
    with torch.no_grad():
        return sum(float(F.cross_entropy(model.eval()(x), y)) for x, y in calibration) / len(calibration)


def test_scores_are_comparable_across_layers_and_need_data() -> None:
    assert SENSITIVITY.comparable_across_layers and SENSITIVITY.needs_calibration


def test_envelope_slopes_are_the_lower_convex_hull() -> None:
    # (2, 1) lies above the chord from (0, 0) to (4, 1.5): the envelope goes straight to (4, 1.5).
    slopes = _envelope_slopes([0, 2, 4, 8], [0.0, 1.0, 1.5, 10.0])
    assert slopes.tolist() == [0.375] * 4 + [2.125] * 4
    flat = _envelope_slopes([0, 3, 6], [0.0, 0.0, 0.0])
    assert flat.tolist() == [0.0] * 6


@pytest.mark.parametrize("arch_name", ["demo", "vit", "lstm", "text_transformer"])
def test_scores_add_up_to_at_most_the_measured_rise_and_exactly_to_removing_the_group(arch_name: str) -> None:
    """Independently of the scorer's in-place zeroing: the model with the channels zeroed as
    ``zero_removed`` (what the pruned model computes) gives the rise the scores must stay below."""
    arch, model = ARCHITECTURES[arch_name], built(arch_name)
    calibration, example = arch.calibration(batches=SENSITIVITY_BATCHES + 1), arch.example()  # one batch unused
    before = copy.deepcopy(model.state_dict())
    prunable = PrunableModel(model, example)
    scored = prunable.scored(PruneConfig(criterion="sensitivity", protect_first_last=False), calibration)
    taylor = dict((g.root, s) for g, s in prunable.scored(PruneConfig(criterion="taylor-group", protect_first_last=False), calibration))
    measured = calibration[:SENSITIVITY_BATCHES]
    full = _loss(model, measured)
    checked = 0
    for group, score in scored[:3]:
        if score is None:
            continue
        unit = group.unit
        per_unit = score.double().view(-1, unit).sum(1)
        order = torch.argsort(per_unit, stable=True)
        # ascending scores follow taylor-group's order of the units
        assert order.tolist() == torch.argsort(taylor[group.root].double().view(-1, unit).sum(1), stable=True).tolist()
        units = len(order)
        counts = sensitivity_counts(units)
        for count in counts:
            removed = tuple(sorted(int(u) * unit + o for u in order[:count] for o in range(unit)))
            plan = PruningPlan("sensitivity", 0.0, (PrunedGroup(group.root, group.members, group.channels, removed, unit),))
            rise = max(0.0, _loss(zero_removed(model, plan, example), measured) - full)
            total = float(per_unit[order[:count]].sum())
            tolerance = 1e-5 * max(1.0, rise)
            assert total <= rise + tolerance, (group.root, count)
            if count == units:  # the envelope ends at the measured point
                assert total == pytest.approx(rise, rel=1e-4, abs=1e-6)
        checked += 1
    assert checked
    assert sensitivity_counts(8) == [2, 4, 6, 7, 8] and sensitivity_counts(1) == [1]
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the scorer restored every weight
