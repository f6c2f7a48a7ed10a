"""What a spiralprune run starts from: its data, and its teacher (loaded or trained, then measured once).

``RunData`` is what every stage of a run reads: the splits (training as training sees it, validation,
and the training images un-augmented, which the pruning criteria and INT8 calibrate on), the training
DataLoaders' settings, the example input its models are exported and timed with, the inputs of the ONNX
parity check, and the calibration batches of the pruning criteria. The teacher is the run's model
spec, or with ``teacher_training`` that spec trained on the run's data and cached in the run folder (a
resumed run, or another config with the same training, reuses it). It is measured once per run: a
resumed run keeps the same budgets.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spiralprune.core.atomic import write_bytes, write_json
from spiralprune.core.errors import InputError
from spiralprune.core.hashing import sha256_file
from spiralprune.pipeline.acceptance import Evidence
from spiralprune.pipeline.checkpoint import load_checkpoint, save_checkpoint
from spiralprune.pipeline.config import RunConfig
from spiralprune.pipeline.data import DataSplits, LoaderSettings, drawn, load_data
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.measure import evidence_of, latency_summary, profile_on_target
from spiralprune.pipeline.nodes import Board
from spiralprune.pipeline.passes.record import Training
from spiralprune.pipeline.prune import dtype_name
from spiralprune.pipeline.prune.group import Calibration, draw_calibration
from spiralprune.pipeline.run_folder import RunFolder, config_digest
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.specs import former_spellings
from spiralprune.pipeline.tasks import Task, outputs_of
from spiralprune.pipeline.training import Processes, Trainee, train


@dataclass(frozen=True)
class RunData:
    splits: DataSplits
    example_input: torch.Tensor
    input_dtype: str
    parity_inputs: torch.Tensor
    calibration: Calibration
    task: Task
    processes: Processes  # where its trainings run: spiralprune.pipeline.training

    @classmethod
    def load(cls, config: RunConfig, given: DataSplits | None = None, board: Board | None = None) -> RunData:
        """The run's data: ``given`` (the Python API's, from ``spiralprune.pipeline.data.splits_of``), else what
        ``config.data`` names; its trainings announced on ``board`` with several nodes. Data given with more
        than one training process is refused here, before any work."""
        data = load_data(config.data, config.input_shape) if given is None else given
        task = config.task_model()
        data = dataclasses.replace(data, loading=data.loading.for_task(task))
        if len(data.val) == 0 or len(data.train) == 0:
            what = f"data '{config.data.source}'" if given is None else "the given data"
            raise InputError(f"{what} has an empty train or validation split")
        batch = config.input_shape[0]
        count = max(batch, config.budget.parity.samples)
        loader = DataLoader(drawn(data.val, count, config.seed), batch_size=count, collate_fn=data.loading.collate_fn)
        inputs = next(iter(loader))[0]
        if list(inputs.shape[1:]) != config.input_shape[1:]:
            raise InputError(
                f"input_shape {config.input_shape} does not match the data's samples {list(inputs.shape[1:])}"
            )
        # drawn at random (seeded): the first batches of an ImageFolder are all of its first class
        calibration = draw_calibration(data.calibration, config.data.batch_size, data.loading.collate_fn,
                                          task.batch_loss, seed=config.seed)
        return cls(data, inputs[:batch], dtype_name(inputs), inputs[: config.budget.parity.samples],
                   calibration, task, Processes.of_run(config, dtype_name(inputs), given is not None, board))

    def evidence(self, model: nn.Module, directory: Path, config: RunConfig) -> Evidence:
        """``model`` exported into ``directory``, its parity checked and its quality evaluated: its evidence
        apart from latency (``spiralprune.pipeline.measure.evidence_of``)."""
        return evidence_of(model, directory, config=config, example_input=self.example_input,
                           parity_inputs=self.parity_inputs, val_set=self.splits.val, task=self.task)


    def train(self, student: Trainee, teacher: Trainee, epochs: int, work: Path, config: RunConfig,
              progress: Progress) -> Training:
        """``epochs`` of the run's distillation (none: the model as it is), resumable from ``work/distill``,
        across the run's processes (``spiralprune.pipeline.training``)."""
        if not epochs:
            return Training(best_val_quality=None, epochs=0)
        result = train(student, teacher, self.splits.train, self.splits.val,
                       config.distill.model_copy(update={"epochs": epochs}), job_dir=work / "job",
                       processes=self.processes, checkpoint_dir=work / "distill", progress=progress,
                       loading=self.splits.loading, task=self.task)
        return Training(best_val_quality=result.best_val_quality, epochs=result.epochs_run)


