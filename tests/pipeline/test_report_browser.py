"""The run report in a real browser: headless Chromium renders the page, and its screenshot must
show the plots (the colours only the plots use), which it does not once the images are removed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spiralprune.pipeline.config import parse_config
from spiralprune.pipeline.report import plots
from spiralprune.pipeline.report.run import write_reports
from tiny_spiral import tiny_config
from tests.pipeline.test_report import BUDGET, make_run

pytestmark = pytest.mark.slow


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "headless Chromium is not installed (Debian package 'chromium', which .ci/run installs)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    """RGB pixels (0-255) of the page rendered 1200 px wide."""
    from matplotlib.image import imread

    shot = tmp_path / f"{page.stem}.png"
    subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1200,2600",
         f"--screenshot={shot}", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    return np.round(imread(shot)[..., :3] * 255)


def pixels_of(image: np.ndarray, colour: str, alpha: float = 1.0, tolerance: float = 12) -> int:
    """Pixels within ``tolerance`` of ``colour`` drawn at ``alpha`` over white."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=float)
    target = alpha * rgb + (1 - alpha) * 255
    return int((np.abs(image - target).max(axis=-1) <= tolerance).sum())


def test_the_plots_render_in_chromium(tmp_path):
    teacher, entries = make_run(tmp_path)
    page = write_reports(tmp_path, parse_config(tiny_config()), BUDGET, teacher, entries, "final budget met")[2]
    with_plots = screenshot(page, tmp_path)
    violins = pixels_of(with_plots, plots.BLUE, alpha=0.55)
    accepted, rejected = pixels_of(with_plots, plots.GREEN), pixels_of(with_plots, plots.RED)
    assert violins > 5000, violins          # four filled latency distributions
    assert accepted > 100 and rejected > 50  # the accepted and rejected points of the Pareto plot

    blank = tmp_path / "no-plots.html"
    blank.write_text(re.sub(r'src="data:image/png;base64,[^"]*"', 'src=""', page.read_text()))
    without = screenshot(blank, tmp_path)
    assert pixels_of(without, plots.BLUE, alpha=0.55) < violins / 50
    assert pixels_of(without, plots.GREEN) < accepted / 10
