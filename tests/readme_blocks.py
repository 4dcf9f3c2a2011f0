"""The README's code blocks, and a session that runs them as a new user would.

Every fenced block of README.md names its language: ``bash`` and ``python`` blocks are run, in
the order they appear, in one folder (files such as ``best.onnx`` and ``morphnas.db`` carry from
one block to the next, as in a user's clone); ``text`` blocks are sample output. A bash block
runs under ``bash -e`` (a failing line fails it); a command it leaves in the background with
``&`` (a server) keeps running for the blocks after it and is stopped when the session closes.
A python block is saved to a file and run with ``.venv/bin/python``.

The text of every block is run as written, with two kinds of exception, each listed here with
its reason and each required to apply (a rewrite that no longer matches fails the test):

* :data:`REWRITES`: ``50051`` becomes a free port (other servers and test runs share this
  machine), and the main job's ``--budget 2m`` becomes ``--budget 20s`` (the slow tests stay
  within minutes; the budget is the only difference, and it changes how long the search runs,
  not which code runs).
* Stand-ins in the session's ``.venv`` and ``scripts`` for the two commands a test cannot run:
  ``scripts/setup.sh`` (it installs from PyPI into ``.venv``: network and minutes, and here the
  ``.venv`` is the one running the tests; CI runs the real script, ``.ci/run``) checks that the
  script parses and that the extra it names exists; ``.venv/bin/pytest`` (the suite run from
  inside itself would run this test again, forever) collects the suite without running it.
  ``.venv/bin/python`` and ``.venv/bin/morphnas`` are the interpreter running the tests and its
  ``morphnas`` command, with this checkout's code.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Languages a README block may have: run as bash, run as python, or sample output.
RUN_LANGUAGES = ("bash", "python")
SAMPLE_LANGUAGES = ("text",)

_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its text, the ``##`` section and line it starts on."""

    language: str
    code: str
    section: str
    line: int


def readme_blocks(text: str | None = None) -> list[Block]:
    """Every fenced block of the README, in order."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks: list[Block] = []
    section, start, language, body = "", 0, None, []
    for number, line in enumerate(lines, start=1):
        fence = _FENCE.match(line)
        if language is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif fence:
                language, start, body = fence.group(1), number, []
        elif fence and not fence.group(1):
            blocks.append(Block(language, "\n".join(body) + "\n", section, start))
            language = None
        else:
            body.append(line)
    assert language is None, f"README.md line {start}: a code block is never closed"
    return blocks


@dataclass(frozen=True)
class Rewrite:
    old: str
    new: str
    why: str


def rewrites(port: int) -> list[Rewrite]:
    """What the session changes in the README's text, and why (see the module docstring)."""
    return [
        Rewrite("50051", str(port), "a free port: other servers and test runs share the machine"),
        Rewrite("--budget 2m", "--budget 20s", "the main job's budget, shortened for the test"),
        Rewrite("--port 8050", f"--port {port + 1}", "the dashboard's port: as the server's"),
    ]


@dataclass(frozen=True)
class Ran:
    """A block and what running it printed."""

    block: Block
    code: str
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return (
            f"README.md line {self.block.line} ({self.block.section}) exited {self.returncode}:\n"
            f"{self.code}\n--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n"
            f"{self.stderr[-4000:]}"
        )


class ReadmeSession:
    """A folder laid out like a clone after set-up, where README blocks run one after another."""

    def __init__(self, folder: Path, port: int, timeout: float = 300.0) -> None:
        self.folder = folder
        self.timeout = timeout
        self.rewrites = rewrites(port)
        self.used: set[str] = set()
        self._groups: list[int] = []  # process groups of the bash blocks (background servers)
        self._env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("MORPHNAS_DB", "MORPHNAS_SERVER", "MORPHNAS_TOKEN")
        }
        self._env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._lay_out()

    def _lay_out(self) -> None:
        bin_dir = self.folder / ".venv" / "bin"
        bin_dir.mkdir(parents=True)
        python = sys.executable
        _script(bin_dir / "python", f'exec "{python}" "$@"')
        _script(bin_dir / "morphnas", f'exec "{python}" -m morphnas.cli "$@"')
        _script(
            bin_dir / "pytest",
            "# stand-in: the suite run from inside itself would run this test again\n"
            f'exec "{python}" -m pytest --collect-only -q -p no:cacheprovider "{ROOT}/tests"',
        )
        scripts = self.folder / "scripts"
        scripts.mkdir()
        _script(
            scripts / "setup.sh",
            "# stand-in: the real one installs from PyPI into .venv (CI runs it, .ci/run)\n"
            "set -euo pipefail\n"
            f'bash -n "{ROOT}/scripts/setup.sh"\n'
            f'grep -q "^$1 = \\[" "{ROOT}/pyproject.toml" || {{ echo "no extra $1" >&2; exit 1; }}\n'
            'echo "setup.sh stand-in: .venv holds morphnas[$1]"',
        )

    def run(self, block: Block) -> Ran:
        """Run one bash or python block in the session's folder."""
        code = block.code
        for rewrite in self.rewrites:
            if rewrite.old in code:
                code = code.replace(rewrite.old, rewrite.new)
                self.used.add(rewrite.old)
        logs = self.folder / ".readme-logs"
        logs.mkdir(exist_ok=True)
        out, err = logs / f"{block.line}.out", logs / f"{block.line}.err"
        if block.language == "python":
            path = self.folder / f"readme-line-{block.line}.py"
            path.write_text(code)
            command = [str(self.folder / ".venv" / "bin" / "python"), path.name]
        elif block.language == "bash":
            command = ["bash", "-e", "-c", code]
        else:
            raise ValueError(f"README.md line {block.line}: cannot run a {block.language} block")
        # Output goes to files, not pipes: a server left in the background keeps its copy open.
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen(
                command,
                cwd=self.folder,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            self._groups.append(proc.pid)
            try:
                returncode = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                returncode = -1
        return Ran(block, code, returncode, out.read_text(), err.read_text())

    def close(self) -> None:
        """Stop what the blocks left running (SIGTERM, as ``kill %1`` would; then SIGKILL)."""
        for group in self._groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(g) for g in self._groups):
            time.sleep(0.2)
        for group in self._groups:
            _signal_group(group, signal.SIGKILL)


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(0o755)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
