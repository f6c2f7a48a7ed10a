"""``deploy/device_runner/facts.py``: parsing real Jetson outputs (tests/fixtures/jetson/README.md), clocks
and cores from sysfs trees built here, and a truthful core count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spiralprune.deploy.device_runner.facts import (count_physical_cores, device_facts, parse_cpuinfo_cores,
                                        parse_nv_tegra_release, parse_nvpmodel, read_clocks, sysfs_cores)
from tests.deploy.device_runner.runner_bundles import JETSON


@pytest.mark.parametrize(
    ("name", "l4t", "jetpack", "board"),
    [
        ("nv_tegra_release-r35.4.1.txt", "35.4.1", "5.1.2", "t186ref"),
        ("nv_tegra_release-r36.4.4.txt", "36.4.4", "6.2.1", "generic"),
        ("nv_tegra_release-r36.4.3.txt", "36.4.3", "6.2", "generic"),
    ],
)
def test_nv_tegra_release(name: str, l4t: str, jetpack: str, board: str) -> None:
    parsed = parse_nv_tegra_release((JETSON / name).read_text())
    assert (parsed["l4t"], parsed["jetpack"], parsed["board"]) == (l4t, jetpack, board)
    assert parsed["release_line"].startswith(f"# R{l4t.split('.')[0]} (release)")


def test_nv_tegra_release_of_an_unlisted_release_gives_the_jetpack_major() -> None:
    assert parse_nv_tegra_release("# R36 (release), REVISION: 9.0, GCID: 1, BOARD: generic")["jetpack"] == "6.x"
    assert parse_nv_tegra_release("not a release file") is None


@pytest.mark.parametrize(
    ("name", "mode"),
    [("nvpmodel-q-agx-orin-mode_30w.txt", {"name": "MODE_30W", "id": 2}),
     ("nvpmodel-q-thor-maxn.txt", {"name": "MAXN", "id": 0})],
)
def test_nvpmodel_query(name: str, mode: dict) -> None:
    assert parse_nvpmodel((JETSON / name).read_text()) == mode


# ---- clocks, from sysfs trees built here (no public Orin `jetson_clocks --show` was found) --------


def _sysfs(root: Path, cpu: tuple[int, int], gpu: tuple[int, int] | None) -> Path:
    for n in range(2):
        freq = root / f"sys/devices/system/cpu/cpu{n}/cpufreq"
        freq.mkdir(parents=True)
        for key, value in zip(("min", "max", "cur"), (*cpu, cpu[1])):
            (freq / f"scaling_{key}_freq").write_text(f"{value}\n")
    if gpu is not None:
        dev = root / "sys/class/devfreq/17000000.ga10b"
        dev.mkdir(parents=True)
        for key, value in zip(("min", "max", "cur"), (*gpu, gpu[1])):
            (dev / f"{key}_freq").write_text(f"{value}\n")
    return root


def test_clocks_locked_by_jetson_clocks(tmp_path: Path) -> None:
    clocks = read_clocks(_sysfs(tmp_path, (1510400, 1510400), (624750000, 624750000)))
    assert clocks["jetson_clocks"] is True
    assert clocks["cpu_khz"]["cpu0"] == {"min": 1510400, "max": 1510400, "cur": 1510400}
    assert clocks["gpu_hz"]["device"] == "17000000.ga10b"


def test_clocks_scaling(tmp_path: Path) -> None:
    assert read_clocks(_sysfs(tmp_path, (729600, 1510400), (306000000, 624750000)))["jetson_clocks"] is False


def test_clocks_unknown_without_a_jetson_gpu(tmp_path: Path) -> None:
    assert read_clocks(_sysfs(tmp_path, (800000, 3000000), None))["jetson_clocks"] is None


# ---- cores: logical ones as logical, physical ones only where the device says ---------------------


def _x86_processor(n: int, core: int) -> str:
    """One processor of ``/proc/cpuinfo`` in the x86 kernel's format (arch/x86/kernel/cpu/proc.c), trimmed."""
    return (f"processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i3-7100U CPU @ 2.40GHz\n"
            f"physical id\t: 0\nsiblings\t: 4\ncore id\t\t: {core}\ncpu cores\t: 2\napicid\t\t: {core * 2 + n // 2}\n"
            "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush ht\n")


# Two cores with two hyperthreads each: processors 0 and 2 are core 0, processors 1 and 3 core 1.
CPUINFO_HYPERTHREADS = "\n".join(_x86_processor(n, core) for n, core in enumerate((0, 1, 0, 1))) + "\n"
# An arm64 kernel's format: no "physical id" or "core id", and a trailing block that is no processor.
CPUINFO_ARM = "".join(
    f"processor\t: {n}\nmodel name\t: ARMv8 Processor rev 1 (v8l)\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd\n"
    f"CPU implementer\t: 0x41\nCPU part\t: 0xd42\n\n" for n in range(6)) + "Hardware\t: NVIDIA Orin\nSerial\t\t: 1\n"


def _topology(root: Path, siblings: list[str]) -> Path:
    for n, cpus in enumerate(siblings):
        topology = root / f"sys/devices/system/cpu/cpu{n}/topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(cpus + "\n")
        (topology / "core_id").write_text(f"{n % 2}\n")  # arm64 numbers cores per cluster: not a core's name
    return root


def test_hyperthreads_count_once_as_physical_cores(tmp_path: Path) -> None:
    assert CPUINFO_HYPERTHREADS.count("processor\t:") == 4  # logical
    assert parse_cpuinfo_cores(CPUINFO_HYPERTHREADS) == 2  # physical
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(CPUINFO_HYPERTHREADS)
    assert count_physical_cores(tmp_path, logical=4) == 2


def test_cpuinfo_without_core_ids_says_nothing_and_sysfs_is_asked(tmp_path: Path) -> None:
    assert parse_cpuinfo_cores(CPUINFO_ARM) is None and parse_cpuinfo_cores("") is None
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(CPUINFO_ARM)
    assert count_physical_cores(tmp_path, logical=6) is None  # neither source says: null, not 6
    _topology(tmp_path, [str(n) for n in range(6)])  # six cores in three clusters, core_id 0 and 1 in each
    assert sysfs_cores(tmp_path) == 6 and count_physical_cores(tmp_path, logical=6) == 6


def test_sysfs_thread_siblings_count_once(tmp_path: Path) -> None:
    assert sysfs_cores(_topology(tmp_path, ["0,2", "1,3", "0,2", "1,3"])) == 2
    assert count_physical_cores(tmp_path, logical=4) == 2
    assert count_physical_cores(tmp_path, logical=1) is None  # more cores than CPUs online: not believed


def test_this_machine_records_logical_cores_as_logical() -> None:
    facts = device_facts()
    assert facts["logical_cores"] == (os.cpu_count() or 1)
    assert facts["physical_cores"] is None or 1 <= facts["physical_cores"] <= facts["logical_cores"]
    assert facts["physical_cores"] == count_physical_cores(logical=facts["logical_cores"])
