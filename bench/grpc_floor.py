"""Where an ask/tell cycle's time goes: gRPC transport alone, and the service without gRPC.

    python bench/grpc_floor.py [--trials 1000] [--measure 300]

1. A bare grpcio server (no morphnas code) answering an echo whose handler does nothing, spins
   (holds the GIL) for 0.3 or 2 ms, or sleeps (releases it) for 2 ms (a sleep overshoots by about
   0.1 ms); one blocking client call at a time over 127.0.0.1. "Transport" is the call's time
   minus the handler's: what any Python gRPC service pays per call on this machine. Measured
   twice, each in a fresh process: with gRPC's default I/O path (EventEngine) and with the one
   ``morphnas serve`` asks for (see morphnas/grpc_io.py).
2. The same SuggestTrials / ReportTrial work as bench/service.py, called on SearchService
   directly (no gRPC), at the same search size (medians, and the tails: p95 and p99).

Medians in milliseconds; results also go to bench/results/grpc_floor.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


HANDLERS: dict[str, tuple[float, Callable[[], None]]] = {
    "empty handler": (0.0, lambda: None),
    "handler spins 0.3 ms": (0.3, lambda: spin(0.0003)),
    "handler spins 2 ms": (2.0, lambda: spin(0.002)),
    "handler sleeps 2 ms": (2.0, lambda: time.sleep(0.002)),
}


def median_ms(fn: Callable[[], object], n: int, warm: int = 100) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def transport(n: int) -> list[str]:
    import grpc

    def method(body: Callable[[], None]) -> grpc.RpcMethodHandler:
        def behaviour(request: bytes, context: Any) -> bytes:
            body()
            return request

        return grpc.unary_unary_rpc_method_handler(behaviour)

    handlers = {f"M{i}": method(body) for i, (_, body) in enumerate(HANDLERS.values())}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    lines = []
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        for i, (name, (handler_ms, _)) in enumerate(HANDLERS.items()):
            call = channel.unary_unary(f"/bench.Echo/M{i}")
            total = median_ms(lambda call=call: call(b"x", timeout=30), n)
            lines.append(
                f"{name:24} call {total:6.3f}   transport (call - handler) {total - handler_ms:6.3f}"
            )
    server.stop(0)
    return lines


def service_direct(trials: int, n: int) -> list[str]:
    from morphnas.core.records import Policy, SearchConfig, TrialState
    from morphnas.server.service import SearchService
    from morphnas.storage.repository import Repository

    with tempfile.TemporaryDirectory() as tmp:
        repo = Repository.from_url(f"sqlite:///{tmp}/direct.db")
        service = SearchService(repo)
        search = service.create_search(
            SearchConfig(
                name="bench",
                input_shape=(32,),
                num_classes=10,
                policy=Policy.RANDOM,
                seed_width=32,
                seed_depth=2,
                max_trials=trials + n + 10,
            )
        )
        for i in range(trials):
            [t] = service.suggest(search.id, 1, "w")
            service.report(t.id, state=TrialState.COMPLETED, score=(i * 7919 % 1000) / 1000)
        suggest, report = [], []
        for _ in range(n):
            start = time.perf_counter()
            [t] = service.suggest(search.id, 1, "w")
            middle = time.perf_counter()
            service.report(t.id, state=TrialState.COMPLETED, score=0.5)
            suggest.append((middle - start) * 1000)
            report.append((time.perf_counter() - middle) * 1000)
        repo.close()
    pair = [a + b for a, b in zip(suggest, report, strict=True)]
    return [
        f"service without gRPC, {trials} trials: suggest {statistics.median(suggest):.3f}  "
        f"report {statistics.median(report):.3f}  ask+tell {statistics.median(pair):.3f}",
        f"  suggest p95 {percentile(suggest, 0.95):.3f} p99 {percentile(suggest, 0.99):.3f}  "
        f"report p95 {percentile(report, 0.95):.3f} p99 {percentile(report, 0.99):.3f}",
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--measure", type=int, default=300)
    parser.add_argument("--calls", type=int, default=1000, help="calls per transport case")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "grpc_floor.txt"))
    parser.add_argument("--transport-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.transport_only:  # a child process: gRPC was loaded with the caller's setting
        print(json.dumps(transport(args.calls)))
        return
    from morphnas.grpc_io import LOW_LATENCY_EXPERIMENTS

    lines = ["bare grpcio unary call over 127.0.0.1, blocking client (ms, medians)"]
    for label, value in (
        ("gRPC default I/O (EventEngine)", ""),
        ("morphnas serve's I/O (EventEngine client and listener off)", LOW_LATENCY_EXPERIMENTS),
    ):
        child = subprocess.run(
            [sys.executable, __file__, "--transport-only", "--calls", str(args.calls)],
            env={**os.environ, "GRPC_EXPERIMENTS": value},
            capture_output=True,
            text=True,
            check=True,
        )
        lines.append(f"-- {label}")
        lines += json.loads(child.stdout.strip().splitlines()[-1])
    lines += service_direct(args.trials, args.measure)
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
