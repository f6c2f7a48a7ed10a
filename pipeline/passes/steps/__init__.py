"""The spiral's steps: prune, distill, measure and judge, step after step (``stage``), each try a ledger line (``record``)."""
