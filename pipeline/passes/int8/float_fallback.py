"""The float fallback of INT8 quantization: the most quantization-sensitive operators kept in float.

When the fully quantized model (``spiralprune.pipeline.passes.int8.quantize``, or that of a model quantization-aware
recovery trained) loses more than ``max_drop`` points on the validation split, ``float_fallback`` keeps its
most quantization-sensitive operators in float (measured on training batches held apart from
calibration; the validation split only triggers it and confirms its choice) and rewrites the INT8
model with them; ``spiralprune.pipeline.passes.int8.model`` then judges that model instead, by the same rule, the
fallback's ``to_dict()`` reported beside it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import onnx
from torch.utils.data import Dataset

from spiralprune.deploy.backends import get_backend
from spiralprune.pipeline.passes.int8.config import QuantizeConfig
from spiralprune.pipeline.passes.int8.quantize import FLOAT, INT8, Calibrated, drawn_samples, input_batches, validation_accuracy
from spiralprune.pipeline.tasks import Task

# The operators the fallback may keep in float: those whose INT8 kernels (QLinearConv, QGemm, QLinearMatMul)
# carry the model's arithmetic, so the ones whose weights and inputs INT8 can ruin.
FALLBACK_OPS = ("Conv", "Gemm", "MatMul")


def sensitivity_batches(train_set: Dataset, onnx_path: Path, cfg: QuantizeConfig) -> list[np.ndarray]:
    """Up to ``cfg.sensitivity_batches`` training batches held apart from the calibration batches (the
    next ones of the same random order); empty when calibration used the whole split."""
    drawn = drawn_samples(train_set, cfg.calibration_batches * cfg.batch_size, cfg.sensitivity_batches * cfg.batch_size)
    return input_batches(drawn, onnx_path, cfg.batch_size) if len(drawn) else []


def _quantize_keeping(calibrated: Calibrated, out: Path, keep_float: Sequence[str]) -> None:
    """The INT8 model of ``calibrated`` with the nodes ``keep_float`` in float, reading float inputs."""
    calibrated.quantize(out, keep_float)
    if keep_float:
        _read_float_inputs(out, set(keep_float))


def _read_float_inputs(path: Path, keep_float: set[str]) -> None:
    """Feed the nodes kept float the float tensors before their inputs' Q -> DQ round trip, in place.

    Not cosmetic: ONNX Runtime's WeightBiasQuantization graph optimization (level 1, so every session
    and execution provider; 1.32) quantizes the float weights of any Conv / ConvTranspose / Gemm whose
    input comes from a DequantizeLinear, per tensor, coarser than the per-channel INT8 it replaces: a
    node ``nodes_to_exclude`` left float reading a DQ runs INT8 all the same (measured: an outlier
    convolution excluded alone stayed as wrong as quantized). A Q -> DQ pair nothing reads any more
    is removed; the producer of such a tensor then has a float reader too and runs float as well."""
    model = onnx.load(str(path))
    producer = {name: node for node in model.graph.node for name in node.output}
    for node in model.graph.node:
        if node.name not in keep_float:
            continue
        for i, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    while dead := [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and not any(o in read for o in n.output)]:
        for node in dead:
            model.graph.node.remove(node)
        read = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    unused = [i for i in model.graph.initializer if i.name not in read]
    for initializer in unused:
        model.graph.initializer.remove(initializer)
    onnx.save(model, str(path))


class _Reference:
    """The float model's class probabilities on the held-apart training batches, and how far a
    quantized model's are from them: mean KL(float || quantized) in nats per position (a sample, or a
    pixel: the task's class logits), and the percent of positions whose top-1 class differs."""

    def __init__(self, float_path: Path, batches: list[np.ndarray], task: Task) -> None:
        self._batches, self._task = batches, task
        self.log_p = self._log_probabilities(float_path)
        self.samples = sum(len(b) for b in batches)

    def _log_probabilities(self, path: Path) -> np.ndarray:
        with get_backend("ort-cpu")(path).load() as runner:
            name = next(iter(runner.input_metadata()))
            logits = np.concatenate([
                self._task.logits({k: torch.from_numpy(v) for k, v in runner.infer({name: b}).items()}).numpy()
                for b in self._batches])
        logits = logits.astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def distance(self, path: Path) -> tuple[float, float]:
        """(KL divergence, top-1 disagreement %) of the model at ``path`` from the float model."""
        log_q = self._log_probabilities(path)
        kl = float((np.exp(self.log_p) * (self.log_p - log_q)).sum(axis=1).mean())
        return kl, 100 * float((self.log_p.argmax(1) != log_q.argmax(1)).mean())


