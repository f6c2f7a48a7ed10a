"""The trend of each latency statistic over past releases, and the newest release against the one before."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from spiralprune.core.errors import InputError
from spiralprune.deploy.budget import LatencyBudget
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.verdict import STATISTICS
from spiralprune.pipeline.compare.profiles import (
    REGRESSION_BUDGET, ProfileComparison, compare_runs, fingerprint_differences,
)
from spiralprune.pipeline.compare.releases import Release
from spiralprune.pipeline.tasks.metric import Metric
from spiralprune.pipeline.exit_codes import ExitCode


@dataclass(frozen=True)
class History:
    releases: list[Release]
    batch: int
    latest: ProfileComparison | None
    # Why the newest two releases were not compared (measured on different targets), else "".
    not_compared: str = ""

    def series(self) -> dict[str, list[float]]:
        """Statistic name -> its value in each release, oldest first."""
        return {name: [r.profile.stat(name, self.batch) for r in self.releases] for name in STATISTICS}

    @property
    def metric(self) -> Metric:
        """The quality metric of the trend: the newest release's that names one (older files: top-1 accuracy)."""
        return next((r.metric for r in reversed(self.releases) if r.metric is not None), Metric())

    def quality(self) -> list[float | None]:
        """Each release's value of ``metric``, as shown (percent for a fraction), None where its file does not
        record it (a profile; a release judged on another metric)."""
        m = self.metric
        return [m.scale * r.metrics[m.name] if r.metrics and isinstance(r.metrics.get(m.name), (int, float))
                and r.metric in (None, m) else None for r in self.releases]

    @property
    def exit_code(self) -> ExitCode:
        """The newest comparison's; undecided when the newest two could not be compared (never a pass)."""
        if self.not_compared:
            return ExitCode.UNDECIDED
        return self.latest.exit_code if self.latest else ExitCode.OK

    def to_dict(self) -> dict:
        return {
            "batch": self.batch,
            "metric": asdict(self.metric),
            "releases": [
                {"label": r.label, "source": str(r.source), "created": r.created, "quality": quality,
                 **{name: r.profile.stat(name, self.batch) for name in STATISTICS}}
                for r, quality in zip(self.releases, self.quality())
            ],
            "latest": self.latest.to_dict() if self.latest else None,
            "not_compared": self.not_compared or None,
        }


def build_history(releases: list[Release], budget: LatencyBudget = REGRESSION_BUDGET,
                  settings: ProfileSettings = ProfileSettings(), *, batch: int | None = None) -> History:
    """``batch`` defaults to the newest release's first batch size; every release must have it.

    The trend is drawn whatever measured each release; the newest release is judged against the one
    before only when both were measured on the same target (see ``spiralprune.pipeline.compare.profiles``).
    """
    newest = releases[-1]
    batch = newest.profile.measurement(batch).batch
    for r in releases:
        if batch not in (m.batch for m in r.profile.measurements):
            raise InputError(f"{r.source} has no measurement at batch {batch}; pass --batch to choose another")
    if len(releases) < 2:
        return History(releases, batch, None)
    previous = releases[-2]
    differences = fingerprint_differences(previous.profile, newest.profile)
    if differences:
        why = (f"not compared: {previous.label} and {newest.label} were measured on different targets "
               f"({'; '.join(differences)}); re-measure both paired with spiralprune compare BASE.onnx NEW.onnx")
        return History(releases, batch, None, why)
    return History(releases, batch, compare_runs(previous.profile, newest.profile, budget, settings, batches=[batch]))
