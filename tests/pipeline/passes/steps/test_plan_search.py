"""Choosing a step's plan: screened by predicted latency, measured only where promising, fed back."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.deploy.sampling import ProfileSettings, Rounds, sample_rounds
from spiralprune.deploy.verdict import Question
from spiralprune.kernels.ops import OpSignature
from spiralprune.kernels.predictor import LatencyPredictor
from spiralprune.kernels.table import LatencyTable
from spiralprune.pipeline.passes.steps import plan_search
from spiralprune.pipeline.passes.steps.config import ScheduleConfig
from spiralprune.pipeline.passes.steps.plan_search import (
    LADDER, MAX_MEASURED, RATIO_STEP, NothingLeftToPrune, PlanChoice, PlanVerdict, choose_plan, uniform_ratios,
)
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet
from tests.deploy.synthetic import Machine

X = torch.zeros(1, 1, 16, 16)
ALLOCATIONS = ScheduleConfig.model_fields["allocation"].annotation.__args__


class StaircaseTable(LatencyTable):
    """An operator table whose costs are known: a fixed call cost plus the operator's multiply-adds at
    its channel counts rounded up to 8 (the staircase of vectorised kernels). What the search decides
    must not depend on how this machine timed its operators today."""

    def _time(self, op: OpSignature | None) -> tuple[float, bool]:
        if op is None:
            return 0.005, True
        up = lambda c: -(-c // 8) * 8  # noqa: E731
        return 0.005 + 1e-6 * op.resized(in_channels=up(op.in_channels), out_channels=up(op.out_channels)).macs(), True


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> LatencyTable:
    return StaircaseTable("ort-cpu", threads=1, cache_dir=tmp_path_factory.mktemp("table"))


def model() -> nn.Module:
    torch.manual_seed(0)
    return digits_resnet(width=16, blocks=[1, 1, 1, 1]).eval()


def exact_verdict(ms: float, limit: float) -> PlanVerdict:
    """An exact judge's verdict on a plan of ``ms`` against ``limit``: it never leaves one undecided."""
    return PlanVerdict(ms, "meets" if ms <= limit else "misses", limit / ms)


