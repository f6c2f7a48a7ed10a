"""A task's quality metric as acceptance rules judge it: apart from the tasks, which import torch, so that
judging (``spiralprune.pipeline.acceptance``) imports none."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiralprune.core.errors import InputError


@dataclass(frozen=True)
class Metric:
    """A quality metric as rules judge it: its key in the metrics dicts, the factor that shows it (100:
    a fraction shown and budgeted in percent, the units ``max_drop`` points count), its unit and its
    direction (``spiralprune.pipeline.tasks.Task.quality`` gives a task's)."""

    name: str = "accuracy"
    scale: float = 100.0
    unit: str = "%"
    higher_is_better: bool = True

    def shown(self, metrics: Mapping[str, float] | None, rule: str, whose: str = "model") -> float:
        """The ``metrics``' value of this metric as shown, or one line saying it was not measured."""
        if metrics is None or self.name not in metrics:
            raise InputError(f"{rule} needs the {whose}'s {self.name}, which was not measured; pass --data")
        return self.scale * metrics[self.name]

    def worse_by(self, value: float, reference: float) -> float:
        """How much worse ``value`` is than ``reference`` (negative: better), in shown units."""
        return reference - value if self.higher_is_better else value - reference

    @property
    def bound(self) -> str:
        """The budget key that limits this metric's value: ``min``, or ``max`` when lower is better."""
        return "min" if self.higher_is_better else "max"

    @property
    def drop_unit(self) -> str:
        return "points" if self.unit == "%" else self.unit

    def worse_text(self, drop: float) -> str:
        """``1.20 points below`` (``0.05 above`` for a lower-is-better metric) a reference ``drop`` worse."""
        return " ".join(filter(None, (f"{drop:.2f}", self.drop_unit, "below" if self.higher_is_better else "above")))

    @property
    def label(self) -> str:
        """``accuracy %``, ``map``: a column's or an axis' name."""
        return f"{self.name} {self.unit}".strip()

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Metric:
        """A metric as a report records it (``dataclasses.asdict``), checked: a report is a file a user gives."""
        ok = (isinstance(d, dict) and sorted(d) == ["higher_is_better", "name", "scale", "unit"]
              and isinstance(d["name"], str) and isinstance(d["unit"], str) and isinstance(d["higher_is_better"], bool)
              and isinstance(d["scale"], (int, float)) and not isinstance(d["scale"], bool) and d["scale"] > 0)
        if not ok:
            raise InputError(f"{where}: malformed metric {str(d)[:80]!r} (it needs name, scale > 0, unit and "
                             "higher_is_better)")
        return cls(d["name"], float(d["scale"]), d["unit"], d["higher_is_better"])
