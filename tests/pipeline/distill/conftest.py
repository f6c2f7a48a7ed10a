"""The tiny distillation problem: scikit-learn digits at 8x8, ResNets of width 8 (teacher) and 4 (student)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import TensorDataset

from spiralprune.pipeline.data import digits_datasets
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.distill.ddp import DataRef, DistillJob, ModelRef
from spiralprune.pipeline.distill.train import distill
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet

TEACHER_SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"
STUDENT_SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=4&blocks=[1,1,1,1]"
INPUT_SHAPE = [1, 1, 8, 8]


def _make_student(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return digits_resnet(width=4, blocks=(1, 1, 1, 1))


@pytest.fixture
def make_student() -> Callable[..., nn.Module]:
    """A randomly initialised student, the same for the same seed."""
    return _make_student


@pytest.fixture(scope="session")
def digits8() -> tuple[TensorDataset, TensorDataset]:
    return digits_datasets(size=8)


@pytest.fixture(scope="session")
def trained_teacher(digits8: tuple[TensorDataset, TensorDataset]) -> nn.Module:
    torch.manual_seed(0)
    teacher = digits_resnet(width=8, blocks=(1, 1, 1, 1))
    result = distill(teacher, None, *digits8, DistillConfig(epochs=3, batch_size=32, lr=0.1))
    assert result.best_val_quality > 0.9
    return teacher


@pytest.fixture(scope="session")
def teacher_weights(trained_teacher: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in trained_teacher.state_dict().items()}, str(path))
    return path


@pytest.fixture
def make_job(tmp_path: Path, teacher_weights: Path) -> Callable[[str, DistillConfig], DistillJob]:
    """A job distilling the same seeded student from the trained teacher, in ``tmp_path / name``.

    On CPU also where there is a GPU: gloo processes, and bitwise-reproducible runs (cuDNN's
    default kernels are not deterministic)."""
    student_weights = tmp_path / "student.safetensors"
    save_file(_make_student().state_dict(), str(student_weights))

    def make(name: str, config: DistillConfig) -> DistillJob:
        return DistillJob(
            student=ModelRef(spec=STUDENT_SPEC, weights=student_weights),
            teacher=ModelRef(spec=TEACHER_SPEC, weights=teacher_weights),
            data=DataRef(source="digits", input_shape=INPUT_SHAPE),
            config=config,
            output_dir=tmp_path / name / "out",
            checkpoint_dir=tmp_path / name / "checkpoint",
            device="cpu",
        )

    return make
