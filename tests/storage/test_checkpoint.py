"""Background WAL checkpoints: commits append to the log, a thread copies it into the database."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from morphnas.storage import Repository
from tests.storage.conftest import make_config


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "sqlite-checkpointer"]


def test_the_log_is_copied_into_the_database_in_the_background(tmp_path: Path) -> None:
    before = len(_checkpointers())
    path = tmp_path / "c.db"
    repo = Repository.from_url(f"sqlite:///{path}")
    assert len(_checkpointers()) == before + 1
    size = os.path.getsize(path)
    for _ in range(200):  # a few hundred pages: far below the backstop, no commit checkpoints
        repo.create_search(make_config(name="n" * 200))
    assert os.path.getsize(tmp_path / "c.db-wal") > 0
    deadline = time.monotonic() + 5
    while os.path.getsize(path) <= size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.path.getsize(path) > size  # pages reached the database file: a checkpoint ran
    repo.close()
    assert len(_checkpointers()) == before


def test_memory_databases_have_none() -> None:
    before = len(_checkpointers())
    repo = Repository.from_url("sqlite://")
    assert len(_checkpointers()) == before
    repo.close()
