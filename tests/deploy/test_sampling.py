"""The paired sampler and the judge on synthetic machines of known behaviour (fixed seeds).

The goals mirror benchmarks/verdict_calibration.py, which measures the same on real models."""

import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.profiler import measurement_of
from spiralprune.deploy.sampling import ProfileSettings, sample_rounds
from spiralprune.deploy.verdict import Question
from tests.deploy.synthetic import Machine

SETTINGS = ProfileSettings(warmup_s=0.05, block_s=0.02, min_rounds=10, min_duration_s=0.2, max_duration_s=6.0)
# A busy runner: the machine's speed wanders by ±30 % and a competing process doubles every
# latency for 0.7 s out of 1.4 s; 1 % of the calls are preempted (x10).
BUSY = dict(cv=0.08, drift=0.3, step=1.0, outlier_p=0.01)


def paired(base_ms, new_ms, limit, seed, **machine):
    m = Machine(seed, **machine)
    question = Question("q", "new", limit, reference="base")
    rounds = sample_rounds({"base": m.model(base_ms), "new": m.model(new_ms)}, SETTINGS, [question], clock=m.clock, cpu=m.cpu)
    return rounds.verdict("q"), rounds


@pytest.mark.parametrize("seed", range(8))
def test_same_model_twice_on_a_busy_machine_is_never_a_regression(seed):
    verdict, rounds = paired(1.0, 1.0, 1.05, seed, **BUSY)
    assert verdict.outcome == "meets"
    assert rounds.stop_reason == "decided"


@pytest.mark.parametrize("seed", range(8))
def test_a_ten_percent_slowdown_is_found_on_a_busy_machine(seed):
    verdict, _ = paired(1.0, 1.10, 1.05, seed, **BUSY)
    assert verdict.outcome == "misses"


@pytest.mark.parametrize("seed", range(8))
def test_a_candidate_ten_percent_under_its_step_budget_is_accepted(seed):
    verdict, _ = paired(2.0, 0.9 * 2.0 * 0.8, 0.8, seed, **BUSY)
    assert verdict.outcome == "meets"


@pytest.mark.parametrize("seed", range(8))
def test_a_candidate_five_percent_over_its_step_budget_is_not_accepted(seed):
    verdict, _ = paired(2.0, 1.05 * 2.0 * 0.8, 0.8, seed, **BUSY)
    assert verdict.outcome != "meets"


def test_a_difference_at_the_limit_stays_undecided_until_the_time_cap():
    verdict, rounds = paired(1.0, 1.05, 1.05, 0, cv=0.05)
    assert verdict.outcome == "undecided"
    assert rounds.stop_reason == "max_duration"
    assert rounds.wall_s >= SETTINGS.max_duration_s


# Short sessions on a quiet machine: a ratio within a few percent of its limit is often left undecided.
SHORT = ProfileSettings(warmup_s=0.0, block_s=0.005, block_calls=5, min_rounds=10, min_duration_s=0.0,
                        max_duration_s=0.5)


def two_sessions(m: Machine, base_ms: float, new_ms: float, limit: float, settings: ProfileSettings = SHORT):
    question = Question("q", "new", limit, reference="base")
    models = lambda: {"base": m.model(base_ms), "new": m.model(new_ms)}  # noqa: E731 (loaded again, as a session does)
    first = sample_rounds(models(), settings, [question], clock=m.clock, cpu=m.cpu)
    return first, lambda: sample_rounds(models(), settings, [question], clock=m.clock, cpu=m.cpu, prior=first)


def test_a_continued_session_adds_its_rounds_and_looks_on_at_a_stricter_confidence():
    first, more = two_sessions(Machine(3, cv=0.1), 0.5, 0.97 * 0.4, 0.8)  # a machine where one session is too short
    kept = [list(b) for b in first.series["new"].blocks]
    assert first.verdict("q").outcome == "undecided" and first.stop_reason == "max_duration"
    second = more()
    n = len(kept)
    assert len(second.series["new"].blocks) == len(second.series["base"].blocks) == len(second.cpu_wait) > n
    assert second.series["new"].blocks[:n] == kept and first.series["new"].blocks == kept  # the first left as it was
    assert second.looks > first.looks
    verdict = second.verdict("q")
    assert verdict.rounds == len(second.cpu_wait) and verdict.confidence > first.verdict("q").confidence
    assert verdict.outcome == "meets"  # 3 % under the limit: what the first session could not tell, both can
    assert second.stop_reason == "decided" and first.wall_s < second.wall_s < first.wall_s + SHORT.max_duration_s
    assert second.series["new"].warmup_iterations == 2 * first.series["new"].warmup_iterations  # warmed up again


