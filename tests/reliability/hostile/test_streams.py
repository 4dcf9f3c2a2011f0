"""Stalled and concurrent streams: they cannot starve unary calls or the health check, and
uploads in flight share one byte budget (morphnas.server.streams, morphnas.server.blobs).

The starvation figure (GetSearch and Health.Check p99 while 200 idle streams are open) is
printed here and quoted in docs/performance.md; the bound asserted is the issue's (1 s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from morphnas.v1 import morphnas_pb2 as pb
from morphnas.v1 import morphnas_pb2_grpc as pb_grpc
from tests.reliability.hostile.test_bombs import REFUSED, dataset_stream
from tests.reliability.hostile.world import Outcome, World

IDLE_STREAMS = 200
MIB = 1024**2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stalled_upload(release: threading.Event) -> Iterator[pb.UploadDatasetRequest]:
    """An upload that sends one message, then nothing until ``release`` is set."""
    yield pb.UploadDatasetRequest(name="stalled", data=b"PK\x03\x04")
    release.wait()


@pytest.mark.slow
def test_200_idle_streams_do_not_starve_unary_calls_or_health(world: World) -> None:
    release = threading.Event()
    channels = [grpc.insecure_channel(world.address) for _ in range(10)]
    calls = []
    try:
        for n in range(IDLE_STREAMS):
            stub = pb_grpc.MorphNasStub(channels[n % len(channels)])
            if n % 2:
                calls.append(stub.UploadDataset.future(stalled_upload(release), timeout=120))
            else:
                request = pb.WatchSearchRequest(search_id=world.search_id)
                calls.append(stub.WatchSearch(request, timeout=120))
        time.sleep(2.0)  # every stream has reached the server
        with grpc.insecure_channel(world.address) as fresh:
            stub = pb_grpc.MorphNasStub(fresh)
            health = health_pb2_grpc.HealthStub(fresh)
            gets, checks = [], []
            for _ in range(50):
                started = time.perf_counter()
                stub.GetSearch(pb.GetSearchRequest(search_id=world.search_id), timeout=5)
                gets.append(time.perf_counter() - started)
                started = time.perf_counter()
                health.Check(health_pb2.HealthCheckRequest(), timeout=5)
                checks.append(time.perf_counter() - started)
        refused = sum(
            1
            for call in calls[1::2]
            if call.done() and call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        )
    finally:
        release.set()
        for call in calls:
            call.cancel()
        for channel in channels:
            channel.close()
    print(
        f"\n{IDLE_STREAMS} idle streams ({IDLE_STREAMS // 2} WatchSearch, {IDLE_STREAMS // 2} "
        f"stalled UploadDataset, {refused} of those refused at once): GetSearch p50 "
        f"{percentile(gets, 0.5) * 1000:.1f} ms p99 {percentile(gets, 0.99) * 1000:.1f} ms; "
        f"Health.Check p99 {percentile(checks, 0.99) * 1000:.1f} ms"
    )
    assert percentile(gets, 0.99) < 1.0
    assert percentile(checks, 0.99) < 1.0
    assert refused >= IDLE_STREAMS // 2 - 8  # past the 8 upload slots, refused at once


@pytest.mark.slow
def test_concurrent_large_uploads_share_one_byte_budget(world: World) -> None:
    """4 uploads of 200 MiB at once (800 MiB > the 512 MiB in flight): each reserves its
    announced size, so the ones that would overrun the budget are refused with
    RESOURCE_EXHAUSTED before their bytes, the others are received (spooled to disk, so the
    server's resident set grows by far less than the bytes in flight) and checked."""
    blob = b"PK\x03\x04" + bytes(200 * MIB - 4)  # an .npz only in name: refused once stored
    before = world.rss_bytes()

    def upload(n: int) -> Outcome:
        return world.call(
            "/morphnas.v1.MorphNas/UploadDataset",
            "stream_unary",
            list(dataset_stream(f"big-{n}", blob)),
            timeout=300,
        )

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(upload, range(4)))
    codes = [o.code for o in outcomes]
    print(
        f"\n4 concurrent 200 MiB uploads: {[(o.code.name, o.details[:60]) for o in outcomes]}; server RSS "
        f"{before / MIB:.0f} -> peak {world.peak_rss_bytes() / MIB:.0f} MiB"
    )
    assert set(codes) <= REFUSED
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # over the budget
    assert grpc.StatusCode.INVALID_ARGUMENT in codes  # received, then refused for its content
    assert world.serving()
