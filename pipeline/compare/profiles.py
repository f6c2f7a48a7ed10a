"""Two latency profiles compared batch by batch; one statistic decides the verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from deploy.errors import InputError
from deploy.profiler import Profile
from pipeline.compare.stats import COMPARED_STATS, CompareSettings, SampleComparison, StatComparison, Verdict, compare_samples

# Fingerprint facts that change latency: comparing across them compares machines, not models.
_FINGERPRINT_KEYS = ("backend", "cpu", "threads", "precision", "gpu")
# A regression outranks an inconclusive batch, which outranks any pass.
_SEVERITY: dict[str, int] = {"regression": 3, "inconclusive": 2, "improvement": 1, "no change": 0}


@dataclass(frozen=True)
class ProfileComparison:
    statistic: str
    settings: CompareSettings
    batches: dict[int, SampleComparison]
    warnings: tuple[str, ...]

    def deciding(self) -> dict[int, StatComparison]:
        return {batch: c.stat(self.statistic) for batch, c in self.batches.items()}

    @property
    def verdict(self) -> Verdict:
        return max((s.verdict for s in self.deciding().values()), key=_SEVERITY.__getitem__)

    @property
    def exit_code(self) -> int:
        """0 when no regression was found; 1 for a regression or an inconclusive (never a pass)."""
        return 1 if self.verdict in ("regression", "inconclusive") else 0

    def to_dict(self) -> dict:
        return {
            "statistic": self.statistic,
            "verdict": self.verdict,
            "settings": asdict(self.settings),
            "warnings": list(self.warnings),
            "batches": {str(batch): c.to_dict() for batch, c in self.batches.items()},
        }


def fingerprint_differences(base: Profile, new: Profile) -> tuple[str, ...]:
    notes = []
    for key in _FINGERPRINT_KEYS:
        a, b = base.fingerprint.get(key), new.fingerprint.get(key)
        if a != b:
            notes.append(f"measured on a different {key}: baseline {a!r}, new {b!r}")
    return tuple(notes)


def compare_profiles(
    base: Profile,
    new: Profile,
    settings: CompareSettings = CompareSettings(),
    *,
    statistic: str = "p50",
    batch: int | None = None,
) -> ProfileComparison:
    """Compare every batch size both profiles measured (or only ``batch``)."""
    if statistic not in COMPARED_STATS:
        raise InputError(f"unknown statistic '{statistic}'; choose one of {', '.join(COMPARED_STATS)}")
    base_batches = {m.batch: m for m in base.measurements}
    new_batches = {m.batch: m for m in new.measurements}
    common = sorted(set(base_batches) & set(new_batches))
    if batch is not None:
        common = [b for b in common if b == batch]
    if not common:
        wanted = f"batch {batch}" if batch is not None else "batch size"
        raise InputError(
            f"the profiles share no {wanted}: baseline has batch {sorted(base_batches)}, new has {sorted(new_batches)}"
        )
    batches = {
        b: compare_samples(base_batches[b].samples_ms, new_batches[b].samples_ms, settings) for b in common
    }
    return ProfileComparison(statistic, settings, batches, fingerprint_differences(base, new))
