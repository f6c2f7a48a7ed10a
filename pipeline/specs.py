"""Resolve ``package.module:attribute`` specs: what the user typed is imported, what a file names is data.

A spec the user typed (on the command line, in their own run config) is imported as running Python
would, with the working directory first on the path as ``python -m`` has it. A spec read from a file (a checkpoint's ``base_spec``) may name a model of spiral's own zoo
(``spiralprune.pipeline.zoo``; torchvision architectures never reach this function) or a factory the user typed
in this same command (a run's own checkpoints); any other module is imported only inside
``trusting_model_code(True)``, which ``--trust-model-code`` or ``trust_model_code: true`` in the run
config turns on. Checkpoints and configs written before spiral's packages were ``spiral.*`` name the
zoo without a prefix, and those written before the import name ``spiralprune`` with ``spiral.``
(``LEGACY_ZOOS``): that is spiral's zoo still, never a package of that name that another
distribution may have installed. ``former_spellings`` is the one place that knows those spellings: the
zoo's, and what a teacher cache or a run folder recorded under them, are the same names today.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

from spiralprune.core.errors import InputError

PACKAGE = "spiralprune."  # spiral's import name since 2026-12-07
# What a name of spiral's own read before: ``spiral.…``, and before that bare (``pipeline.…``).
FORMER_PREFIXES = ("spiral.", "")
ZOO = "spiralprune.pipeline.zoo"
T = TypeVar("T")


def former_spellings(value: T) -> list[T]:
    """``value`` (a spec, or the dicts and lists a config or a cache key holds) as spiral spelled it
    before each rename, one spelling per era: every string naming spiral's own modules (``spiralprune.…``)
    respelled ``spiral.…``, then bare. A file written in one era spells all its names alike."""

    def respelled(value: object, prefix: str) -> object:
        if isinstance(value, str) and value.startswith(PACKAGE):
            return prefix + value.removeprefix(PACKAGE)
        if isinstance(value, dict):
            return {k: respelled(v, prefix) for k, v in value.items()}
        if isinstance(value, list):
            return [respelled(v, prefix) for v in value]
        return value

    return [respelled(value, prefix) for prefix in FORMER_PREFIXES]


# The zoo's names in older checkpoints (the docstring).
LEGACY_ZOOS = tuple(former_spellings(ZOO))
# (any module allowed, the package.module:factory targets the user typed)
_trust: ContextVar[tuple[bool, frozenset[str]]] = ContextVar("trust_model_code", default=(False, frozenset()))


@contextmanager
def trusting_model_code(allowed: bool, typed: Iterable[str] = ()) -> Iterator[None]:
    """Within the block, specs read from files may import any module when ``allowed``, and the factories
    of the specs in ``typed`` (the user's own, given in this command) in any case."""
    everything, targets = _trust.get()
    token = _trust.set((allowed or everything, targets | {spec.partition("?")[0] for spec in typed}))
    try:
        yield
    finally:
        _trust.reset(token)


def trusted() -> tuple[bool, frozenset[str]]:
    """What ``trusting_model_code`` allows here: any module, and the factories typed in this command; a
    torchrun job this command writes grants its processes the same."""
    return _trust.get()


def resolve_callable(spec: str, what: str, named_in: Path | None = None) -> Any:
    """The callable ``spec`` names; ``named_in`` is the file the spec was read from, None when the user typed it."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(f"{what} '{spec}' is not of the form package.module:factory")
    legacy = next((name for name in LEGACY_ZOOS if _within(module_name, name)), None)
    if legacy is not None:
        module_name = ZOO + module_name.removeprefix(legacy)
    everything, typed = _trust.get()
    zoo = _within(module_name, ZOO)
    if named_in is not None and not (everything or zoo or spec in typed):
        raise InputError(
            f"{named_in} names code from module {module_name!r} ({spec!r}); spiral imports no code named inside "
            "a file it reads unless you allow it: if you trust this folder (your own checkpoints record the spec "
            "you gave), pass --trust-model-code or set trust_model_code: true in your run config"
        )
    _current_directory_first()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"{what} '{spec}': cannot import {module_name}: {exc}") from None
    target = getattr(module, attribute, None)
    if not callable(target):
        raise InputError(f"{what} '{spec}': {module_name} has no callable '{attribute}'")
    return target


def _current_directory_first() -> None:
    """The working directory first on the import path, as ``python -m`` puts it: a factory in the folder
    the command runs from is found without ``PYTHONPATH`` (the ``spiralprune`` script's own path starts at its
    ``bin/``). It stays there, so that the modules imported from it stay importable (DataLoader workers)."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)


def _within(module_name: str, package: str) -> bool:
    return module_name == package or module_name.startswith(package + ".")
