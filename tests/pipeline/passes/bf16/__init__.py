"""A pass that is not spiral's: the run's result with its weights rounded to bfloat16 (a checkpoint half
the size), kept when its metric holds. It lives in the tests and is one folder plus one registry entry
(``spiralprune.pipeline.passes.PASSES``), which is all a new stage takes."""
