"""JUnit XML, the format CI systems display as test results: one ``testcase`` per check.

A failed check is a ``<failure type="fail">``. An inconclusive one is a ``<failure type="inconclusive">``,
not a ``<skipped>``: the command exits 1 for it, and a CI page that showed it as skipped would
look green while the job is red. ``skipped`` is kept for what was not meant to pass, such as a
spiral step the search rejected and retried.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    classname: str
    status: Literal["pass", "fail", "inconclusive", "skipped"]
    message: str = ""
    details: str = ""


def junit_xml(suite: str, cases: Sequence[TestCase]) -> str:
    failures = sum(c.status in ("fail", "inconclusive") for c in cases)
    skipped = sum(c.status == "skipped" for c in cases)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors="0")
    node = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(cases)), failures=str(failures), errors="0",
        skipped=str(skipped), time="0",
    )
    for case in cases:
        element = ET.SubElement(node, "testcase", name=case.name, classname=case.classname, time="0")
        if case.status in ("fail", "inconclusive"):
            ET.SubElement(element, "failure", message=case.message, type=case.status).text = case.details or case.message
        elif case.status == "skipped":
            ET.SubElement(element, "skipped", message=case.message)
        if case.details and case.status == "pass":
            ET.SubElement(element, "system-out").text = case.details
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
