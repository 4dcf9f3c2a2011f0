"""Operations: Prometheus metrics per server, structured logs with search and trial ids."""

from __future__ import annotations

import io
import json
import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from morphnas.client import Client, InvalidArgumentError, NotFoundError
from morphnas.server import logs
from morphnas.server.app import RunningServer, ServerOptions, build_server
from morphnas.server.metrics import record_training
from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.harness import ServerProcess, free_port, wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from a server's /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as page:
        text = page.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def rpcs(samples: dict, method: str, code: str) -> float:
    return samples.get(("morphnas_rpc_requests_total", (("code", code), ("method", method))), 0.0)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[RunningServer]]:
    """Two servers in one process, on two databases, each with its own metrics port."""
    urls = [f"sqlite:///{tmp_path / f'{i}.db'}" for i in range(2)]
    running = [build_server(ServerOptions(db_url=url, port=0, metrics_port=0)) for url in urls]
    yield running
    for server in running:
        server.stop(0)


def test_metrics_count_calls_by_method_and_code(servers: list[RunningServer]) -> None:
    first, second = servers
    with Client(first.address, timeout=10) as client:
        search = client.create_search("m", input_shape=(8,), num_classes=3, policy="random")
        [trial] = search.suggest(worker_id="w")
        trial.initial_weights()
        with pytest.raises(NotFoundError):
            client.get_search("0" * 32)
        with pytest.raises(InvalidArgumentError):
            trial.report(score=float("nan"))
    samples = scrape(first.metrics_port)  # type: ignore[arg-type]
    assert rpcs(samples, "MorphNas/CreateSearch", "OK") == 1
    assert rpcs(samples, "MorphNas/SuggestTrials", "OK") == 1
    assert rpcs(samples, "MorphNas/DownloadWeights", "OK") == 1
    assert rpcs(samples, "MorphNas/GetSearch", "NOT_FOUND") == 1
    assert rpcs(samples, "MorphNas/ReportTrial", "INVALID_ARGUMENT") == 1
    labels = (("code", "OK"), ("method", "MorphNas/SuggestTrials"))
    assert samples[("morphnas_rpc_duration_seconds_count", labels)] == 1
    # Read from the database at scrape time.
    assert samples[("morphnas_trials", (("state", "ACTIVE"),))] == 1
    assert samples[("morphnas_trials", (("state", "COMPLETED"),))] == 0
    assert samples[("morphnas_searches", ())] == 1
    assert samples[("morphnas_database_up", ())] == 1
    # The other server's registry saw none of it.
    other = scrape(second.metrics_port)  # type: ignore[arg-type]
    assert rpcs(other, "MorphNas/CreateSearch", "OK") == 0
    assert other[("morphnas_searches", ())] == 0


def test_training_throughput_is_counted(servers: list[RunningServer]) -> None:
    port = servers[0].metrics_port
    before = scrape(port)  # type: ignore[arg-type]
    record_training(samples=1000, seconds=2.5)
    after = scrape(port)  # type: ignore[arg-type]
    samples = ("morphnas_training_samples_total", ())
    seconds = ("morphnas_training_seconds_total", ())
    assert after[samples] - before[samples] == 1000
    assert after[seconds] - before[seconds] == pytest.approx(2.5)
    with pytest.raises(ValueError):
        record_training(samples=-1, seconds=1.0)


def test_a_cancelled_stream_stops_and_is_counted_as_cancelled(servers: list[RunningServer]) -> None:
    """The client reads one chunk of ~34 MB of weights and cancels: far more than gRPC's flow
    control lets the server send ahead, so the server sees the cancellation mid-stream."""
    server = servers[0]
    with Client(server.address, timeout=30) as client:
        search = client.create_search(
            "big", input_shape=(8,), num_classes=3, policy="random", seed_width=2048
        )
        [trial] = search.suggest(worker_id="w")
        request = pb.DownloadWeightsRequest(trial_id=trial.id)
        stream = client.stub.DownloadWeights(request, timeout=30)
        assert next(stream).total_size > 30 * 1024**2
        stream.cancel()

    def cancelled() -> float:
        samples = scrape(server.metrics_port)  # type: ignore[arg-type]
        return rpcs(samples, "MorphNas/DownloadWeights", "CANCELLED")

    wait_for(lambda: cancelled() == 1, 10, "the server to see the cancellation")


def test_log_lines_carry_search_and_trial_ids(servers: list[RunningServer]) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("morphnas")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with Client(servers[0].address, timeout=10) as client:
            search = client.create_search("l", input_shape=(8,), num_classes=3, policy="random")
            [trial] = search.suggest(worker_id="w")
            with pytest.raises(InvalidArgumentError):
                trial.report(score=float("inf"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    refused = [e for e in entries if "ReportTrial -> INVALID_ARGUMENT" in e["message"]]
    assert len(refused) == 1
    assert refused[0]["trial_id"] == trial.id and refused[0]["level"] == "INFO"
    assert "search_id" not in refused[0]  # a report names only its trial


def test_serve_with_json_logs_and_metrics(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    db = f"sqlite:///{tmp_path / 'j.db'}"
    metrics_port = free_port()
    server = ServerProcess(
        db, None, "--log-json", "--metrics-port", str(metrics_port), log=log, verbose=True
    ).start()
    try:
        with Client(server.address, timeout=10) as client, pytest.raises(NotFoundError):
            client.get_search("f" * 32)
        assert rpcs(scrape(metrics_port), "MorphNas/GetSearch", "NOT_FOUND") == 1
    finally:
        assert server.stop() == 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    [missing] = [e for e in entries if "NOT_FOUND" in e["message"]]
    assert missing["search_id"] == "f" * 32


def test_the_search_caches_hit_rates_are_exported(servers: list[RunningServer]) -> None:
    server = servers[0]
    with Client(server.address, timeout=30) as client:
        search = client.create_search("c", input_shape=(8,), num_classes=3, seed_depth=1)
        for k in range(3):  # the first is the seed; the others are Bayesian proposals
            [trial] = search.suggest(worker_id="w")
            trial.report(score=0.5 + 0.1 * k, weights=trial.initial_weights())
    samples = scrape(server.metrics_port)  # type: ignore[arg-type]

    def sample(name: str, cache: str) -> float:
        return samples[(f"morphnas_search_cache_{name}", (("cache", cache),))]

    # The third ask read the architecture the second one parsed.
    assert sample("misses_total", "parsed") >= 1 and sample("hits_total", "parsed") >= 1
    assert 0 < sample("hit_ratio", "parsed") < 1
    assert sample("misses_total", "distance_layers") >= 1
    for cache in server.service.search_cache.stats():
        assert 0 <= sample("entries", cache) <= sample("capacity", cache)
    assert sample("hits_total", "graph_layer_json") > 0  # the core graph memos too
