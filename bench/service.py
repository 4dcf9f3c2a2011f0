"""Ask/tell latency of the service at 1000 trials, beside Optuna's ask/tell on its RDB storage.

    python bench/service.py [--trials 1000] [--measure 200] [--postgres URL] [--grpc-default]

For each backend a real server runs as users run it, a ``morphnas serve --port 0`` process on its
own database, and one client in this process drives it over the socket, like a remote worker.
The search is filled to ``--trials`` completed trials, then
``--measure`` more ask/tell cycles are timed one call at a time: SuggestTrials, ReportTrial
without weights (comparable to Optuna's tell), and ReportTrial with the trained weights inlined.
Every backend is filled first; then their measured cycles run interleaved in blocks of 10, so
they share the machine's load.
Optuna runs the same number of trials on ``RDBStorage`` over SQLite with its RandomSampler (our
"random" policy is the comparable proposer; the GP policy's cost is measured by bench/suggest.py).
Servers and client take morphnas's default gRPC I/O path (EventEngine client and listener off:
``morphnas serve`` asks for it, and this benchmark for its client, see morphnas/grpc_io.py);
``--grpc-default`` keeps gRPC's own default on both sides instead. Medians and 95th percentiles
in milliseconds; results also go to bench/results/service.txt.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from morphnas.grpc_io import io_path, prefer_low_latency_io  # noqa: E402

if "--grpc-default" in sys.argv:
    os.environ["GRPC_EXPERIMENTS"] = ""  # set (to gRPC's defaults) here and in the servers
else:
    prefer_low_latency_io()  # what the `morphnas` command does; before anything loads grpc

BLOCK = 10  # measured cycles of one backend before the next backend's turn
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start) * 1000, result


class Morphnas:
    """A ``morphnas serve`` process on ``url`` and a client over the socket, its search filled
    to ``trials``."""

    def __init__(self, url: str, trials: int, measure: int) -> None:
        from morphnas.client import Client

        self.server = subprocess.Popen(  # inherits GRPC_EXPERIMENTS as this process has it
            [sys.executable, "-m", "morphnas.cli", "serve", "--db", url, "--port", "0"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self.server.stdout is not None
        ready = self.server.stdout.readline()  # "morphnas listening on HOST:PORT"
        if not ready.startswith("morphnas listening on "):
            self.server.kill()
            raise RuntimeError(f"morphnas serve did not start: {ready!r}")
        self.client = Client(ready.split()[-1])
        self.search = self.client.create_search(
            name="bench",
            input_shape=(32,),
            num_classes=10,
            policy="random",
            seed_width=32,
            seed_depth=2,
            max_trials=trials + 2 * measure + 10,
        )
        for i in range(trials):
            [t] = self.search.suggest(worker_id="w")
            t.report(score=(i * 7919 % 1000) / 1000)
        self.times: dict[str, list[float]] = {"suggest": [], "report": [], "report+weights": []}
        self.done = 0

    def cycle(self, measure: int) -> None:
        ms, got = timed(lambda: self.search.suggest(worker_id="w"))
        self.times["suggest"].append(ms)
        [t] = got  # type: ignore[misc]
        score = 0.5 + self.done / (10 * measure)
        ms, _ = timed(lambda: t.report(score=score))
        self.times["report"].append(ms)
        self.done += 1

    def weights_cycle(self) -> None:
        [t] = self.search.suggest(worker_id="w")
        weights = t.initial_weights()  # what the worker trains and sends back
        ms, _ = timed(lambda: t.report(score=0.5, weights=weights))
        self.times["report+weights"].append(ms)

    def close(self) -> None:
        self.client.close()
        self.server.send_signal(signal.SIGTERM)  # drains and exits 0
        self.server.wait(timeout=60)


class Optuna:
    """Optuna's ask/tell on RDBStorage over SQLite (RandomSampler), filled to ``trials``."""

    def __init__(self, path: Path, trials: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
        self.study = optuna.create_study(
            storage=storage, sampler=optuna.samplers.RandomSampler(seed=0)
        )
        for i in range(trials):
            self.study.tell(self.ask(), (i * 7919 % 1000) / 1000)
        self.times: dict[str, list[float]] = {"suggest": [], "report": []}

    def ask(self) -> object:
        trial = self.study.ask()
        trial.suggest_int("width", 8, 512, log=True)
        trial.suggest_int("depth", 1, 8)
        return trial

    def cycle(self, measure: int) -> None:
        ms, trial = timed(self.ask)
        self.times["suggest"].append(ms)
        ms, _ = timed(lambda: self.study.tell(trial, 0.5))  # type: ignore[arg-type]
        self.times["report"].append(ms)


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
    parser.add_argument(
        "--grpc-default",
        action="store_true",
        help="servers and client keep gRPC's default I/O path (EventEngine)",
    )
    args = parser.parse_args()

    # Fill every backend first, then time their cycles interleaved in blocks (BLOCK cycles of
    # each in turn), so that all see the same machine load: the ratios are then fair even on a
    # busy machine, and each runs warm, as a server answering one worker loop does.
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        backends: dict[str, Morphnas | Optuna] = {
            "morphnas sqlite": Morphnas(f"sqlite:///{tmp}/m.db", args.trials, args.measure)
        }
        drop = None
        try:
            url, drop = fresh_postgres(args.postgres)
        except Exception as err:  # noqa: BLE001
            print(f"(postgres skipped: {err})")
        else:
            backends["morphnas postgres"] = Morphnas(url, args.trials, args.measure)
        backends["optuna rdb sqlite"] = Optuna(Path(tmp) / "o.db", args.trials)
        try:
            for _ in range(0, args.measure, BLOCK):
                for backend in backends.values():
                    for _ in range(BLOCK):
                        backend.cycle(args.measure)
            for _ in range(args.measure):
                for backend in backends.values():
                    if isinstance(backend, Morphnas):
                        backend.weights_cycle()
            results = {name: backend.times for name, backend in backends.items()}
        finally:
            for backend in backends.values():
                if isinstance(backend, Morphnas):
                    backend.close()
            if drop is not None:
                drop()

    lines = [
        f"ask/tell latency at {args.trials} trials, {args.measure} measured cycles (ms); "
        f"servers: morphnas serve processes; gRPC I/O on both sides: {io_path()}",
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
