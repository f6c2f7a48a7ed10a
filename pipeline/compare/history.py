"""The trend of each latency statistic over past releases, and the newest release against the one before."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.errors import InputError
from pipeline.compare.profiles import ProfileComparison, compare_profiles
from pipeline.compare.releases import Release
from pipeline.compare.stats import COMPARED_STATS, CompareSettings


@dataclass(frozen=True)
class History:
    releases: list[Release]
    batch: int
    latest: ProfileComparison | None

    def series(self) -> dict[str, list[float]]:
        """Statistic name -> its value in each release, oldest first."""
        return {name: [r.profile.stat(name, self.batch) for r in self.releases] for name in COMPARED_STATS}

    def accuracy(self) -> list[float | None]:
        """Top-1 accuracy in percent of each release, None where the file does not record it."""
        return [100 * r.metrics["accuracy"] if r.metrics and "accuracy" in r.metrics else None for r in self.releases]

    @property
    def exit_code(self) -> int:
        return self.latest.exit_code if self.latest else 0

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "releases": [
                {"label": r.label, "source": str(r.source), "created": r.created, "accuracy_pct": acc,
                 **{name: r.profile.stat(name, self.batch) for name in COMPARED_STATS}}
                for r, acc in zip(self.releases, self.accuracy())
            ],
            "latest": self.latest.to_dict() if self.latest else None,
        }


def build_history(
    releases: list[Release], settings: CompareSettings, *, statistic: str = "p50", batch: int | None = None
) -> History:
    """``batch`` defaults to the newest release's first batch size; every release must have it."""
    newest = releases[-1]
    batch = newest.profile.measurement(batch).batch
    for r in releases:
        if batch not in (m.batch for m in r.profile.measurements):
            raise InputError(f"{r.source} has no measurement at batch {batch}; pass --batch to choose another")
    latest = None
    if len(releases) > 1:
        latest = compare_profiles(releases[-2].profile, newest.profile, settings, statistic=statistic, batch=batch)
    return History(releases, batch, latest)
