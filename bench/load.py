"""Load: many concurrent ask/tell workers against one server, then against two replicas.

    python bench/load.py [--seconds 60] [--clients 32] [--postgres URL] [--policy random]

Each scenario gets a fresh PostgreSQL database and real ``morphnas serve`` processes. ``--clients``
worker threads (one process, one gRPC channel each) run full ask/tell cycles for ``--seconds``:
SuggestTrials → DownloadWeights (initial) → ReportProgress → ReportTrial with trained weights
inline; with two replicas the workers are split between them. Reported: cycles per second,
p50/p99 latency of each call, errors (calls that failed for good) and retries (transient
failures), and the audit of the chaos test (tests/reliability/harness.py): every acknowledged
score, weights and measurement stored, trial numbers unique and gapless. The table also goes to
bench/results/load.txt.

The "random" policy is the default so the figures measure the service and its database, not the
Gaussian process (whose cost bench/suggest.py measures).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from morphnas.client import Client  # noqa: E402
from tests.dbs import DEFAULT_POSTGRES, fresh_postgres_database  # noqa: E402
from tests.reliability.harness import Ledger, ServerProcess, Worker, audit, run_workers  # noqa: E402

CALLS = ("SuggestTrials", "DownloadWeights", "ReportProgress", "ReportTrial")


@dataclass
class Outcome:
    name: str
    seconds: float
    ledger: Ledger
    trials: int
    problems: list[str]

    @property
    def throughput(self) -> float:
        return self.ledger.cycles / self.seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def postgres_database(admin_url: str) -> Iterator[str]:
    os.environ["MORPHNAS_TEST_POSTGRES_URL"] = admin_url
    yield from fresh_postgres_database()


def scenario(name: str, replicas: int, args: argparse.Namespace) -> Outcome:
    databases = postgres_database(args.postgres)
    url = next(databases)
    logs = Path(tempfile.mkdtemp(prefix="morphnas-load-"))
    servers = [
        ServerProcess(url, None, log=logs / f"server{i}.log").start() for i in range(replicas)
    ]
    try:
        with Client(servers[0].address) as client:
            searches = [
                client.create_search(
                    name=f"load-{name}-{k}",
                    input_shape=(32,),
                    num_classes=10,
                    policy=args.policy,
                    seed_width=32,
                    seed_depth=2,
                    max_trials=1_000_000,
                ).id
                for k in range(args.searches)
            ]
        ledger, stop = Ledger(), threading.Event()
        workers = [
            Worker(
                f"c{i}",
                lambda s=servers[i % replicas]: s.address,
                searches[i % len(searches)],
                ledger,
                stop,
                seed=i,
                timeout=30.0,
            )
            for i in range(args.clients)
        ]
        started = time.perf_counter()
        threads = run_workers(workers)
        time.sleep(args.seconds)
        stop.set()
        for thread in threads:
            thread.join(120)
        elapsed = time.perf_counter() - started
        for server in servers:
            server.stop()
        audits = [audit(url, search_id, ledger, shared=True) for search_id in searches]
        trials = sum(a.trials for a in audits)
        problems = [p for a in audits for p in a.problems]
        # Each audit checks the acknowledgements of its own search only.
        stored = {t for a in audits for t in a.seen}
        problems += [f"acknowledged trial {t} missing" for t in ledger.reports if t not in stored]
        return Outcome(name, elapsed, ledger, trials, problems)
    finally:
        for server in servers:
            server.kill()
        next(databases, None)  # drop the database


def table(outcomes: list[Outcome], args: argparse.Namespace) -> str:
    lines = [
        f"bench/load.py --seconds {args.seconds:g} --clients {args.clients} "
        f"--searches {args.searches} --policy {args.policy}",
        f"PostgreSQL {args.postgres.split('@')[-1]}; python {platform.python_version()}; "
        f"{platform.machine()}, shared CPU cores: client threads and servers on one machine",
        "",
        f"{'scenario':<12} {'cycles/s':>9} {'cycles':>7} {'trials':>7} {'errors':>6} "
        f"{'retries':>7} {'lost':>5}  " + "  ".join(f"{c + ' p50/p99 ms':>26}" for c in CALLS),
    ]
    for o in outcomes:
        cells = []
        for call in CALLS:
            ms = [1000 * s for s in o.ledger.latencies.get(call, [])]
            cells.append(f"{percentile(ms, 0.5):>12.1f} / {percentile(ms, 0.99):>9.1f}")
        lines.append(
            f"{o.name:<12} {o.throughput:>9.1f} {o.ledger.cycles:>7} {o.trials:>7} "
            f"{len(o.ledger.errors):>6} {o.ledger.retries:>7} {len(o.problems):>5}  "
            + "  ".join(f"{c:>26}" for c in cells)
        )
    lines.append("")
    lines.append(
        "cycle = SuggestTrials + DownloadWeights + ReportProgress + ReportTrial (weights inline);"
        " lost = acknowledged results missing from the database (audit)"
    )
    for o in outcomes:
        for problem in (o.ledger.errors + o.problems)[:5]:
            lines.append(f"{o.name}: {problem}")
    means = [
        f"{o.name} {1000 * statistics.fmean(o.ledger.latencies.get('SuggestTrials', [0.0])):.1f}"
        for o in outcomes
    ]
    lines.append("mean SuggestTrials ms: " + ", ".join(means))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--searches", type=int, default=1, help="searches the clients share")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL (%(default)s)")
    parser.add_argument("--policy", default="random", choices=["random", "bayesian"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "load.txt")
    args = parser.parse_args()
    outcomes = [scenario("1 server", 1, args), scenario("2 replicas", 2, args)]
    text = table(outcomes, args)
    print(text)
    args.out.write_text(text + "\n")
    print(f"\nwritten to {args.out}")
    return 0 if all(not o.ledger.errors and not o.problems for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
