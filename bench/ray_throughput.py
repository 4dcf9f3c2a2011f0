"""Server-side training throughput: the Ray executor against the built-in worker pool.

One run, one machine: an in-process server on a temporary SQLite file, a local Ray cluster, and
the same search (same seed, policy, dataset, trial count and per-trial budget) trained twice, by
``--workers`` local worker processes (``serve --workers N``) and by ``--workers`` Ray training
actors (``serve --executor ray``), in the order given by ``--order``. Each pool is started and warmed
up (a first search of one-epoch trials, so every process has imported torch and loaded the
dataset) before its search's clock starts, so the figures compare steady-state training, not
start-up (printed apart). Reported per executor: trials per hour of wall time, and the
CPU seconds (user + system) of the training processes, read from ``/proc`` before they stop.

    python bench/ray_throughput.py [--trials 8] [--epochs 10] [--workers 2] [--order local ray]

``--order local ray ray local`` repeats each executor (ABBA, so a drift in the machine's load
hits both alike); the summary divides all trials by all wall seconds of each executor.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

from morphnas.client import Client, SearchHandle
from morphnas.server.app import ServerOptions, build_server
from morphnas.server.ray_executor import RayExecutorOptions, RayWorkerPool
from morphnas.server.workers import WorkerPool

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def start_pool(kind: str, db_url: str, workers: int) -> tuple[Any, list[int], float]:
    """A started pool, the pids of its training processes, and the seconds it took to start."""
    began = time.perf_counter()
    if kind == "local":
        local = WorkerPool(db_url, workers, device="cpu")
        local.start()
        return local, [p.pid for p in local.processes], time.perf_counter() - began
    pool = RayWorkerPool(db_url, RayExecutorOptions(workers=workers, device="cpu"))
    pool.start()
    pids = [info["pid"] for info in pool.infos(timeout=300)]  # every actor up and polling
    return pool, pids, time.perf_counter() - began


def train(client: Client, kind: str, trials: int, epochs: int) -> tuple[SearchHandle, float]:
    """Create the search, train it, return it with the wall seconds from start to finish."""
    search = client.create_search(
        f"throughput-{kind}", (1, 8, 8), 10, seed=0, seed_width=32, seed_depth=2, policy="random"
    )
    began = time.perf_counter()
    search.train("digits", trials, epochs=epochs, patience=epochs, device="cpu")
    kinds = [event.kind for event in search.watch(timeout=3600)]
    if kinds[-1] != "search_finished":
        raise RuntimeError(f"{kind}: the search ended with {kinds[-1]}")
    return search, time.perf_counter() - began


def measure(kind: str, client: Client, db_url: str, args: argparse.Namespace) -> dict[str, Any]:
    pool, pids, start_seconds = start_pool(kind, db_url, args.workers)
    try:
        # Warm-up: every training process imports torch and loads the dataset before the clock.
        _, warm_up = train(client, f"{kind}-warm-up", 2 * args.workers, 1)
        before = sum(cpu_seconds(pid) for pid in pids)
        search, wall = train(client, kind, args.trials, args.epochs)
        cpu = sum(cpu_seconds(pid) for pid in pids) - before
    finally:
        pool.stop()
    completed = len(search.trials(states=["COMPLETED"]))
    return {
        "executor": kind,
        "workers": args.workers,
        "trials_completed": completed,
        "wall_seconds": round(wall, 2),
        "trials_per_hour": round(completed / wall * 3600, 1),
        "training_cpu_seconds": round(cpu, 2),
        "pool_start_seconds": round(start_seconds, 2),
        "warm_up_seconds": round(warm_up, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--order", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args()

    import ray

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as folder:
        db_url = f"sqlite:///{os.path.join(folder, 'morphnas.db')}"
        server = build_server(ServerOptions(db_url=db_url, port=0))
        try:
            with Client(server.address, timeout=120) as client:
                rows = [measure(kind, client, db_url, args) for kind in args.order]
        finally:
            server.stop(0)
            ray.shutdown()
    for row in rows:
        print(json.dumps(row))
    totals = {}
    for kind in ("local", "ray"):
        mine = [row for row in rows if row["executor"] == kind]
        if mine:  # over its repeats: all trials over all wall seconds
            trials = sum(row["trials_completed"] for row in mine)
            wall = sum(row["wall_seconds"] for row in mine)
            cpu = sum(row["training_cpu_seconds"] for row in mine)
            totals[kind] = trials / wall * 3600
            print(
                f"{kind}: {len(mine)} run(s), {totals[kind]:.0f} trials/hour, "
                f"{cpu / trials:.2f} training CPU s per trial"
            )
    if len(totals) == 2:
        print(f"ray / local trials per hour: {totals['ray'] / totals['local']:.2f}")


if __name__ == "__main__":
    main()
