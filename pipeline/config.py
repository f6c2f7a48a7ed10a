"""The run configuration: one YAML file, validated whole before any work starts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends import get_backend
from spiralprune.deploy.budget import Budget, LatencyBudget, ParityBudget, QualityBudget, filled
from spiralprune.deploy.sampling import ProfileSettings
from spiralprune.deploy.strict import Strict
from spiralprune.deploy.validation import read_yaml, validate
from spiralprune.pipeline.distill.config import DistillConfig
from spiralprune.pipeline.passes.int8.config import QUANTIZED_BACKENDS, QuantizeConfig
from spiralprune.pipeline.passes.steps.config import ScheduleConfig
from spiralprune.pipeline.prune.config import PruneConfig
from spiralprune.pipeline.tasks.config import TaskConfig

if TYPE_CHECKING:
    from spiralprune.pipeline.tasks import Task

CONFIG_VERSION = 2


class TargetConfig(Strict):
    """Where the spiral measures. ``device``, ``compile_mode`` and ``spin_wait`` belong to the torch
    targets (``torch``, ``torch-compile``), which run the live module; every other backend runs the
    ONNX export. ``spin_wait`` (CUDA only): the host polls each call's end event instead of sleeping
    in CUDA's synchronize (trtexec's ``--useSpinWait``)."""

    backend: str = "ort-cpu"
    threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "fp16", "bf16", "int8"] = "fp32"
    device: Literal["cpu", "cuda"] = "cpu"
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    spin_wait: bool = False
    profile: ProfileSettings = ProfileSettings()

    @field_validator("backend")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            get_backend(value)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _torch_options(self) -> "TargetConfig":
        names = get_backend(self.backend).option_names
        if self.device != "cpu" and "device" not in names:
            raise ValueError(f"target.device is for the torch targets; backend '{self.backend}' picks its own device")
        if self.compile_mode != "default" and "mode" not in names:
            raise ValueError(f"target.compile_mode is for backend 'torch-compile', not '{self.backend}'")
        if self.spin_wait and "spin_wait" not in names:
            raise ValueError(f"target.spin_wait is for the torch targets, not '{self.backend}'")
        if self.spin_wait and self.device != "cuda":
            raise ValueError("target.spin_wait waits on a CUDA event: it needs target.device: cuda")
        return self

    def backend_options(self) -> dict[str, Any]:
        """The options the backend takes from this config: a torch target's device, compile mode and
        spin wait (only when on: the operator tables keyed by these options stay as they were)."""
        names = get_backend(self.backend).option_names
        return {**({"device": self.device} if "device" in names else {}),
                **({"mode": self.compile_mode} if "mode" in names else {}),
                **({"spin_wait": True} if self.spin_wait else {})}

    @property
    def runs_live_module(self) -> bool:
        """The torch targets measure the module itself (``module=``), the ONNX export gives its io."""
        return "module" in get_backend(self.backend).option_names


def check_quality(budget: QualityBudget, task: "Task", where: str) -> None:
    """``budget`` fits ``task``: a metric it measures, a bound in the metric's direction, percentages
    within 0..100."""
    from spiralprune.core.errors import InputError

    try:
        metric = task.quality(budget.name)
    except InputError as exc:
        raise ValueError(f"{where}: {exc}") from None
    wrong = "max" if metric.bound == "min" else "min"
    if getattr(budget, wrong) is not None:
        better = "higher" if metric.higher_is_better else "lower"
        raise ValueError(f"{where}.{wrong}: {metric.name} is {better}-is-better; its limit is {metric.bound}")
    if metric.unit == "%":
        for key in ("min", "max", "max_drop"):
            value = getattr(budget, key)
            if value is not None and not 0 <= value <= 100:
                raise ValueError(f"{where}.{key}: {metric.name} is in percent; {value} is not between 0 and 100")


def migrate(data: Any) -> Any:
    """A version 1 run config (``version: 1``, or no version: every config before version 2) in version
    2's keys: the budget's latency keys under ``budget.latency`` (version 1's default ``min_speedup: 2``
    made explicit), ``budget.max_size_mb`` as ``budget.size.max_mb``, the top-level ``parity`` as
    ``budget.parity``, and ``quantize.max_drop`` / ``min_speedup`` under ``quantize.budget``
    (``spiralprune.deploy.budget``: one budget type for the run, the gate, a deploy target and the INT8 stage).
    Keys already in version 2's places are left as they are; run folders written before resume through it."""
    if not isinstance(data, dict) or data.get("version", 1) != 1:
        return data
    data = {**data, "version": CONFIG_VERSION}
    old = data.get("budget")
    if isinstance(old, dict) and "latency" not in old:
        budget = {k: v for k, v in old.items() if k not in (*_V1_LATENCY, "max_size_mb")}
        budget["latency"] = {k: old[k] for k in _V1_LATENCY if old.get(k) is not None}
        if "min_speedup" not in old:
            budget["latency"]["min_speedup"] = _V1_MIN_SPEEDUP
        if old.get("max_size_mb") is not None:
            budget["size"] = {"max_mb": old["max_size_mb"]}
        data["budget"] = budget
    if "parity" in data:
        data["budget"] = {**data.get("budget", {"latency": {"min_speedup": _V1_MIN_SPEEDUP}}),
                          "parity": data.pop("parity")}
    quantize = data.get("quantize")
    if isinstance(quantize, dict) and "budget" not in quantize:
        quantize = {k: v for k, v in quantize.items() if k not in ("max_drop", "min_speedup")}
        quantize["budget"] = {"latency": {"min_speedup": data["quantize"].get("min_speedup", 1.0)},
                              "metric": {"max_drop": data["quantize"].get("max_drop", 1.0)}}
        data["quantize"] = quantize
    return data


