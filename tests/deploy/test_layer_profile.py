"""Per-layer profiles from real ONNX Runtime sessions and real ``torch.profiler`` runs (eager and
compiled) on small models, and the attribution maths.

Timing-dependent assertions use changes far larger than any noise (a convolution 16x wider); the
10-of-10 check at 4x is benchmarks/attribution_check.py's."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.deploy.layer_profile import (
    MIN_PROFILED_ROUNDS, PROFILE_SHARE, LayerProfile, LayerSampler, LayerTiming, NodeNames, attribute_change, explain, module_path,
    node_macs, op_kind,
)
from spiralprune.deploy.profiler import Target, profile_model, profile_paired
from spiralprune.deploy.sampling import ProfileSettings, sample_rounds
from spiralprune.deploy.verdict import Question
from spiralprune.pipeline.export import export_onnx
from tests.chain_net import CONVS, WIDENED, chain_net
from tests.deploy.synthetic import Machine

FAST = ProfileSettings(warmup_s=0.02, block_s=0.02, min_rounds=6, min_duration_s=0.1, max_duration_s=0.6)
# Every backend that gives a per-layer profile on this machine's CPU (torch.compile compiles each model: slow).
LAYER_BACKENDS = ["ort-cpu", "torch", pytest.param("torch-compile", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The base chain and its last convolution 16x wider: ONNX files, and the modules they export."""
    folder = tmp_path_factory.mktemp("chain")
    torch.manual_seed(0)
    base_module = chain_net(16)  # wide enough that the widened convolution outweighs its fused ReLU's growth
    base = export_onnx(base_module, torch.zeros(1, 3, 16, 16), folder / "base.onnx")
    torch.manual_seed(0)
    wide_module = chain_net(16, wide=16)
    wide = export_onnx(wide_module, torch.zeros(1, 3, 16, 16), folder / "wide.onnx")
    return base, wide, base_module, wide_module


def live(backend, module):
    """A torch target's backend options: its own copy of the module (ONNX Runtime runs the file)."""
    return {} if backend == "ort-cpu" else {"module": copy.deepcopy(module)}


def test_module_paths_from_the_torch_exporters_scopes():
    assert module_path("/layer3/layer3.1/conv2/Conv") == "layer3.1.conv2"
    assert module_path("/stem/stem.0/Conv") == "stem.0"
    assert module_path("/16/Conv") == "16"
    assert module_path("/Flatten") == ""
    assert module_path("ReorderOutput") is None


def test_operator_kinds_and_macs():
    assert [op_kind(o) for o in ("Conv", "QLinearConv", "Transpose", "ReorderInput", "DequantizeLinear", "Relu",
                                 "MemcpyToHost")] == ["arithmetic", "arithmetic", "layout", "layout", "quantize",
                                                      "other", "transfer"]
    assert node_macs("Conv", [[1, 8, 16, 16], [16, 8, 3, 3], [16]], [[1, 16, 16, 16]]) == 16 * 16 * 16 * 8 * 9
    assert node_macs("Gemm", [[1, 64], [10, 64]], [[1, 10]]) == 640
    assert node_macs("Relu", [[1, 8]], [[1, 8]]) is None


