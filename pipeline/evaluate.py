"""A model's quality on a data set, as its task measures it: the compiled model (the ONNX file run by
ONNX Runtime) or the torch module (validation during training)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from spiralprune.deploy.backends import get_backend
from spiralprune.pipeline.tasks import Outputs, Task, outputs_of


def _evaluate(run: Callable[[Tensor], Outputs], dataset: Dataset, task: Task, batch_size: int) -> dict:
    meter = task.meter()
    for inputs, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=task.collate):
        meter.update(run(inputs), targets)
    return meter.compute()


def evaluate_onnx(onnx_path: Path, dataset: Dataset, task: Task, *, batch_size: int = 64) -> dict:
    """``task``'s metrics of the ONNX model on ``dataset`` (ONNX Runtime, CPU), in batches of
    ``batch_size``, or of the graph's own batch where its batch axis is fixed (a file exported for TensorRT,
    a torchvision detector, whose graph unrolls its loop over the images): the last batch is then filled
    and its copies' outputs dropped (``spiralprune.deploy.backends.base.Runner.infer_filled``)."""
    with get_backend("ort-cpu")(onnx_path).load() as runner:

        def run(inputs: Tensor) -> Outputs:
            outputs = runner.infer_filled({"input": inputs.numpy()})
            return {name: torch.from_numpy(value) for name, value in outputs.items()}

        return _evaluate(run, dataset, task, runner.fixed_batch() or batch_size)


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset: Dataset, task: Task, *, batch_size: int = 256) -> dict:
    """``task``'s metrics of the torch model on ``dataset``, in eval mode (its mode is restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return _evaluate(lambda x: {k: v.cpu() for k, v in outputs_of(model(x.to(device))).items()}, dataset, task,
                         batch_size)
    finally:
        model.train(was_training)
