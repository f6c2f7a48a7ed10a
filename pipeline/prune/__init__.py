"""Structural pruning: NNI or Torch-Pruning criteria choose channels, Torch-Pruning's dependency graph removes them.

``plan_pruning`` decides (on a copy), ``apply_plan`` removes in place and replays deterministically,
``zero_removed`` builds the reference the pruned model must match before fine-tuning.
"""

from pipeline.prune.apply import apply_plan, prune
from pipeline.prune.config import PruneConfig
from pipeline.prune.criteria import CRITERIA
from pipeline.prune.plan import PrunedGroup, PruningPlan, example_input, plan_pruning
from pipeline.prune.zeroing import zero_removed

__all__ = [
    "CRITERIA",
    "PruneConfig",
    "PrunedGroup",
    "PruningPlan",
    "apply_plan",
    "example_input",
    "plan_pruning",
    "prune",
    "zero_removed",
]