@pytest.mark.parametrize("backend", LAYER_BACKENDS)
def test_a_layer_profile_names_every_convolution_by_its_module(chain, backend):
    profile = profile_model(chain[0], backend, threads=1, settings=FAST, layers=True,
                            backend_options=live(backend, chain[2]))
    m = profile.measurement()
    layers = m.layer_profile()
    names = {layer.name for layer in layers.layers}
    convs = {str(2 * i) for i in range(CONVS)}
    assert convs <= names  # ONNX Runtime fused each Conv with its ReLU and renamed it; traced back
    # the first round is always profiled; a later one where profiling has not cost more than its share
    assert len(layers.calls_per_round) == len(m.round_sizes) and layers.calls_per_round[0] >= 1
    assert all(len(layer.rounds_ms) == len(m.round_sizes) for layer in layers.layers)
    conv = layers.by_name()["2"]
    assert conv.kind == "arithmetic" and conv.macs == 16 * 16 * 16 * 16 * 9 and conv.fuses[0] == "2"
    assert conv.provider == ("CPUExecutionProvider" if backend == "ort-cpu" else "cpu")
    if backend == "torch-compile":  # the fused kernels inside the graph are named after no module, and say so
        fused = layers.by_name()["inductor kernels"]
        assert fused.fused and fused.fuses == [] and layers.source == "torch.profiler (torch.compile)"
    explanation = m.layers["explanation"]
    # every backend here times its profiled calls, and a call's operators run inside it, one after another
    assert len(layers.calls_ms) == len(m.round_sizes) and explanation["profiled_call_ms"] > 0
    assert 0.2 < explanation["coverage"]["value"] <= 1.01 and explanation["findings"]
    assert sum(r["layers"] for r in explanation["op_types"]) == len(layers.layers)


def test_profiling_between_rounds_is_off_the_stop_rules_clock():
    """The judged rounds are the same with or without a layer profile taking time between them."""
    settings = ProfileSettings(warmup_s=0.0, block_s=0.0095, min_rounds=4, min_duration_s=0.505, max_duration_s=0.505,
                               ci_rel=0)
    counts = []
    for pause in (0.0, 0.05):
        m = Machine(0, cv=0.0)
        seen = []

        def between(blocks, m=m, seen=seen, pause=pause):
            seen.append(sorted(blocks))
            m.now += pause

        rounds = sample_rounds({"a": m.model(1.0)}, settings, between=between, clock=m.clock, cpu=m.cpu)
        counts.append(len(rounds.series["a"].blocks))
        assert len(seen) == counts[-1] and seen[0] == ["a"]
    assert counts[0] == counts[1]


@pytest.mark.parametrize("backend", LAYER_BACKENDS)
def test_a_16x_wider_layer_is_the_top_contributor_measured_paired(chain, backend):
    paired = profile_paired({"base": chain[0], "new": chain[1]}, Target(backend, threads=1), FAST,
                            [Question("q", "new", 1.05, reference="base")],
                            model_options={"base": live(backend, chain[2]), "new": live(backend, chain[3])},
                            layers=("base", "new"))
    base, new = (paired.profiles[n].measurement() for n in ("base", "new"))
    attribution = attribute_change(base.layer_profile(), new.layer_profile(), base.rounds(), new.rounds())
    top = attribution["layers"][0]
    assert top["name"] == WIDENED and top["status"] == "changed" and top["delta_ms"] > 0
    assert attribution["rounds"] == len(base.round_sizes)


def timing(name, op_type, ms, macs=None):
    return LayerTiming(name, op_type, op_kind(op_type), "CPUExecutionProvider", list(ms), [name], [name], False, macs)


def test_change_attribution_names_new_and_removed_layers_largest_first():
    base = LayerProfile("onnxruntime", [1] * 4, [timing("a", "Conv", [1.0] * 4), timing("b", "Conv", [2.0] * 4)])
    new = LayerProfile("onnxruntime", [1] * 4, [timing("a", "Conv", [1.1] * 4), timing("c", "Gemm", [0.5] * 4)])
    result = attribute_change(base, new, [3.2] * 4, [1.8] * 4)
    assert [(r["name"], r["status"]) for r in result["layers"]] == [("b", "removed"), ("c", "new"), ("a", "changed")]
    assert result["layers"][0]["delta_ms"] == pytest.approx(-2.0)
    assert result["layers"][2]["ratio"] == pytest.approx(1.1)
    assert result["change_ms"]["value"] == pytest.approx(-1.4)
    with pytest.raises(InputError):
        attribute_change(base, LayerProfile("onnxruntime", [], []), [], [])


