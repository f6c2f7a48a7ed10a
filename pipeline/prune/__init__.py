"""Structural pruning: NNI or Torch-Pruning criteria choose channels, Torch-Pruning's dependency graph removes them.

``PrunableModel`` traces a model once and makes plans from it (``plan_pruning``: one uniform plan, on a
copy), ``apply_plan`` removes in place and replays deterministically,
``zero_removed`` builds the reference the pruned model must match before fine-tuning.

The names below are imported from their modules on first use (PEP 562), so that importing
``spiralprune.pipeline.prune.config`` (a run config, a command's ``--help``) imports no torch.
"""

import importlib

_MODULES = {
    "apply_plan": "apply", "prune": "apply", "PruneConfig": "config", "CRITERIA": "criteria",
    "PrunedGroup": "plan", "PruningPlan": "plan", "dtype_name": "plan", "example_input": "plan",
    "original_channels": "plan", "PrunableModel": "prunable", "plan_pruning": "prunable", "zero_removed": "zeroing",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str) -> object:
    if name in _MODULES:
        return getattr(importlib.import_module(f"{__name__}.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
