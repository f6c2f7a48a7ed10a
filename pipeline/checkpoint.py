"""Spiral checkpoints: base model spec + recorded pruning plans + weights, never pickled code.

``directory/spiral.json`` names how to rebuild the architecture (the base spec and the plans, replayed
on a fresh base model with ``apply_plan``) and every parameter's shape; ``directory/model.safetensors``
holds the tensors. Loading rebuilds, checks every shape, then loads: nothing from the directory is
executed and ``torch.load`` is never called.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save
from torch import nn

from spiralprune.core.atomic import publish_dir, write_bytes, write_json
from spiralprune.core.errors import InputError
from spiralprune.deploy.validation import contained
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.prune import PruningPlan, apply_plan, example_input

SCHEMA_VERSION = 1
WEIGHTS = "model.safetensors"
MANIFEST = "spiral.json"
MAX_MANIFEST_BYTES = 64 << 20  # plans and shapes of a large model take a few MB


def save_checkpoint(
    directory: Path,
    *,
    base_spec: str,
    plans: list[PruningPlan],
    model: nn.Module,
    input_shape: list[int],
    metadata: dict | None = None,
    input_dtype: str = "float32",
) -> None:
    """Write the checkpoint into a temporary folder next to ``directory``, then rename it into place."""
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "base_spec": base_spec,
        "plans": [plan.to_dict() for plan in plans],
        "input_shape": list(input_shape),
        "input_dtype": input_dtype,
        "shapes": {name: list(tensor.shape) for name, tensor in state.items()},
        "metadata": metadata or {},
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        # bytes through write_bytes: safetensors' save_file creates its file private (0600), not by the umask
        write_bytes(tmp / WEIGHTS, save(state))
        write_json(tmp / MANIFEST, manifest)
        publish_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(directory: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model and return it (in eval mode) with the manifest; ``plans`` are ``PruningPlan``s."""
    manifest = _read_manifest(directory)
    plans = [PruningPlan.from_dict(plan) for plan in manifest["plans"]]
    model = build_model(manifest["base_spec"], named_in=directory / MANIFEST)
    example = example_input(manifest["input_shape"], manifest.get("input_dtype", "float32"))
    for index, plan in enumerate(plans):
        try:
            apply_plan(model, plan, example)
        except InputError as exc:
            raise InputError(f"checkpoint {directory}: plan {index + 1} of {len(plans)}: {exc}") from None
    expected = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    _check_shapes(directory, MANIFEST, expected, manifest["shapes"])
    weights = contained(directory, WEIGHTS, f"checkpoint {directory}:")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for truncated or foreign files
        raise InputError(f"checkpoint {directory}: {WEIGHTS} is missing or corrupt ({exc})") from None
    _check_shapes(directory, WEIGHTS, expected, {name: list(t.shape) for name, t in state.items()})
    model.load_state_dict(state, strict=True)
    manifest["plans"] = plans
    return model.eval(), manifest


def _read_manifest(directory: Path) -> dict[str, Any]:
    if not directory.is_dir():
        raise InputError(f"checkpoint {directory} does not exist or is not a directory")
    path = contained(directory, MANIFEST, f"checkpoint {directory}:")
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise InputError(f"checkpoint {directory}: {MANIFEST} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"checkpoint {directory} has no {MANIFEST}; it is not a spiral checkpoint") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"checkpoint {directory}: {MANIFEST} is unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
        found = manifest.get("schema_version") if isinstance(manifest, dict) else None
        raise InputError(f"checkpoint {directory}: schema_version {found} is not {SCHEMA_VERSION}")
    fields = {"base_spec": str, "plans": list, "input_shape": list, "shapes": dict}
    wrong = [key for key, kind in fields.items() if not isinstance(manifest.get(key), kind)]
    if wrong:
        raise InputError(f"checkpoint {directory}: {MANIFEST} lacks a valid {', '.join(wrong)}")
    return manifest


def _check_shapes(directory: Path, what: str, expected: dict[str, list[int]], found: dict[str, list[int]]) -> None:
    for name in sorted(set(expected) | set(found)):
        if expected.get(name) != found.get(name):
            raise InputError(
                f"checkpoint {directory}: '{name}' is {found.get(name)} in {what}, but the architecture rebuilt "
                f"from its base spec and plans has {expected.get(name)}"
            )
