"""Reports: a spiralprune run's (``run``) and the building blocks the gate and compare reports share
(Markdown tables, self-contained HTML, matplotlib plots, JUnit XML)."""
