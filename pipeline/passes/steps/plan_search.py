"""One spiral step's pruning plan: plans screened by predicted latency, only the promising measured.

Plans come from the schedule's ``allocation``:

- ``latency``: the latency-aware knapsack of ``spiralprune.pipeline.prune.latency_aware`` at a ladder of
  predicted goals around the step's goal (``LADDER``; around the current latency when the
  goal asks for no reduction), least pruned first, so there is a less and a more pruned plan to
  go to when a measurement disagrees with the prediction; each rung's plan is refilled up to its
  goal (a residual block is one large move, and the greedy alone left rungs far below theirs);
- ``uniform``: ``plan_pruning`` with the configured criterion and policy at a grid of ratios up to
  ``schedule.max_ratio`` (the ratio NNI and Torch-Pruning ask for), least pruned first.

Every plan's latency is predicted from the operator table: nothing is exported or compiled to
rank it. The predictor is calibrated on the current model's measured latency and again after each
measured plan (NetAdapt's feedback: a miss raises the prediction of everything left). A
plan's measurement is the step's own verdict (``spiralprune.deploy.verdict``: its pruned model, the candidate,
in rounds beside the current model and the teacher, judged on the per-round ratios), and the chosen plan's measurement is
the one its step is accepted or rejected on: training changes weights, not the graph, so a plan the
judge rejects is never distilled. Measured next is the plan predicted closest under the limit
among those predicted slower than the best one judged to meet so far (the calibration is one scale
and one overhead for every plan, so this is their order by calibrated prediction; the ladder's rungs
are not in that order: a rung whose knapsack kept other channels, or snapped to another stair, can
be predicted faster than the next one); the search ends when none is left or after ``MAX_MEASURED``
plans. A plan the judge leaves ``undecided`` while its estimate is under the limit (near the limit
on a noisy machine the interval straddles it when a session runs out of time) is measured again,
up to ``LONGER_SESSIONS`` more sessions of the same length, each continuing the evidence of the
ones before at stricter confidence (``spiralprune.deploy.sampling``: the error of all looks together
stays the judge's); only a verdict that is still undecided, or misses, sends the search to a more
pruned plan (the plain net of ``docs/landing/2026-12-06.md`` at 3x: plans at the limit left
undecided sent it from 73 % of the channels to 75 %, 4.47x, 4 points less accurate). Every session's
outcome, latency and seconds are recorded with the plan. "Predicted to meet" is
judged against where the judge last put the limit (``PlanVerdict.headroom``), not only against
``goal_ms``: on the step aimed at the final budget the judge asks for a speedup over the teacher
measured in the same rounds, and the teacher's latency when the run started (``goal_ms`` is its
fraction) drifts by several percent between sessions; a plan the judge finds 6 % faster than
needed lets the search try the less pruned ones predicted within that 6 % (MobileNetV2 at 3x,
2026-12-05: plans chosen at 3.2-3.4x where 3.0x was asked, 2 points less accurate than a uniform
ratio at 3.1x). The choice is the plan
judged to meet the goal that is predicted slowest or, when none was, the fastest one measured; but
before a ``latency`` step settles for a plan that misses, the uniform ratios are bisected by measurement
for the least one judged to meet, and that one is chosen (the knapsack's predictions can hold a floor the
model does not have: the detector of ``docs/benchmarks.md``, 2026-12-07); when none meets, the same
ratios with the residual blocks of the knapsack's deepest plan removed (MobileNetV2, the same day). When no
measured plan met the goal and none left is predicted to, the fastest plan not yet
measured is measured too if it is predicted faster than every measured one (a step whose goal
sits at the latency floor would otherwise settle for a plan at the edge of its budget). Every plan is recorded with its predicted latency and, when it
was compiled, its measured one.

Loss before training says little about accuracy after it: a residual block's loss rise (the
README's runs 13-14; ``docs/landing/2026-12-06.md``: block-free plans chosen by prediction were
less accurate after training, block-removing ones elsewhere), and a channel's too (the plain net of
``docs/landing/2026-12-06.md``: the knapsack cut the last convolution to its cap, 2-5 points less
accurate after training than one uniform ratio at the same budget). So with ``schedule.probe_epochs``
set the same search runs on other structures' ladders too (``CONTENDER_LADDERS``: block-free when the
chosen plan removes blocks, and one uniform ratio when the allocation is ``latency``), and each one's
plan judged to meet that is predicted slowest becomes a *contender*: ``spiralprune.pipeline.passes.steps.tries`` trains every
contender and the chosen plan for a short probe and keeps the most accurate. A short probe favours
the knapsack's spread (it keeps the channels whose loss rises most before training, which is what a
quarter epoch measures), so without probes a block-free step takes the uniform ladder's plan when one
meets (``schedule.channel_spread``): the knapsack decides which blocks go, one ratio the channels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor

from spiralprune.core.errors import InputError
from spiralprune.deploy.verdict import Outcome
from spiralprune.kernels.layers import Layer, untimed_layers
from spiralprune.kernels.predictor import LatencyPredictor
from spiralprune.pipeline.passes.steps.config import ScheduleConfig
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, PruningPlan
from spiralprune.pipeline.prune.latency_aware import plans_for_latency

# Predicted goals of the latency plans, as fractions of the step's goal: dense just under
# 1, because near the latency floor a few percent of milliseconds can be many channels (ResNet at 4x,
# 2026-12-03: 0.265 ms with 65 % of the channels removed, 0.248 ms with 76 %), and a plan measured
# just over the limit should be followed by one a little more pruned, not by one 10 % faster.
LADDER = (1.1, 1.05, 1.0, 0.975, 0.95, 0.925, 0.9, 0.875, 0.85, 0.8, 0.7)
RATIO_STEP = 0.05
MAX_MEASURED = 6
# More sessions for a plan judged undecided with its estimate under the limit (each as long as the first).
LONGER_SESSIONS = 1
# Plans measured on each contender ladder.
MAX_CONTENDER_MEASURED = 2


@dataclass(frozen=True)
class PlanVerdict:
    """The judge on one measured plan: its latency (ms), the outcome over the questions that decide
    (``misses`` when one misses, ``meets`` when all meet, else ``undecided``), its headroom: how many
    times faster than its limit it was measured (the least over those questions; below 1 it is
    slower; NaN when no round ran), and the seconds its session took."""

    ms: float
    outcome: Outcome
    headroom: float
    seconds: float = 0.0

    @property
    def meets(self) -> bool:
        return self.outcome == "meets"


class NothingLeftToPrune(Exception):
    """A later step's model has no channel left to remove that saves time (every group at its
    ``schedule.max_ratio`` floor or on its last latency stair): the run ends there (an outcome, not bad input)."""


@dataclass
class ScreenedPlan:
    """A plan of a step, screened: its pruned operators, predicted latency and, once compiled, the
    judge's (``ms`` and ``meets`` from its last session, which holds the evidence of all of them;
    ``sessions``: each session's outcome, ms and seconds)."""

    plan: PruningPlan
    layers: list[Layer]
    predicted_ms: float = float("nan")
    ms: float | None = None
    meets: bool | None = None
    sessions: list[dict] = field(default_factory=list)

    def record(self) -> dict:
        return {"ratio": round(self.plan.ratio, 4), "blocks": len(self.plan.blocks), "predicted_ms": self.predicted_ms,
                "ms": self.ms, "meets": self.meets, "sessions": self.sessions}