def test_a_layers_share_is_its_part_of_its_own_profiled_call():
    """Profiled calls twice as slow as the judged ones (a profiler's cost, threads woken per operator): a
    layer's share is its part of its call, its time that part of the judged median, and the slowdown is
    a finding; a change between two models is judged in the same terms."""
    layers = LayerProfile("onnxruntime", [1] * 4, [timing("a", "Conv", [1.0] * 4), timing("b", "Relu", [0.8] * 4)],
                          calls_ms=[2.0] * 4)
    result = explain(layers, [1.0] * 4)
    assert [(r["name"], r["share"], r["ms"]) for r in result["layers"]] == [("a", 0.5, 0.5), ("b", 0.4, 0.4)]
    assert result["coverage"]["value"] == pytest.approx(0.9) and result["profiled_call_ms"] == 2.0
    assert "the profiled calls took 2.0x the judged median (the profiler's cost, threads woken for each " \
           "operator); each layer's share is its part of its own call" in result["findings"]
    # without the calls' times (trtexec's averages) the layers' times are shares of the end-to-end median
    assert explain(LayerProfile("trtexec", [1], layers.layers[:1]), [1.0] * 4)["coverage"]["value"] == 1.0
    wider = LayerProfile("onnxruntime", [1] * 4, [timing("a", "Conv", [1.6] * 4), timing("b", "Relu", [0.8] * 4)],
                         calls_ms=[2.4] * 4)
    change = attribute_change(layers, wider, [1.0] * 4, [1.2] * 4)
    assert change["layers"][0]["name"] == "a" and change["layers"][0]["delta_ms"] == pytest.approx(0.8 - 0.5)
    assert change["layers"][1]["delta_ms"] == pytest.approx(0.4 - 0.4)


class CostlySampler(LayerSampler):
    """A sampler whose every profiling session costs 20 ms at least, as torch.profiler's fixed cost does."""

    def _run(self, count: int, profiled: bool) -> None:
        time.sleep(0.02)

    def finish(self) -> LayerProfile:
        raise NotImplementedError


def test_profiling_that_costs_more_than_its_share_skips_rounds_and_the_attribution_reads_the_profiled_ones():
    sampler = CostlySampler(block_calls=5)
    for _ in range(40):
        sampler.after_round([1.0] * 10)  # 10 ms judged a round: the 0.1 share allows 1 ms
    profiled = sorted(set(r for r in sampler._run_rounds if r >= 0))
    # the first rounds always; then 20 ms of profiling per 200 ms judged at most: 6 x 20 ms waits for 1.2 s judged
    assert profiled == list(range(MIN_PROFILED_ROUNDS)) and PROFILE_SHARE == 0.1
    # rounds without a profiled call have no layer values: they are left out, not read as zero
    layers = LayerProfile("onnxruntime", [1, 0, 0, 1], [timing("a", "Conv", [1.0, math.nan, math.nan, 1.0])],
                          calls_ms=[2.0, math.nan, math.nan, 2.0])
    result = explain(layers, [1.0, 9.0, 9.0, 1.0])
    assert result["rounds"] == 2 and result["layers"][0]["share"] == 0.5 and result["end_to_end_ms"] == 1.0
    change = attribute_change(layers, layers, [1.0] * 4, [1.0] * 4)
    assert change["layers"][0]["delta_ms"] == 0.0 and change["rounds"] == 4


def test_a_profiles_call_times_are_checked_when_read_back():
    layers = LayerProfile("onnxruntime", [1] * 2, [timing("a", "Conv", [1.0] * 2)], calls_ms=[2.0, 2.1])
    assert LayerProfile.from_dict(layers.to_dict()) == layers
    for bad in ([2.0], [2.0, -1.0], ["2", 2.0], [True, 2.0]):
        with pytest.raises(InputError, match="calls_ms needs one time per round"):
            LayerProfile.from_dict({**layers.to_dict(), "calls_ms": bad})


