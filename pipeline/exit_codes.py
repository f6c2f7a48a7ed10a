"""What ``spiralprune`` exits with: one meaning per code, the same in every command and listed in every ``--help``.

CI reads the code: ``1`` blames the change, ``4`` says the machine could not settle the question (retry
on another runner), ``3`` is spiral's own fault (a bug to report with the logged traceback).
"""

from __future__ import annotations

import textwrap
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    AGAINST = 1
    BAD_INPUT = 2
    INTERNAL_ERROR = 3
    UNDECIDED = 4
    INTERRUPTED = 130  # 128 + SIGINT
    TERMINATED = 143  # 128 + SIGTERM


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success: done, the gate passed, no regression, the budget met",
    ExitCode.AGAINST: "a verdict against the change: a check failed, a regression, no step met the budget",
    ExitCode.BAD_INPUT: "bad input or environment (one line on stderr)",
    ExitCode.INTERNAL_ERROR: "an internal error: one line on stderr, the traceback in a log file under "
                             "$XDG_CACHE_HOME/spiral/logs (default ~/.cache/spiral/logs); --debug prints it too",
    ExitCode.UNDECIDED: "undecided: the measurement could not settle the question (a busy or noisy machine, the "
                        "time cap): retry on another runner rather than blame the change",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C): one line says what is kept and how to go on",
    ExitCode.TERMINATED: "terminated (SIGTERM): as interrupted",
}

HELP_WIDTH = 79  # what an 80-column terminal shows unwrapped
EPILOG = "exit codes:\n" + "\n".join(
    textwrap.fill(meaning, HELP_WIDTH, initial_indent=f"  {code:<5d}", subsequent_indent=" " * 7)
    for code, meaning in MEANINGS.items()
)


def judged(*, against: bool, undecided: bool) -> ExitCode:
    """A command's verdict: anything against the change outranks an undecided question, which is never a pass."""
    if against:
        return ExitCode.AGAINST
    return ExitCode.UNDECIDED if undecided else ExitCode.OK


def of_run(met_budget: bool, steps: list[dict]) -> ExitCode:
    """A spiralprune run's verdict from its ledger lines (``LedgerEntry.to_json``): met; undecided when its last try
    was rejected because the judge could not decide its latency: a verdict of it undecided, none missed, ONNX
    parity held, and not distilled (a try the judge does not grant is not trained, so its accuracy is no
    verdict); otherwise against."""
    if met_budget:
        return ExitCode.OK
    tries = [s for s in steps if s["kind"] == "step"]
    if not tries or tries[-1]["accepted"]:
        return ExitCode.AGAINST
    last = tries[-1]
    outcomes = {v["outcome"] for v in last["verdicts"]}
    undecided = ("undecided" in outcomes and "misses" not in outcomes and last["distill"]["epochs"] == 0
                 and last["parity"]["passed"])
    return ExitCode.UNDECIDED if undecided else ExitCode.AGAINST