_V1_LATENCY = ("statistic", "max_ms", "min_speedup", "min_throughput")
_V1_MIN_SPEEDUP = 2.0  # version 1's default, the same as a run's default budget now


class DataConfig(Strict):
    """``digits`` (scikit-learn's handwritten digits), an ImageFolder directory or ``package.module:factory``
    (returning training and validation data sets, or two DataLoaders: ``spiralprune.pipeline.data.splits_of``).

    An ImageFolder's images are resized to the input and made [0, 1] tensors, then normalized by ``mean``
    and ``std`` (one value per input channel) when given. With ``augment`` its training split is
    augmented as torchvision's reference training does (a random resized crop to the input, a random
    horizontal flip); validation, the pruning criteria's ``batch_size`` calibration batches and the
    INT8 calibration read the training images un-augmented. ``num_workers`` and ``pin_memory`` are
    those of every training DataLoader."""

    source: str = "digits"
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    mean: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(None, min_length=1)
    std: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]] | None = Field(None, min_length=1)
    # Off by default: every number in docs/ was measured without it (not yet measured with).
    augment: bool = False
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = False

    @model_validator(mode="after")
    def _normalization(self) -> "DataConfig":
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together: give both (one value per input channel) or neither")
        if self.mean is not None and len(self.mean) != len(self.std):
            raise ValueError(f"mean and std differ in length ({len(self.mean)} and {len(self.std)}): one value per "
                             "input channel each")
        return self


