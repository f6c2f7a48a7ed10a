"""``tegrastats`` while the profile runs, and the means and maxima of what it logged."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


def _stat(values: list[float]) -> dict:
    return {"mean": round(sum(values) / len(values), 3), "max": max(values)}


def parse_tegrastats(text: str) -> dict | None:
    """Means and maxima of RAM, CPU and GPU load, GPU clock, temperatures and power rails.

    Handles the formats of JetPack 4 (``VDD_IN 3140/3208``, ``POM_5V_IN 2545/2547``) to JetPack 6
    (``VDD_IN 4488mW/4488mW``, ``GR3D_FREQ 0%@[305]``); -256 C is tegrastats' "no sensor".
    """
    ram: list[float] = []
    ram_total = None
    cpu: list[float] = []
    gpu: list[float] = []
    gpu_mhz: list[float] = []
    temps: dict[str, list[float]] = {}
    rails: dict[str, list[float]] = {}
    samples = 0
    for line in text.splitlines():
        ram_match = re.search(r"\bRAM (\d+)/(\d+)MB", line)
        if not ram_match:
            continue
        samples += 1
        ram.append(float(ram_match.group(1)))
        ram_total = float(ram_match.group(2))
        cores = re.search(r"\bCPU \[([^\]]*)\]", line)
        if cores:
            loads = [float(c.split("%")[0]) for c in cores.group(1).split(",") if "%" in c]
            if loads:
                cpu.append(sum(loads) / len(loads))
        gr3d = re.search(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?", line)
        if gr3d:
            gpu.append(float(gr3d.group(1)))
            if gr3d.group(2):
                gpu_mhz.append(max(float(f) for f in gr3d.group(2).split(",") if f))
        for name, value in re.findall(r"\b([A-Za-z][A-Za-z0-9_]*)@(-?[\d.]+)C\b", line):
            if float(value) > -256:
                temps.setdefault(name, []).append(float(value))
        for name, current, _average in re.findall(r"\b((?:VDD|VIN|POM)[A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b", line):
            rails.setdefault(name, []).append(float(current))
    if not samples:
        return None
    return {
        "samples": samples,
        "ram_used_mb": _stat(ram),
        "ram_total_mb": ram_total,
        "cpu_load_pct": _stat(cpu) if cpu else None,
        "gpu_load_pct": _stat(gpu) if gpu else None,
        "gpu_freq_mhz": _stat(gpu_mhz) if gpu_mhz else None,
        "temperature_c": {name: max(values) for name, values in temps.items()},
        "power_mw": {name: _stat(values) for name, values in rails.items()},
    }


class Tegrastats:
    """``tegrastats`` in the background while the profile runs, where the device has it."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Tegrastats:
        if shutil.which("tegrastats"):
            self.handle = open(self.log, "wb")
            self.process = subprocess.Popen(["tegrastats", "--interval", "500"], stdout=self.handle,
                                            stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.handle.close()

    def summary(self) -> dict | None:
        return parse_tegrastats(self.log.read_text(errors="replace")) if self.process is not None else None
