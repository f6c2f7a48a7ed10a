"""Model specs: ``torchvision:NAME``, ``package.module:factory`` or a spiral checkpoint directory.

A base spec may carry factory keyword arguments as a query, ``torchvision:resnet18?num_classes=10``,
so that the spec alone rebuilds the architecture a checkpoint was pruned from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from torch import nn

from deploy.errors import InputError
from pipeline.specs import resolve_callable


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    target, _, query = spec.partition("?")
    return target, {key: yaml.safe_load(value) for key, value in parse_qsl(query, strict_parsing=bool(query))}


def with_kwargs(spec: str, **kwargs: Any) -> str:
    """The spec with extra keyword arguments (existing ones win)."""
    target, current = split_spec(spec)
    merged = kwargs | current
    query = "&".join(f"{key}={value}" for key, value in sorted(merged.items()))
    return f"{target}?{query}" if query else target


def build_model(spec: str) -> nn.Module:
    """A freshly initialised base model (never downloads weights)."""
    try:
        target, kwargs = split_spec(spec)
    except ValueError:
        raise InputError(f"model '{spec}': malformed keyword arguments after '?'") from None
    if target.startswith("torchvision:"):
        import torchvision

        name = target.removeprefix("torchvision:")
        if name not in torchvision.models.list_models():
            raise InputError(f"unknown torchvision model '{name}'")
        factory = lambda **kw: torchvision.models.get_model(name, weights=None, **kw)  # noqa: E731
    else:
        factory = resolve_callable(target, "model")
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise InputError(f"model '{spec}': {exc}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"model '{spec}' did not return a torch.nn.Module (got {type(model).__name__})")
    return model


def load_model(spec: str) -> tuple[nn.Module, str, list]:
    """Return (model, base spec, pruning plans so far). A directory is a spiral checkpoint."""
    if Path(spec).is_dir():
        from pipeline.checkpoint import load_checkpoint

        model, meta = load_checkpoint(Path(spec))
        return model, meta["base_spec"], meta["plans"]
    if ":" not in spec:
        raise InputError(
            f"model '{spec}' is neither an existing checkpoint directory "
            "nor a 'torchvision:NAME' or 'package.module:factory' spec"
        )
    return build_model(spec), spec, []