def test_int8_explanation_lists_the_float_fallbacks_and_the_qdq_cost():
    layers = LayerProfile("onnxruntime", [1] * 5, [
        timing("conv1", "QLinearConv", [1.0] * 5, 1_000_000), timing("conv2", "QLinearConv", [1.0] * 5, 1_000_000),
        timing("fc", "Gemm", [0.4] * 5, 10_000), timing("q", "QuantizeLinear", [0.3] * 5),
        timing("dq", "DequantizeLinear", [0.3] * 5),
    ])
    result = explain(layers, [3.2] * 5)
    assert result["int8"]["quantized"] == ["conv1", "conv2"] and result["int8"]["float"] == ["fc"]
    assert result["int8"]["quantize_nodes"] == 2 and result["int8"]["quantize_share"] == pytest.approx(0.6 / 3.2)
    assert result["coverage"]["value"] == pytest.approx(3.0 / 3.2)
    assert any(line.startswith("INT8: 2 arithmetic layers run quantized, 1 stayed float: fc") for line in result["findings"])


def test_time_flat_in_macs_is_called_a_fixed_per_call_cost():
    flat = LayerProfile("onnxruntime", [1] * 3, [timing(f"c{i}", "Conv", [0.1] * 3, 10**i) for i in range(3, 9)])
    assert explain(flat, [0.7] * 3)["regime"]["dominant"] == "per-call"
    tracking = LayerProfile("onnxruntime", [1] * 3, [timing(f"c{i}", "Conv", [i * 0.5] * 3, i * 10**6)
                                                     for i in range(1, 6)])
    regime = explain(tracking, [7.6] * 3)["regime"]
    assert regime["dominant"] == "arithmetic" and regime["correlation"] == pytest.approx(1.0)
    assert math.isclose(regime["mac_share"], 7.5 / 7.6)


def test_names_that_are_not_traced_stay_onnx_runtimes_and_are_fused(chain):
    names = NodeNames(chain[0])
    assert names.locate("ReorderOutput", "ReorderOutput").fused
    located = names.locate("/1/Relu_output_0_nchwc", "Conv")
    assert located.name == "0" and located.fuses == ("0", "1") and located.fused
    assert names.locate("/2/Conv", "Conv") == type(located)("2", ("2",), False)


def test_a_backend_without_a_layer_profile_says_so(chain):
    from spiralprune.deploy.profiler import layer_sampler

    with pytest.raises(InputError, match="times CUDA kernels' launches on the host, not their run on the GPU.*"
                                         "per-layer profiles come from: ort-cpu, torch, torch-compile, tensorrt, trtexec"):
        layer_sampler(object(), "ort-cuda", chain[0], 5)
    with pytest.raises(InputError, match="times the TensorRT subgraph as one node"):
        layer_sampler(object(), "ort-trt", chain[0], 5)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + torch.relu(self.conv(x))


def test_eager_modules_keep_the_operators_they_run_themselves_and_no_hooks_stay(tmp_path):
    """A residual block's add and ReLU (functional, in its forward) are the block's, not its convolution's;
    the hooks that name modules are there only during the profiled calls."""
    model = nn.Sequential(Residual(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    path = export_onnx(model, torch.zeros(1, 4, 8, 8), tmp_path / "residual.onnx")
    m = profile_model(path, "torch", threads=1, settings=FAST, layers=True, backend_options={"module": model})
    layers = m.measurement().layer_profile().by_name()
    assert set(layers) == {"0", "0.conv", "1", "2"}
    assert set(layers["0"].nodes) == {"add", "relu"} and layers["0.conv"].op_type == "conv2d"
    assert layers["1"].kind == "layout" and layers["2"].macs == 4 * 8 * 8 * 3
    assert all(not (child._forward_hooks or child._forward_pre_hooks) for child in model.modules())


def test_time_no_module_is_named_for_is_a_finding():
    unnamed = LayerTiming("inductor kernels", "inductor", "other", "cpu", [0.5] * 3, [], [], True)
    layers = LayerProfile("torch.profiler (torch.compile)", [1] * 3, [timing("0", "convolution", [1.0] * 3), unnamed])
    assert ("33% of the end-to-end time is in 1 fused layers the profiler does not name after a module "
            "(inductor kernels)") in explain(layers, [1.5] * 3)["findings"]
