"""The profiler on a real ONNX Runtime session: what a profile records (schema, rounds, fingerprint).

No test here asserts how fast this machine is: the sampler's stop rules and the judge are tested on
a simulated machine in test_sampling.py and test_verdict.py."""

import hashlib
import json

import numpy as np
import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.inputs import make_inputs
from spiralprune.deploy.profiler import (
    SCHEMA_VERSION, MeasuringSession, Profile, ProfileSettings, Target, profile_model, profile_paired,
)
from spiralprune.deploy.verdict import Question

FAST = ProfileSettings(warmup_s=0.05, block_s=0.01, min_rounds=5, min_duration_s=0.1, max_duration_s=1.0)


@pytest.fixture(scope="module")
def profile(tiny_onnx):
    return profile_model(tiny_onnx, "ort-cpu", batch_sizes=(1, 4), threads=1, settings=FAST)


def test_profile_measures_each_batch_in_rounds_with_the_settings_it_was_given(profile, tiny_onnx):
    assert profile.schema_version == SCHEMA_VERSION and profile.backend == "ort-cpu"
    assert [m.batch for m in profile.measurements] == [1, 4]
    assert profile.runner_settings["threads"] == 1 and profile.fingerprint["threads"] == 1
    assert profile.settings["min_rounds"] == 5 and profile.settings["inputs"] == "random"
    assert len(profile.model_sha256) == 64
    for m in profile.measurements:
        assert m.input_shapes == {"input": [m.batch, 3, 16, 16]}
        assert m.warmup_iterations >= 1 and m.warmup_s >= FAST.warmup_s
        assert len(m.round_sizes) >= FAST.min_rounds and sum(m.round_sizes) == len(m.samples_ms)
        assert min(m.round_sizes) >= FAST.block_calls
        assert len(m.rounds("p50")) == len(m.round_sizes)
        assert m.stop_reason in ("ci_converged", "max_duration")
        assert m.stats["min"] <= m.stats["p50"] <= m.stats["p99"] <= m.stats["max"]
        assert m.stable == (m.stats["robust_cv"] <= FAST.cv_threshold)
        assert m.throughput_per_s == pytest.approx(m.batch * 1e3 / m.stats["mean"])
    assert profile.stat() == profile.measurements[0].stats["p50"]


def test_paired_models_share_rounds_and_answer_the_questions(tiny_onnx):
    questions = [Question("ratio", "b", 100.0, reference="a"), Question("absolute", "a", 1e5)]
    paired = profile_paired({"a": tiny_onnx, "b": tiny_onnx}, Target(threads=1), FAST, questions)
    a, b = (paired.profiles[name].measurement() for name in ("a", "b"))
    assert len(a.round_sizes) == len(b.round_sizes) >= FAST.min_rounds
    assert paired.profiles["a"].fingerprint == paired.profiles["b"].fingerprint
    assert [v.question.name for v in paired.verdicts] == ["ratio", "absolute"]
    ratio = paired.verdict("ratio")
    assert ratio.rounds + ratio.set_aside == len(a.round_sizes) == len(a.cpu_wait)
    assert paired.rounds.stop_reason in ("decided", "max_duration")


def test_throughput_mode_times_whole_calls(tiny_onnx):
    settings = ProfileSettings(**{**FAST.__dict__, "throughput": True})
    p = profile_model(tiny_onnx, batch_sizes=(2,), threads=1, settings=settings)
    assert p.settings["throughput"] is True
    assert p.stat("throughput_per_s") == pytest.approx(2e3 / p.stat("mean"))


def test_save_load_round_trip_is_atomic(profile, tmp_path):
    path = tmp_path / "sub" / "profile.json"
    profile.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["profile.json"]
    loaded = Profile.load(path)
    assert loaded == profile
    assert json.loads(path.read_text())["measurements"][1]["samples_ms"] == profile.measurements[1].samples_ms


