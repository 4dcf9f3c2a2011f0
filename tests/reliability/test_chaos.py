"""Crash safety: a server killed with SIGKILL mid-load and restarted on the same database keeps
every promise it made.

Four ask/tell workers run against a real ``morphnas serve`` process; some of them "die" now and
then (abandon their trial). The server is SIGKILLed and restarted five times under that load.
Afterwards every acknowledged report (score and weights) and measurement is in the database,
trial numbers are 0..n-1 exactly once, the dead workers' trials were reclaimed once their leases
ran out, and the search goes on.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from morphnas.client import Client
from tests.reliability.harness import (
    Ledger,
    ServerProcess,
    Worker,
    audit,
    run_workers,
    wait_for_cycles,
)

LEASE_SECONDS = 3.0
KILLS = 5


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_load_loses_nothing(db_url: str, tmp_path) -> None:
    server = ServerProcess(db_url, None, log=tmp_path / "server.log").start()
    with Client(server.address) as client:
        search = client.create_search(
            name="chaos",
            input_shape=(8,),
            num_classes=3,
            policy="random",
            seed_width=8,
            lease_seconds=LEASE_SECONDS,
        )
    ledger, stop = Ledger(), threading.Event()
    workers = [
        Worker(f"w{i}", lambda: server.address, search.id, ledger, stop, die_rate=0.05, seed=i)
        for i in range(4)
    ]
    threads = run_workers(workers)
    rng = random.Random(0)
    try:
        for _ in range(KILLS):
            wait_for_cycles(ledger, 5)
            time.sleep(rng.uniform(0.0, 0.5))  # kill at an arbitrary moment of the load
            server.kill()
            server.start()
        wait_for_cycles(ledger, 5)  # the workers resumed after the last kill
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not ledger.errors, ledger.errors
    assert ledger.retries > 0  # the kills were felt

    # The dead workers' leases run out; then the search goes on and hands their trials out again.
    time.sleep(LEASE_SECONDS + 0.5)
    with Client(server.address) as client:
        handle = client.get_search(search.id)
        more = handle.suggest(count=64, worker_id="after")
        assert more
    assert server.stop() == 0

    result = audit(db_url, search.id, ledger)
    assert not result.problems, "\n".join(result.problems)
    assert result.completed == len(ledger.reports) > 0
    assert result.stale >= len(ledger.abandoned)
