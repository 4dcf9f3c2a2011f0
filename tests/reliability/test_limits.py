"""Limits: counts and sizes are capped with RESOURCE_EXHAUSTED, deadlines end calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from morphnas.client import Client, ResourceExhaustedError, UnavailableError
from morphnas.core.weights import weights_to_bytes
from morphnas.server.app import RunningServer, ServerOptions, build_server
from morphnas.server.service import ServiceLimits
from morphnas.v1 import morphnas_pb2 as pb


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = build_server(
        ServerOptions(
            db_url=f"sqlite:///{tmp_path / 'limits.db'}",
            port=0,
            max_message_bytes=2 * 1024**2,
            limits=ServiceLimits(max_searches=2, max_weights_bytes=512 * 1024),
        )
    )
    yield running
    running.stop(0)


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=10) as c:
        yield c


def test_searches_are_capped(client: Client) -> None:
    first = client.create_search("a", input_shape=(8,), num_classes=3)
    client.create_search("b", input_shape=(8,), num_classes=3)
    with pytest.raises(ResourceExhaustedError, match="2 searches"):
        client.create_search("c", input_shape=(8,), num_classes=3)
    first.delete()
    client.create_search("c", input_shape=(8,), num_classes=3)  # room again


def test_trials_per_search_are_capped(client: Client) -> None:
    search = client.create_search(
        "t", input_shape=(8,), num_classes=3, policy="random", max_trials=2
    )
    assert len(search.suggest(count=2, worker_id="w1")) == 2
    with pytest.raises(ResourceExhaustedError, match="limit of 2 trials"):
        search.suggest(worker_id="w2")


def test_messages_over_the_size_limit_are_refused(client: Client) -> None:
    search = client.create_search("m", input_shape=(8,), num_classes=3, policy="random")
    [trial] = search.suggest(worker_id="w")
    blob = weights_to_bytes({"x.weight": np.zeros(1_000_000, np.float32)})  # 4 MB > 2 MiB
    request = pb.ReportTrialRequest(trial_id=trial.id, state=pb.COMPLETED, score=0.5, weights=blob)
    with pytest.raises(ResourceExhaustedError):
        client.call("ReportTrial", request)
    assert trial.refresh().state == "ACTIVE"  # nothing was stored


def test_uploads_over_the_weights_limit_are_refused(client: Client) -> None:
    """Streams get around the message limit, not the weights limit (checked as chunks arrive)."""
    search = client.create_search("u", input_shape=(8,), num_classes=3, policy="random")
    [trial] = search.suggest(worker_id="w")
    with pytest.raises(ResourceExhaustedError, match="limit"):
        client.upload_weights(trial.id, b"\0" * (600 * 1024))


def test_a_deadline_ends_the_call(client: Client) -> None:
    """A call still waiting when its deadline passes ends with DEADLINE_EXCEEDED: here a watch
    of a search in which nothing happens. (A deadline shorter than a fast call is not a test:
    gRPC may deliver the answer before its timer fires.)"""
    search = client.create_search("quiet", input_shape=(8,), num_classes=3)
    started = time.monotonic()
    with pytest.raises(UnavailableError) as late:
        list(search.watch(timeout=0.3))
    assert late.value.code == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert 0.25 < time.monotonic() - started < 10
