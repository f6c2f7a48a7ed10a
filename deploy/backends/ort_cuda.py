"""``ort-cuda``: ONNX Runtime's CUDA execution provider, inputs and outputs bound on the GPU."""

from __future__ import annotations

from spiralprune.deploy.backends.base import Backend, Runner
from spiralprune.deploy.backends.ort_session import OrtDeviceRunner, create_session, gpu_provider_availability, require_provider

PROVIDER = "CUDAExecutionProvider"


class OrtCudaBackend(Backend):
    name = "ort-cuda"
    # The precision is that of the ONNX graph; it is recorded, not applied.
    precisions = ("fp32", "fp16", "int8")
    option_names = ("device_id", "cudnn_conv_algo_search")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        return gpu_provider_availability(PROVIDER, "pip install 'spiralprune[gpu]'")

    def load(self) -> Runner:
        self.require_available()
        import onnxruntime as ort

        device_id = int(self.options.get("device_id", 0))
        cuda_options = {
            "device_id": device_id,
            "cudnn_conv_algo_search": self.options.get("cudnn_conv_algo_search", "EXHAUSTIVE"),
        }
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = create_session(self.model_path, options, [(PROVIDER, cuda_options), "CPUExecutionProvider"])
        require_provider(session, PROVIDER, self.model_path)
        settings = {
            "providers": session.get_providers(),
            "provider_options": cuda_options,
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "precision": self.precision,
            "onnxruntime": ort.__version__,
        }
        return OrtDeviceRunner(session, settings, device_id)
