"""Checks (``spiralprune.pipeline.acceptance.Check``) rendered one way, in every report that shows them: the
gate's, and the run's for each try, the recovery and the INT8 stage."""

from __future__ import annotations

from collections.abc import Sequence

from spiralprune.pipeline.acceptance import Check, format_value
from spiralprune.pipeline.report.html import html_table
from spiralprune.pipeline.report.markdown import md_table

CHECK_COLUMNS = ("check", "status", "measured", "limit", "margin", "details")


def check_cells(c: Check) -> list[str]:
    return [c.name, c.status, format_value(c.measured, c.unit), format_value(c.limit, c.unit),
            format_value(c.margin, c.unit, signed=True), c.message]


def checks_markdown(checks: Sequence[Check]) -> list[str]:
    return md_table(CHECK_COLUMNS, [check_cells(c) for c in checks], "llrrrl")


def checks_html(checks: Sequence[Check]) -> str:
    return html_table(CHECK_COLUMNS, [check_cells(c) for c in checks], numeric=(2, 3, 4),
                      row_classes=[c.status for c in checks])
