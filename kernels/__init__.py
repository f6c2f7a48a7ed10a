"""The operator-level latency model: single-operator graphs (``ops``) timed on a backend into cached
tables per target (``table``), the operators of a model (``layers``), and a calibrated latency
predictor (``predictor``). Imports ``deploy`` only."""
