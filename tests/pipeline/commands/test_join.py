"""``spiralprune join``'s refusals and its end when node 0's run failed: one line, exit 2, no torchrun started."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.core.atomic import write_json
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.nodes import Board
from spiralprune.pipeline.run_folder import RunFolder


def test_a_folder_that_is_not_a_run_folder_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["join", str(tmp_path), "--node-rank", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"spiralprune: error: {tmp_path} is not a spiralprune run folder (no config.json): give the --out of node 0's "
        "spiralprune run, once it has started, on a filesystem every node sees at the same path"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("flags", "line"), [
    (["--node-rank", "0"], "--node-rank 0: a follower is node 1 or above (node 0 runs spiralprune run)"),
    (["--node-rank", "1", "--nproc-per-node", "0"], "--nproc-per-node 0: at least 1"),
])
def test_bad_flags_are_one_line(tmp_path: Path, capsys, flags: list[str], line: str) -> None:
    assert main(["join", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err.strip() == f"spiralprune: error: {line}"


def test_a_follower_stops_with_node_0s_line_when_its_run_failed(tmp_path: Path, capsys) -> None:
    folder = RunFolder(tmp_path)
    write_json(folder.config, {})
    Board(folder.nodes).end("data 'x:y' cannot be imported")
    assert main(["join", str(tmp_path), "--node-rank", "1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"spiralprune: error: node 0's run in {tmp_path} failed: data 'x:y' cannot be imported"
    )