def test_load_rejects_what_is_not_a_profile(profile, tmp_path):
    bad = tmp_path / "x.json"
    for content, message in [
        ("{not json", "cannot read profile"),
        ("[1, 2]", "not a spiralprune profile"),
        (json.dumps({**profile.to_dict(), "schema_version": 99}), "schema_version 99 is not supported"),
        (json.dumps({**profile.to_dict(), "measurements": [{"batch": 1}]}), "malformed profile"),
    ]:
        bad.write_text(content)
        with pytest.raises(InputError, match=message):
            Profile.load(bad)
    with pytest.raises(InputError, match="cannot read profile"):
        Profile.load(tmp_path / "missing.json")


def test_stat_errors_name_what_exists(profile):
    with pytest.raises(InputError, match="no batch 3; it has batch 1, 4"):
        profile.stat("p50", batch=3)
    with pytest.raises(InputError, match="unknown statistic 'p42'"):
        profile.stat("p42")


def test_static_batch_model_refuses_another_batch(static_onnx):
    with pytest.raises(InputError, match="static batch of 1; it cannot run at batch 4"):
        profile_model(static_onnx, batch_sizes=(4,), settings=FAST)


def test_make_inputs_random_is_seeded_and_typed():
    meta = {
        "input": (["batch", 3, 4, 4], np.dtype(np.float32)),
        "ids": ([None, 7], np.dtype(np.int64)),
        "mask": (["b", 7], np.dtype(np.bool_)),
    }
    a, b = make_inputs(meta, 3, seed=5), make_inputs(meta, 3, seed=5)
    assert a["input"].shape == (3, 3, 4, 4) and a["input"].dtype == np.float32
    assert a["ids"].dtype == np.int64 and set(np.unique(a["ids"])) <= {0, 1}
    assert a["mask"].dtype == np.bool_
    for k in meta:
        np.testing.assert_array_equal(a[k], b[k])


def test_make_inputs_cycles_given_arrays_to_the_batch():
    meta = {"input": (["batch", 2], np.dtype(np.float32))}
    given = {"input": np.array([[1, 1], [2, 2]], np.float64)}
    out = make_inputs(meta, 3, given=given)["input"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1, 1], [2, 2], [1, 1]])
    with pytest.raises(InputError, match="missing \\['input'\\]"):
        make_inputs(meta, 1, given={"x": given["input"]})
    with pytest.raises(InputError, match="shape \\[2, 3\\]"):
        make_inputs(meta, 1, given={"input": np.zeros((2, 3))})


def test_only_the_batch_may_be_dynamic():
    with pytest.raises(InputError, match="dynamic dimensions \\['seq'\\]"):
        make_inputs({"ids": (["batch", "seq"], np.dtype(np.int64))}, 1)


@pytest.mark.parametrize(
    "kwargs", [{"min_rounds": 1}, {"block_calls": 0}, {"warmup_s": -1.0}, {"max_duration_s": 0.1, "min_duration_s": 0.5}]
)
def test_invalid_settings_are_input_errors(kwargs):
    with pytest.raises(InputError):
        ProfileSettings(**kwargs)


def test_bad_batch_sizes_and_unknown_backend(tiny_onnx):
    with pytest.raises(InputError, match="positive"):
        profile_model(tiny_onnx, batch_sizes=(0,))
    with pytest.raises(InputError, match="unknown backend"):
        profile_model(tiny_onnx, "nope")