class DistributedConfig(Strict):
    """Where a run trains: on ``device`` (``auto``: a GPU when one is visible, else the CPU), in
    ``processes`` per node and ``nnodes`` nodes (torchrun's ``--nproc-per-node``, ``--nnodes``,
    ``--node-rank``, ``--rdzv-endpoint``). One process (the default) trains in the run's own process; more
    run every training of the run (the teacher's, the tries', the probes', the final recovery) as a
    torchrun job (``spiralprune.pipeline.training``), DistributedDataParallel over NCCL with one GPU per
    process, or gloo on the CPU; a step's ``sensitivity`` or ``taylor-group`` scores and its residual
    blocks' loss rises are split across as many processes on the CPU (``spiralprune.pipeline.scoring``).
    With ``nnodes`` above 1 node 0 runs the spiral and every other node a follower (``spiralprune join``)
    that node 0 announces each job to (``spiralprune.pipeline.nodes``); each job's rendezvous waits
    ``join_timeout_s`` for every node, so a node that never comes fails the run in one line instead of
    hanging it. The keys are validated here as torchrun needs them. Measurement and the operator table
    never join the process group nor the training's device: they stay one process on the target, a trained
    model comes back to the CPU."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    processes: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    node_rank: int = Field(0, ge=0)
    rdzv_endpoint: str | None = Field(None, min_length=1)  # host:port of node 0's rendezvous
    # torchrun's own default (600 s): a node that starts late (loading its Python, its data) still joins
    join_timeout_s: int = Field(600, ge=1)

    @field_validator("rdzv_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        """``HOST:PORT`` (an IPv6 host in brackets), checked here: torchrun would take a bad one apart only
        once a job starts, on every node, each failing its own way."""
        if value is None:
            return value
        host, colon, port = value.rpartition(":")
        if not colon or not host.strip("[]") or not port.isdigit():
            raise ValueError(f"'{value}' is not HOST:PORT (node 0's address and a free port every node reaches, "
                             "e.g. node0:29500)")
        if not 1 <= int(port) <= 65535:
            raise ValueError(f"'{value}': port {int(port)} is not between 1 and 65535")
        return value

    @model_validator(mode="after")
    def _nodes(self) -> "DistributedConfig":
        if self.nnodes > 1 and self.rdzv_endpoint is None:
            raise ValueError(f"nnodes {self.nnodes} needs rdzv_endpoint (host:port every node reaches)")
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} is not below nnodes {self.nnodes}")
        return self

    @property
    def spread(self) -> str:
        """Where a job's processes run, as the run says it: ``2 processes``, ``2 processes on each of 3 nodes``."""
        return f"{self.processes} processes" + (f" on each of {self.nnodes} nodes" if self.nnodes > 1 else "")

    @property
    def in_process(self) -> bool:
        """One process on one node: the run trains in its own process, as without this block."""
        return self.processes * self.nnodes == 1

    def training_device(self) -> str:
        """``cuda`` or ``cpu``: ``device`` with ``auto`` resolved; one line when ``cuda`` is asked and no GPU is
        visible (the run asks before any work)."""
        import torch

        if self.device == "cpu" or (self.device == "auto" and not torch.cuda.is_available()):
            return "cpu"
        if not torch.cuda.is_available():
            raise InputError("distributed.device cuda: no GPU is visible to this process (torch.cuda.is_available() "
                             "is False); train on device cpu or auto")
        return "cuda"


