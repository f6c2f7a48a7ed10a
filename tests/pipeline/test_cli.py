"""The command line's conventions: --version, python -m spiralprune, lazy command imports, help with defaults,
options only on the commands where they act, tables as wide as the terminal."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spiralprune import __version__
from spiralprune.pipeline import cli

ROOT = Path(__file__).resolve().parents[2]


def python(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def imported_after(argv: list[str]) -> set[str]:
    """The top-level modules ``spiral ARGV`` has imported when it exits."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print(' '.join(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr))\n"
             f"sys.argv = ['spiralprune', *{argv!r}]\n"
             "import runpy; runpy.run_module('spiralprune', run_name='__main__')\n")
    done = python("-c", probe)
    assert done.returncode == 0, done.stderr
    return set(done.stderr.split())


@pytest.mark.parametrize("argv", [["--help"], ["--version"]])
def test_help_and_version_import_no_command(argv: list[str]):
    """They answer in about a tenth of a second: no command module, nor what they import, is loaded."""
    assert not imported_after(argv) & {"torch", "onnxruntime", "numpy", "rich", "pydantic"}


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_a_commands_help_imports_no_torch(command: str):
    """Every command's options and defaults are known without the libraries its work needs (torch alone
    takes seconds to import): ``spiralprune COMMAND --help`` answers in well under a second."""
    assert not imported_after([command, "--help"]) & {"torch", "onnxruntime", "onnx", "torch_pruning", "matplotlib"}


def test_version_is_the_package_version():
    done = python("-m", "spiralprune", "--version")
    assert (done.returncode, done.stdout) == (0, f"spiralprune {__version__}\n")


def test_python_dash_m_spiralprune_is_the_command():
    done = python("-m", "spiralprune", "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("usage: spiralprune [-h] [--version] [--print-completion SHELL] [--debug]")
    assert all(name in done.stdout for name in cli.COMMANDS)


def test_an_unknown_command_is_one_line_and_exit_2():
    done = python("-m", "spiralprune", "shrink")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "invalid choice: 'shrink'" in done.stderr


def command_parser(command: str) -> argparse.ArgumentParser:
    parser = cli.Parser(prog=f"spiralprune {command}")
    cli.add_command_arguments(parser, command)
    return parser


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit:
        cli.main([command, "--help"])
    assert exit.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_shows_every_default(command: str, capsys: pytest.CaptureFixture[str]):
    """Each option with a value by default says which, in its help."""
    text = help_of(command, capsys)
    for action in command_parser(command)._actions:
        if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
            assert re.search(rf"{re.escape(action.option_strings[-1])}\b.*?default", text), action.option_strings


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_trust_model_code_only_where_models_are_rebuilt(command: str, capsys: pytest.CaptureFixture[str]):
    assert ("--trust-model-code" in help_of(command, capsys)) == cli.COMMANDS[command].loads_models


def test_backend_names_a_backend_and_target_a_device_everywhere(capsys: pytest.CaptureFixture[str]):
    for command in ("gate", "quantize", "profile", "compare"):
        text = help_of(command, capsys)
        assert "--backend" in text and "--target" not in text, command
    assert "--target" in help_of("deploy", capsys) and "--backend" not in help_of("deploy", capsys)


def test_an_option_takes_one_set_of_values_in_every_command(capsys: pytest.CaptureFixture[str]):
    """--precision, --input-dtype and --backend accept the same values wherever they are taken (a backend then
    refuses what it cannot build)."""
    seen: dict[str, dict[str, tuple | None]] = {}
    for command in cli.COMMANDS:
        for action in command_parser(command)._actions:
            if action.dest in ("precision", "input_dtype"):
                seen.setdefault(action.dest, {})[command] = tuple(action.choices or ())
    for dest, sets in seen.items():
        assert len(set(sets.values())) == 1, (dest, sets)


def test_tables_follow_the_terminal_width():
    narrow, wide = (python("-m", "spiralprune", "targets", env={"COLUMNS": str(width)}) for width in (60, 200))
    assert narrow.returncode == wide.returncode == 0
    assert max(map(len, narrow.stdout.splitlines())) <= 60
    assert max(map(len, wide.stdout.splitlines())) > 60


def test_a_missing_optional_dependency_names_its_extra(monkeypatch, capsys: pytest.CaptureFixture[str]):
    def needs_nni(args):
        raise ModuleNotFoundError("No module named 'nni'", name="nni")

    monkeypatch.setattr(cli.command_module("targets"), "run", needs_nni)
    assert cli.main(["targets"]) == 2
    assert capsys.readouterr().err == "spiralprune: error: nni is not installed: pip install 'spiralprune[nni]'\n"


def test_a_missing_required_module_stays_an_internal_error(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(cli.command_module("targets"), "run", lambda args: __import__("no_such_module_of_spiral"))
    assert cli.main(["targets"]) == 3
    assert "internal error: ModuleNotFoundError" in capsys.readouterr().err


PROG = cli.build_parser().prog


def _completions(script: str, words: list[str]) -> list[str]:
    """What bash offers after ``words`` (the last one being typed), from the script sourced in a real bash."""
    words = [PROG, *words]
    shell = (f"{script}\nCOMP_WORDS=({' '.join(words)}); COMP_CWORD={len(words) - 1}; COMP_LINE='{' '.join(words)}'; "
             f"COMP_POINT=${{#COMP_LINE}}; _shtab_{PROG}; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_options_and_their_values():
    done = python("-m", "spiralprune", "--print-completion", "bash")
    assert done.returncode == 0, done.stderr
    assert _completions(done.stdout, ["ga"]) == ["gate"]
    assert "--baseline-model" in _completions(done.stdout, ["gate", "--base"])
    assert _completions(done.stdout, ["prune", "--criterion", "tp-"]) == ["tp-magnitude", "tp-taylor", "tp-bn-scale"]
    assert "torch" not in imported_after(["--print-completion", "zsh"])


def test_batch_has_one_syntax_in_every_command(capsys: pytest.CaptureFixture[str]):
    """--batch is comma-separated sizes wherever it is taken; compare judges each, and refuses more than one
    only for a history's trend, in one line."""
    from spiralprune.pipeline.commands import batch_sizes

    takes = {command for command in cli.COMMANDS for action in command_parser(command)._actions
             if action.dest == "batch" and action.type is batch_sizes}
    offered = {command for command in cli.COMMANDS if re.search(r"--batch(?![\w-])", help_of(command, capsys))}
    assert takes == offered >= {"profile", "compare"}
    done = python("-m", "spiralprune", "compare", ".", "--batch", "1,8")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1) and "drawn at one batch size" in done.stderr, done.stderr
