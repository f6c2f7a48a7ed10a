"""Structural pruning: NNI or Torch-Pruning criteria choose channels, Torch-Pruning's dependency graph removes them.

``PrunableModel`` traces a model once and makes plans from it (``plan_pruning``: one uniform plan, on a
copy), ``apply_plan`` removes in place and replays deterministically,
``zero_removed`` builds the reference the pruned model must match before fine-tuning.
"""

from spiral.pipeline.prune.apply import apply_plan, prune
from spiral.pipeline.prune.config import PruneConfig
from spiral.pipeline.prune.criteria import CRITERIA
from spiral.pipeline.prune.plan import PrunedGroup, PruningPlan, dtype_name, example_input, original_channels
from spiral.pipeline.prune.prunable import PrunableModel, plan_pruning
from spiral.pipeline.prune.zeroing import zero_removed

__all__ = [
    "CRITERIA",
    "PrunableModel",
    "PruneConfig",
    "PrunedGroup",
    "PruningPlan",
    "apply_plan",
    "dtype_name",
    "example_input",
    "original_channels",
    "plan_pruning",
    "prune",
    "zero_removed",
]