def true_latency(table: LatencyTable, slower: float, target: float = math.inf, overhead_ms: float = 0.01):
    """A target whose real latency is ``slower`` times what an uncalibrated table sum says, plus
    ``overhead_ms``; ``measure`` returns it and the verdict of an exact judge on ``target``."""
    truth = LatencyPredictor(table)
    prunable = PrunableModel(model(), X)

    def ms(plan: PruningPlan) -> float:
        return slower * truth.predict(prunable.layers(plan)) + overhead_ms

    def measure(plan: PruningPlan) -> PlanVerdict:
        return exact_verdict(ms(plan), target)

    return ms, measure


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_every_candidate_is_predicted_and_only_a_few_are_measured(table: LatencyTable, allocation: str) -> None:
    ms, _ = true_latency(table, 1.3, overhead_ms=0.0)
    current = ms(PruningPlan("l1", 0.0, ()))
    target = 0.7 * current
    ms, measure = true_latency(table, 1.3, target, overhead_ms=0.0)
    choice = choose_plan(
        PrunableModel(model(), X), target, current, prune=PruneConfig(round_to=4),
        schedule=ScheduleConfig(allocation=allocation), predictor=LatencyPredictor(table), calibration=None,
        measure=measure,
    )
    measured = [c for c in choice.plans if c["ms"] is not None]
    assert len(choice.plans) > len(measured) >= 1 and len(measured) <= MAX_MEASURED
    assert all(math.isfinite(c["predicted_ms"]) and c["predicted_ms"] > 0 for c in choice.plans)
    assert ms(choice.plan) <= target
    # The measured candidate judged to meet the target that is predicted slowest was chosen.
    met = [c for c in measured if c["meets"]]
    assert met == [c for c in measured if c["ms"] <= target]
    assert choice.predicted_ms == max(c["predicted_ms"] for c in met)
    assert all(c["sessions"] == [{"outcome": "meets" if c["meets"] else "misses", "ms": c["ms"], "seconds": 0.0}]
               for c in measured)  # an exact judge decides every plan in one session
    # Calibrated on measurements, the predictor agrees with this synthetic target, proportional to the
    # table sum.
    assert choice.predicted_ms == pytest.approx(ms(choice.plan), rel=1e-6)
    assert choice.calibration["samples"] == 1 + len(measured)
    if allocation == "uniform":
        assert {c["ratio"] for c in choice.plans} <= {round(RATIO_STEP * k, 4) for k in range(1, 19)}
    else:
        assert len(choice.plans) <= len(LADDER)


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_a_step_traces_and_scores_its_model_once(
    table: LatencyTable, allocation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every candidate plan and every operator list the predictor screens come from one trace and one scoring."""
    import spiralprune.pipeline.prune.prunable as prunable

    counts = {"traced": 0, "grouped": 0}
    build_graph, prunable_groups = prunable.build_graph, prunable.prunable_groups

    def counted(name, real):
        def call(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(prunable, "build_graph", counted("traced", build_graph))
    monkeypatch.setattr(prunable, "prunable_groups", counted("grouped", prunable_groups))
    ms, _ = true_latency(table, 1.3)  # traces once itself, for the synthetic target
    counts.update(traced=0, grouped=0)
    current = ms(PruningPlan("l1", 0.0, ()))
    _, measure = true_latency(table, 1.3, 0.7 * current)
    counts.update(traced=0, grouped=0)
    choice = choose_plan(
        PrunableModel(model(), X), 0.7 * current, current, prune=PruneConfig(round_to=4),
        schedule=ScheduleConfig(allocation=allocation), predictor=LatencyPredictor(table), calibration=None,
        measure=measure,
    )
    assert len(choice.plans) > 3
    # One trace; the every-group listing, and the config's groups found (and scored) once for every plan.
    assert counts == {"traced": 1, "grouped": 2}


def test_when_nothing_is_predicted_to_meet_the_target_the_fastest_is_measured(table: LatencyTable) -> None:
    ms, measure = true_latency(table, 1.0, 1e-6)
    current = ms(PruningPlan("l1", 0.0, ()))
    choice = choose_plan(
        PrunableModel(model(), X), 1e-6, current, prune=PruneConfig(), schedule=ScheduleConfig(max_ratio=0.5),
        predictor=LatencyPredictor(table), calibration=None, measure=measure,
    )
    measured = [c for c in choice.plans if c["ms"] is not None]
    # the knapsack's plan predicted fastest, then the deepest uniform ratio, once: it misses, so none would meet
    assert len(measured) == 2 and choice.plans[-1] == measured[1] and measured[1]["ratio"] == 0.5
    assert measured[0]["predicted_ms"] == min(c["predicted_ms"] for c in choice.plans[:-1])
    assert not any(c["meets"] for c in measured)


def test_a_goal_below_the_knapsacks_predicted_floor_takes_the_least_uniform_ratio_measured_to_meet(
    table: LatencyTable,
) -> None:
    """The detector of docs/benchmarks.md (2026-12-07): the table's lone operators keep a fixed cost that the
    whole graph does not pay, so no knapsack plan is predicted near the goal, and the one measured misses; the
    uniform ratios, bisected by measurement, reach it. Here the truth is the operators' multiply-adds alone."""
    prunable = PrunableModel(model(), X)

    def ms(plan: PruningPlan) -> float:
        return sum(1e-6 * layer.op.macs() for layer in prunable.layers(plan)) + 0.01

    current = ms(PruningPlan("l1", 0.0, ()))
    goal = 0.2 * current
    schedule, prune = ScheduleConfig(), PruneConfig(round_to=4)
    choice = choose_plan(prunable, goal, current, prune=prune, schedule=schedule, predictor=LatencyPredictor(table),
                         calibration=None, measure=lambda plan: exact_verdict(ms(plan), goal))
    ratios = uniform_ratios(schedule.max_ratio)
    uniform = [prunable.uniform_plan(prune.model_copy(update={"ratio": r})) for r in ratios]
    least = next(plan for plan in uniform if ms(plan) <= goal)
    assert choice.plan == least and ms(choice.plan) <= goal
    measured = [c for c in choice.plans if c["ms"] is not None]
    assert measured[0]["meets"] is False  # the knapsack's plan, what the step had settled for before
    assert sum(c["ms"] is not None for c in choice.plans) <= MAX_MEASURED + math.ceil(math.log2(len(ratios))) + 1


class FlatTable(LatencyTable):
    """An operator table blind to channels: every operator costs the same at any width, as a target whose
    operators' fixed cost hides what cutting their channels saves."""

    def _time(self, op: OpSignature | None) -> tuple[float, bool]:
        return (0.005 if op is None else 0.1), True


def test_a_goal_no_uniform_ratio_reaches_takes_the_ratios_with_the_knapsacks_blocks_removed(tmp_path) -> None:
    """MobileNetV2 at 3x (docs/benchmarks.md, 2026-12-07): every operator has a fixed cost, so neither the
    knapsack's deepest plan (its blocks gone, its channels kept where the table saw nothing to save) nor the
    deepest uniform ratio (every operator kept) reaches the goal; the uniform ratios with the knapsack's blocks
    removed do, and the least of them judged to meet is chosen."""
    from tests.pipeline.prune.test_blocks import CALIBRATION, X as BLOCKS_X, net

    prunable = PrunableModel(net(), BLOCKS_X)

    def ms(plan: PruningPlan) -> float:  # a fixed cost per operator, and its multiply-adds
        layers = prunable.layers(plan)
        return 0.3 * len(layers) + sum(1e-6 * layer.op.macs() for layer in layers)

    schedule, prune = ScheduleConfig(), PruneConfig(criterion="sensitivity", round_to=4)
    ratios = uniform_ratios(schedule.max_ratio)
    uniform = [prunable.uniform_plan(prune.model_copy(update={"ratio": r}), CALIBRATION) for r in ratios]
    blocks = tuple(prunable.blocks)
    goal = 0.9 * min(ms(uniform[-1]), ms(prunable.depth_plan(prune.criterion, blocks, {})))
    current = ms(PruningPlan(prune.criterion, 0.0, ()))
    choice = choose_plan(prunable, goal, current, prune=prune, schedule=schedule,
                         predictor=LatencyPredictor(FlatTable("ort-cpu", threads=1, cache_dir=tmp_path)),
                         calibration=CALIBRATION, measure=lambda plan: exact_verdict(ms(plan), goal))
    deeper = [prunable.depth_plan(prune.criterion, blocks, {g.root: g.removed for g in u.groups}) for u in uniform]
    least = next(plan for plan in deeper if ms(plan) <= goal)
    assert least != deeper[0] and choice.plan == least
    measured = [c for c in choice.plans if c["ms"] is not None]
    assert measured[0]["meets"] is False  # the knapsack's plan, what the step had settled for before
    assert [c["meets"] for c in measured if c["blocks"] == 0] == [False]  # the deepest uniform ratio, once
    assert len(measured) <= MAX_MEASURED + 2 * (math.ceil(math.log2(len(ratios))) + 1)


def test_a_layer_the_table_cannot_time_is_one_clear_error(table: LatencyTable) -> None:
    class WithConv1d(nn.Module):  # prunable by Torch-Pruning, not timed by the operator table
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(8, 16, 3)
            self.head = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)).mean(2))

    with pytest.raises(InputError, match=r"layer 'conv' \(Conv1d\) has no entry in the operator latency table"):
        choose_plan(
            PrunableModel(WithConv1d(), torch.zeros(1, 8, 12)), 1.0, 2.0, prune=PruneConfig(), schedule=ScheduleConfig(),
            predictor=LatencyPredictor(table), calibration=None, measure=lambda plan: PlanVerdict(1.0, "meets", 1.0),
        )


