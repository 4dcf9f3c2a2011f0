"""Scale-out: two ``morphnas serve`` replicas on one PostgreSQL database serve the same search
at once with the guarantees of one server: unique, gapless trial numbers, nothing acknowledged
lost, dead workers' trials reclaimed. One replica is also SIGKILLed and restarted mid-load while
the other keeps serving.
"""

from __future__ import annotations

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


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_two_replicas_share_one_search(postgres_url: str, tmp_path) -> None:
    replicas = [
        ServerProcess(postgres_url, log=tmp_path / f"replica{i}.log").start() for i in range(2)
    ]
    with Client(replicas[0].address) as client:
        search = client.create_search(
            name="replicas",
            input_shape=(8,),
            num_classes=3,
            policy="random",
            seed_width=8,
            lease_seconds=LEASE_SECONDS,
        )
    ledger, stop = Ledger(), threading.Event()
    workers = [
        Worker(
            f"w{i}",
            lambda r=replicas[i % 2]: r.address,
            search.id,
            ledger,
            stop,
            die_rate=0.05,
            seed=i,
        )
        for i in range(4)  # two workers on each replica
    ]
    threads = run_workers(workers)
    try:
        wait_for_cycles(ledger, 20)
        replicas[0].kill()  # its workers retry until it is back; the other replica carries on
        replicas[0].start()
        wait_for_cycles(ledger, 20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not ledger.errors, ledger.errors

    time.sleep(LEASE_SECONDS + 0.5)
    with Client(replicas[1].address) as client:
        more = client.get_search(search.id).suggest(count=64, worker_id="after")
        assert more
    for replica in replicas:
        assert replica.stop() == 0

    result = audit(postgres_url, search.id, ledger)
    assert not result.problems, "\n".join(result.problems)
    assert result.completed == len(ledger.reports) > 0
    assert result.stale >= len(ledger.abandoned)
