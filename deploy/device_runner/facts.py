"""The device's facts: L4T/JetPack release, power mode, clocks, CPU and its cores, as read on the device."""

from __future__ import annotations

import os
import platform
import re
import shutil
from pathlib import Path

from .steps import run_quiet

# L4T release -> JetPack, from NVIDIA's JetPack archive; other releases report the JetPack major only.
_JETPACK = {
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3", "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}
_JETPACK_MAJOR = {"32": "4", "35": "5", "36": "6", "38": "7"}
_GPU_DEVFREQ = re.compile(r"\.(gpu|gp10b|gv11b|ga10b|gb10b)$")


def parse_nv_tegra_release(text: str) -> dict | None:
    """L4T release, JetPack and board from ``/etc/nv_tegra_release``."""
    match = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not match:
        return None
    major, revision = match.group(1), match.group(2)
    if revision.count(".") == 0:
        revision += ".0"
    l4t = f"{major}.{revision}"
    board = re.search(r"BOARD:\s*([^,\s]+)", text)
    return {
        "l4t": l4t,
        "jetpack": _JETPACK.get(l4t) or (f"{_JETPACK_MAJOR[major]}.x" if major in _JETPACK_MAJOR else None),
        "board": board.group(1) if board else None,
        "release_line": text.strip().splitlines()[0],
    }


def parse_nvpmodel(text: str) -> dict | None:
    """``{"name": "MAXN", "id": 0}`` from ``nvpmodel -q`` (the mode name, then its id on its own line)."""
    match = re.search(r"NV Power Mode:\s*(\S+)[^\n]*(?:\n\s*(\d+)\s*(?:\n|$))?", text)
    if not match:
        return None
    return {"name": match.group(1), "id": int(match.group(2)) if match.group(2) else None}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip().strip("\x00")
    except OSError:
        return None


def read_clocks(root: Path = Path("/")) -> dict:
    """CPU and GPU clock limits from sysfs; ``jetson_clocks`` is on when every minimum equals its maximum.

    ``jetson_clocks`` pins each CPU's and the GPU's minimum frequency to its maximum; reading sysfs
    needs no root, unlike ``jetson_clocks --show``.
    """
    cpus = {}
    for freq in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        values = {key: _read(freq / f"scaling_{key}_freq") for key in ("min", "max", "cur")}
        if values["min"] and values["max"]:
            cpus[freq.parent.name] = {key: int(v) for key, v in values.items() if v and v.isdigit()}
    gpu = None
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        if _GPU_DEVFREQ.search(dev.name):
            values = {key: _read(dev / f"{key}_freq") for key in ("min", "max", "cur")}
            gpu = {"device": dev.name, **{key: int(v) for key, v in values.items() if v and v.isdigit()}}
            break
    locked = [c["min"] == c["max"] for c in cpus.values() if "min" in c and "max" in c]
    if gpu is not None and "min" in gpu and "max" in gpu:
        locked.append(gpu["min"] == gpu["max"])
    return {"cpu_khz": cpus, "gpu_hz": gpu, "jetson_clocks": all(locked) if locked and gpu is not None else None}


def power_mode() -> dict | None:
    """``nvpmodel -q``, or ``sudo -n nvpmodel -q`` where the query needs root; None without nvpmodel."""
    if shutil.which("nvpmodel") is None:
        return None
    for argv in (["nvpmodel", "-q"], ["sudo", "-n", "nvpmodel", "-q"]):
        code, output = run_quiet(argv)
        parsed = parse_nvpmodel(output) if code == 0 else None
        if parsed:
            return parsed
    return {"name": None, "id": None, "error": output.strip().splitlines()[-1] if output.strip() else f"exit {code}"}


def cpu_model(root: Path = Path("/")) -> str:
    for line in (_read(root / "proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def parse_cpuinfo_cores(text: str) -> int | None:
    """Physical cores in ``/proc/cpuinfo``: its distinct ("physical id", "core id") pairs.

    None unless every processor lists both (ARM kernels list neither): hyperthreads of one core share
    the pair, so counting processors would count threads.
    """
    pairs = set()
    for block in re.split(r"\n[ \t]*\n", text.strip()):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields:  # ARM's trailing block (Hardware, Serial), not a processor
            continue
        if "physical id" not in fields or "core id" not in fields:
            return None
        pairs.add((fields["physical id"], fields["core id"]))
    return len(pairs) or None


def sysfs_cores(root: Path = Path("/")) -> int | None:
    """Physical cores in sysfs: the online CPUs' distinct ``topology/core_cpus_list`` (the hardware threads
    of one core; ``thread_siblings_list`` before Linux 5.7). None where a CPU's topology says neither.

    (``core_id`` alone does not name a core: arm64 kernels number cores per cluster.)
    """
    cores = set()
    for topology in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/topology")):
        siblings = _read(topology / "core_cpus_list") or _read(topology / "thread_siblings_list")
        if not siblings:
            return None
        cores.add(siblings)
    return len(cores) or None


def count_physical_cores(root: Path = Path("/"), logical: int | None = None) -> int | None:
    """Physical cores where the device says (``/proc/cpuinfo``, else sysfs); None where it does not."""
    found = parse_cpuinfo_cores(_read(root / "proc/cpuinfo") or "") or sysfs_cores(root)
    return found if found is not None and (logical is None or found <= logical) else None


def device_facts() -> dict:
    release = _read(Path("/etc/nv_tegra_release"))
    logical = os.cpu_count() or 1
    return {
        "hostname": platform.node(),
        "model": _read(Path("/proc/device-tree/model")),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "logical_cores": logical,
        "physical_cores": count_physical_cores(logical=logical),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "l4t": parse_nv_tegra_release(release) if release else None,
        "power_mode": power_mode(),
        "clocks": read_clocks(),
    }
