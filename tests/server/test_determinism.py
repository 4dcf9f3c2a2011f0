"""The same seed and history give the same suggestion, also across a server restart."""

from __future__ import annotations

from pathlib import Path

from morphnas.client import Client
from tests.server.conftest import start_server


def _history(client: Client, asks: int) -> tuple[str, list[tuple[str, int | None]]]:
    search = client.create_search(
        name="det", input_shape=(1, 8, 8), num_classes=4, seed=7, seed_width=8, seed_depth=2
    )
    seen = []
    for _ in range(asks):
        [t] = search.suggest(worker_id="w")
        parent = client.get_trial(t.parent_id).number if t.parent_id else None
        seen.append((t.info.architecture_hash, parent))
        t.report(score=0.5 + 0.1 * ((t.number * 37) % 5), weights=t.initial_weights())
    return search.id, seen


def test_restarted_server_proposes_what_a_running_one_would(tmp_path: Path) -> None:
    running = start_server(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        with Client(running.address) as c:
            _, uninterrupted = _history(c, 8)
    finally:
        running.stop(0)

    first = start_server(f"sqlite:///{tmp_path / 'b.db'}")
    with Client(first.address) as c:
        search_id, before = _history(c, 5)
    first.stop(0)
    # The new server builds its own, empty SearchCache, as a new process would.
    second = start_server(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        with Client(second.address) as c:
            search = c.get_search(search_id)
            after = []
            for _ in range(3):
                [t] = search.suggest(worker_id="w")
                parent = c.get_trial(t.parent_id).number if t.parent_id else None
                after.append((t.info.architecture_hash, parent))
                t.report(score=0.5 + 0.1 * ((t.number * 37) % 5), weights=t.initial_weights())
    finally:
        second.stop(0)
    assert before + after == uninterrupted