def test_a_later_step_at_its_floor_ends_the_run_instead_of_failing(table: LatencyTable) -> None:
    """Earlier steps left every group at 1 - max_ratio of its teacher's channels: no plan, one outcome."""
    prunable = PrunableModel(model(), X)
    at_floor = {g.root: 10 * g.channels for g in prunable.groups}  # the teacher had ten times as many
    ms, measure = true_latency(table, 1.0)
    current = ms(PruningPlan("l1", 0.0, ()))
    with pytest.raises(NothingLeftToPrune, match=r"every prunable group is at its floor \(schedule.max_ratio=0.8"):
        choose_plan(
            prunable, 0.5 * current, current, prune=PruneConfig(round_to=4), schedule=ScheduleConfig(max_ratio=0.8),
            predictor=LatencyPredictor(table), calibration=None, measure=measure, original=at_floor,
        )
    with pytest.raises(InputError, match="every prunable group is too small or protected"):  # a first step: its config
        choose_plan(
            PrunableModel(model(), X), 0.5 * current, current, prune=PruneConfig(round_to=128),
            schedule=ScheduleConfig(), predictor=LatencyPredictor(table), calibration=None, measure=measure,
        )


def test_the_ledger_fields_round_trip_for_resume(table: LatencyTable) -> None:
    ms, measure = true_latency(table, 1.0, 1e-6)
    current = ms(PruningPlan("l1", 0.0, ()))
    choice = choose_plan(
        PrunableModel(model(), X), 0.8 * current, current, prune=PruneConfig(), schedule=ScheduleConfig(),
        predictor=LatencyPredictor(table), calibration=None, measure=measure,
    )
    assert PlanChoice.from_dict(choice.to_dict()) == choice
    # a plan.json a try killed under ledger version 3 wrote names the screened plans "candidates"
    written = choice.to_dict()
    written["candidates"] = written.pop("plans")
    assert PlanChoice.from_dict(written) == choice


