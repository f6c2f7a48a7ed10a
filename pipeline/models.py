"""Model specs: ``torchvision:NAME`` or ``package.module:factory`` (``spiral.pipeline.source`` also takes checkpoints).

A base spec may carry factory keyword arguments as a query, ``torchvision:resnet18?num_classes=10``,
so that the spec alone rebuilds the architecture a checkpoint was pruned from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from torch import nn

from spiral.deploy.errors import InputError
from spiral.pipeline.specs import resolve_callable


def split_spec(spec: str) -> tuple[str, dict[str, Any]]:
    target, _, query = spec.partition("?")
    return target, {key: yaml.safe_load(value) for key, value in parse_qsl(query, strict_parsing=bool(query))}


def with_kwargs(spec: str, **kwargs: Any) -> str:
    """The spec with extra keyword arguments (existing ones win)."""
    target, current = split_spec(spec)
    merged = kwargs | current
    query = "&".join(f"{key}={value}" for key, value in sorted(merged.items()))
    return f"{target}?{query}" if query else target


def build_model(spec: str, named_in: Path | None = None) -> nn.Module:
    """A freshly initialised base model (never downloads weights).

    ``named_in`` is the file the spec was read from (None: the user typed it); see ``spiral.pipeline.specs``.
    Keyword arguments are plain JSON values whoever wrote them.
    """
    try:
        target, kwargs = split_spec(spec)
        json.dumps(kwargs, allow_nan=False)
    except (ValueError, yaml.YAMLError):
        raise InputError(f"model '{spec}': malformed keyword arguments after '?'") from None
    except TypeError:
        raise InputError(f"model '{spec}': keyword arguments must be plain JSON values") from None
    if target.startswith("torchvision:"):
        import torchvision

        name = target.removeprefix("torchvision:")
        if name not in torchvision.models.list_models():
            raise InputError(f"unknown torchvision model '{name}'")
        if any(key.startswith("weights") for key in kwargs):
            raise InputError(f"model '{spec}': spiral builds torchvision models without downloading weights")
        factory = lambda **kw: torchvision.models.get_model(name, weights=None, **kw)  # noqa: E731
    else:
        factory = resolve_callable(target, "model", named_in)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise InputError(f"model '{spec}': {exc}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"model '{spec}' did not return a torch.nn.Module (got {type(model).__name__})")
    return model
