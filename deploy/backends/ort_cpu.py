"""``ort-cpu``: ONNX Runtime's CPU execution provider with fixed threads and sequential execution.

With a ``cache_dir``, the graph ONNX Runtime optimizes (``ORT_ENABLE_ALL``: fusions, and the NCHWc layout
this CPU's kernels prefer) is saved there once, keyed by the ONNX file's sha256 and every fact the
optimization depends on (``optimized_facts``), and every session runs that saved graph with the
optimizations off: the same graph an online session would build, compiled once per model and machine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from pathlib import Path
from typing import Any

from spiralprune.core.atomic import temp_file_beside, write_json
from spiralprune.core.hashing import sha256_file
from spiralprune.deploy.backends.base import Backend, Runner
from spiralprune.deploy.backends.engine_cache import build_key
from spiralprune.deploy.backends.ort_session import OrtRunner, create_session
from spiralprune.deploy.fingerprint import cpu_flags, cpu_model, physical_cores

ERROR_ONLY = 3  # ONNX Runtime's log severity: saving an NCHWc graph warns that it fits this CPU only (the key says so)


class OrtCpuBackend(Backend):
    name = "ort-cpu"
    # The precision is that of the ONNX graph (e.g. QDQ INT8); it is recorded, not applied.
    precisions = ("fp32", "fp16", "int8")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install 'spiralprune[cpu]')"
        return True, ""

    def optimized_facts(self, threads: int) -> dict[str, Any]:
        """What the optimized graph depends on: the ONNX file, ONNX Runtime, the level, this CPU (the NCHWc
        layout is chosen for its vector width) and the session's threads and precision."""
        import onnxruntime as ort

        return {
            "backend": self.name, "onnx_sha256": sha256_file(self.model_path), "onnxruntime": ort.__version__,
            "graph_optimization_level": "ORT_ENABLE_ALL", "threads": threads, "precision": self.precision,
            "cpu": cpu_model(), "machine": platform.machine(), "cpu_flags": sorted(cpu_flags()),
        }

    def load(self) -> Runner:
        self.require_available()
        import onnxruntime as ort

        threads = self.threads or physical_cores()

        def options(optimize: bool, profile_prefix: str | None = None) -> ort.SessionOptions:
            """The session's options; with ``profile_prefix``, a profiling twin's (``layer_profile``)."""
            made = ort.SessionOptions()
            made.intra_op_num_threads = threads
            made.inter_op_num_threads = 1
            made.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            made.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                             else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
            # The pool threads spin inside a run, not after it. Left spinning once a run returns, a
            # session's threads take CPUs from the next session's block in a paired measurement: two
            # sessions of one model alternating in blocks of 10 calls, 2 threads on this 2-vCPU host,
            # took 1.3-1.9 ms a call with 33 % of the threads' time waiting for a CPU, and 0.51-0.54 ms
            # with 0.3 % when they stop (one session alone, ORT's default: 0.65 ms; 2026-12-07).
            made.add_session_config_entry("session.force_spinning_stop", "1")
            if profile_prefix is not None:  # its threads must not spin into the judged block that follows
                made.enable_profiling = True
                made.profile_file_prefix = profile_prefix
                made.add_session_config_entry("session.intra_op.allow_spinning", "0")
            return made

        graph, optimized, from_cache, key = self.model_path, False, False, None
        if self.cache_dir is not None:
            self.require_model_file()
            facts = self.optimized_facts(threads)
            key = build_key(facts)
            graph, optimized = self.cache_dir / f"{key}.onnx", True
            from_cache = graph.is_file()
            if not from_cache:
                self._optimize(graph, options(True), facts)
        session = create_session(graph, options(not optimized), ["CPUExecutionProvider"])
        settings = {
            "threads": threads,
            "inter_op_threads": 1,
            "execution_mode": "ORT_SEQUENTIAL",
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "spinning": "stops when a run returns (session.force_spinning_stop)",
            "providers": session.get_providers(),
            "copies_included": True,
            "timer": "perf_counter around session.run",
            "precision": self.precision,
            "onnxruntime": ort.__version__,
            "engine_from_cache": from_cache,
            **({"engine_key": key} if key is not None else {}),
        }
        return OrtRunner(session, settings, lambda prefix: create_session(
            graph, options(not optimized, prefix), ["CPUExecutionProvider"]))

    def _optimize(self, path: Path, options: Any, facts: dict[str, Any]) -> None:
        """Save the graph optimized for this CPU at ``path`` (whole or not at all), its facts beside it."""
        tmp = temp_file_beside(path)
        try:
            options.optimized_model_filepath = str(tmp)
            options.log_severity_level = ERROR_ONLY
            create_session(self.model_path, options, ["CPUExecutionProvider"])
            write_json(path.with_suffix(".json"), facts)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
