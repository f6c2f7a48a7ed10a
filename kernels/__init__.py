"""The operator-level latency model: single-operator graphs (``ops``) timed on a backend into cached
tables per target (``table``), the operators of a model (``layers``), and a calibrated latency
predictor (``predictor``). Imports ``deploy`` only."""

# The ONNX opset spiral exports models at (``spiralprune.pipeline.export``) and builds its single-operator
# graphs at: one number, so that a table times the operators an exported model has.
OPSET = 17
