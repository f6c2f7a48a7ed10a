"""The INT8 pass: the run's result quantized (``quantize``, with its remedies ``float_fallback`` and
``fake_quant``), made and judged (``model``) like any step (``stage``), its config block ``quantize:``
(``config``) and its ledger line (``record``)."""
