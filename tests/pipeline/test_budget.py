"""``spiralprune.pipeline.budget``: the run's final budget made concrete by the measured teacher."""

from __future__ import annotations

import pytest

from spiralprune.pipeline.budget import FinalBudget
from spiralprune.pipeline.config import parse_config
from spiralprune.pipeline.tasks import build_task
from tiny_spiral import tiny_config

TEACHER = {"statistic_ms": 8.0, "metrics": {"accuracy": 0.9}}


def run_config(latency: dict, batch: int):
    """A run config whose budget gives these latency limits and the default quality budget."""
    config = {**tiny_config(), "input_shape": [batch, 1, 16, 16]}
    return parse_config({**config, "budget": {"latency": latency}})


@pytest.mark.parametrize(("config", "final_ms", "questions"), [
    ({"min_speedup": 2.0}, 4.0, {"final min_speedup": 0.5}),
    ({"max_ms": 3.0}, 3.0, {"final max_ms": 3.0}),
    # 64 items per call, at least 32,000 items/s: a call within 2 ms
    ({"min_throughput": 32000.0}, 2.0, {"final min_throughput": 2.0}),
    ({"min_speedup": 2.0, "max_ms": 3.0, "min_throughput": 12800.0}, 3.0,
     {"final min_speedup": 0.5, "final max_ms": 3.0, "final min_throughput": 5.0}),
])
def test_every_latency_budget_is_a_question_and_the_tightest_is_the_planning_figure(config, final_ms, questions):
    budget = FinalBudget.of_teacher(run_config(config, batch=64), TEACHER, task=build_task())
    assert budget.final_ms == pytest.approx(final_ms)
    asked = {q.name: q for q in budget.final_questions()}
    assert {name: q.limit for name, q in asked.items()} == pytest.approx(questions)
    assert all(q.subject == "candidate" and q.statistic == "p50" for q in asked.values())
    assert all((q.reference == "teacher") == (name == "final min_speedup") for name, q in asked.items())


def test_a_throughput_budget_says_its_items_per_second_and_the_latency_it_means():
    budget = FinalBudget.of_teacher(run_config({"min_throughput": 500.0}, batch=8), TEACHER, task=build_task())
    assert budget.throughput_ms == pytest.approx(16.0)
    assert budget.describe() == ("throughput >= 500 items/s at batch 8: p50 <= 16.000 ms (upper confidence bound), "
                                 "accuracy >= 89.00% (teacher 90.00%)")
    assert budget.to_dict()["min_throughput"] == 500.0 and budget.to_dict()["batch"] == 8


def test_a_try_is_judged_on_its_step_budget_until_it_aims_at_the_final_budget():
    """Before a try measures, it knows what it asks: the step budget against the current model (recorded on every
    try) and the final questions, which alone decide once the step aims at the final budget."""
    budget = FinalBudget.of_teacher(run_config({"min_speedup": 2.0, "max_ms": 3.0}, batch=1), TEACHER,
                                    task=build_task())
    halfway = budget.try_questions(6.0, "step 1", 8.0)  # 6 ms, short of the final 3 ms
    assert (halfway.step.name, halfway.step.reference, halfway.step.limit) == ("step budget", "step 1", 0.75)
    assert halfway.asked == [halfway.step, *budget.final_questions()] and not halfway.final_step
    assert halfway.judged == [halfway.step]
    last = budget.try_questions(budget.final_ms, "step 2", 5.0)
    assert last.final_step and last.judged == budget.final_questions() and last.asked[0] == last.step
