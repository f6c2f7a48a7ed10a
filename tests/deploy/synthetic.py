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
    competing process starting and stopping every ``step_s`` seconds, or running ``busy_share`` of
    each cycle): what moves between two
    profiles taken apart, and what a paired round cancels.

    ``oversubscribed`` models a CPU with more runnable threads than cores while the competing
    process runs: a call then also waits ``oversubscribed`` x its own ms at every parallel section,
    so a model of ``base_ms`` costs ``1 + oversubscribed x base_ms`` times more (larger models more:
    no common factor), and the threads report half their time waiting for a CPU (``cpu``).
    """

    def __init__(self, seed: int = 0, *, cv: float = 0.05, drift: float = 0.0, period_s: float = 3.0,
                 step: float = 0.0, step_s: float = 0.7, outlier_p: float = 0.0, oversubscribed: float = 0.0,
                 busy_share: float = 0.5) -> None:
        self.now = 0.0
        self.rng = np.random.default_rng(seed)
        self.cv, self.drift, self.period_s, self.step, self.step_s, self.outlier_p = cv, drift, period_s, step, step_s, outlier_p
        self.oversubscribed, self.busy_share = oversubscribed, busy_share
        self.run_ns = self.wait_ns = 0

    def clock(self) -> float:
        return self.now

    def busy(self) -> bool:
        """The competing process runs ``busy_share`` of every cycle of ``2 x step_s`` seconds."""
        cycle = 2 * self.step_s
        return self.now % cycle >= cycle * (1 - self.busy_share)

    def cpu(self) -> tuple[int, int]:
        """The threads' run and run-queue wait nanoseconds so far, as ``spiralprune.deploy.sampling.cpu_times``."""
        return self.run_ns, self.wait_ns

    def slowdown(self) -> float:
        wave = 1 + self.drift * math.sin(2 * math.pi * self.now / self.period_s)
        busy = self.step if self.busy() else 0.0
        return wave * (1 + busy)

    def model(self, base_ms: float):
        sigma = math.sqrt(math.log(1 + self.cv**2))

        def call() -> float:
            ms = base_ms * self.slowdown() * self.rng.lognormal(-sigma**2 / 2, sigma)
            if self.rng.random() < self.outlier_p:
                ms *= 10
            waiting = self.oversubscribed > 0 and self.busy()
            if waiting:
                ms *= 1 + self.oversubscribed * base_ms
            self.run_ns += int(ms * 1e6 * (0.5 if waiting else 1.0))
            self.wait_ns += int(ms * 1e6 * 0.5) if waiting else 0
            self.now += ms / 1e3
            return ms / 1e3

        return call
