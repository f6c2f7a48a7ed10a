"""``spiralprune join``'s refusals and its end when node 0's run failed: one line, exit 2, no torchrun started."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.core.atomic import write_json
from spiralprune.pipeline.cli import main
from spiralprune.pipeline.config import DistributedConfig
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


def test_a_job_file_this_node_cannot_see_is_one_line_before_torchrun(tmp_path: Path, capsys) -> None:
    """The run folder is not shared (or not at the same path): said at node 0's first job, nothing launched."""
    folder = RunFolder(tmp_path)
    write_json(folder.config, {})
    job = tmp_path / "teacher" / "job.json"  # node 0's, on a disk this node does not see
    Board(folder.nodes).announce("spiralprune.pipeline.distill.ddp", job,
                                 DistributedConfig(nnodes=2, rdzv_endpoint="node0:29500"), "distributed training")
    assert main(["join", str(tmp_path), "--node-rank", "1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"spiralprune: error: node 0's job file {job} is not on this node: the run folder and node 0's working "
        f"directory ({Path.cwd()}) must be on a filesystem every node sees at the same path"
    )
    assert not (folder.nodes / "node-1.json").exists() and not (folder.nodes / "node-1.log").exists()
