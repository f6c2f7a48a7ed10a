"""``ort-cpu``: ONNX Runtime's CPU execution provider with fixed threads and sequential execution."""

from __future__ import annotations

import importlib.util

from spiral.deploy.backends.base import Backend, Runner
from spiral.deploy.backends.ort_session import OrtRunner, create_session
from spiral.deploy.fingerprint import physical_cores


class OrtCpuBackend(Backend):
    name = "ort-cpu"
    # The precision is that of the ONNX graph (e.g. QDQ INT8); it is recorded, not applied.
    precisions = ("fp32", "fp16", "int8")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        return True, ""

    def load(self) -> Runner:
        self.require_available()
        import onnxruntime as ort

        threads = self.threads or physical_cores()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = create_session(self.model_path, options, ["CPUExecutionProvider"])
        settings = {
            "threads": threads,
            "inter_op_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "providers": session.get_providers(),
            "copies_included": True,
            "timer": "perf_counter around session.run",
            "precision": self.precision,
            "onnxruntime": ort.__version__,
        }
        return OrtRunner(session, settings)
