"""ONNX Runtime's INT8 simulated in PyTorch, so that a model can be trained through its quantization.

``spiralprune.pipeline.passes.int8.quantize`` quantizes the exported model with ONNX Runtime's ``quantize_static``:
batch norms folded into the convolutions before them (its ``quant_pre_process``), weights signed and
symmetric (``[-127, 127]``, scale ``absmax / 127``, one per output channel or one per tensor),
activations unsigned on the min-max range of the calibration batches (with zero in it); the weights on
7 bits (``[-64, 64]``) where this CPU's U8S8 kernels saturate (``quantize.int8_ranges``). While
``simulated_int8`` is open, every convolution and linear layer of the PyTorch model computes with
its weights rounded as ONNX Runtime will round them and its input rounded to the calibrated (then
trained, moving-average) range, and a linear layer's output is rounded too (ONNX Runtime's QGemm
writes INT8; a convolution's output is rounded where the next layer reads it, after its batch norm
and activation, as ONNX Runtime fuses them); gradients pass the rounding straight through.

A convolution followed by a batch norm keeps both, as in training: its weight is rounded as folded
(``W * gamma / sqrt(running_var + eps)``, then divided back), so that in eval mode the pair computes
what ONNX Runtime's folded INT8 convolution computes, while in training the batch norm still
normalises by the batch's statistics and updates its running ones. The two alternatives tried fail
on a small depthwise network trained on the digits: training the folded convolution itself is
ill-conditioned (a channel with a small variance gets a large folded weight and a small gradient)
and collapsed to chance within one epoch at learning rate 0.001; freezing the batch norms at their
running statistics turned the loss to NaN at 0.005 without any rounding at all. On MobileNetV2
(Fashion-MNIST, one seed) the three recovered per-tensor INT8 to within about two points of each other. After the context the model
computes in float again, with the weights it was trained to; ONNX Runtime's rounding of them is
the one the training saw.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import Tensor, fx, nn
from torch.nn.utils import parametrize
from torch.utils.data import Dataset

from spiralprune.pipeline.passes.int8.config import QuantizeConfig
from spiralprune.pipeline.distill.config import DistillConfig, LossWeights
from spiralprune.pipeline.distill.train import DistillResult, distill
from spiralprune.pipeline.passes.int8.quantize import Int8Ranges, int8_ranges
from spiralprune.pipeline.tasks import Task

if TYPE_CHECKING:
    from rich.progress import Progress

_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# ONNX Runtime's activation range is the calibration min / max; in training the range follows the
# batches' min / max by this moving-average weight (torch.ao's MovingAverageMinMaxObserver default).
MOMENTUM = 0.01


def folded_pairs(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Each convolution whose output only a batch norm reads, with that batch norm: the pairs ONNX
    Runtime folds into one convolution. Found by tracing with ``torch.fx``; a model it cannot trace
    has none (its convolutions are then rounded unfolded)."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - fx raises whatever the model's Python does on proxies
        return {}
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(modules.get(node.target), _CONVOLUTIONS) and len(node.users) == 1:
            [user] = node.users
            if user.op == "call_module" and isinstance(modules.get(user.target), _BATCH_NORMS):
                pairs[modules[node.target]] = modules[user.target]
    return pairs


class _WeightRounding(nn.Module):
    """A weight as ONNX Runtime's INT8 stores it: signed, symmetric, ``absmax / q`` (``q`` = 127, or 64
    on 7 bits) per output channel (axis 0 of Conv and Linear weights, ONNX Runtime's per-channel axis)
    or per tensor, of the weight folded with ``norm`` when a batch norm follows."""

    def __init__(self, per_channel: bool, norm: nn.Module | None, q: int) -> None:
        super().__init__()
        self.per_channel, self.norm, self.q = per_channel, [norm], q  # norm in a list: not a submodule

    def forward(self, weight: Tensor) -> Tensor:
        shape = (-1,) + (1,) * (weight.dim() - 1)
        norm = self.norm[0]
        fold = None
        if norm is not None:
            gamma = norm.weight if norm.affine else torch.ones_like(norm.running_var)
            fold = gamma / torch.sqrt(norm.running_var + norm.eps)
            tiny = torch.finfo(fold.dtype).tiny
            fold = torch.where(fold.abs() < tiny, torch.full_like(fold, tiny), fold).view(shape)
            weight = weight * fold
        w = weight.detach()
        tiny = torch.finfo(w.dtype).tiny
        if self.per_channel:
            scale = (w.abs().amax(dim=tuple(range(1, w.dim()))) / self.q).clamp_min(tiny)
            zero = torch.zeros(scale.shape, dtype=torch.int32, device=w.device)
            rounded = torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -self.q, self.q)
        else:
            scale = (w.abs().max() / self.q).clamp_min(tiny)
            zero = torch.zeros((), dtype=torch.int32)
            rounded = torch.fake_quantize_per_tensor_affine(weight, scale, zero, -self.q, self.q)
        return rounded if fold is None else rounded / fold


class _Rounding(nn.Module):
    """An activation as ONNX Runtime's INT8 stores it: unsigned (``[0, q]``), on a range with zero in it.
    The range starts at the calibration batches' min / max and follows the training batches' by ``MOMENTUM``."""

    def __init__(self, q: int) -> None:
        super().__init__()
        self.q = q
        self.register_buffer("low", torch.tensor(float("inf")))
        self.register_buffer("high", torch.tensor(float("-inf")))
        self.calibrating = True

    def forward(self, x: Tensor) -> Tensor:
        low, high = x.detach().min(), x.detach().max()
        if self.calibrating:
            self.low.copy_(torch.minimum(self.low, low))
            self.high.copy_(torch.maximum(self.high, high))
            return x
        if self.training:
            self.low.lerp_(low, MOMENTUM)
            self.high.lerp_(high, MOMENTUM)
        low, high = self.low.clamp(max=0), self.high.clamp(min=0)
        scale = ((high - low) / self.q).clamp_min(torch.finfo(x.dtype).tiny)
        zero = (-low / scale).round().clamp(0, self.q).to(torch.int32)
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, self.q)


@contextmanager
def simulated_int8(model: nn.Module, calibration: Sequence[Tensor], *, per_channel: bool,
                   ranges: Int8Ranges | None = None) -> Iterator[nn.Module]:
    """``model`` computing as its ONNX Runtime INT8 model will while the context is open; the input
    ranges are calibrated first on ``calibration`` (the batches ``quantize_static`` calibrates on), the
    integers those of ``ranges`` (default: this machine's, as ``quantize`` makes its INT8 models).
    On exit the model computes in float again, with the weights it was trained to."""
    ranges = ranges or int8_ranges()
    layers = [m for m in model.modules() if isinstance(m, (*_CONVOLUTIONS, nn.Linear))]
    pairs = folded_pairs(model)
    inputs = {layer: _Rounding(ranges.activation).to(layer.weight.device) for layer in layers}
    outputs = {layer: _Rounding(ranges.activation).to(layer.weight.device)
               for layer in layers if isinstance(layer, nn.Linear)}
    hooks = [layer.register_forward_pre_hook(lambda _m, args, q=q: (q(args[0]), *args[1:])) for layer, q in inputs.items()]
    hooks += [layer.register_forward_hook(lambda _m, _args, out, q=q: q(out)) for layer, q in outputs.items()]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for batch in calibration:
                model(batch.to(layers[0].weight.device) if layers else batch)
        for q in (*inputs.values(), *outputs.values()):
            q.calibrating = False
        for layer in layers:
            parametrize.register_parametrization(layer, "weight",
                                                 _WeightRounding(per_channel, pairs.get(layer), ranges.weight))
        model.train(was_training)
        yield model
    finally:
        for hook in hooks:
            hook.remove()
        for layer in layers:
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)


def recover(
    model: nn.Module, teacher: nn.Module, train_set: Dataset, val_set: Dataset, calibration: Sequence[Tensor],
    cfg: QuantizeConfig, distill_cfg: DistillConfig, progress: Progress | None = None, task: Task | None = None,
) -> tuple[nn.Module, DistillResult]:
    """Quantization-aware recovery: a copy of ``model`` trained ``cfg.recovery_epochs`` epochs by
    distillation from ``teacher`` (logits only: the float model's function is what INT8 has to keep)
    under ``simulated_int8``, at ``cfg.recovery_lr`` from the start (no warm-up: the weights are
    trained already). ``distill_cfg`` gives the rest (batch size, optimizer, temperature, seed).
    Returns the trained copy, computing in float again, and the training's record; its best epoch
    is chosen on the validation split as computed under the simulation. It trains in this process even
    when the run trains across processes (``spiralprune.pipeline.training``): the simulation is parametrizations
    and hooks on the live module, which a job's processes, rebuilding the model from a checkpoint, lack."""
    student = copy.deepcopy(model)
    settings = distill_cfg.model_copy(update={
        "epochs": cfg.recovery_epochs, "lr": cfg.recovery_lr, "warmup_epochs": 0.0,
        "weights": LossWeights(ce=0.0, logits=1.0), "early_stopping_patience": None, "bn_recalibration_batches": 0,
    })
    with simulated_int8(student, calibration, per_channel=cfg.per_channel) as simulated:
        result = distill(simulated, teacher, train_set, val_set, settings, progress=progress, task=task)
    return student.eval(), result
