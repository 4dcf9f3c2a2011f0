"""Ask/tell latency of the service at 1000 trials, beside Optuna's ask/tell on its RDB storage.

    python bench/service.py [--trials 1000] [--measure 200] [--postgres URL]

For each backend a real server runs in this process on a free port and one client drives it over
the socket, like a remote worker. The search is filled to ``--trials`` completed trials, then
``--measure`` more ask/tell cycles are timed one call at a time: SuggestTrials, ReportTrial
without weights (comparable to Optuna's tell), and ReportTrial with the trained weights inlined.
Optuna runs the same number of trials on ``RDBStorage`` over SQLite with its RandomSampler (our
"random" policy is the comparable proposer; the GP policy's cost is measured by bench/suggest.py).
Medians and 95th percentiles in milliseconds; results also go to bench/results/service.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


def bench_morphnas(url: str, trials: int, measure: int) -> dict[str, list[float]]:
    from morphnas.client import Client
    from morphnas.server.app import ServerOptions, build_server

    server = build_server(ServerOptions(db_url=url, port=0))
    try:
        with Client(server.address) as client:
            search = client.create_search(
                name="bench",
                input_shape=(32,),
                num_classes=10,
                policy="random",
                seed_width=32,
                seed_depth=2,
                max_trials=trials + 2 * measure + 10,
            )
            for i in range(trials):
                [t] = search.suggest(worker_id="w")
                t.report(score=(i * 7919 % 1000) / 1000)
            times: dict[str, list[float]] = {"suggest": [], "report": [], "report+weights": []}
            for i in range(measure):
                ms, got = timed(lambda: search.suggest(worker_id="w"))
                times["suggest"].append(ms)
                [t] = got  # type: ignore[misc]
                score = 0.5 + i / (10 * measure)
                ms, _ = timed(lambda t=t, score=score: t.report(score=score))
                times["report"].append(ms)
            for _ in range(measure):
                [t] = search.suggest(worker_id="w")
                weights = t.initial_weights()  # what the worker trains and sends back
                ms, _ = timed(lambda t=t, weights=weights: t.report(score=0.5, weights=weights))
                times["report+weights"].append(ms)
            return times
    finally:
        server.stop(0)


def bench_optuna(path: Path, trials: int, measure: int) -> dict[str, list[float]]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))

    def ask() -> optuna.Trial:
        trial = study.ask()
        trial.suggest_int("width", 8, 512, log=True)
        trial.suggest_int("depth", 1, 8)
        return trial

    for i in range(trials):
        study.tell(ask(), (i * 7919 % 1000) / 1000)
    times: dict[str, list[float]] = {"suggest": [], "report": []}
    for _ in range(measure):
        ms, trial = timed(ask)
        times["suggest"].append(ms)
        ms, _ = timed(lambda trial=trial: study.tell(trial, 0.5))  # type: ignore[misc]
        times["report"].append(ms)
    return times


def fresh_postgres(admin_url: str) -> tuple[str, Callable[[], None]]:
    import uuid

    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"morphnas_bench_{uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    url = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--measure", type=int, default=200)
    parser.add_argument(
        "--postgres", default=os.environ.get("MORPHNAS_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "service.txt"))
    args = parser.parse_args()

    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["morphnas sqlite"] = bench_morphnas(
            f"sqlite:///{tmp}/m.db", args.trials, args.measure
        )
        try:
            url, drop = fresh_postgres(args.postgres)
        except Exception as err:  # noqa: BLE001
            print(f"(postgres skipped: {err})")
        else:
            try:
                results["morphnas postgres"] = bench_morphnas(url, args.trials, args.measure)
            finally:
                drop()
        results["optuna rdb sqlite"] = bench_optuna(Path(tmp) / "o.db", args.trials, args.measure)

    lines = [
        f"ask/tell latency at {args.trials} trials, {args.measure} measured cycles (ms)",
        f"{'backend':20} {'suggest p50':>12} {'suggest p95':>12} {'report p50':>11} {'report p95':>11} "
        f"{'ask+tell p50':>13} {'report+weights p50':>19}",
    ]
    for name, t in results.items():
        pair = [a + b for a, b in zip(t["suggest"], t["report"], strict=True)]
        rw = (
            f"{statistics.median(t['report+weights']):19.2f}"
            if "report+weights" in t
            else f"{'-':>19}"
        )
        lines.append(
            f"{name:20} {statistics.median(t['suggest']):12.2f} {percentile(t['suggest'], 0.95):12.2f} "
            f"{statistics.median(t['report']):11.2f} {percentile(t['report'], 0.95):11.2f} "
            f"{statistics.median(pair):13.2f} {rw}"
        )
    optuna_pair = statistics.median(
        [
            a + b
            for a, b in zip(
                results["optuna rdb sqlite"]["suggest"],
                results["optuna rdb sqlite"]["report"],
                strict=False,
            )
        ]
    )
    for name, t in results.items():
        if name.startswith("morphnas"):
            ours = statistics.median(
                [a + b for a, b in zip(t["suggest"], t["report"], strict=True)]
            )
            lines.append(
                f"ask+tell speed-up of {name} over optuna rdb sqlite: {optuna_pair / ours:.1f}x"
            )
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
