"""Every code block of README.md runs, in order, as a new user would run it after a clone.

A section added to the README later is covered without touching this file: its bash and python
blocks run in the same session (see tests/readme_blocks.py for the rules and the only two
changes made to the README's text, with their reasons).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.readme_blocks import RUN_LANGUAGES, ReadmeSession, readme_blocks


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _line(text: str, start: str) -> str:
    """The first line of ``text`` that starts with ``start``."""
    return next((line for line in text.splitlines() if line.startswith(start)), "")


@pytest.mark.slow
def test_every_readme_block_runs_as_written(tmp_path: Path) -> None:
    blocks = [b for b in readme_blocks() if b.language in RUN_LANGUAGES]
    session = ReadmeSession(tmp_path, _free_port())
    outputs: list[str] = []
    try:
        for block in blocks:
            ran = session.run(block)
            assert ran.returncode == 0, ran.explain()
            assert "Traceback" not in ran.stderr, ran.explain()
            outputs.append(ran.stdout)
    finally:
        session.close()
    unused = {r.old for r in session.rewrites} - session.used
    assert not unused, f"rewrites that no longer match the README: {unused}"
    # The sample under "What you get" is what the main job prints: its table and summary lines.
    [sample] = [b for b in readme_blocks() if b.section == "What you get" and b.language == "text"]
    main_job = outputs[0]
    header = _line(sample.code, "rank ")
    assert header and header.split() == _line(main_job, "rank ").split(), main_job
    for start in (
        "search ",
        "final fit of trial ",
        "best: trial ",
        "wrote best.onnx (",
        "onnxruntime on the 270 test examples: accuracy ",
    ):
        assert f"\n{start}" in f"\n{sample.code}" and f"\n{start}" in f"\n{main_job}", main_job
    for written in ("best.onnx", "morphnas.db"):
        assert (tmp_path / written).is_file(), written
