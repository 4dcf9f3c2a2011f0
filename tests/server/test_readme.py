"""The README's ask/tell example against a real server in the default (fast) suite, with\nsmaller loops; tests/test_readme_runs.py runs every block as written."""

from __future__ import annotations

import re
from pathlib import Path

from morphnas.client import Client
from tests.server.conftest import start_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_ask_tell_example_runs(sqlite_url: str) -> None:
    server = start_server(sqlite_url)
    try:
        _run_example(server.address)
    finally:
        server.stop(0)


def _run_example(address: str) -> None:
    [example] = [b for b in _python_blocks() if "s.suggest(" in b]
    code = (
        example.replace("127.0.0.1:50051", address)
        .replace("for _ in range(4)", "for _ in range(3)")
        .replace("for epoch in range(3)", "for epoch in range(1)")
    )
    assert "range(1)" in code and "range(4)" not in code  # the loops were made smaller
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    with Client(address) as c:
        [search] = c.list_searches()
        trials = search.trials()
    assert [t.state for t in trials] == ["COMPLETED"] * 3
    assert all(t.info.has_trained_weights for t in trials)
    assert trials[1].parent_id == trials[0].id
