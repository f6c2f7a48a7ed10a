"""A run's trainings on two nodes (127.0.0.1 twice, one gloo process each): real torchrun, a real follower
(``spiralprune join``) in its own process, a real SIGKILL of the node that never joins."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spiralprune.core.atomic import write_json
from spiralprune.core.errors import InputError
from spiralprune.pipeline.config import DistributedConfig
from spiralprune.pipeline.data import digits_datasets
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.ddp import DataRef
from spiralprune.pipeline.nodes import announcing
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.tasks import TaskConfig
from spiralprune.pipeline.training import Processes, Trainee, train
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet

pytestmark = pytest.mark.slow
SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=4&blocks=[1,1,1,1]"


def endpoint() -> str:
    """127.0.0.1 and a port free now, for node 0's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def spiralprune(*argv: str) -> subprocess.Popen:
    """``spiralprune ARGV`` in a session of its own: killing its group is a node going down."""
    return subprocess.Popen([sys.executable, "-m", "spiralprune", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "COLUMNS": "400"})


def test_a_training_runs_on_both_nodes_and_the_follower_stops_with_the_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    write_json(folder.config, {})  # node 0's run folder, as far as a follower looks
    node1 = spiralprune("join", str(folder.root), "--node-rank", "1")
    distributed = DistributedConfig(nnodes=2, rdzv_endpoint=endpoint(), join_timeout_s=60)
    torch.manual_seed(1)
    student = digits_resnet(width=4, blocks=(1, 1, 1, 1))
    train_set, val_set = digits_datasets(size=8)
    with announcing(folder, distributed) as board:
        processes = Processes(distributed, DataRef(source="digits", input_shape=[1, 1, 8, 8]), TaskConfig(), 10,
                              [1, 1, 8, 8], "float32", board=board)
        result = train(Trainee(student, (SPEC, [])), None, train_set, val_set,
                       DistillConfig(epochs=1, batch_size=64, lr=0.1, early_stopping_patience=None),
                       job_dir=folder.root / "job", processes=processes, share=range(128))
    assert [h["processes"] for h in result.history] == [2]  # the world: one process on each node
    _, err = node1.communicate(timeout=30)
    assert node1.returncode == 0, err
    lines = [" ".join(line.split()) for line in err.splitlines()]
    assert lines == [f"node 1: waiting for node 0's jobs in {folder.nodes}",
                     f"job 1: distributed training on 1 processes (torchrun; its output in {folder.nodes}/node-1.log)",
                     "job 1: done", "node 0's run ended"]
    assert json.loads((folder.nodes / "end.json").read_text()) == {"failed": None}


def test_a_node_killed_before_it_joins_fails_node_0s_run_in_one_line(write_config, tmp_path: Path) -> None:
    """Node 1 goes down (SIGKILL, its whole session) just after it picked up the teacher's training: node 0's
    run fails once the join timeout has passed, in one line (exit 2), and announces its failure."""
    out = tmp_path / "run"
    config = write_config(distributed={"join_timeout_s": 3})
    node0 = spiralprune("run", str(config), "--out", str(out), "--nnodes", "2", "--rdzv-endpoint", endpoint())
    deadline = time.time() + 60
    while not (out / "config.json").exists():
        assert node0.poll() is None and time.time() < deadline, node0.communicate()
        time.sleep(0.05)
    node1 = spiralprune("join", str(out), "--node-rank", "1")
    while not (out / "nodes" / "node-1.json").exists():
        assert node1.poll() is None and time.time() < deadline, node1.communicate()
        time.sleep(0.05)
    os.killpg(node1.pid, signal.SIGKILL)
    node1.wait()
    started = time.time()
    _, err = node0.communicate(timeout=60)
    assert node0.returncode == 2 and time.time() - started < 20, err
    line = " ".join(err.split("spiralprune: error: ")[1].split())
    assert line == (
        f"distributed training (job 1) failed: node 1 picked it up but did not reach {node0.args[-1]} within 3 s "
        f"(its output: {out}/nodes/node-1.log); node 0's is in {out}/teacher/model-training/job/torchrun.log; its "
        "checkpoint is kept: resumed (spiralprune run --resume), it goes on from its last finished epoch"
    )
    assert json.loads((out / "nodes" / "end.json").read_text()) == {"failed": line}


def test_a_node_that_never_came_is_named_with_the_command_it_needs(tmp_path: Path) -> None:
    """No follower picked the job up: node 0's job fails after the join timeout naming the node (exit 2)."""
    folder = RunFolder(tmp_path / "run")
    distributed = DistributedConfig(nnodes=2, rdzv_endpoint=endpoint(), join_timeout_s=1)
    with pytest.raises(InputError) as info, announcing(folder, distributed) as board:
        processes = Processes(distributed, DataRef(source="digits", input_shape=[1, 1, 8, 8]), TaskConfig(), 10,
                              [1, 1, 8, 8], "float32", board=board)
        train(Trainee(digits_resnet(width=4, blocks=(1, 1, 1, 1)), (SPEC, [])), None, *digits_datasets(size=8),
              DistillConfig(epochs=1, batch_size=64), job_dir=folder.root / "job", processes=processes)
    assert str(info.value) == (
        f"distributed training (job 1) failed: node 1 did not join within 1 s (is 'spiralprune join {folder.root} "
        f"--node-rank 1' running there?); torchrun's output is in {folder.root}/job/torchrun.log"
    )