def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_closed_session_evicts_all_but_the_compiled_files_of_the_models_it_keeps(tiny_onnx, export_tiny, tmp_path):
    """A try's pattern on real ONNX Runtime: the teacher and the current model beside candidates written in turn to
    one path. Once the session is closed, only the kept models' compiled files stay (each backend reports the key it
    ran from), counted in ``compiles``; a later session (the next try, a resumed run) reuses them and evicts what a
    killed session left."""
    cache, candidate, current = tmp_path / "compiled", tmp_path / "candidate.onnx", tmp_path / "current.onnx"
    export_tiny(current, 12)
    models = {"candidate": candidate, "teacher": tiny_onnx, "current": current}
    with MeasuringSession(Target(threads=1), cache) as session:
        for channels in (4, 6):
            export_tiny(candidate, channels)
            session.paired(models, FAST)
        with pytest.raises(RuntimeError, match="close the session first"):
            session.evict(keep=("teacher",))
    assert len(list(cache.glob("*.onnx"))) == 4 and set(session.engine_keys) == set(models)
    kept = {session.engine_keys["teacher"], session.engine_keys["current"]}
    evicted = session.evict(keep=("teacher", "current"))
    assert evicted.files == 4 and evicted.bytes > 0  # two candidates' graphs and facts
    assert {p.name for p in cache.iterdir()} == {f"{key}{suffix}" for key in kept for suffix in (".onnx", ".json")}
    assert session.compiles == {"built": 4, "from_cache": 0, "kept": 2, **evicted.record()}
    # The next try: the kept ones are reused; a session killed before it evicted leaves its candidate behind.
    export_tiny(candidate, 5)
    with MeasuringSession(Target(threads=1), cache) as killed:
        killed.paired(models, FAST)
    assert killed.compiles == {"built": 1, "from_cache": 2, "kept": 0}
    with MeasuringSession(Target(threads=1), cache) as resumed:  # measures the same plan again: nothing is built
        resumed.paired(models, FAST)
    resumed.evict(keep=("teacher",))  # the try was accepted: the current model is not measured again
    assert resumed.compiles == {"built": 0, "from_cache": 3, "kept": 0, "evicted": 4,
                                "evicted_mb": resumed.compiles["evicted_mb"]}
    assert {p.name for p in cache.iterdir()} == {f"{session.engine_keys['teacher']}{s}" for s in (".onnx", ".json")}


def test_a_session_loads_the_reference_once_across_measurements(tiny_onnx, export_tiny, tmp_path):
    """A step's pattern: candidates of different content written in turn to one path, each measured beside
    the same reference. The reference is loaded (and compiled) once; every measurement still warms it up
    and rounds it with the candidate. A later session reuses the compiled files from the cache."""
    cache, path = tmp_path / "compiled", tmp_path / "candidate.onnx"
    question = Question("ratio", "candidate", 100.0, reference="reference")
    with MeasuringSession(Target(threads=1), cache) as session:
        for channels in (4, 6, 12):
            export_tiny(path, channels)
            paired = session.paired({"candidate": path, "reference": tiny_onnx}, FAST, [question])
            reference = paired.profiles["reference"].measurement()
            assert reference.warmup_iterations >= 1 and len(reference.round_sizes) >= FAST.min_rounds
            assert len(paired.profiles["candidate"].measurement().round_sizes) == len(reference.round_sizes)
            assert paired.verdict("ratio").rounds + paired.verdict("ratio").set_aside == len(reference.round_sizes)
            # what the profiles record of each file is read when it is loaded and kept with it
            assert [paired.profiles[n].model_sha256 for n in ("candidate", "reference")] == [sha256(path),
                                                                                             sha256(tiny_onnx)]
            assert paired.profiles["reference"].settings["data_dependent_ops"] == []
        assert session.compiles == {"built": 4, "from_cache": 0, "kept": 2}
    with MeasuringSession(Target(threads=1), cache) as later:  # a later step, or a resumed run
        later.paired({"candidate": path, "reference": tiny_onnx}, FAST)
        assert later.compiles == {"built": 0, "from_cache": 2, "kept": 0}
        export_tiny(path, 5)  # a changed file under the same name is another model
        changed = later.paired({"candidate": path, "reference": tiny_onnx}, FAST)
        assert later.compiles == {"built": 1, "from_cache": 2, "kept": 1}
        assert changed.profiles["candidate"].model_sha256 == sha256(path)
    with MeasuringSession(Target(threads=2), cache) as other:  # other settings build their own
        other.paired({"reference": tiny_onnx}, FAST)
        assert other.compiles == {"built": 1, "from_cache": 0, "kept": 0}
