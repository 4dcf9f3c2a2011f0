"""The README errors a new user hit, caught without running anything: every block names its
language, every Python snippet defines what it uses, every shell block parses and every
``morphnas`` command in them (and in the command tables) parses with the real command line, one server is
started, the tables keep their columns; setup.sh says what it is doing. tests/test_readme_runs.py
runs the blocks."""

from __future__ import annotations

import argparse
import ast
import builtins
import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from morphnas.cli import build_parser
from tests.readme_blocks import RUN_LANGUAGES, SAMPLE_LANGUAGES, readme_blocks

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _undefined_names(code: str) -> set[str]:
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.alias):
            defined.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


def test_every_block_names_a_language_that_is_run_or_is_sample_output() -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 6
    for block in blocks:
        assert block.language in RUN_LANGUAGES + SAMPLE_LANGUAGES, (
            f"README.md line {block.line}: say ```bash, ```python (both are run by "
            f"tests/test_readme_runs.py) or ```text (sample output), not ```{block.language}"
        )


def test_every_python_snippet_defines_what_it_uses() -> None:
    blocks = [b for b in readme_blocks() if b.language == "python"]
    assert len(blocks) >= 3
    for block in blocks:
        assert _undefined_names(block.code) == set(), block


def test_every_shell_block_parses() -> None:
    for block in readme_blocks():
        if block.language == "bash":
            check = subprocess.run(["bash", "-n", "-c", block.code], capture_output=True, text=True)
            assert check.returncode == 0, (block.line, check.stderr)


def _command_lines() -> list[tuple[int, list[str]]]:
    """``morphnas`` commands of the shell blocks and of the first column of command tables, as
    argv lists; placeholders (SEARCH, URL) become values of the right kind."""
    commands = []
    for block in readme_blocks():
        if block.language != "bash":
            continue
        for part in re.split(r"&&|&|;|\n", block.code):
            words = shlex.split(part, comments=True)
            if words and words[0].endswith("bin/morphnas"):
                commands.append((block.line, words[1:]))
    for span in re.findall(r"^\| `(morphnas [^`]+)`", README, flags=re.M):  # a command table
        if "COMMAND" not in span and "--version" not in span:
            text = span.replace("SEARCH", "0" * 32).replace("URL", "sqlite:///x.db")
            commands.append((0, shlex.split(text)[1:]))
    return commands


def test_every_morphnas_command_in_the_readme_parses() -> None:
    commands = _command_lines()
    assert {words[0] for _, words in commands} >= {"run", "serve", "searches", "stop", "export"}
    parser = build_parser()
    for line, words in commands:
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            try:
                args = parser.parse_args(words)
            except SystemExit:
                pytest.fail(
                    f"README.md line {line}: morphnas {shlex.join(words)}: {errors.getvalue()}"
                )
        assert isinstance(args, argparse.Namespace)


def test_the_readme_starts_one_server() -> None:
    serves = [words for _, words in _command_lines() if words[0] == "serve"]
    assert len(serves) == 1  # a second one would find the port taken


def test_table_rows_keep_their_columns() -> None:
    for table in re.findall(r"((?:^\|.*\n)+)", README, flags=re.M):
        rows = table.splitlines()
        columns = [len(re.findall(r"(?<!\\)\|", row)) for row in rows]
        assert len(set(columns)) == 1, rows


def test_setup_says_what_it_is_doing() -> None:
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'step "installing morphnas' in script and "PyTorch" in script
    installs = [line for line in script.splitlines() if "pip install" in line and "torch" in line]
    assert installs and all(" -q " not in line for line in installs)
