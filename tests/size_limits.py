"""Every size limit a budget can set (``SizeBudget``'s keys), each below what any model ships.

The tests of every caller that judges a budget (a run's tries, ``spiralprune gate``, ``spiralprune deploy``,
``spiralprune quantize``) set them all and expect each to fail, so a new size limit is enforced by every
caller, and tested there, by being a key here.
"""

from __future__ import annotations

from spiralprune.deploy.budget import SizeBudget

# the least value each key accepts (a float limit is > 0, a count >= 1): no ONNX model is that small
IMPOSSIBLE_SIZE = {key: 1 if field.annotation == (int | None) else 1e-9 for key, field in SizeBudget.model_fields.items()}


def size_failures(checks: list[dict]) -> list[str]:
    """The names of the failed size checks among a result's checks (their ``to_dict()``s)."""
    return [c["name"] for c in checks if c["kind"] == "size" and c["status"] == "fail"]
