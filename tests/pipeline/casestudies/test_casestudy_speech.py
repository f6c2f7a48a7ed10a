"""Keywords spoken by Debian's espeak-ng, mixed with noise, as librosa log-mel features."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies import speech
from spiralprune.pipeline.casestudies.cache import read_manifest
from spiralprune.pipeline.casestudies.speech import (
    CLASSES,
    FRAMES,
    N_MELS,
    SAMPLE_RATE,
    TRAIN_VARIANTS,
    VAL_VARIANTS,
    build_keywords,
    clip_specs,
    colored_noise,
    load_feature_datasets,
    log_mel,
    synthesize,
)
from tests.pipeline.casestudies.debian import needs_espeak


def test_clip_specs_are_seeded_balanced_and_hold_out_validation_speakers() -> None:
    train = clip_specs("train", 3, seed=0)
    assert train == clip_specs("train", 3, seed=0) != clip_specs("train", 3, seed=1)
    assert np.bincount([s.label for s in train]).tolist() == [3] * len(CLASSES)
    val = clip_specs("val", 3, seed=0)
    assert {s.voice.split("+")[1] for s in train} <= set(TRAIN_VARIANTS)
    assert {s.voice.split("+")[1] for s in val} <= set(VAL_VARIANTS)
    assert not set(TRAIN_VARIANTS) & set(VAL_VARIANTS)
    assert all(s.text == "" for s in train if CLASSES[s.label] == "_silence_")
    assert all(s.text == CLASSES[s.label] for s in train if not CLASSES[s.label].startswith("_"))


def test_colored_noise_has_unit_rms_and_the_asked_spectral_slope() -> None:
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):
        noise = colored_noise(rng, SAMPLE_RATE, exponent)
        power = np.abs(np.fft.rfft(noise)) ** 2
        low, high = power[10:100].mean(), power[1000:8000].mean()
        assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-4)
        assert (low / high > 5) == (exponent > 0)


@needs_espeak
def test_every_voice_variant_exists_in_espeak_ng() -> None:
    listed = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    files = {line.split()[4].removeprefix("!v/") for line in listed.splitlines()[1:] if line.split()}
    assert set(TRAIN_VARIANTS + VAL_VARIANTS) <= files


@pytest.mark.slow
@needs_espeak
def test_synthesized_word_and_its_log_mel_features() -> None:
    audio = synthesize("stop", "en-us+m3", speed=160, pitch=50)
    assert audio.dtype == np.float32 and 0.2 * SAMPLE_RATE < len(audio) < 1.5 * SAMPLE_RATE
    assert np.abs(audio).max() > 0.05
    features = log_mel(np.resize(audio, SAMPLE_RATE))
    assert features.shape == (FRAMES, N_MELS) and np.isfinite(features).all()


@pytest.mark.slow
@needs_espeak
def test_build_is_deterministic_cached_and_standardised(tmp_path: Path) -> None:
    first = build_keywords(tmp_path / "a", train_per_class=2, val_per_class=1)
    second = build_keywords(tmp_path / "b", train_per_class=2, val_per_class=1)
    with np.load(first / "features.npz") as a, np.load(second / "features.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])
        assert np.abs(a["train_x"].mean(axis=(0, 1))).max() < 1e-4
    manifest = read_manifest(first)
    assert manifest["classes"] == list(CLASSES) and manifest["feature_timing"]["p50_ms"] > 0
    train, val = load_feature_datasets(first)
    assert (len(train), len(val)) == (2 * len(CLASSES), len(CLASSES))
    assert tuple(train[0][0].shape) == (FRAMES, N_MELS)
    stamp = (first / "features.npz").stat().st_mtime_ns
    build_keywords(tmp_path / "a", train_per_class=2, val_per_class=1)
    assert (first / "features.npz").stat().st_mtime_ns == stamp


def test_missing_synthesizer_is_one_clear_error(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "espeak-ng")
    with pytest.raises(InputError, match="install Debian's espeak-ng"):
        build_keywords(tmp_path / "out", espeak=missing)
    assert speech.main(["--out", str(tmp_path / "out"), "--espeak", missing]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "espeak-ng" in err
    assert not (tmp_path / "out").exists()
