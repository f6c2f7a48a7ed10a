"""Model inputs for a measurement: given arrays cycled to the batch size, or seeded random ones."""

from __future__ import annotations

import numpy as np

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.base import InputMetadata


def make_inputs(
    metadata: InputMetadata, batch: int, *, seed: int = 0, given: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Arrays for every model input at ``batch``: ``given`` ones cycled along axis 0, else random.

    Random inputs are seeded: floats standard normal, integers and booleans in {0, 1} (valid token
    ids and masks for any vocabulary). Only the leading dimension may be dynamic.
    """
    if given is not None:
        missing = sorted(set(metadata) - set(given))
        extra = sorted(set(given) - set(metadata))
        if missing or extra:
            raise InputError(
                f"inputs do not match the model: missing {missing or 'none'}, unknown {extra or 'none'}"
            )
    rng = np.random.default_rng(seed)
    feed = {}
    for name, (shape, dtype) in metadata.items():
        concrete = _concrete_shape(name, shape, batch)
        if given is not None:
            array = np.asarray(given[name])
            if array.ndim != len(concrete) or list(array.shape[1:]) != concrete[1:]:
                raise InputError(f"input '{name}' has shape {list(array.shape)}; the model takes {shape}")
            feed[name] = np.ascontiguousarray(array[np.arange(batch) % array.shape[0]].astype(dtype, copy=False))
        elif np.issubdtype(dtype, np.floating):
            feed[name] = rng.standard_normal(concrete).astype(dtype)
        else:
            feed[name] = rng.integers(0, 2, size=concrete).astype(dtype)
    return feed


def _concrete_shape(name: str, shape: list[int | str | None], batch: int) -> list[int]:
    if not shape:
        return []
    head, *rest = shape
    if isinstance(head, int) and head != batch:
        raise InputError(f"input '{name}' has a static batch of {head}; it cannot run at batch {batch}")
    dynamic = [d for d in rest if not isinstance(d, int)]
    if dynamic:
        raise InputError(
            f"input '{name}' has dynamic dimensions {dynamic} besides the batch; pass inputs of a fixed shape"
        )
    return [batch, *rest]


def example_feed(metadata: InputMetadata) -> dict[str, np.ndarray]:
    """Random inputs at the model's static batch, or batch 1 where the batch is dynamic."""
    batches = {shape[0] for shape, _ in metadata.values() if shape and isinstance(shape[0], int)}
    return make_inputs(metadata, batches.pop() if len(batches) == 1 else 1)
