"""The backend interface, after Polygraphy: a lazy loader that builds, and a runner that runs.

``Backend(model_path, ...).load()`` does the expensive part (parse, optimize, build an engine,
compile) and returns a ``Runner``; ``with runner:`` acquires per-run resources; ``infer`` runs
once and ``last_inference_time`` says how long the compute of that run took.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import LayerProfile

InputMetadata = dict[str, tuple[list[int | str | None], np.dtype]]


class Runner(ABC):
    """Runs one loaded model. ``settings`` records the facts a measurement depends on."""

    settings: dict[str, Any]

    def __init__(self) -> None:
        self.settings = {}
        self.is_active = False

    def activate(self) -> None:
        self.is_active = True

    def deactivate(self) -> None:
        self.is_active = False

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.deactivate()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on ``feed`` (input name -> array); returns output name -> array."""
        if not self.is_active:
            raise RuntimeError(f"{type(self).__name__}.infer called before activate()")
        return self._infer(feed)

    @abstractmethod
    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def last_inference_time(self) -> float:
        """Seconds spent in the compute of the last ``infer`` call."""

    @abstractmethod
    def input_metadata(self) -> InputMetadata:
        """Input name -> (shape, dtype); a dynamic dimension is its symbolic name or None."""

    def fixed_batch(self) -> int | None:
        """The batch the model's first input is fixed at; None where its batch axis is dynamic."""
        shape, _ = next(iter(self.input_metadata().values()))
        return shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else None

    def infer_filled(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``infer`` on a batch of any size up to the one the model is fixed at (``fixed_batch``), so that
        every sample of a data set of any size runs once: a smaller batch is filled with copies of its last
        sample and their outputs are dropped, which needs outputs with the batch first (an InputError
        otherwise). A model with a dynamic batch runs the batch as it is."""
        fixed = self.fixed_batch()
        count = len(next(iter(feed.values())))
        if fixed is None or count >= fixed:
            return self.infer(feed)
        outputs = self.infer({name: np.concatenate([value, np.repeat(value[-1:], fixed - count, axis=0)])
                              for name, value in feed.items()})
        if any(value.ndim == 0 or len(value) != fixed for value in outputs.values()):
            raise InputError(f"the model's batch is fixed at {fixed} and its outputs do not have the batch first, "
                             f"so a batch of {count} cannot be filled with copies and run; give a multiple of "
                             f"{fixed} samples or export with a dynamic batch")
        return {name: value[:count] for name, value in outputs.items()}


@dataclass
class Trace:
    """Latencies that an external benchmark tool measured in one run, and its layers' profile when asked."""

    samples_ms: list[float]
    warmup_iterations: int
    warmup_s: float
    layers: LayerProfile | None = None


class TraceRunner(Runner):
    """A runner whose tool times many iterations itself (``trtexec``): the profiler asks it for a
    trace instead of timing ``infer`` calls."""

    @abstractmethod
    def trace(self, feed: dict[str, np.ndarray], *, warmup_s: float, duration_s: float, iterations: int,
              layers: bool = False) -> Trace:
        """Run the tool on ``feed`` (its arrays, at their shapes) for at least ``duration_s`` and ``iterations``;
        with ``layers``, profile its layers too, apart from the timed iterations."""


class Backend(ABC):
    """A named, lazily imported loader: ``load()`` builds (or reuses from ``cache_dir``) a runner."""

    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    option_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model_path: Path,
        *,
        threads: int | None = None,
        precision: str = "fp32",
        cache_dir: Path | None = None,
        **options: Any,
    ) -> None:
        if precision not in self.precisions:
            raise InputError(
                f"backend '{self.name}' does not take precision '{precision}'; "
                f"choose one of {', '.join(self.precisions)}"
            )
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            known = ", ".join(self.option_names) or "none"
            raise InputError(f"backend '{self.name}' has no option {', '.join(unknown)}; it takes: {known}")
        if threads is not None and threads < 1:
            raise InputError(f"threads must be a positive integer, got {threads}")
        self.model_path = Path(model_path)
        self.threads = threads
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.options = options

    @classmethod
    @abstractmethod
    def availability(cls) -> tuple[bool, str]:
        """(True, "") when usable here, else (False, the precise reason)."""

    @abstractmethod
    def load(self) -> Runner:
        """Build or compile the model and return an un-activated runner."""

    def require_available(self) -> None:
        ok, reason = self.availability()
        if not ok:
            raise InputError(f"backend '{self.name}' is unavailable: {reason}")

    def require_model_file(self) -> None:
        if not self.model_path.is_file():
            raise InputError(f"model file not found: {self.model_path}")
