"""Keyword spotting on words spoken by Debian's ``espeak-ng``, with background noise, as log-mel features.

Twelve classes as in Speech Commands: ten keywords, ``_silence_`` (noise only) and ``_unknown_`` (other
words). Every clip draws a speaker (an espeak-ng accent with a voice variant), a speed, a pitch, a
level, a position in the one-second window and a background noise (white, pink or brown, at 0-20 dB
SNR). The validation speakers use voice variants that no training clip uses.

Features: librosa's log-mel spectrogram (40 mel bands, 30 ms windows every 20 ms: 51 frames for a
second), then per-band standardisation with the training split's mean and deviation. They are computed
here, before the model: the ONNX model that the spiral times takes the features, not the waveform.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies.cache import DATA_DIR, cached_build, load_split_arrays
from spiralprune.pipeline.casestudies.cli import run_builder

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE, UNKNOWN = "_silence_", "_unknown_"
CLASSES = (*KEYWORDS, SILENCE, UNKNOWN)
OTHER_WORDS = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow", "zero", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "learn", "follow", "forward", "backward", "visual",
)
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3", "adam", "linda",
    "steph", "john", "robert", "iven", "quincy", "grandma", "whisper",
)
VAL_VARIANTS = ("m7", "f5", "klatt4", "aunty", "david", "travis")
SAMPLE_RATE = 16000
N_MELS = 40
WIN_LENGTH = 480  # 30 ms
HOP_LENGTH = 320  # 20 ms
N_FFT = 512
FRAMES = 1 + SAMPLE_RATE // HOP_LENGTH
SPEECH_DIR = DATA_DIR / "keywords"
SPLITS = ("train", "val")
_NOISE_EXPONENTS = (0.0, 1.0, 2.0)  # white, pink, brown: power falls as 1 / f**exponent


@dataclass(frozen=True)
class ClipSpec:
    """Everything that makes one clip, drawn from a seeded generator."""

    label: int
    text: str  # empty for _silence_
    voice: str
    speed: int
    pitch: int
    peak: float
    offset: float  # where the word starts, as a fraction of the free room in the window
    noise_exponent: float
    snr_db: float  # for _silence_: the noise level in dBFS instead


def clip_specs(split: str, per_class: int, seed: int) -> list[ClipSpec]:
    variants = TRAIN_VARIANTS if split == "train" else VAL_VARIANTS
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    specs = []
    for label, name in enumerate(CLASSES):
        for _ in range(per_class):
            text = "" if name == SILENCE else str(rng.choice(OTHER_WORDS)) if name == UNKNOWN else name
            specs.append(
                ClipSpec(
                    label=label,
                    text=text,
                    voice=f"{rng.choice(ACCENTS)}+{rng.choice(variants)}",
                    speed=int(rng.integers(120, 221)),
                    pitch=int(rng.integers(20, 81)),
                    peak=float(rng.uniform(0.2, 0.9)),
                    offset=float(rng.uniform()),
                    noise_exponent=float(rng.choice(_NOISE_EXPONENTS)),
                    snr_db=float(rng.uniform(0, 20)) if text else float(rng.uniform(-60, -25)),
                )
            )
    return specs


def find_espeak(espeak: str) -> str:
    found = shutil.which(espeak)
    if found is None:
        raise InputError(f"speech synthesizer '{espeak}' not found: install Debian's espeak-ng (make case-deps)")
    return found


def synthesize(text: str, voice: str, speed: int, pitch: int, espeak: str = "espeak-ng") -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 samples at ``SAMPLE_RATE``."""
    import librosa

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        result = subprocess.run(
            [espeak, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0 or not path.is_file():
            raise InputError(f"{espeak} failed for voice {voice}: {result.stderr.strip() or result.returncode}")
        with wave.open(str(path)) as wav:
            rate = wav.getframerate()
            samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    audio = samples.astype(np.float32) / 32768.0
    return librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE, res_type="soxr_hq").astype(np.float32)


def colored_noise(rng: np.random.Generator, length: int, exponent: float) -> np.ndarray:
    """Unit-RMS Gaussian noise whose power spectrum falls as ``1 / f**exponent``."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.fft.rfftfreq(length)
    frequencies[0] = frequencies[1]
    noise = np.fft.irfft(spectrum / frequencies ** (exponent / 2), length)
    return (noise / np.sqrt(np.mean(noise**2))).astype(np.float32)


def render(spec: ClipSpec, speech: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """One second: the trimmed word at its level and position, plus background noise."""
    import librosa

    clip = np.zeros(SAMPLE_RATE, dtype=np.float32)
    noise = colored_noise(rng, SAMPLE_RATE, spec.noise_exponent)
    if not spec.text:
        return noise * 10 ** (spec.snr_db / 20)
    word, _ = librosa.effects.trim(speech, top_db=40)
    word = word[:SAMPLE_RATE] * (spec.peak / max(float(np.abs(word).max()), 1e-6))
    start = int(spec.offset * (SAMPLE_RATE - len(word)))
    clip[start : start + len(word)] = word
    rms = float(np.sqrt(np.mean(word**2)))
    return np.clip(clip + noise * rms * 10 ** (-spec.snr_db / 20), -1.0, 1.0)


def log_mel(clip: np.ndarray) -> np.ndarray:
    """``[FRAMES, N_MELS]`` log-mel power (dB) of one second of audio at ``SAMPLE_RATE``."""
    import librosa

    mel = librosa.feature.melspectrogram(
        y=clip, sr=SAMPLE_RATE, n_fft=N_FFT, win_length=WIN_LENGTH, hop_length=HOP_LENGTH, n_mels=N_MELS,
        fmin=20.0, fmax=7600.0,
    )
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)


def _clips(specs: list[ClipSpec], espeak: str, seed: int, split: str, workers: int) -> list[np.ndarray]:
    words = sorted({(s.text, s.voice, s.speed, s.pitch) for s in specs if s.text})
    with ThreadPoolExecutor(max_workers=workers) as pool:
        speech = dict(zip(words, pool.map(lambda w: synthesize(*w, espeak=espeak), words)))
    clips = []
    for index, spec in enumerate(specs):
        rng = np.random.default_rng([seed, SPLITS.index(split), index])
        clips.append(render(spec, speech.get((spec.text, spec.voice, spec.speed, spec.pitch)), rng))
    return clips


def _feature_timing(clips: list[np.ndarray]) -> dict:
    """Per-clip log-mel time (ms) in this process, after one warm-up call."""
    log_mel(clips[0])
    times = []
    for clip in clips:
        started = time.perf_counter()
        log_mel(clip)
        times.append(1e3 * (time.perf_counter() - started))
    return {"clips": len(times), "p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}


def build_keywords(
    out: Path = SPEECH_DIR,
    *,
    espeak: str = "espeak-ng",
    train_per_class: int = 250,
    val_per_class: int = 50,
    seed: int = 0,
    workers: int = 2,
) -> Path:
    """Write (or reuse) ``out/features.npz``: standardised log-mel features and labels for train and val."""
    binary = find_espeak(espeak)
    try:
        import librosa  # noqa: F401
    except ImportError:
        raise InputError("librosa is not installed: pip install 'spiralprune[examples]'") from None

    def build(work: Path) -> dict:
        started = time.perf_counter()
        splits = {}
        for split, per_class in zip(SPLITS, (train_per_class, val_per_class)):
            specs = clip_specs(split, per_class, seed)
            clips = _clips(specs, binary, seed, split, workers)
            splits[split] = (clips, np.stack([log_mel(c) for c in clips]), np.array([s.label for s in specs]))
        mean = splits["train"][1].mean(axis=(0, 1))
        std = splits["train"][1].std(axis=(0, 1)) + 1e-5
        np.savez(
            work / "features.npz",
            mean=mean,
            std=std,
            **{f"{s}_x": ((f - mean) / std).astype(np.float32) for s, (_, f, _) in splits.items()},
            **{f"{s}_y": y.astype(np.int64) for s, (_, _, y) in splits.items()},
        )
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()
        return {
            "classes": list(CLASSES),
            "clips_per_class": {"train": train_per_class, "val": val_per_class},
            "synthesizer": version,
            "build_seconds": round(time.perf_counter() - started, 1),
            "feature_timing": _feature_timing(splits["val"][0][:200]),
        }

    key = {"espeak": espeak, "train_per_class": train_per_class, "val_per_class": val_per_class, "seed": seed}
    return cached_build(out, key, build)


def load_feature_datasets(directory: Path) -> tuple[TensorDataset, TensorDataset]:
    return load_split_arrays(directory / "features.npz")


def keyword_datasets() -> tuple[TensorDataset, TensorDataset]:
    """The ``data.source`` factory of examples/speech: builds ``runs/data/keywords`` on first use."""
    return load_feature_datasets(build_keywords())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiralprune.pipeline.casestudies.speech", description=__doc__)
    parser.add_argument("--out", type=Path, default=SPEECH_DIR, help=f"output folder (default {SPEECH_DIR})")
    parser.add_argument("--espeak", default="espeak-ng", help="espeak-ng binary")
    parser.add_argument("--train-per-class", type=int, default=250)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    return run_builder(
        parser,
        lambda a: build_keywords(
            a.out, espeak=a.espeak, train_per_class=a.train_per_class, val_per_class=a.val_per_class, seed=a.seed
        ),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
