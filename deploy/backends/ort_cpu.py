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
            return False, "onnxruntime is not installed (pip install 'spiral[cpu]')"
        return True, ""

    def load(self) -> Runner:
        self.require_available()
        import onnxruntime as ort

        threads = self.threads or physical_cores()

        def options(profile_prefix: str | None = None) -> ort.SessionOptions:
            """The session's options; with ``profile_prefix``, a profiling twin's (``layer_profile``)."""
            made = ort.SessionOptions()
            made.intra_op_num_threads = threads
            made.inter_op_num_threads = 1
            made.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            made.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if profile_prefix is not None:  # its threads must not spin into the judged block that follows
                made.enable_profiling = True
                made.profile_file_prefix = profile_prefix
                made.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return made

        session = create_session(self.model_path, options(), ["CPUExecutionProvider"])
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
        return OrtRunner(session, settings, lambda prefix: create_session(
            self.model_path, options(prefix), ["CPUExecutionProvider"]))
