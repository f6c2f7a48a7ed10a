"""One try: its plans measured (again, longer, continuing the session), and its probes: plans of different
structure each trained briefly, the more accurate kept."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from rich.console import Console
from rich.progress import Progress

from spiralprune.deploy.verdict import Question
from spiralprune.pipeline.budget import TryQuestions
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.export import export_onnx
from spiralprune.pipeline.measure import measuring_session
from spiralprune.pipeline.passes.steps.plan_search import Contender, PlanChoice, PlanVerdict
from spiralprune.pipeline.passes.steps.record import probe_cost
from spiralprune.pipeline.passes.steps.tries import Reference, Tries
from spiralprune.pipeline.prune import PrunableModel, PruneConfig, apply_plan
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.teacher import RunData
from spiralprune.pipeline.training import Trainee
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet
from tiny_spiral import tiny_config


LINEAGE = ("spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]", [])


@pytest.fixture(scope="module")
def tries(tmp_path_factory: pytest.TempPathFactory) -> Tries:
    config = RunConfig.model_validate(tiny_config(schedule={"probe_epochs": 0.25}))
    console = Console(stderr=True)
    return Tries(config, RunFolder(tmp_path_factory.mktemp("run")), RunData.load(config), None, console)


def two_structures(tries: Tries):
    """A teacher, and a plan that removes its first residual block against one that removes half its channels."""
    torch.manual_seed(0)
    teacher = digits_resnet(width=8, blocks=[1, 1, 1, 1]).eval()
    example = tries.data.example_input
    prunable = PrunableModel(teacher, example)
    deep = prunable.depth_plan("l1", ("layer1",), {})
    wide = prunable.uniform_plan(PruneConfig(criterion="l1", ratio=0.5))
    return teacher, deep, wide, {plan: apply_plan(copy.deepcopy(teacher), plan, example) for plan in (deep, wide)}


def test_the_more_accurate_structure_after_the_probe_goes_on(tries: Tries, tmp_path: Path) -> None:
    teacher, deep, wide, modules = two_structures(tries)
    before = {plan: copy.deepcopy(m.state_dict()) for plan, m in modules.items()}
    measured = {deep: (modules[deep], PlanVerdict(0.10, "meets", 1.2)), wide: (modules[wide], PlanVerdict(0.11, "meets", 1.1))}
    choice = PlanChoice(deep, 0.09, [], {}, contenders=(Contender(wide, 0.1, "uniform"),))
    with Progress(console=tries.console) as progress:
        probed = tries._probe("step-01-try-1", choice, measured, LINEAGE, Trainee(teacher, LINEAGE), progress)
    records = probed.probes
    assert [r["blocks"] for r in records] == [["layer1"], []] and [r["ms"] for r in records] == [0.10, 0.11]
    assert [r["structure"] for r in records] == [tries.config.schedule.allocation, "uniform"]
    train = len(tries.data.splits.train)
    assert all(r["epochs"] == pytest.approx(round(0.25 * train) / train) for r in records)
    assert all(0.0 <= r["quality"] <= 1.0 for r in records)
    (won,) = [i for i, r in enumerate(records) if r["chosen"]]
    assert records[won]["quality"] == max(r["quality"] for r in records)
    assert probed.plan == (deep, wide)[won] and probed.predicted_ms == (0.09, 0.1)[won]
    assert probed.contenders == () and probed.plans == choice.plans
    # The probes trained copies: the pruned modules go on from their untrained weights, as without a probe.
    for plan, module in modules.items():
        assert all(torch.equal(v, before[plan][k]) for k, v in module.state_dict().items())
    assert PlanChoice.from_dict(probed.to_dict()) == probed
    assert probe_cost(records) == 1


def test_a_tie_keeps_the_search_s_choice(tries: Tries) -> None:
    """Two plans whose pruned modules are the same train to the same accuracy (the same batches, the same
    seed, bitwise on CPU): the plan the search chose stays."""
    teacher, deep, wide, modules = two_structures(tries)
    measured = {deep: (modules[deep], PlanVerdict(0.1, "meets", 1.0)),
                wide: (copy.deepcopy(modules[deep]), PlanVerdict(0.1, "meets", 1.0))}
    with Progress(console=tries.console) as progress:
        probed = tries._probe("step-01-try-1", PlanChoice(deep, 0.1, [], {}, contenders=(Contender(wide, 0.1, "uniform"),)),
                              measured, LINEAGE, Trainee(teacher, LINEAGE), progress)
    assert probed.probes[0]["quality"] == probed.probes[1]["quality"]
    assert probed.plan == deep and [r["chosen"] for r in probed.probes] == [True, False]


@pytest.mark.parametrize(("shares", "epochs"), [((), 0), ((0.25, 0.25), 1), ((0.5, 0.5, 0.5), 2), ((1.0,), 1)])
def test_probes_cost_their_epochs_rounded_up(shares: tuple[float, ...], epochs: int) -> None:
    assert probe_cost([{"epochs": s} for s in shares]) == epochs


def test_a_plan_measured_again_continues_its_session(tries: Tries, tmp_path: Path) -> None:
    """What the plan search's longer measurement gets from a try (on the run's real target; only the
    structure of the evidence is checked, not what this machine measured): the second call measures the
    models the try's session keeps loaded and adds its rounds to the first's, the verdict rests on all of them at a later look,
    and the verdict says how long that session took; the candidate's layer profile is the new session's."""
    teacher, _, wide, _ = two_structures(tries)
    export_onnx(teacher, tries.data.example_input, tries.folder.teacher_onnx)
    current = Reference("current", teacher, tries.folder.teacher_onnx, 1.0, LINEAGE)
    step = Question("step budget", "candidate", 0.5, "current")
    with measuring_session(tries.config, tmp_path / "compiled") as session:
        measure, measured = tries._measurer(TryQuestions(step, (), final_step=False), current, teacher, tmp_path, session)
        first = measure(wide)
        module, once, _ = measured[wide]
        rounds, looks = len(once.rounds.cpu_wait), once.rounds.looks
        loads = dict(session.compiles)
        second = measure(wide)
        again, twice, verdict = measured[wide]
    # The second session measures the models the first loaded: none is loaded again.
    assert session.compiles == {**loads, "kept": loads["kept"] + 3}
    assert again is module and verdict == second and first.seconds > 0 and second.seconds > 0
    assert len(twice.rounds.cpu_wait) > rounds and twice.rounds.looks > looks
    measurement = twice.profiles["candidate"].measurements[0]
    assert len(measurement.round_sizes) == len(twice.rounds.cpu_wait)
    # The layer profile is the second session's, explained against that session's rounds only.
    layers = measurement.layer_profile()
    assert len(layers.calls_per_round) <= len(twice.rounds.cpu_wait) - rounds
    assert measurement.layers["explanation"]["rounds"] == sum(1 for calls in layers.calls_per_round if calls)
    assert twice.rounds.wall_s == pytest.approx(first.seconds + second.seconds)
    assert second.ms == pytest.approx(twice.verdict("step budget").estimate * current.ms)
