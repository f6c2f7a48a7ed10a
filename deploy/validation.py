"""One-line descriptions of config validation errors, shared by every YAML the tools read."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from spiralprune.core.errors import InputError

ModelT = TypeVar("ModelT", bound=BaseModel)


def _submodel(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the field at ``loc`` (for suggesting the nearest valid key)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            return current if isinstance(part, str) else None
        annotation = current.model_fields[part].annotation
        types = [annotation, *getattr(annotation, "__args__", ())]
        current = next((c for c in types if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return current


def describe_validation_error(exc: ValidationError, model: type[BaseModel], source: str) -> str:
    """The first validation error as one line, with the nearest valid key for an unknown one."""
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        owner = _submodel(model, loc[:-1])
        known = list(owner.model_fields) if owner else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(known)}"
        return f"{source}: unknown key '{where}'{hint}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{source}: {where}: {message}"


def validate(model: type[ModelT], data: Any, source: str) -> ModelT:
    """``data`` as ``model``, or an InputError naming the first problem in one line."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(describe_validation_error(exc, model, source)) from None


def parse_yaml(text: str, source: str) -> Any:
    """YAML through ``safe_load`` only: a tag that would build a Python object is an error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {str(exc).splitlines()[0]}") from None


def read_yaml(path: Path, what: str) -> Any:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror}") from None
    return parse_yaml(text, str(path))


def contained(root: Path, name: str | Path, what: str) -> Path:
    """``root / name``, refused unless it stays inside ``root`` once resolved: no ``..``, absolute path, symlink out."""
    path = Path(root) / name
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise InputError(f"{what} {str(name)!r} points outside {root}")
    return path