@dataclass(frozen=True)
class FloatNode:
    """One operator the fallback kept in float: its sensitivity is how much the mean KL(float || INT8) on
    the held-apart batches fell when it alone was left float; ``disagreement_pct`` is the held-apart
    top-1 disagreement with float once it and every node kept before it are float."""

    name: str
    op_type: str
    sensitivity: float
    disagreement_pct: float

    def to_dict(self) -> dict:
        return {"node": self.name, "op_type": self.op_type, "sensitivity_kl": self.sensitivity,
                "disagreement_pct": self.disagreement_pct}


@dataclass(frozen=True)
class Fallback:
    """What the fallback measured and kept float; ``reason`` says why it ran and how it ended."""

    all_int8_accuracy: float  # validation %, of the fully quantized model whose drop triggered the fallback
    measured: int  # Conv / Gemm / MatMul nodes whose sensitivity was measured
    samples: int  # held-apart training samples they were measured on
    all_int8_disagreement_pct: float | None  # None: the fallback could not run
    nodes: tuple[FloatNode, ...]
    seconds: float
    reason: str

    def to_dict(self) -> dict:
        return {"float_nodes": [n.to_dict() for n in self.nodes], "measured_nodes": self.measured,
                "held_out_samples": self.samples, "all_int8_accuracy": self.all_int8_accuracy,
                "all_int8_disagreement_pct": self.all_int8_disagreement_pct, "seconds": self.seconds,
                "reason": self.reason}


