import os

import spiralprune
from spiralprune.deploy.fingerprint import gpu_clocks, physical_cores, target_fingerprint


def test_fingerprint_records_machine_libraries_and_settings():
    fp = target_fingerprint("ort-cpu", threads=2, precision="fp32")
    assert fp["backend"] == "ort-cpu" and fp["threads"] == 2 and fp["precision"] == "fp32"
    assert fp["cpu"] and fp["os"] and fp["python"].startswith("3.")
    assert fp["spiral"] == spiralprune.__version__  # what measured it
    assert 1 <= fp["physical_cores"] <= fp["logical_cores"] == os.cpu_count()
    import numpy
    import onnxruntime

    assert fp["libraries"]["onnxruntime"] == onnxruntime.__version__
    assert fp["libraries"]["numpy"] == numpy.__version__
    # NVML answers on a GPU host; elsewhere there is no GPU entry rather than a made-up one.
    assert fp["gpu"] is None or {"name", "driver"} <= set(fp["gpu"])


def test_gpu_clocks_are_read_from_nvml_or_not_at_all():
    """The clocks go with a profile, never into the fingerprint (they move with load and heat)."""
    clocks = gpu_clocks()
    assert clocks is None or (set(clocks) == {"sm", "memory"} and all(v > 0 for v in clocks.values()))
    assert "clocks" not in str(target_fingerprint("ort-cpu", threads=1, precision="fp32"))


def test_physical_cores_respects_affinity():
    assert 1 <= physical_cores() <= len(os.sched_getaffinity(0))