@dataclass(frozen=True)
class Contender:
    """A plan of another structure than the chosen one, also judged to meet: its predicted latency and
    its ladder's name (``CONTENDER_LADDERS``)."""

    plan: PruningPlan
    predicted_ms: float
    structure: str

    def to_dict(self) -> dict:
        return {"plan": self.plan.to_dict(), "predicted_ms": self.predicted_ms, "structure": self.structure}

    @classmethod
    def from_dict(cls, data: dict) -> Contender:
        return cls(PruningPlan.from_dict(data["plan"]), data["predicted_ms"], data.get("structure", "block-free"))


@dataclass(frozen=True)
class PlanChoice:
    """A step's plan with its predicted latency, every screened plan's record and the predictor's
    calibration; ``contenders``: plans of other structures also judged to meet, for a training probe
    to decide between (``spiralprune.pipeline.passes.steps.tries``); ``probes``: the probes' records once run (empty when
    there was nothing to decide)."""

    plan: PruningPlan
    predicted_ms: float
    plans: list[dict]  # every screened plan's ``ScreenedPlan.record``
    calibration: dict
    contenders: tuple[Contender, ...] = ()
    probes: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {
            "plan": self.plan.to_dict(), "predicted_ms": self.predicted_ms,
            "plans": self.plans, "calibration": self.calibration,
            "contenders": [c.to_dict() for c in self.contenders], "probes": list(self.probes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PlanChoice:
        # "candidates": a plan.json of a try killed under a spiral before ledger version 4, resumed
        plans = data["plans"] if "plans" in data else data["candidates"]
        return cls(PruningPlan.from_dict(data["plan"]), data["predicted_ms"], plans, data["calibration"],
                   tuple(Contender.from_dict(c) for c in data.get("contenders", [])), tuple(data.get("probes", [])))


def step_plans(
    prunable: PrunableModel, anchor_ms: float, *, prune: PruneConfig, schedule: ScheduleConfig,
    predictor: LatencyPredictor, calibration: Iterable[tuple[Tensor, Tensor]] | None,
    original: Mapping[str, int] | None = None, blocks: bool | None = None, allocation: str | None = None,
) -> list[PruningPlan]:
    """Distinct non-empty plans for one step, least pruned first (see the module docstring);
    ``blocks``: whether the latency knapsack may remove residual blocks (default: ``schedule.remove_blocks``);
    ``allocation``: ``latency`` or ``uniform`` (default: ``schedule.allocation``)."""
    if (allocation or schedule.allocation) == "latency":
        allocations = plans_for_latency(
            prunable, prune, [f * anchor_ms for f in LADDER], predictor=predictor,
            calibration=calibration, max_group_ratio=schedule.max_ratio, original=original,
            blocks=schedule.remove_blocks if blocks is None else blocks,
        )
        plans = [a.plan for a in allocations]
    else:
        plans = [prunable.uniform_plan(prune.model_copy(update={"ratio": r}), calibration)
                 for r in uniform_ratios(schedule.max_ratio)]
    distinct: dict[tuple, PruningPlan] = {}
    for plan in plans:
        if plan.groups or plan.blocks:
            distinct.setdefault((plan.blocks, plan.groups), plan)
    if not distinct:
        if original:  # earlier steps cut this model: its groups are at their floor, not misconfigured
            raise NothingLeftToPrune(
                f"no group can lose channels that save time: every prunable group is at its floor "
                f"(schedule.max_ratio={schedule.max_ratio} of the teacher's channels removed, or too few to round) "
                "or on the last stair of its latency staircase; a higher schedule.max_ratio or a looser budget "
                "would let the run go on"
            )
        raise InputError("no plan removes any channel: every prunable group is too small or protected")
    return list(distinct.values())


def uniform_ratios(max_ratio: float) -> list[float]:
    """The ``uniform`` ladder's ratios: every ``RATIO_STEP`` up to ``max_ratio``, least first."""
    return [round(RATIO_STEP * k, 4) for k in range(1, int(max_ratio / RATIO_STEP + 1e-9) + 1)]


def choose_plan(
    prunable: PrunableModel, goal_ms: float, current_ms: float, *, prune: PruneConfig,
    schedule: ScheduleConfig, predictor: LatencyPredictor, calibration: Sequence[tuple[Tensor, Tensor]] | None,
    measure: Callable[[PruningPlan], PlanVerdict], original: Mapping[str, int] | None = None,
) -> PlanChoice:
    """Screen the step's plans by predicted latency and measure the promising ones.

    ``prunable``: the step's model, traced once (a step's tries share it, and with it the criterion's
    scores of the model's weights on ``calibration``);
    ``measure``: plan -> the judge's ``PlanVerdict`` on it; called again on a plan it measured, it
    measures it longer: one more session, continuing the evidence of the plan's earlier ones;
    ``original``: channels per group root before the run's first step (``schedule.max_ratio`` of
    the latency allocation counts from them; default: the model's channels now).

    When the chosen plan meets and ``schedule.probe_epochs`` is set, the ladders of
    ``CONTENDER_LADDERS`` that apply are searched too (at most ``MAX_CONTENDER_MEASURED``
    plans measured each, against the limit the searches before left): each one's plan judged to
    meet that is predicted slowest, unless it is the chosen plan, is returned in ``contenders``, for ``Tries`` to
    decide between the structures by a short training probe. Without probes, a chosen plan that
    removes no block gives way to the uniform ladder's (``uniform_spread``), when one meets.
    """
    untimed = untimed_layers(prunable.work)
    if untimed:
        name, kind = untimed[0]
        raise InputError(
            f"layer '{name}' ({kind}) has no entry in the operator latency table (Conv2d, Linear, single-layer LSTM, attention), "
            "so plans cannot be screened by predicted latency; "
            "prune this model with 'spiralprune prune' at a fixed ratio instead"
        )
    samples: list[tuple[list[Layer], float]] = [(prunable.layers(PruningPlan(prune.criterion, 0.0, ())), current_ms)]
    predictor.calibrate(samples)
    anchor = min(goal_ms, current_ms)

    def screen(**ladder: object) -> list[ScreenedPlan]:
        plans = step_plans(prunable, anchor, prune=prune, schedule=schedule, predictor=predictor,
                                calibration=calibration, original=original, **ladder)
        return [ScreenedPlan(plan, prunable.layers(plan)) for plan in plans]

    search = _Search(predictor, samples, measure, goal_ms)
    screened = screen()
    best = search.run(screened, MAX_MEASURED, settle=True)
    chosen = screened[best]
    found: list[tuple[ScreenedPlan, str]] = []
    if chosen.meets and schedule.probe_epochs > 0:
        for structure, (applies, ladder) in CONTENDER_LADDERS.items():
            if not applies(chosen.plan, schedule):
                continue
            others = screen(**ladder)
            best = search.run(others, MAX_CONTENDER_MEASURED, settle=False)
            if best is not None and others[best].plan != chosen.plan:
                found.append((others[best], structure))
            screened += [c for c in others if c.ms is not None and c.plan != chosen.plan]
    elif not chosen.meets and schedule.allocation == "latency":
        # No plan of the knapsack's ladder was judged to meet, and its predictions can hold a floor the
        # model does not have: on the YOLO-style detector at 2x (docs/benchmarks.md, 2026-12-07) the table's
        # lone small convolutions keep a fixed cost that the whole graph does not pay, so uniform ratios 0.5
        # to 0.7 were all predicted at 0.56-0.57 ms, and 0.70 measured 0.34-0.36 ms under a 0.42 ms goal;
        # every knapsack plan was predicted at 0.45 ms or more, and the step missed. Before it settles for a
        # plan that misses, the uniform ratios are bisected by measurement, not by prediction, for the least
        # one judged to meet: the structure a one-shot user takes at the budget. When none does and the
        # knapsack's deepest plan removes residual blocks, the same ratios are bisected with those blocks gone:
        # MobileNetV2 at 32x32 on a CPU with VNNI (docs/benchmarks.md, 2026-12-07) pays so much per operator
        # that uniform 0.90 measured 2.1-2.3x, and the knapsack's deepest plan (all ten blocks and 35 % of the
        # channels, predicted at 118-125 % of the goal) 2.4-2.6x, under a 3x budget.
        blocks = max((c.plan.blocks for c in screened), key=len)
        family = screen(allocation="uniform")
        least = search.least_meeting(family)
        screened += [c for c in family if c.ms is not None]
        if least is None and blocks:
            deeper: dict[tuple, PruningPlan] = {}  # ratios that differ only inside the blocks are one plan
            for u in family:
                plan = prunable.depth_plan(prune.criterion, blocks, {g.root: g.removed for g in u.plan.groups})
                deeper.setdefault(plan.groups, plan)
            family = [ScreenedPlan(plan, prunable.layers(plan)) for plan in deeper.values()]
            least = search.least_meeting(family)
            screened += [c for c in family if c.ms is not None]
        chosen = family[least] if least is not None else chosen
    elif chosen.meets and uniform_spread(chosen.plan, schedule):
        # The table prices a uniform structure differently from the knapsack's (the knapsack spends
        # where the table says time is cheap): the uniform ratios get a calibration of their own, from
        # the current model and their own measurements, and the fastest is measured when none is
        # predicted to meet, as the step's own search does.
        uniform = screen(allocation="uniform")
        family = _Search(LatencyPredictor(predictor.table), samples[:1], measure, search.limit_ms)
        best = family.run(uniform, MAX_MEASURED, settle=True)
        if best is not None and uniform[best].meets:
            chosen = uniform[best]
        screened += [c for c in uniform if c.ms is not None]
    for c in screened:
        c.predicted_ms = predictor.predict(c.layers)
    return PlanChoice(
        chosen.plan, chosen.predicted_ms, [c.record() for c in screened], predictor.calibration.to_dict(),
        contenders=tuple(Contender(c.plan, c.predicted_ms, structure) for c, structure in found),
    )


def uniform_spread(plan: PruningPlan, schedule: ScheduleConfig) -> bool:
    """Whether a step's knapsack ``plan`` gives way to the least uniform ratio judged to meet
    (``schedule.channel_spread``): it removes no residual block, from a latency allocation."""
    return schedule.allocation == "latency" and schedule.channel_spread == "uniform" and not plan.blocks


# The other structures a chosen plan is probed against: name -> (whether the ladder applies to the
# chosen plan and the schedule, the ladder's ``step_plans`` arguments).
CONTENDER_LADDERS: dict[str, tuple[Callable[[PruningPlan, ScheduleConfig], bool], dict]] = {
    "block-free": (lambda plan, schedule: bool(plan.blocks), {"blocks": False}),
    "uniform": (lambda plan, schedule: schedule.allocation == "latency", {"allocation": "uniform"}),
}


class _Search:
    """The measured search of the module docstring over one list of screened plans; the predictor's
    calibration samples and the judge's limit carry over from one list to the next."""

    def __init__(self, predictor: LatencyPredictor, samples: list[tuple[list[Layer], float]],
                 measure: Callable[[PruningPlan], PlanVerdict], goal_ms: float):
        self.predictor, self.samples, self.measure = predictor, samples, measure
        self.limit_ms = goal_ms  # the predicted latency of a plan on the judge's limit, as last measured

    def run(self, screened: list[ScreenedPlan], budget: int, *, settle: bool) -> int | None:
        """The index of the plan judged to meet that is predicted slowest, after at most ``budget``
        plans measured; with ``settle``, when none met, the fastest measured (trying the fastest one
        not measured first if it is predicted faster than every measured one); else None."""
        predictor, best, measured = self.predictor, None, 0
        while measured < budget:
            for c in screened:
                c.predicted_ms = predictor.predict(c.layers)
            slowest_met = -math.inf if best is None else screened[best].predicted_ms
            pool = [
                i for i, c in enumerate(screened)
                if c.ms is None and slowest_met < c.predicted_ms <= self.limit_ms
            ]
            if not pool and best is None and settle:
                # Nothing measured met the goal and nothing left is predicted to: before settling for
                # the fastest measured, try the fastest one not measured yet if it is predicted faster.
                fastest_measured = min((c.predicted_ms for c in screened if c.ms is not None), default=math.inf)
                rest = [i for i, c in enumerate(screened) if c.ms is None and c.predicted_ms < fastest_measured]
                pool = [min(rest, key=lambda i: screened[i].predicted_ms)] if rest else []
            if not pool:
                break
            index = max(pool, key=lambda i: (screened[i].predicted_ms, -i))  # closest under the limit
            pick = screened[index]
            verdict = self._judge(pick)
            measured += 1
            if math.isfinite(verdict.headroom):  # room left moves the limit up only on a plan that meets
                at_limit = predictor.predict(pick.layers) * verdict.headroom
                self.limit_ms = max(self.limit_ms, at_limit) if pick.meets else min(self.limit_ms, at_limit)
            if pick.meets:
                best = index
        if best is None and settle:
            measured_ms = {i: c.ms for i, c in enumerate(screened) if c.ms is not None}
            best = min(measured_ms, key=lambda i: measured_ms[i] if math.isfinite(measured_ms[i]) else math.inf)
        return best

    def least_meeting(self, ladder: list[ScreenedPlan]) -> int | None:
        """The index of the least pruned plan of ``ladder`` (least pruned first, each more pruned and
        faster than the one before: a uniform ratio's) judged to meet, bisected by measurement (the
        deepest first: when it misses, none does); None when none meets."""
        if not self._judge_once(ladder[-1]):
            return None
        low, high = 0, len(ladder) - 1
        while low < high:
            mid = (low + high) // 2
            if self._judge_once(ladder[mid]):
                high = mid
            else:
                low = mid + 1
        return high

    def _judge_once(self, pick: ScreenedPlan) -> bool:
        """``pick`` judged (once: a plan measured before keeps its verdict)."""
        if pick.ms is None:
            self._judge(pick)
        return bool(pick.meets)

    def _judge(self, pick: ScreenedPlan) -> PlanVerdict:
        """``pick`` judged, and its measurement fed back to the calibration."""
        verdict, pick.sessions = judge_plan(pick.plan, self.measure)
        pick.ms, pick.meets = verdict.ms, verdict.meets
        if math.isfinite(pick.ms):  # NaN: every round was set aside on a busy CPU, nothing to learn
            self.samples.append((pick.layers, pick.ms))
            self.predictor.calibrate(self.samples)
        return verdict


def judge_plan(plan: PruningPlan, measure: Callable[[PruningPlan], PlanVerdict]) -> tuple[PlanVerdict, list[dict]]:
    """``plan`` measured, and measured longer (up to ``LONGER_SESSIONS`` more sessions, each
    continuing the evidence of the ones before) while the judge leaves it undecided with its estimate
    under the limit: the last verdict, which rests on every session, and each session's record."""
    verdict = measure(plan)
    sessions = [_session(verdict)]
    for _ in range(LONGER_SESSIONS):
        if verdict.outcome != "undecided" or not verdict.headroom > 1:
            break
        verdict = measure(plan)
        sessions.append(_session(verdict))
    return verdict, sessions


def _session(verdict: PlanVerdict) -> dict:
    return {"outcome": verdict.outcome, "ms": verdict.ms, "seconds": verdict.seconds}