def test_measuring_longer_a_ratio_at_its_limit_does_not_grant_it():
    """The error budget holds across the sessions: a ratio exactly at its limit, measured again
    whenever the first session left it undecided with its estimate under the limit (what the plan
    search does), is never judged to meet on 40 machines; a second session judged on its own, its
    looks counted from one, would be a second chance at the same error."""
    continued = 0
    for seed in range(40):
        first, more = two_sessions(Machine(seed, cv=0.1), 0.5, 0.4, 0.8)
        verdict = first.verdict("q")
        assert verdict.outcome != "meets"
        if verdict.outcome == "undecided" and verdict.estimate < 0.8:
            continued += 1
            assert more().verdict("q").outcome != "meets"
    assert continued >= 10


def test_a_continued_session_measures_the_models_of_the_first():
    m = Machine(0)
    first = sample_rounds({"a": m.model(1.0)}, SHORT, clock=m.clock, cpu=m.cpu)
    with pytest.raises(InputError, match="a continued session measures the models of the first"):
        sample_rounds({"b": m.model(1.0)}, SHORT, clock=m.clock, cpu=m.cpu, prior=first)


def test_separate_profiles_on_a_drifting_machine_disagree_where_rounds_do_not():
    """What the paired design is for: two unpaired profiles of the same model differ by the drift."""
    m = Machine(3, cv=0.03, step=0.3, step_s=1.0)
    alone = ProfileSettings(warmup_s=0.0, min_duration_s=0.99, max_duration_s=0.99, ci_rel=0)
    one = sample_rounds({"a": m.model(1.0)}, alone, clock=m.clock, cpu=m.cpu)
    m.now = 1.0
    two = sample_rounds({"a": m.model(1.0)}, alone, clock=m.clock, cpu=m.cpu)
    p50 = [float(sorted(r.series["a"].samples_ms)[len(r.series["a"].samples_ms) // 2]) for r in (one, two)]
    assert abs(p50[1] / p50[0] - 1) > 0.2
    verdict, _ = paired(1.0, 1.0, 1.05, 3, cv=0.03, step=0.3, step_s=1.0)
    assert verdict.outcome == "meets" and abs(verdict.estimate - 1) < 0.02


def test_rounds_alternate_order_and_blocks_fill_their_time():
    m = Machine(0, cv=0.0)
    calls = []

    def model(name, ms):
        inner = m.model(ms)

        def call():
            calls.append(name)
            return inner()
        return call

    settings = ProfileSettings(warmup_s=0.0, block_s=0.01, block_calls=3, min_rounds=4, min_duration_s=0.0,
                               max_duration_s=1.0, ci_rel=0.5)
    rounds = sample_rounds({"a": model("a", 1.0), "b": model("b", 4.0)}, settings, clock=m.clock, cpu=m.cpu)
    assert rounds.stop_reason == "ci_converged"
    a, b = rounds.series["a"], rounds.series["b"]
    assert [len(x) for x in a.blocks[:2]] == [10, 10] and [len(x) for x in b.blocks[:2]] == [3, 3]
    timed = calls[2:]  # the two warm-up calls first
    assert timed[:10] == ["a"] * 10 and timed[10:13] == ["b"] * 3 and timed[13:16] == ["b"] * 3


def test_absolute_and_ratio_questions_in_one_session():
    m = Machine(5, **BUSY)
    questions = [Question("abs", "new", 100.0), Question("speedup", "new", 0.5, reference="base")]
    rounds = sample_rounds({"base": m.model(4.0), "new": m.model(1.0)}, SETTINGS, questions, clock=m.clock, cpu=m.cpu)
    assert [v.outcome for v in rounds.verdicts] == ["meets", "meets"]
    assert rounds.verdict("speedup").estimate == pytest.approx(0.25, rel=0.05)


def test_questions_must_name_measured_models_and_settings_are_checked():
    m = Machine(0)
    with pytest.raises(InputError, match="not measured"):
        sample_rounds({"a": m.model(1.0)}, SETTINGS, [Question("q", "b", 1.0)], clock=m.clock, cpu=m.cpu)
    with pytest.raises(InputError):
        ProfileSettings(min_rounds=1)
    with pytest.raises(InputError):
        ProfileSettings(max_duration_s=0.1, min_duration_s=1.0)


def oversubscribed_verdict(seed: int, cpu):
    """base 1 ms and new 4 ms (true ratio 4, limit 4.2) on a machine oversubscribed 70 % of the time,
    which makes the larger model's rounds 2x slower relative to the smaller one's while it lasts."""
    m = Machine(seed, cv=0.03, step_s=0.1, oversubscribed=0.5, busy_share=0.7)
    question = Question("q", "new", 4.2, reference="base")
    rounds = sample_rounds({"base": m.model(1.0), "new": m.model(4.0)}, SETTINGS, [question], clock=m.clock,
                           cpu=cpu(m))
    return rounds.verdict("q"), rounds


@pytest.mark.parametrize("seed", range(4))
def test_rounds_on_an_oversubscribed_cpu_are_set_aside(seed):
    verdict, rounds = oversubscribed_verdict(seed, lambda m: m.cpu)
    assert verdict.outcome == "meets" and verdict.estimate == pytest.approx(4.0, rel=0.05)
    assert 0 < verdict.set_aside == int((~rounds.clean()).sum())
    assert all(w > SETTINGS.max_cpu_wait for w, ok in zip(rounds.cpu_wait, rounds.clean()) if not ok)
    assert f"{verdict.set_aside} round" in verdict.message()
    assert "set aside: the measuring threads waited for a CPU" in verdict.message()


def test_a_measurement_s_free_samples_are_those_of_the_rounds_the_judge_counts():
    """One rule of which round ran on a free CPU: what an operator table is timed on
    (``Measurement.free_samples``) is what the verdicts judge (``Rounds.clean``); a measurement whose
    waits were not recorded keeps every round."""
    _, rounds = oversubscribed_verdict(0, lambda m: m.cpu)
    measurement = measurement_of(rounds, "new", 1, {}, SETTINGS)
    assert measurement.blocks() == rounds.series["new"].blocks
    counted = [s for block, ok in zip(rounds.series["new"].blocks, rounds.clean()) if ok for s in block]
    assert 0 < len(counted) < len(measurement.samples_ms)
    assert measurement.free_samples(SETTINGS.max_cpu_wait) == counted
    measurement.cpu_wait = []
    assert measurement.free_samples(SETTINGS.max_cpu_wait) == measurement.samples_ms


@pytest.mark.parametrize("seed", range(4))
def test_without_the_wait_reading_the_oversubscribed_rounds_mislead(seed):
    """What the setting-aside is for: the same machine judged on every round does not find 4x."""
    verdict, rounds = oversubscribed_verdict(seed, lambda m: (lambda: None))
    assert verdict.outcome != "meets" and verdict.set_aside == 0 and set(rounds.cpu_wait) == {None}


def test_a_machine_oversubscribed_throughout_is_undecided_and_says_so():
    m = Machine(0, cv=0.03, step_s=1e9, oversubscribed=0.5)
    m.now = 1e9  # inside the busy half of the cycle for the whole session
    question = Question("q", "new", 4.2, reference="base")
    rounds = sample_rounds({"base": m.model(1.0), "new": m.model(4.0)}, SETTINGS, [question], clock=m.clock, cpu=m.cpu)
    verdict = rounds.verdict("q")
    assert verdict.outcome == "undecided" and verdict.rounds == 0 and rounds.stop_reason == "max_duration"
    assert "no round ran on a free CPU" in verdict.message() and "oversubscribed" in verdict.message()


def test_max_cpu_wait_is_checked():
    with pytest.raises(InputError, match="max_cpu_wait"):
        ProfileSettings(max_cpu_wait=0.0)


def test_the_threads_wait_is_read_from_the_kernel_beside_real_competing_processes():
    """Linux schedstat, really: with twice as many spinning processes as cores, this process's
    thread waits for a CPU for a large share of its time (whatever the machine's speed)."""
    import os
    import subprocess
    import sys
    import time

    from spiralprune.deploy.sampling import cpu_times, wait_fraction

    if cpu_times() is None:
        pytest.skip("the kernel reports no per-thread schedstat here (not Linux)")
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        time.sleep(0.5)
        before = cpu_times()
        end = time.perf_counter() + 1.0
        while time.perf_counter() < end:
            pass
        after = cpu_times()
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert after[0] > before[0] and wait_fraction(before, after) > 0.3
