import numpy as np
import onnxruntime as ort
import pytest

from spiralprune.core.errors import InputError
from spiralprune.deploy.backends.ort_cpu import OrtCpuBackend


def test_runs_with_fixed_threads_and_records_the_session_settings(tiny_onnx):
    runner = OrtCpuBackend(tiny_onnx, threads=1).load()
    assert runner.settings["threads"] == 1
    assert runner.settings["inter_op_threads"] == 1
    assert runner.settings["execution_mode"] == "ORT_SEQUENTIAL"
    assert runner.settings["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert runner.settings["providers"] == ["CPUExecutionProvider"]
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with runner:
        out = runner.infer({"input": x})
    reference = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(out["output"], reference, rtol=1e-5, atol=1e-6)


def test_default_threads_is_the_physical_core_count(tiny_onnx):
    from spiralprune.deploy.fingerprint import physical_cores

    assert OrtCpuBackend(tiny_onnx).load().settings["threads"] == physical_cores()


@pytest.mark.parametrize("content", [b"", b"not an onnx model \x00\x01\x02", b"\x08\x07\x12\x04junk"])
def test_corrupt_model_is_an_input_error_naming_the_file(tmp_path, content):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(content)
    with pytest.raises(InputError, match="broken.onnx"):
        OrtCpuBackend(bad).load()


def test_missing_model_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found.*nope.onnx"):
        OrtCpuBackend(tmp_path / "nope.onnx").load()


def test_rejects_unknown_precision_and_options(tiny_onnx):
    with pytest.raises(InputError, match="precision 'int4'"):
        OrtCpuBackend(tiny_onnx, precision="int4")
    with pytest.raises(InputError, match="no option workspace"):
        OrtCpuBackend(tiny_onnx, workspace=1)


def test_a_cache_dir_keeps_the_optimized_graph_by_content_and_settings(tiny_onnx, static_onnx, tmp_path):
    """The first load with a ``cache_dir`` optimizes and saves the graph; a second load of the same file with
    the same settings runs the saved graph (and computes the same outputs); another file or other settings
    (threads) build their own."""
    cache = tmp_path / "compiled"
    first = OrtCpuBackend(tiny_onnx, threads=1, cache_dir=cache).load()
    again = OrtCpuBackend(tiny_onnx, threads=1, cache_dir=cache).load()
    assert (first.settings["engine_from_cache"], again.settings["engine_from_cache"]) == (False, True)
    saved = sorted(p.name for p in cache.iterdir())
    assert len(saved) == 2 and {p.rsplit(".", 1)[1] for p in saved} == {"onnx", "json"}  # the graph and its facts
    # the runner names the key its files are named by (what a session evicts by)
    assert first.settings["engine_key"] == again.settings["engine_key"] == saved[0].split(".")[0]
    assert OrtCpuBackend(static_onnx, threads=1, cache_dir=cache).load().settings["engine_from_cache"] is False
    assert OrtCpuBackend(tiny_onnx, threads=2, cache_dir=cache).load().settings["engine_from_cache"] is False
    assert len(list(cache.glob("*.onnx"))) == 3
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    uncached = OrtCpuBackend(tiny_onnx, threads=1).load()
    assert uncached.settings["engine_from_cache"] is False and "engine_key" not in uncached.settings
    outputs = []
    for runner in (uncached, first, again):
        with runner:
            outputs.append(runner.infer({"input": x})["output"])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs[2], outputs[1])
    # The layer profile's twin runs the same saved graph (same options, profiling on).
    twin = again.profiling_session(str(tmp_path / "trace"))
    np.testing.assert_array_equal(twin.run(None, {"input": x})[0], outputs[2])


def _fixed_batch_graph(path, reduce: bool):
    """Input ``input`` fixed at [4, 3]; output ``doubled`` (twice the input, the batch first) and, with
    ``reduce``, ``total`` (the sum of every element: no batch axis)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Add", ["input", "input"], ["doubled"])]
    outputs = [helper.make_tensor_value_info("doubled", TensorProto.FLOAT, [4, 3])]
    if reduce:
        nodes.append(helper.make_node("ReduceSum", ["input"], ["total"], keepdims=0))
        outputs.append(helper.make_tensor_value_info("total", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "fixed", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [4, 3])],
                              outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_fixed_batch_runs_a_smaller_one_filled_with_copies_whose_outputs_are_dropped(tmp_path, tiny_onnx):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    with OrtCpuBackend(_fixed_batch_graph(tmp_path / "fixed.onnx", reduce=False)).load() as runner:
        assert runner.fixed_batch() == 4
        np.testing.assert_array_equal(runner.infer_filled({"input": x[:1]})["doubled"], 2 * x[:1])
        np.testing.assert_array_equal(runner.infer_filled({"input": x})["doubled"], 2 * x)
    with OrtCpuBackend(tiny_onnx).load() as runner:  # a dynamic batch runs as it is
        batch = np.zeros((5, 3, 16, 16), np.float32)
        assert runner.fixed_batch() is None and runner.infer_filled({"input": batch})["output"].shape == (5, 10)
    with OrtCpuBackend(_fixed_batch_graph(tmp_path / "sum.onnx", reduce=True)).load() as runner:
        assert set(runner.infer_filled({"input": x})) == {"doubled", "total"}  # a whole batch needs no dropping
        with pytest.raises(InputError, match="fixed at 4 and its outputs do not have the batch first.*batch of 3"):
            runner.infer_filled({"input": x[:3]})
