"""A model as a command is given it: a spec, a spiral checkpoint or a spiralprune run folder.

One loader for every command and the spiral itself; a spec may come with the user's trained weights
(``spiralprune.pipeline.weights``). It sits above ``spiralprune.pipeline.models`` (specs to
fresh modules) and ``spiralprune.pipeline.checkpoint`` (which rebuilds its module from a spec), so neither
imports the other's caller. A run folder stands for its result (``RunFolder.result_checkpoint``:
the last accepted step that has a checkpoint, else its trained teacher).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.checkpoint import load_checkpoint
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.prune import example_input
from spiralprune.pipeline.run_folder import RunFolder
from spiralprune.pipeline.weights import load_weights


@dataclass(frozen=True)
class Source:
    """The module (in eval mode for a checkpoint), how to rebuild it (base spec + pruning plans so
    far), and what a checkpoint recorded of its input (None / float32 for a spec)."""

    module: nn.Module
    base_spec: str
    plans: list
    input_shape: list[int] | None
    input_dtype: str
    name: str  # what was loaded: the spec, or the checkpoint folder (a run folder's result)

    def example(self, input_shape: list[int] | None = None, input_dtype: str | None = None) -> torch.Tensor:
        """Zeros of the given shape and dtype, else the checkpoint's, checked to run through the module."""
        shape = input_shape or self.input_shape
        dtype = input_dtype or self.input_dtype
        if shape is None:
            raise InputError(f"model '{self.name}' has no recorded input shape: pass --input-shape, e.g. 1,3,224,224")
        example = example_input(shape, dtype)
        try:
            with torch.no_grad():
                self.module.eval()(example)
        except Exception as exc:  # any failure means the shape or dtype does not fit the model
            raise InputError(f"model '{self.name}' does not accept {dtype} input of shape {shape}: {exc}") from None
        return example


def load_source(spec: str, weights: Path | None = None) -> Source:
    """``spec`` built (with ``weights`` loaded into it), or the checkpoint or run result it names."""
    path = Path(spec)
    if path.is_dir():
        if weights is not None:
            raise InputError(f"weights apply to a model spec; '{spec}' is a spiral checkpoint or run, which has its own")
        checkpoint = RunFolder(path).result_checkpoint() if RunFolder.holds_run(path) else path
        model, meta = load_checkpoint(checkpoint)
        return Source(model, meta["base_spec"], meta["plans"], meta["input_shape"],
                      meta.get("input_dtype", "float32"), str(checkpoint))
    if ":" not in spec:
        raise InputError(
            f"model '{spec}' is neither an existing checkpoint or run directory "
            "nor a 'torchvision:NAME' or 'package.module:factory' spec"
        )
    model = build_model(spec)
    if weights is not None:
        load_weights(model, weights, spec)
    return Source(model, spec, [], None, "float32", spec)
