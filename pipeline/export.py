"""Export a torch model to ONNX and check that ONNX Runtime computes what torch computes."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from spiral.deploy.atomic import temp_file_beside
from spiral.deploy.backends import get_backend
from spiral.deploy.errors import InputError

OPSET = 17


def export_onnx(
    model: nn.Module, example_input: torch.Tensor, path: Path, *, simplify: bool = True, dynamic_batch: bool = True,
    opset: int = OPSET,
) -> Path:
    """Write ``path`` atomically, inputs named ``input`` and outputs ``output``, with a dynamic batch
    axis (or the example's batch, fixed)."""
    model = model.eval()
    tmp = temp_file_beside(path)
    try:
        with warnings.catch_warnings(), torch.enable_grad():  # no_grad traces a fused attention kernel ONNX lacks
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example_input,),
                str(tmp),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None,
                opset_version=opset,
                dynamo=False,
            )
        proto = onnx.load(str(tmp))
        if simplify:
            import onnxslim

            proto = onnxslim.slim(proto)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, InputError):
            raise
        raise InputError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    return path


@dataclass(frozen=True)
class ParityResult:
    """ONNX Runtime against torch. ``output_scale`` is the largest |torch output|."""

    max_abs_diff: float
    top1_agreement: float
    samples: int
    atol: float
    min_top1_agreement: float
    output_scale: float = 1.0

    def tolerance_for(self, atol: float) -> float:
        """``atol`` for outputs up to 1 in magnitude, relative to the largest one above that.

        float32 keeps about 7 significant digits, so logits in the thousands (an untrained or
        freshly pruned model) differ by more than an absolute 1e-3 between two correct runtimes.
        """
        return atol * max(1.0, self.output_scale)

    @property
    def tolerance(self) -> float:
        return self.tolerance_for(self.atol)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement >= self.min_top1_agreement

    def to_dict(self) -> dict:
        return asdict(self) | {"tolerance": self.tolerance, "passed": self.passed}


def check_parity(
    model: nn.Module,
    onnx_path: Path,
    inputs: torch.Tensor,
    *,
    atol: float,
    min_top1_agreement: float,
    batch_size: int = 64,
) -> ParityResult:
    """Run the same real inputs through torch and ONNX Runtime and compare the outputs."""
    model = model.eval()
    max_diff, agree, scale = 0.0, 0, 0.0
    with get_backend("ort-cpu")(onnx_path).load() as runner, torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start : start + batch_size]
            expected = model(batch).numpy()
            got = next(iter(runner.infer({"input": batch.numpy()}).values()))
            if got.shape != expected.shape:
                raise InputError(f"{onnx_path}: ONNX output shape {got.shape} differs from torch {expected.shape}")
            diff = np.abs(got.astype(np.float64) - expected)
            scale = max(scale, float(np.abs(expected).max()))
            max_diff = max(max_diff, float(np.nanmax(diff)) if np.isfinite(diff).all() else float("inf"))
            agree += int((got.argmax(-1) == expected.argmax(-1)).sum())
    return ParityResult(max_diff, agree / len(inputs), len(inputs), atol, min_top1_agreement, scale)