@pytest.mark.parametrize("allocation", ALLOCATIONS)
def test_a_limit_the_judge_finds_looser_than_the_planning_figure_lets_a_less_pruned_plan_in(
    table: LatencyTable, allocation: str,
) -> None:
    """The step aimed at the final budget: the judge asks for a speedup over the teacher measured in
    the same rounds, which this session finds 8 % slower than when the run started, so the real limit
    is 8 % above ``target``. The plans' latency is what the table predicts, so the first plan
    measured meets either limit; a search that reads its headroom goes on to the less pruned plans
    predicted within the real limit (on the latency ladder one is there), one that does not stops."""
    prunable = PrunableModel(model(), X)
    table_sum = LatencyPredictor(table)

    def ms(plan: PruningPlan) -> float:
        return table_sum.predict(prunable.layers(plan))

    current = ms(PruningPlan("l1", 0.0, ()))
    target, looser = 0.8 * current, 1.08 * 0.8 * current

    def judge(limit: float):
        def measure(plan: PruningPlan) -> PlanVerdict:
            return exact_verdict(ms(plan), limit)
        return measure

    schedule = ScheduleConfig(allocation=allocation)
    exact, drifted = (
        choose_plan(prunable, target, current, prune=PruneConfig(round_to=4), schedule=schedule,
                    predictor=LatencyPredictor(table), calibration=None, measure=judge(limit))
        for limit in (target, looser)
    )
    assert ms(exact.plan) <= target and ms(drifted.plan) <= looser and drifted.plan.ratio <= exact.plan.ratio
    if allocation == "latency":
        assert ms(drifted.plan) > target and drifted.plan.ratio < exact.plan.ratio


def exact_judge(prunable: PrunableModel, table: LatencyTable, fraction: float):
    """Latency as ``table`` sums it (``ms``), the model's, a target of ``fraction`` of it, and a judge
    that measures exactly that and decides on the target."""
    truth = LatencyPredictor(table)

    def ms(plan: PruningPlan) -> float:
        return truth.predict(prunable.layers(plan))

    current = ms(PruningPlan("l1", 0.0, ()))
    target = fraction * current

    def measure(plan: PruningPlan) -> PlanVerdict:
        return exact_verdict(ms(plan), target)

    return ms, current, target, measure


