"""What a baseline or a history entry can be: a profile, a ``spiralprune gate`` report or a spiralprune run's report.

All three become a ``Release``: the latency profile of the model that shipped, its quality metrics and the
metric it was judged on when known, and its date when the file records one.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiralprune.core.errors import InputError
from spiralprune.deploy.profiler import Profile
from spiralprune.pipeline.run_folder import RUN_REPORT_KIND
from spiralprune.pipeline.tasks.metric import Metric

GATE_REPORT_KIND = "spiral-gate"


@dataclass(frozen=True)
class Release:
    label: str
    source: Path
    profile: Profile
    metrics: dict[str, Any] | None
    created: str | None
    # The task's metric its run or gate judged (None: a profile, or a gate report written before reports named
    # it, whose quality was top-1 accuracy).
    metric: Metric | None = None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from None


def _from_run_report(path: Path, data: dict) -> Release:
    """The run's best accepted step: the model a spiralprune run ships."""
    best = data.get("best")
    if not best:
        raise InputError(f"{path}: the spiralprune run accepted no step, so it has no model to compare against")
    metric = (data.get("budget") or {}).get("metric")  # a run report written before budgets named the metric has none
    profile_path = path.parent / best["dir"] / "profile.json"
    if not profile_path.is_file():
        raise InputError(f"{path}: the best step's profile {profile_path} is missing")
    return Release(
        label=f"{path.parent.name}/{best['dir']}",
        source=path,
        profile=Profile.load(profile_path),
        metrics=dict(best["metrics"]),
        created=data.get("created"),
        metric=None if metric is None else Metric.from_dict(metric, str(path)),
    )


def load_release(path: Path) -> Release:
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path} is neither a spiralprune profile nor a gate or run report")
    kind = data.get("kind")
    try:
        if kind == GATE_REPORT_KIND:
            profile = Profile.from_dict(data.get("profile"))
            metric = data.get("metric")
            return Release(path.stem, path, profile, data.get("metrics"), data.get("created"),
                           None if metric is None else Metric.from_dict(metric, str(path)))
        if kind == RUN_REPORT_KIND:
            return _from_run_report(path, data)
        if "measurements" in data:
            return Release(path.stem, path, Profile.from_dict(data), None, None)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise InputError(f"{path}: malformed {kind or 'profile'}: {exc}") from None
    raise InputError(f"{path} is neither a spiralprune profile nor a gate or run report (no 'kind' or 'measurements')")


def load_history(directory: Path) -> list[Release]:
    """Every ``*.json`` release in ``directory``, oldest first: by date when all have one, else by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"history directory not found: {directory}")
    releases = [load_release(p) for p in sorted(directory.glob("*.json"))]
    if not releases:
        raise InputError(f"{directory} holds no *.json profiles or reports")
    if all(r.created for r in releases):
        releases.sort(key=lambda r: (_timestamp(r), r.source.name))
    return releases


def _timestamp(release: Release) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(str(release.created))
    except ValueError:
        raise InputError(f"{release.source}: 'created' is not an ISO 8601 date: {release.created!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
