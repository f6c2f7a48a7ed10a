"""``spiralprune run``'s training flags: they override the config's ``distributed:`` block, validated as it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from spiralprune.pipeline.cli import main
from spiralprune.pipeline.commands.run import with_flags
from spiralprune.pipeline.config import parse_config
from tiny_spiral import tiny_config


def test_flags_override_the_distributed_block() -> None:
    config = parse_config(tiny_config(distributed={"processes": 4}))
    flagged = with_flags(config, {"device": "cpu", "processes": 2, "nnodes": 2, "node_rank": 1,
                                  "rdzv_endpoint": "n0:29500"})
    assert flagged.distributed.model_dump() == {"device": "cpu", "processes": 2, "nnodes": 2, "node_rank": 1,
                                                "rdzv_endpoint": "n0:29500", "join_timeout_s": 600}
    assert with_flags(config, {"processes": None, "nnodes": None}) is config
    assert with_flags(config, {"nnodes": 1}).distributed.processes == 4


@pytest.mark.parametrize(("flags", "line"), [
    (["--nnodes", "2"], "spiralprune: error: spiralprune run --nnodes: distributed: nnodes 2 needs rdzv_endpoint (host:port every node reaches)"),
    (["--nproc-per-node", "0"], "spiralprune: error: spiralprune run --nproc-per-node: distributed.processes: Input should be greater than or equal to 1"),
    (["--node-rank", "3", "--nnodes", "2", "--rdzv-endpoint", "n0:1"],
     "spiralprune: error: spiralprune run --nnodes --node-rank --rdzv-endpoint: distributed: node_rank 3 is not below nnodes 2"),
    (["--nnodes", "2", "--rdzv-endpoint", "n0:0"],
     "spiralprune: error: spiralprune run --nnodes --rdzv-endpoint: distributed.rdzv_endpoint: 'n0:0': port 0 is not between 1 "
     "and 65535"),
])
def test_bad_flags_are_one_line_before_any_work(write_config, tmp_path: Path, capsys, flags: list[str], line: str) -> None:
    out = tmp_path / "run"
    assert main(["run", str(write_config()), "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err.strip() == line
    assert not out.exists()