@pytest.mark.parametrize("fraction", [0.95, 0.85, 0.7])
def test_a_plan_that_removes_blocks_gets_a_block_free_contender_to_probe(tmp_path, fraction: float) -> None:
    """A free residual block (its output zeroed) is what the knapsack removes first, but its loss rise
    before training says little about after: the block-free ladder is searched too, and its least
    pruned plan judged to meet comes back as a contender; ``probe_epochs: 0`` leaves the choice to
    the prediction and measures nothing more."""
    from tests.pipeline.prune.test_blocks import CALIBRATION, X as BLOCKS_X, net

    table = StaircaseTable("ort-cpu", threads=1, cache_dir=tmp_path)
    model = net()
    model.stage[4].body[1].weight.data.zero_()
    model.stage[4].body[1].bias.data.zero_()
    prunable = PrunableModel(model, BLOCKS_X)
    ms, current, target, measure = exact_judge(prunable, table, fraction)

    probing, predicted = (
        choose_plan(prunable, target, current, prune=PruneConfig(criterion="sensitivity", round_to=4),
                    schedule=ScheduleConfig(probe_epochs=share), predictor=LatencyPredictor(table),
                    calibration=CALIBRATION, measure=measure)
        for share in (0.25, 0.0)
    )
    assert probing.plan == predicted.plan and "stage.4" in probing.plan.blocks
    contenders = {c.structure: c for c in probing.contenders}
    contender = contenders["block-free"]
    assert contender.plan.blocks == () and ms(contender.plan) <= target
    assert contender.predicted_ms == pytest.approx(ms(contender.plan), rel=1e-6)
    # The contender was measured; the predicted choice measured no block-free plan and has no contender.
    assert any(c["blocks"] == 0 and c["ms"] == pytest.approx(ms(contender.plan)) for c in probing.plans)
    assert predicted.contenders == () and len(predicted.plans) < len(probing.plans)
    assert PlanChoice.from_dict(probing.to_dict()) == probing


@pytest.mark.parametrize("fraction", [0.8, 0.6, 0.45])
def test_a_knapsack_plan_gets_the_least_uniform_ratio_that_meets_as_a_contender(table, fraction: float) -> None:
    """Channels priced by their loss before training can be the wrong ones after it (the plain net of
    ``docs/landing/2026-12-06.md``: the knapsack cut the last convolution to its cap, 2-5 points less
    accurate than one uniform ratio at the same budget), so a latency-allocated plan is probed against
    the least uniform ratio judged to meet; a uniform allocation has nothing of that kind to probe."""
    prunable = PrunableModel(model(), X)
    ms, current, target, measure = exact_judge(prunable, table, fraction)

    def choice(allocation: str) -> PlanChoice:
        return choose_plan(prunable, target, current, prune=PruneConfig(round_to=4),
                           schedule=ScheduleConfig(allocation=allocation, probe_epochs=0.25, remove_blocks=False),
                           predictor=LatencyPredictor(table), calibration=None, measure=measure)

    knapsack, uniform = choice("latency"), choice("uniform")
    (contender,) = knapsack.contenders
    assert contender.structure == "uniform" and contender.plan != knapsack.plan and ms(contender.plan) <= target
    # The one uniform ratio a step of uniform allocation would choose, with no contender of its own.
    assert contender.plan == uniform.plan and uniform.contenders == ()
    less = prunable.uniform_plan(PruneConfig(round_to=4, ratio=round(contender.plan.ratio - RATIO_STEP, 4)))
    assert ms(less) > target
    assert PlanChoice.from_dict(knapsack.to_dict()) == knapsack


# The step's judge on a quiet synthetic machine in sessions too short to settle a plan within a few
# percent of its limit every time (each round: a block of 5 calls of each model, noise cv 0.1).
SHORT = ProfileSettings(warmup_s=0.0, block_s=0.0, block_calls=5, min_rounds=10, min_duration_s=0.0,
                        max_duration_s=2.0)


def paired_judge(ms, current_ms: float, limit_ms: float, seed: int):
    """The step's ``measure`` on ``Machine(seed)``: the plan of true latency ``ms(plan)`` in rounds
    beside the current model, asked whether its p50 is at most ``limit_ms``; a plan measured again
    continues its session, as ``spiralprune.pipeline.passes.steps.tries`` does. Also returns each plan's rounds."""
    machine = Machine(seed, cv=0.1)
    question = Question("step budget", "candidate", limit_ms / current_ms, "current")
    sessions: dict[PruningPlan, Rounds] = {}

    def measure(plan: PruningPlan) -> PlanVerdict:
        prior = sessions.get(plan)
        rounds = sample_rounds({"current": machine.model(current_ms), "candidate": machine.model(ms(plan))}, SHORT,
                               [question], clock=machine.clock, cpu=machine.cpu, prior=prior)
        sessions[plan] = rounds
        verdict = rounds.verdict(question.name)
        return PlanVerdict(verdict.estimate * current_ms, verdict.outcome, question.limit / verdict.estimate,
                           rounds.wall_s - (0.0 if prior is None else prior.wall_s))

    return measure, sessions


