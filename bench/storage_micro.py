"""Micro-benchmark of the storage hot paths at 1000 trials: report() and suggest().

    python bench/storage_micro.py [--trials 1000] [--postgres URL]

Fills one search with ``--trials`` completed trials (realistic ~3 KB architecture JSON and
~100 KB initial weights each), then times, one call at a time:

* ``report``: a worker reports a COMPLETED score for an ACTIVE trial (no weights, and with
  ~100 KB trained weights);
* ``suggest``: the ask protocol (``suggest_trials``): read a snapshot of every observation, run
  the policy (a stub, so this is the storage share of an ask), then lock, expire and store one
  new trial;
* ``report under load``: 4 worker threads ask (a policy that takes ``--propose-ms``, outside
  any transaction), "train" for 20 ms and report; the reports' latency shows what asks cost them.

Prints p50/p95 in milliseconds. SQLite runs in a temporary file; PostgreSQL in a temporary
database created next to ``--postgres`` (default: MORPHNAS_TEST_POSTGRES_URL or the local one),
skipped if unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from morphnas.core.records import NewTrial, SearchConfig, SearchSnapshot, TrialState
from morphnas.server.service import suggest_trials
from morphnas.storage import Repository

ARCH = json.dumps({"layers": [{"name": f"l{i}", "kind": "conv", "width": 64} for i in range(60)]})
WEIGHTS = os.urandom(100_000)


def stub_policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
    base = snapshot.search.trial_count
    return [
        NewTrial(ARCH, f"h{base + i}", None, ({"op": "deepen", "after": "l3"},), WEIGHTS)
        for i in range(n)
    ]


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    return f"p50 {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   (n={len(ms)})"


def timed(calls: int, fn: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def bench(url: str, trials: int, label: str, propose_s: float) -> None:
    repo = Repository.from_url(url)
    search = repo.create_search(
        SearchConfig(name="bench", input_shape=(40,), num_classes=10, max_trials=100_000)
    )
    for _ in range(trials // 50):
        for t in suggest_trials(repo, search.id, "", 50, stub_policy):
            repo.report(t.id, state=TrialState.COMPLETED, score=0.5)

    pending = iter(
        [t for _ in range(4) for t in suggest_trials(repo, search.id, "", 50, stub_policy)]
    )
    report_plain = timed(
        100,
        lambda: repo.report(next(pending).id, state=TrialState.COMPLETED, score=0.5),
    )
    report_weights = timed(
        100,
        lambda: repo.report(
            next(pending).id, state=TrialState.COMPLETED, score=0.5, weights=WEIGHTS
        ),
    )
    suggest = timed(50, lambda: suggest_trials(repo, search.id, "", 1, stub_policy))
    loaded = reports_under_load(repo, search.id, propose_s)
    n = repo.count_trials(search.id)
    print(f"[{label}] {n} trials in the search")
    print(f"  report (no weights)      {percentiles(report_plain)}")
    print(f"  report (100 KB weights)  {percentiles(report_weights)}")
    print(f"  suggest (1 trial)        {percentiles(suggest)}")
    print(f"  report under load        {percentiles(loaded)}  (propose {propose_s * 1000:.0f} ms)")
    repo.close()


def reports_under_load(repo: Repository, search_id: str, propose_s: float) -> list[float]:
    def slow_policy(snapshot: SearchSnapshot, n: int) -> list[NewTrial]:
        time.sleep(propose_s)
        return stub_policy(snapshot, n)

    samples: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        for _ in range(15):
            (trial,) = suggest_trials(repo, search_id, f"w{index}", 1, slow_policy)
            time.sleep(0.02)
            start = time.perf_counter()
            repo.report(trial.id, state=TrialState.COMPLETED, score=0.5, worker_id=f"w{index}")
            with lock:
                samples.append(time.perf_counter() - start)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str | None]:
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"morphnas_bench_{uuid.uuid4().hex[:8]}"
    try:
        with engine.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as error:
        print(f"[postgres] skipped: {error.orig}", file=sys.stderr)
        yield None
        return
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--propose-ms", type=float, default=50.0)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "MORPHNAS_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench(f"sqlite:///{tmp}/bench.db", args.trials, "sqlite", args.propose_ms / 1000)
    with postgres_database(args.postgres) as url:
        if url is not None:
            bench(url, args.trials, "postgres", args.propose_ms / 1000)


if __name__ == "__main__":
    main()