def float_fallback(
    float_path: Path, int8_path: Path, calibration: list[np.ndarray], train_set: Dataset, val_set: Dataset,
    task: Task, cfg: QuantizeConfig, accuracy: dict[str, float],
) -> tuple[Fallback | None, dict[str, float]]:
    """When the fully quantized ``int8_path`` loses more than ``cfg.max_drop`` validation points, keep its
    most quantization-sensitive Conv / Gemm / MatMul nodes in float and rewrite ``int8_path`` with them.

    ``accuracy``: the validation accuracy (%) the drop is counted on, ``FLOAT`` the float model's the
    INT8 model answers to (after quantization-aware recovery, the model before it, not ``float_path``)
    and ``INT8`` that of ``int8_path``. Returns what it did and the same accuracies, ``INT8`` evaluated
    again when nodes were kept float, which ``judge_quantized`` takes. What it did
    is None when the validation drop is within the limit (the judge accepts the whole model on
    accuracy: a float node would only cost speed, so there is no flag to run it always) or
    ``max_float_nodes`` is 0.
    The validation split only triggers it; everything it chooses is measured on
    ``cfg.sensitivity_batches`` training batches held apart from the calibration ones.

    Sensitivity is leave-one-out: for each node, the model with every other node quantized and that
    one float, scored by how much it lowers the mean KL(float || quantized) of the class probabilities
    on the held-apart batches. Leave-one-out measures a node's harm in the model the fallback keeps
    (every other node INT8, the errors they add downstream included), where a node quantized alone
    misses that interplay; KL resolves differences that top-1 agreement on a few hundred samples
    cannot. Cost: the preparation and the calibration run once more (ONNX Runtime's calibration cache
    gives every re-quantization the same ranges), then one re-quantization and one pass over the
    held-apart batches per node, plus one per node kept float.

    Then, most harmful first, nodes are kept float one by one: the fewest (at least one: the validation
    split has rejected the model with none) whose model's top-1 disagreement with the float model on the
    held-apart batches is at most ``max_drop`` percent (disagreement bounds the accuracy drop on any
    labels and does not saturate on training samples the float model fits), at most
    ``max_float_nodes`` and never every node. That model is written to ``int8_path`` even when the
    cap stops it short of the limit (the judge decides, on the validation split, as for any model),
    but only when it is more accurate on the validation split than the all-INT8 model: after
    quantization-aware recovery ``float_path`` is the recovered float model, which is not the model
    the drop is counted on, and keeping its nodes float can lose points (measured on a depthwise
    network: 93.33 % all-INT8, 89.44 % with one node float).
    """
    m = task.quality()
    drop = m.worse_by(accuracy[INT8], accuracy[FLOAT])
    if cfg.max_float_nodes == 0 or drop <= cfg.max_drop:
        return None, accuracy
    if not task.has_logits:
        return Fallback(accuracy[INT8], 0, 0, None, (), 0.0,
                        f"float fallback not run: it ranks nodes by the change of class probabilities, and task "
                        f"{task.name}'s outputs are not class logits"), accuracy
    start = time.perf_counter()
    held_out = sensitivity_batches(train_set, float_path, cfg)

    def ended(reason: str, nodes: tuple[FloatNode, ...] = (), measured: int = 0, samples: int = 0,
              disagreement: float | None = None, after: float | None = None) -> tuple[Fallback, dict[str, float]]:
        """What it did, and the accuracies: the INT8 model's ``after`` where nodes were kept float."""
        trigger = f"all nodes INT8: {accuracy[INT8]:.2f}{m.unit}, {m.worse_text(drop)} float (max_drop {cfg.max_drop:g}); "
        left = {**accuracy, INT8: after} if nodes else accuracy
        return Fallback(accuracy[INT8], measured, samples, disagreement, nodes, time.perf_counter() - start,
                        trigger + reason), left

    if not held_out:
        return ended(f"float fallback could not run: the {cfg.calibration_batches} calibration batches of "
                     f"{cfg.batch_size} use the whole train split; none is left to measure sensitivity on "
                     "(lower calibration_batches)")
    with tempfile.TemporaryDirectory(prefix="spiral-fallback-", dir=int8_path.parent) as work:
        calibrated = Calibrated(float_path, Path(work), calibration, cfg)
        ops = {n.name: n.op_type for n in onnx.load(str(calibrated.prepared), load_external_data=False).graph.node
               if n.op_type in FALLBACK_OPS and n.name}
        cap = min(cfg.max_float_nodes, len(ops) - 1)
        if cap < 1:
            return ended(f"float fallback could not run: the model has {len(ops)} Conv / Gemm / MatMul "
                         "node(s), and keeping every one float is not an INT8 model")
        reference = _Reference(float_path, held_out, task)
        scored: dict[tuple[str, ...], tuple[Path, float, float]] = {}

        def score(keep: tuple[str, ...]) -> tuple[Path, float, float]:
            if keep not in scored:
                path = Path(work) / f"candidate-{len(scored)}.onnx"
                _quantize_keeping(calibrated, path, keep)
                scored[keep] = (path, *reference.distance(path))
            return scored[keep]

        base_kl, base_disagreement = score(())[1:]
        sensitivity = {name: base_kl - score((name,))[1] for name in ops}
        ranked = sorted(ops, key=lambda name: -sensitivity[name])
        kept: list[FloatNode] = []
        for name in ranked[:cap]:
            disagreement = score(tuple(n.name for n in kept) + (name,))[2]
            kept.append(FloatNode(name, ops[name], sensitivity[name], disagreement))
            if disagreement <= cfg.max_drop:
                break
        chosen = scored[tuple(n.name for n in kept)][0]
        after = validation_accuracy({INT8: chosen}, val_set, task)[INT8]
        better = m.worse_by(after, accuracy[INT8]) < 0
        if better:
            chosen.replace(int8_path)
    last = kept[-1].disagreement_pct
    outcome = (f"within max_drop {cfg.max_drop:g}" if last <= cfg.max_drop
               else f"still above max_drop {cfg.max_drop:g} with {len(kept)} (the most allowed) kept float")
    measured = (f"{len(kept)} of {len(ops)} Conv / Gemm / MatMul nodes float ({', '.join(n.name for n in kept)}): "
                f"top-1 disagreement with float on {reference.samples} held-apart training samples "
                f"{base_disagreement:.2f}% -> {last:.2f}%, {outcome}")
    if not better:  # what the held-apart batches chose, the validation split does not confirm
        return ended(f"float fallback would keep {measured}; that model is no more accurate on the validation split "
                     f"({after:.2f}{m.unit}): the all-INT8 model stays", (), len(ops), reference.samples, base_disagreement)
    return ended(f"float fallback kept {measured}", tuple(kept), len(ops), reference.samples, base_disagreement, after)