def uniform_search(table: LatencyTable, target_of, limit_of, seed: int) -> tuple[PlanChoice, dict, PruningPlan]:
    """The uniform ladder's search with ``paired_judge``, planned for ``target_of(ms)`` and judged
    on ``limit_of(ms)``, ``ms`` the true latency of the plan at ratio 0.4 (its neighbours on the
    ladder are 8 % slower and 23 % faster); returns the choice, the plan sessions and that plan."""
    prunable = PrunableModel(model(), X)
    truth = LatencyPredictor(table)

    def ms(plan: PruningPlan) -> float:
        return truth.predict(prunable.layers(plan))

    near = prunable.uniform_plan(PruneConfig(round_to=4, ratio=0.4))
    current = ms(PruningPlan("l1", 0.0, ()))
    measure, sessions = paired_judge(ms, current, limit_of(ms(near)), seed)
    choice = choose_plan(prunable, target_of(ms(near)), current, prune=PruneConfig(round_to=4),
                         schedule=ScheduleConfig(allocation="uniform"), predictor=LatencyPredictor(table),
                         calibration=None, measure=measure)
    return choice, sessions, near


def record_of(choice: PlanChoice, plan: PruningPlan) -> dict:
    (record,) = [c for c in choice.plans if c["ratio"] == round(plan.ratio, 4)]
    return record


