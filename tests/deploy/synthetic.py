"""Synthetic runners of known latency distributions on a simulated clock: timing logic tested
without depending on how fast (or how busy) this machine is today."""

from __future__ import annotations

import math

import numpy as np


class Machine:
    """A simulated clock and a machine state shared by every model on it.

    Each call of a model costs ``base_ms`` x the machine's slowdown at that moment x lognormal
    noise (``cv``), and with probability ``outlier_p`` x10 (a preempted call). The slowdown drifts
    slowly (``drift``: amplitude of a sine over ``period_s`` seconds) and jumps by ``steps`` (a
    competing process starting and stopping every ``step_s`` seconds): what moves between two
    profiles taken apart, and what a paired round cancels.
    """

    def __init__(self, seed: int = 0, *, cv: float = 0.05, drift: float = 0.0, period_s: float = 3.0,
                 step: float = 0.0, step_s: float = 0.7, outlier_p: float = 0.0) -> None:
        self.now = 0.0
        self.rng = np.random.default_rng(seed)
        self.cv, self.drift, self.period_s, self.step, self.step_s, self.outlier_p = cv, drift, period_s, step, step_s, outlier_p

    def clock(self) -> float:
        return self.now

    def slowdown(self) -> float:
        wave = 1 + self.drift * math.sin(2 * math.pi * self.now / self.period_s)
        busy = self.step if int(self.now / self.step_s) % 2 else 0.0
        return wave * (1 + busy)

    def model(self, base_ms: float):
        sigma = math.sqrt(math.log(1 + self.cv**2))

        def call() -> float:
            ms = base_ms * self.slowdown() * self.rng.lognormal(-sigma**2 / 2, sigma)
            if self.rng.random() < self.outlier_p:
                ms *= 10
            self.now += ms / 1e3
            return ms / 1e3

        return call
