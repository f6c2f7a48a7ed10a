"""Model specs: ``torchvision:NAME``, ``timm:NAME``, ``package.module:factory`` or ``python:NAME``.

A base spec may carry factory keyword arguments as a query, ``torchvision:resnet18?num_classes=10``,
so that the spec alone rebuilds the architecture a checkpoint was pruned from
(``spiralprune.pipeline.source`` also takes checkpoints and run folders).

Pretrained weights are fetched only when the user types them (``torchvision:resnet18?weights=DEFAULT``,
``timm:resnet18?pretrained=true``): spiral passes ``None`` for every weights keyword a builder takes
(``weights``, ``weights_backbone``) unless the spec says otherwise, so no build reaches for the network
unasked. A spec read from a file (a checkpoint's) never downloads: its weights keywords are dropped,
because the checkpoint holds the weights.

``python:NAME`` names a module handed to spiral in this process (``spiralprune.shrink(model, ...)``): the
checkpoints of that run record it, and rebuild from a copy of it while it is given (``given_modules``).
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.specs import resolve_callable

# The keywords that make a builder fetch pretrained weights: torchvision's two, timm's one.
WEIGHTS_KEYWORDS = {"torchvision": ("weights", "weights_backbone"), "timm": ("pretrained",)}
_PREFETCH = {
    "torchvision": "python -c \"import torchvision; torchvision.models.get_model('{name}', {kwargs})\" on a machine "
                   "with network access and copy its $TORCH_HOME/hub/checkpoints folder (TORCH_HOME defaults to "
                   "~/.cache/torch) here",
    "timm": "python -c \"import timm; timm.create_model('{name}', {kwargs})\" on a machine with network access "
            "and copy its $HF_HOME/hub folder (HF_HOME defaults to ~/.cache/huggingface) here; set HF_HUB_OFFLINE=1",
}
_given: ContextVar[Mapping[str, nn.Module]] = ContextVar("given_modules", default={})


@contextmanager
def given_modules(modules: Mapping[str, nn.Module]) -> Iterator[None]:
    """Within the block ``python:NAME`` specs build a copy of ``modules[NAME]``."""
    token = _given.set({**_given.get(), **modules})
    try:
        yield
    finally:
        _given.reset(token)


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
    """The base model a spec names, with pretrained weights only when a spec the user typed asks for them.

    ``named_in`` is the file the spec was read from (None: the user typed it); see ``spiralprune.pipeline.specs``.
    Keyword arguments are plain JSON values whoever wrote them.
    """
    try:
        target, kwargs = split_spec(spec)
        json.dumps(kwargs, allow_nan=False)
    except (ValueError, yaml.YAMLError):
        raise InputError(f"model '{spec}': malformed keyword arguments after '?'") from None
    except TypeError:
        raise InputError(f"model '{spec}': keyword arguments must be plain JSON values") from None
    library, _, name = target.partition(":")
    if library in WEIGHTS_KEYWORDS:
        factory = _library_factory(library, name, spec)
        kwargs = _weights_keywords(library, factory, kwargs, from_file=named_in is not None)
    elif library == "python":
        factory = _given_factory(name, spec)
    else:
        factory = resolve_callable(target, "model", named_in)
    try:
        model = factory(**kwargs)
    except TypeError as exc:
        raise InputError(f"model '{spec}': {exc}") from None
    except OSError as exc:  # the download of pretrained weights the user typed: offline, or no such file
        if not _downloads(library, kwargs):
            raise
        hint = _PREFETCH[library].format(name=name, kwargs=", ".join(f"{k}={v!r}" for k, v in kwargs.items()))
        raise InputError(f"model '{spec}': cannot download its pretrained weights ({exc}); "
                         f"to pre-fetch them, run {hint}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"model '{spec}' did not return a torch.nn.Module (got {type(model).__name__})")
    return model


def _library_factory(library: str, name: str, spec: str) -> Callable[..., Any]:
    if library == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models():
            raise InputError(f"unknown torchvision model '{name}'")
        return torchvision.models.get_model_builder(name)
    try:
        import timm
    except ImportError:
        raise InputError(f"model '{spec}': timm is not installed (pip install 'spiralprune[timm]')") from None
    if not timm.is_model(name):
        raise InputError(f"unknown timm model '{name}'")
    return lambda **kw: timm.create_model(name, **kw)


def _weights_keywords(library: str, factory: Callable[..., Any], kwargs: dict[str, Any], *, from_file: bool) -> dict:
    """``kwargs`` with every weights keyword the builder takes set to None (timm's ``pretrained`` to
    False) unless typed; from a file, always so: a checkpoint holds its own weights."""
    parameters = inspect.signature(factory).parameters
    off = {"weights": None, "weights_backbone": None, "pretrained": False}
    keywords = WEIGHTS_KEYWORDS[library]
    unset = {key: off[key] for key in keywords if key in parameters or library == "timm"}
    typed = {} if from_file else {key: _none_spelled(value) for key, value in kwargs.items() if key in keywords}
    return {**{k: v for k, v in kwargs.items() if k not in keywords}, **unset, **typed}


def _downloads(library: str, kwargs: dict[str, Any]) -> bool:
    return any(kwargs.get(key) not in (None, False) for key in WEIGHTS_KEYWORDS.get(library, ()))


def _none_spelled(value: Any) -> Any:
    """``?weights=None`` (Python's spelling) means None, as ``?weights=null`` does."""
    return None if value in ("None", "none") else value


def _given_factory(name: str, spec: str) -> Callable[[], nn.Module]:
    given = _given.get().get(name)
    if given is None:
        raise InputError(
            f"model '{spec}' is a module that was given to spiral in Python, not a spec it can rebuild: "
            "load it with spiralprune.load(PATH, base=<the same untrained or trained module>), or use its model.onnx"
        )
    return lambda: copy.deepcopy(given)
