"""Resolve ``package.module:attribute`` specs without executing anything but the named import."""

from __future__ import annotations

import importlib
from typing import Any

from deploy.errors import InputError


def resolve_callable(spec: str, what: str) -> Any:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(f"{what} '{spec}' is not of the form package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{what} '{spec}': cannot import {module_name}: {exc}") from None
    target = getattr(module, attribute, None)
    if not callable(target):
        raise InputError(f"{what} '{spec}': {module_name} has no callable '{attribute}'")
    return target