def check_model(model: nn.Module, spec: str, config: RunConfig, data: RunData) -> None:
    """One line when ``model`` does not take the run's input or its outputs are not the task's."""
    try:
        with torch.no_grad():
            out = model.eval()(data.example_input)
    except Exception as exc:  # any failure here means the input shape or model is wrong
        raise InputError(f"model '{spec}' does not accept input_shape {config.input_shape}: {exc}") from None
    data.task.check(outputs_of(out), len(data.example_input), f"model '{spec}'")


@dataclass(frozen=True)
class TrainedModel:
    """A model trained once and cached: its module, base spec, pruning plans, the checkpoint's
    metadata (training key, validation accuracy, seconds per epoch) and whether it was trained now."""

    module: nn.Module
    base_spec: str
    plans: list
    metadata: dict
    trained_now: bool


def trained_model(
    directory: Path, key: dict, build: Callable[[], tuple[nn.Module, str, list]], train_set: Dataset,
    val_set: Dataset, training: DistillConfig, *, input_shape: list[int], input_dtype: str = "float32",
    console: Console, progress: Progress | None = None, loading: LoaderSettings = LoaderSettings(),
    task: Task | None = None, processes: Processes | None = None,
) -> TrainedModel:
    """The one teacher cache: the model in ``directory`` when it was trained with the same ``key`` (a
    dict of what decides the training: spec, data, shape, settings), else ``build()`` (module, base
    spec, plans) trained there with ``training`` and saved (across ``processes``: ``spiralprune.pipeline.training``).
    A killed training resumes from ``directory``'s sibling ``<name>-training``."""
    digest = config_digest(key)
    if directory.is_dir():
        model, meta = load_checkpoint(directory)
        # a teacher trained before a rename spelled spiral's zoo and data factories otherwise: the same training
        if meta.get("metadata", {}).get("training_key") in {config_digest(k) for k in [key, *former_spellings(key)]}:
            console.print(f"teacher: reusing the trained teacher in {directory}")
            return TrainedModel(model, meta["base_spec"], meta["plans"], meta["metadata"], False)
    model, base_spec, plans = build()
    console.print(f"teacher: training {base_spec} ({training.epochs} epochs, lr {training.lr})")
    work = directory.with_name(f"{directory.name}-training")
    stamp = work / "training_key"
    if work.is_dir() and not (stamp.is_file() and stamp.read_text() == digest):
        shutil.rmtree(work)  # another key's training (the settings changed): not this one to resume
    write_bytes(stamp, digest.encode())
    result = train(Trainee(model, (base_spec, plans)), None, train_set, val_set, training, job_dir=work / "job",
                   processes=processes, checkpoint_dir=work, progress=progress, loading=loading, task=task)
    metadata = {"training_key": digest, "val_quality": result.best_val_quality,
                "epoch_seconds": [h["seconds"] for h in result.history]}
    save_checkpoint(directory, base_spec=base_spec, plans=plans, model=model, input_shape=input_shape,
                    input_dtype=input_dtype, metadata=metadata)
    shutil.rmtree(work, ignore_errors=True)
    return TrainedModel(model, base_spec, plans, metadata, True)


def load_teacher(
    config: RunConfig, folder: RunFolder, data: RunData, console: Console, progress: Progress,
) -> tuple[nn.Module, str, list]:
    """The teacher module, its base spec and its pruning plans (a checkpoint's, when it is one)."""
    def build() -> tuple[nn.Module, str, list]:
        source = load_source(config.model, config.weights)
        check_model(source.module, config.model, config, data)
        return source.module, source.base_spec, source.plans

    if config.teacher_training is None:
        return build()
    key = {"model": config.model, "data": config.data.model_dump(), "input_shape": config.input_shape,
           **({"weights": sha256_file(config.weights)} if config.weights else {}),
           "training": config.teacher_training.model_dump(mode="json")}
    teacher = trained_model(
        folder.teacher_checkpoint(), key, build, data.splits.train, data.splits.val, config.teacher_training,
        input_shape=config.input_shape, input_dtype=data.input_dtype, console=console, progress=progress,
        loading=data.splits.loading, task=data.task, processes=data.processes,
    )
    return teacher.module, teacher.base_spec, teacher.plans


def measure_teacher(teacher: nn.Module, config: RunConfig, folder: RunFolder, data: RunData) -> dict:
    """The teacher's latency on the target (alone) and its evidence's summary, kept in ``teacher/summary.json``."""
    summary_path = folder.teacher / "summary.json"
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    work = folder.teacher / ".measure"
    shutil.rmtree(work, ignore_errors=True)
    evidence = data.evidence(teacher, work, config)
    profile = profile_on_target(evidence.onnx_path, teacher, config, folder.compiled)
    profile.save(work / "profile.json")
    summary = {**latency_summary(profile, config.budget.latency.statistic), **evidence.summary()}
    for name in ("model.onnx", "profile.json", "eval.json"):
        (work / name).replace(folder.teacher / name)
    shutil.rmtree(work, ignore_errors=True)
    write_json(summary_path, summary)
    return summary
