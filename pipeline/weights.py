"""A user's trained weights into the module its spec builds: safetensors, or a state dict saved by ``torch.save``.

``.safetensors`` files are read with safetensors; anything else with ``torch.load(weights_only=True)``,
which unpickles tensors and containers only, never code. Training frameworks wrap the state dict
(Lightning's ``{"state_dict": ...}``, a ``{"model": ...}`` checkpoint) and prefix its keys (DDP's
``module.``, Lightning's ``model.``, ``torch.compile``'s ``_orig_mod.``): both are undone when the
model's own keys do not have them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn

from spiralprune.core.errors import InputError

PREFIXES = ("module.", "model.", "_orig_mod.")
WRAPPERS = ("state_dict", "model_state_dict", "model", "net")
_SHOWN = 5  # key names quoted in an error line


def load_weights(model: nn.Module, path: Path, spec: str) -> nn.Module:
    """``model`` with the tensors of ``path`` loaded (strict: every key, every shape)."""
    state = _fit_prefixes(_read_state(path), set(model.state_dict()))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise InputError(f"weights {path} do not fit model '{spec}': " + "; ".join(
            f"{len(keys)} {what} key{'s' * (len(keys) > 1)} ({_names(keys)})"
            for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys))
    wrong = [f"{k} {list(state[k].shape)} vs {list(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise InputError(f"weights {path} do not fit model '{spec}': {len(wrong)} shapes differ "
                         f"(file vs model: {', '.join(wrong[:_SHOWN])}{', ...' * (len(wrong) > _SHOWN)})")
    model.load_state_dict(state, strict=True)
    return model


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            loaded = load_file(str(path))
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, ValueError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"weights file {path} is not a safetensors file or a state dict saved by torch.save "
                         f"(loaded with weights_only=True, which refuses pickled code): {first}") from None
    for key in WRAPPERS:  # a training checkpoint around the state dict
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict) and not _is_state(loaded):
            loaded = loaded[key]
    if not _is_state(loaded):
        raise InputError(f"weights file {path} holds no state dict (a mapping of names to tensors)")
    return {key: value for key, value in loaded.items() if isinstance(value, torch.Tensor)}


def _is_state(value: object) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) for k in value) and any(isinstance(v, torch.Tensor) for v in value.values())


def _fit_prefixes(state: dict[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor]:
    """``state`` with the wrappers' key prefixes removed while every key has one the model's keys lack."""
    while True:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in state)
                       and not all(k.startswith(p) for k in keys)), None)
        if prefix is None:
            return state
        state = {key.removeprefix(prefix): value for key, value in state.items()}


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")