class RunConfig(Strict):
    version: int = CONFIG_VERSION
    model: str
    # Your trained weights for ``model`` (a spec): a .safetensors file or a state dict saved by torch.save
    # (read with weights_only=True; DDP's/Lightning's key prefixes removed; see spiralprune.pipeline.weights).
    weights: Path | None = None
    data: DataConfig = DataConfig()
    input_shape: list[int]
    num_classes: int = Field(10, ge=2)
    # What the model does and how it is judged (spiralprune.pipeline.tasks); num_classes is its classes
    # (segmentation: with the background; detection: without it).
    task: TaskConfig = TaskConfig()
    teacher_training: DistillConfig | None = None
    target: TargetConfig = TargetConfig()
    # The final budget (``spiralprune.deploy.budget.Budget``), its relative limits against the teacher
    # measured when the run starts: latency (min_speedup, max_ms, min_throughput at the run's batch),
    # the task's metric (default: at most 1 point below the teacher), size, parity (default tolerances).
    budget: Budget = Budget(latency=LatencyBudget(min_speedup=2.0), metric=QualityBudget(max_drop=1.0),
                            parity=ParityBudget())
    schedule: ScheduleConfig = ScheduleConfig()
    # A run always has labelled data, so its default criterion is a loss-aware one whose scores
    # compare across layers (what latency-aware allocation needs): ``sensitivity``, the measured loss
    # rise, which benchmarks/quality_frontier.py favoured over taylor-group's first-order estimate
    # (2026-12-04, ResNet, 3 seeds: +0.59 point at 3x, equal at 4x; docs/benchmarks.md). Both were then scored
    # on calibration batches of one class (the first of an ImageFolder; drawn at random since 2026-12-07): at
    # the one-shot's uniform structure on the plain net, sensitivity is 0.54 +- 0.64 points below L1 with ten
    # classes (-1.33 with one; docs/landing/2026-12-07.md), kept because the knapsack needs scores that
    # compare across layers. ``PruneConfig`` alone keeps l1.
    prune: PruneConfig = PruneConfig(criterion="sensitivity")
    distill: DistillConfig = DistillConfig()
    seed: int = 0
    # A final INT8 stage after the spiral (None: none), accepted by the same judge; see spiralprune.pipeline.passes.int8.
    quantize: QuantizeConfig | None = None
    # Import the package.module:factory a checkpoint or run folder names (see spiralprune.pipeline.specs); the
    # config's own specs are the user's and need no permission. A permission, not part of the run:
    # left out of dumps, so a resumed run may grant it.
    trust_model_code: bool = Field(False, exclude=True)
    # Where the run trains (processes, nodes), not what: left out of dumps, so a run may resume on other hardware.
    distributed: DistributedConfig = Field(DistributedConfig(), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data: Any) -> Any:
        """Version 1's keys in version 2's places; then what a run always judges, by default: the task's own
        metric at most 1 point below the teacher's, and every candidate's ONNX parity at the default tolerances."""
        data = migrate(data)
        if isinstance(data, dict) and "budget" in data:
            data = {**data, "budget": filled(data["budget"], quality={"max_drop": 1.0}, parity={})}
        return data

    @model_validator(mode="after")
    def _task_budgets(self) -> "RunConfig":
        budget = self.budget
        if budget.latency is None or not set(budget.latency.limits()) & {"max_ms", "min_speedup", "min_throughput"}:
            raise ValueError("budget.latency: a run works toward min_speedup, max_ms or min_throughput")
        budget.refuse("budget", {"latency": ("max_ms", "min_speedup", "min_throughput"), "accuracy": None,
                                 "metric": None, "size": None, "parity": None},
                      "a run's reference is its teacher: its latency limits are min_speedup over it, max_ms and "
                      "min_throughput")
        task = self.task_model()
        quality = budget.quality
        check_quality(quality, task, "budget.metric" if budget.accuracy is None else "budget.accuracy")
        if self.quantize is not None:
            for where, judged in (("budget", quality), ("quantize.budget", self.quantize.budget.quality)):
                if judged.name not in (None, task.metric):
                    raise ValueError(f"{where}: the INT8 stage judges the task's own metric ({task.metric}); "
                                     f"its metric names {judged.name}")
            check_quality(self.quantize.budget.quality, task, "quantize.budget")
        return self

    def task_model(self) -> "Task":
        """The run's task (``spiralprune.pipeline.tasks``), for ``num_classes`` classes."""
        from spiralprune.pipeline.tasks import build_task

        return build_task(self.task, self.num_classes)

    @model_validator(mode="after")
    def _quantized_target(self) -> "RunConfig":
        if self.quantize is not None and self.target.backend not in QUANTIZED_BACKENDS:
            raise ValueError(f"quantize: INT8 QDQ models run on {', '.join(QUANTIZED_BACKENDS)}, "
                             f"not '{self.target.backend}'; remove the quantize block or change target.backend")
        return self

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: list[int]) -> list[int]:
        if len(value) < 2 or any(d < 1 for d in value):
            raise ValueError(f"input_shape must be positive dimensions with the batch first, got {value}")
        return value

    @field_validator("version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != CONFIG_VERSION:
            raise ValueError(f"config version {value} is not supported (this spiral reads version {CONFIG_VERSION})")
        return value

    @model_validator(mode="after")
    def _ratio_policy_needs_uniform(self) -> "RunConfig":
        if self.schedule.allocation == "latency" and (self.prune.per_layer or self.prune.global_pruning):
            raise ValueError(
                "prune.per_layer and prune.global_pruning choose ratios, which schedule.allocation 'latency' "
                "replaces; set schedule.allocation: uniform to use them"
            )
        return self


def parse_config(data: Any, source: str = "config") -> RunConfig:
    return validate(RunConfig, data, source)


def load_config(path: Path) -> RunConfig:
    return parse_config(read_yaml(path, "config"), str(path))
