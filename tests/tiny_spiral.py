"""A tiny but real spiral configuration (digits at 16x16, a narrow ResNet) shared by the tests."""

from __future__ import annotations

TINY_MODEL = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]"


def tiny_config(**overrides: object) -> dict:
    config = {
        "version": 2,
        "model": TINY_MODEL,
        "data": {"source": "digits", "batch_size": 64},
        "input_shape": [1, 1, 16, 16],
        "num_classes": 10,
        "teacher_training": {"epochs": 2, "lr": 0.1, "weights": {"ce": 1.0, "logits": 0.0}},
        "target": {
            "backend": "ort-cpu",
            "threads": 1,
            "profile": {"warmup_s": 0.05, "block_s": 0.005, "min_rounds": 6, "min_duration_s": 0.05, "max_duration_s": 0.5},
        },
        "budget": {"latency": {"statistic": "p50", "max_ms": 1000.0}, "accuracy": {"min": 0.0},
                   "parity": {"samples": 64}},
        "schedule": {"initial_reduction": 0.3, "max_steps": 1, "patience": 0},
        "prune": {"criterion": "l1"},
        "distill": {"epochs": 1, "lr": 0.02},
    }
    return merged(config, overrides)


def merged(config: dict, overrides: dict) -> dict:
    """``config`` with ``overrides``, nested blocks merged key by key (``budget={"latency": {"max_ms": 1}}``
    changes that one limit)."""
    out = dict(config)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
