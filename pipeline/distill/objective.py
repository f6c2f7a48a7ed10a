"""The training objective: the student plus what exists only while it is distilled (feature adapters,
projection heads), and the teacher, run in eval mode without gradients.

The adapters and heads live in one module with the student so that a single optimizer, a single
checkpoint and one DistributedDataParallel wrapper cover all trained parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.features import OutputTap, Probe, auto_feature_pairs, make_adapter, probe
from spiralprune.pipeline.distill.losses import contrastive_kd_loss, feature_kd_loss, logits_kd_loss
from spiralprune.pipeline.tasks import Outputs, Task, build_task, outputs_of


@dataclass(frozen=True)
class TeacherOutputs:
    outputs: Outputs
    features: dict[str, Tensor]
    embedding: Tensor | None


class TeacherRunner:
    def __init__(self, teacher: nn.Module, feature_names: list[str], embedding_module: str | None) -> None:
        self.teacher = teacher.eval()
        self.tap = OutputTap(teacher, feature_names, embedding_module)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> TeacherOutputs:
        outputs = outputs_of(self.teacher(images))
        return TeacherOutputs(outputs, dict(self.tap.features), self.tap.embedding)

    def close(self) -> None:
        self.tap.remove()


class DistillationObjective(nn.Module):
    """``forward(images, targets, teacher_outputs)`` returns the weighted loss and its unweighted parts.

    ``ce`` weighs the task's loss (``spiralprune.pipeline.tasks``: cross-entropy for a classifier, per pixel for a
    segmenter, the detector's own); ``logits`` the KD on the task's class logits (per sample, or per
    pixel). The feature loss is the mean over layer pairs, so its weight does not depend on how many
    stages match. Without a teacher the loss is the task's alone.
    """

    def __init__(
        self,
        student: nn.Module,
        cfg: DistillConfig,
        task: Task,
        pairs: list[tuple[str, str]],
        student_probe: Probe | None,
        teacher_probe: Probe | None,
        distilling: bool,
    ) -> None:
        super().__init__()
        self.student = student
        self.cfg = cfg
        self.task = task
        self.distilling = distilling
        self.pairs = pairs
        self.adapters = nn.ModuleList(
            make_adapter(student_probe.shapes[s], teacher_probe.shapes[t]) for s, t in pairs  # type: ignore[union-attr]
        )
        self.heads = nn.ModuleList()
        embedding_module = None
        if distilling and cfg.weights.contrastive > 0:
            assert student_probe is not None and teacher_probe is not None
            dims = (student_probe.embedding_dim, teacher_probe.embedding_dim)
            if None in dims:
                raise InputError("contrastive distillation needs an nn.Linear classifier in both student and teacher")
            self.heads.extend(nn.Linear(dim, cfg.projection_dim) for dim in dims)  # type: ignore[arg-type]
            embedding_module = student_probe.embedding_module
        self.tap = OutputTap(student, [s for s, _ in pairs], embedding_module)

    def forward(
        self, images: Tensor, targets: Any, teacher: TeacherOutputs | None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        task_loss, outputs = self.task.forward_loss(self.student, images, targets)
        if not self.distilling or teacher is None:
            return task_loss, {"ce": task_loss.detach()}
        weights = self.cfg.weights
        parts: dict[str, Tensor] = {}
        if weights.ce > 0:
            parts["ce"] = task_loss
        if weights.logits > 0:
            assert outputs is not None  # build_objective refuses logits KD for a task without class logits
            parts["logits"] = logits_kd_loss(self.task.logits(outputs), self.task.logits(teacher.outputs),
                                             self.cfg.temperature)
        if self.pairs:
            hints = [
                feature_kd_loss(self.tap.features[s], teacher.features[t], adapter)
                for (s, t), adapter in zip(self.pairs, self.adapters)
            ]
            parts["feature"] = torch.stack(hints).mean()
        if len(self.heads):
            parts["contrastive"] = contrastive_kd_loss(
                self.tap.embedding, teacher.embedding, self.heads[0], self.heads[1], self.cfg.contrastive_temperature
            )
        total = sum(getattr(weights, name) * value for name, value in parts.items())
        return total, {name: value.detach() for name, value in parts.items()}  # type: ignore[return-value]

    def close(self) -> None:
        self.tap.remove()


def build_objective(
    student: nn.Module, teacher: nn.Module | None, cfg: DistillConfig, sample: Tensor, task: Task | None = None
) -> tuple[DistillationObjective, TeacherRunner | None]:
    """Probe student and teacher with ``sample``, pair their layers and create the adapters and heads
    (``task`` None: a classifier's).

    A teacher none of whose losses is weighted is not run at all: the training is the task's loss.
    """
    task = task or build_task()
    if teacher is None or not cfg.weights.uses_teacher:
        return DistillationObjective(student, cfg, task, [], None, None, distilling=False), None
    if cfg.weights.logits > 0 and not task.has_logits:
        raise InputError(f"distill.weights.logits: task {task.name} has no class logits to distil; "
                         "weigh feature (the neck's levels) instead")
    explicit = cfg.feature_pairs if cfg.feature_pairs != "auto" else []
    student_probe = probe(student, sample, [s for s, _ in explicit])
    teacher_probe = probe(teacher, sample, [t for _, t in explicit])
    pairs: list[tuple[str, str]] = []
    if cfg.weights.feature > 0:
        pairs = list(explicit) or auto_feature_pairs(student_probe, teacher_probe)
        for name, side in [(s, student_probe) for s, _ in pairs] + [(t, teacher_probe) for _, t in pairs]:
            if name not in side.shapes:
                raise InputError(f"distill.feature_pairs: module '{name}' does not run exactly once per forward")
    objective = DistillationObjective(student, cfg, task, pairs, student_probe, teacher_probe, distilling=True)
    embedding_module = teacher_probe.embedding_module if len(objective.heads) else None
    return objective, TeacherRunner(teacher, [t for _, t in pairs], embedding_module)