@pytest.mark.parametrize("seed", [4, 7, 8])  # machines on which the first session leaves it undecided
def test_a_plan_just_under_the_limit_left_undecided_is_measured_longer_and_chosen(
    table: LatencyTable, seed: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plan predicted closest under the limit is truly 3 % under it; one short session leaves its
    interval straddling the limit (estimate under it), so it is measured for one more session, whose
    rounds join the first's, and the judge then finds it meets: it is chosen, not the plan 23 % faster
    (what the search chose when an undecided verdict counted as a miss, as the step's second line shows)."""
    choice, sessions, near = uniform_search(table, lambda ms: ms / 0.97, lambda ms: ms / 0.97, seed)
    record = record_of(choice, near)
    assert choice.plan == near and record["meets"]
    assert [s["outcome"] for s in record["sessions"]] == ["undecided", "meets"]
    assert all(s["seconds"] > 0 for s in record["sessions"])
    assert sessions[near].looks > 1 and sessions[near].verdict("step budget").rounds > 10
    assert PlanChoice.from_dict(choice.to_dict()) == choice

    monkeypatch.setattr(plan_search, "LONGER_SESSIONS", 0)
    once, _, _ = uniform_search(table, lambda ms: ms / 0.97, lambda ms: ms / 0.97, seed)
    assert record_of(once, near)["sessions"][0]["outcome"] == "undecided" and once.plan.ratio > near.ratio


@pytest.mark.parametrize("seed", [9, 10])  # machines on which the first session's estimate is under the limit
def test_a_plan_just_over_the_limit_is_still_rejected_after_the_longer_measurement(table: LatencyTable, seed: int) -> None:
    """The planning figure puts the plan 1 % under the target, the judge's limit is 1 % under the
    plan: its first session is undecided with its estimate under the limit, the longer one does not
    grant it either (the error budget spans both sessions), and the more pruned plan is chosen. (A
    second session is run only after an undecided one whose estimate is under the limit.)"""
    choice, _, near = uniform_search(table, lambda ms: ms / 0.99, lambda ms: ms / 1.01, seed)
    record = record_of(choice, near)
    assert [s["outcome"] for s in record["sessions"]] == ["undecided", "undecided"] and not record["meets"]
    assert choice.plan != near and choice.plan.ratio > near.ratio


def test_the_plan_measured_next_is_the_one_predicted_closest_under_the_limit(
    table: LatencyTable, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ladder's rungs are not in the order of their predicted latency (here: most pruned first).
    The search measures the plan predicted closest under the target first; found to meet with room
    left (the judge's limit is 3 % looser than the planning figure), then the plan predicted closest
    under the looser limit, and chooses it: not the first rung, nor a rung next to the one that met."""
    real = plan_search.step_plans
    monkeypatch.setattr(plan_search, "step_plans", lambda *args, **kwargs: real(*args, **kwargs)[::-1])
    prunable = PrunableModel(model(), X)
    truth = LatencyPredictor(table)

    def ms(plan: PruningPlan) -> float:
        return truth.predict(prunable.layers(plan))

    current = ms(PruningPlan("l1", 0.0, ()))
    target, limit = 0.70 * current, 0.72 * current
    order: list[PruningPlan] = []

    def measure(plan: PruningPlan) -> PlanVerdict:
        order.append(plan)
        return exact_verdict(ms(plan), limit)

    choice = choose_plan(prunable, target, current, prune=PruneConfig(round_to=4),
                         schedule=ScheduleConfig(allocation="uniform"), predictor=LatencyPredictor(table),
                         calibration=None, measure=measure)
    plans = real(prunable, target, prune=PruneConfig(round_to=4), schedule=ScheduleConfig(allocation="uniform"),
                 predictor=LatencyPredictor(table), calibration=None)
    closest = lambda bound: max((p for p in plans if ms(p) <= bound), key=ms)  # noqa: E731
    assert order == [closest(target), closest(limit)] and closest(target) != closest(limit)
    assert choice.plan == closest(limit)


@pytest.mark.parametrize("fraction", [0.8, 0.6, 0.45])
def test_a_block_free_knapsack_plan_gives_way_to_the_least_uniform_ratio_that_meets(table, fraction: float) -> None:
    """``schedule.channel_spread: uniform``: a step whose knapsack plan removes no residual
    block takes the least uniform ratio judged to meet (the plain net of ``docs/landing``: the
    knapsack's spread of the cut was 2-5 points less accurate after training than one ratio at the
    same budget); with ``knapsack`` its own plan stays; a plan that removes blocks stays either way."""
    prunable = PrunableModel(model(), X)
    ms, current, target, measure = exact_judge(prunable, table, fraction)

    def choice(**schedule: object) -> PlanChoice:
        return choose_plan(prunable, target, current, prune=PruneConfig(round_to=4),
                           schedule=ScheduleConfig(remove_blocks=False, **schedule),
                           predictor=LatencyPredictor(table), calibration=None, measure=measure)

    spread, knapsack, uniform = (choice(channel_spread="uniform"), choice(), choice(allocation="uniform"))
    assert spread.plan == uniform.plan != knapsack.plan and ms(spread.plan) <= target
    assert spread.contenders == () and spread.probes == ()
    # Both searches' measurements are recorded, the knapsack's plan among them.
    measured = [c for c in spread.plans if c["ms"] is not None]
    assert {c["ratio"] for c in measured} >= {round(knapsack.plan.ratio, 4), round(uniform.plan.ratio, 4)}
    assert PlanChoice.from_dict(spread.to_dict()) == spread


def test_a_knapsack_plan_that_removes_blocks_is_kept_whatever_the_spread(tmp_path) -> None:
    """Removing residual blocks is what the knapsack wins by (MobileNetV2 at 3x: +5.6 points over the
    one-shot), so a plan with blocks is not traded for a uniform ratio."""
    from tests.pipeline.prune.test_blocks import CALIBRATION, X as BLOCKS_X, net

    table = StaircaseTable("ort-cpu", threads=1, cache_dir=tmp_path)
    model = net()
    model.stage[4].body[1].weight.data.zero_()
    model.stage[4].body[1].bias.data.zero_()
    prunable = PrunableModel(model, BLOCKS_X)
    ms, current, target, measure = exact_judge(prunable, table, 0.85)
    spread, knapsack = (
        choose_plan(prunable, target, current, prune=PruneConfig(criterion="sensitivity", round_to=4),
                    schedule=ScheduleConfig(channel_spread=spread), predictor=LatencyPredictor(table),
                    calibration=CALIBRATION, measure=measure)
        for spread in ("uniform", "knapsack")
    )
    assert "stage.4" in spread.plan.blocks and spread.plan == knapsack.plan
