"""Blobs in both directions without holding them whole: the upload spool and its byte budget,
downloads read chunk by chunk from the database, and the stream gate (slots, idle timeout)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from morphnas.core.errors import InvalidArgumentError, ResourceExhaustedError
from morphnas.server.app import RunningServer, ServerOptions, build_server
from morphnas.server.blobs import CHUNK_BYTES, ByteBudget, receive
from morphnas.server.service import ServiceLimits, sha256_hex
from morphnas.server.streams import StreamLimits
from morphnas.v1 import morphnas_pb2 as pb
from morphnas.v1 import morphnas_pb2_grpc as pb_grpc

MIB = 1024**2


def messages(blob: bytes, total: int | None = None) -> list[pb.UploadDatasetRequest]:
    parts = [blob[i : i + MIB] for i in range(0, len(blob), MIB)] or [b""]
    first = pb.UploadDatasetRequest(name="d", total_size=len(blob) if total is None else total)
    first.data = parts[0]
    return [first, *(pb.UploadDatasetRequest(data=p) for p in parts[1:])]


def test_an_upload_is_spooled_with_its_size_and_sha256_and_released_when_closed() -> None:
    budget = ByteBudget(10 * MIB)
    blob = bytes(range(256)) * 10_000
    first, *rest = messages(blob)
    with receive(first, iter(rest), 5 * MIB, budget) as upload:
        assert (upload.size, upload.sha256) == (len(blob), sha256_hex(blob))
        assert budget.used == len(blob)
        assert upload.read_at(1000, 10) == blob[1000:1010]
        assert bytes(upload.read_all()) == blob
    assert budget.used == 0


@pytest.mark.parametrize(
    ("blob", "total", "limit", "error"),
    [
        (bytes(3 * MIB), None, 2 * MIB, ResourceExhaustedError),  # over the upload limit
        (bytes(10), 20, MIB, InvalidArgumentError),  # ended short of its announced size
        (bytes(10), -1, MIB, InvalidArgumentError),
    ],
)
def test_a_refused_upload_leaves_nothing_held(
    blob: bytes, total: int | None, limit: int, error: type[Exception]
) -> None:
    budget = ByteBudget(100 * MIB)
    first, *rest = messages(blob, total)
    with pytest.raises(error):
        receive(first, iter(rest), limit, budget)
    assert budget.used == 0


def test_uploads_in_flight_share_one_budget() -> None:
    budget = ByteBudget(3 * MIB)
    first, *rest = messages(bytes(2 * MIB))
    with receive(first, iter(rest), 10 * MIB, budget):
        other, *more = messages(bytes(2 * MIB))
        with pytest.raises(ResourceExhaustedError, match="in flight"):
            receive(other, iter(more), 10 * MIB, budget)
        assert budget.used == 2 * MIB
    assert budget.used == 0


def test_a_message_over_the_chunk_size_is_refused() -> None:
    first = pb.UploadDatasetRequest(name="d", data=bytes(CHUNK_BYTES + 1))
    with pytest.raises(InvalidArgumentError, match="at most"):
        receive(first, iter([]), 10 * MIB, ByteBudget(10 * MIB))


# ------------------------------------------------------------------------------ over gRPC


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    running = build_server(
        ServerOptions(
            db_url=f"sqlite:///{tmp_path / 'blobs.db'}",
            port=0,
            limits=ServiceLimits(),
            streams=StreamLimits(max_uploads=2, max_downloads=2, idle_seconds=0.5),
        )
    )
    yield running
    running.stop(0)


def big_trial(stub: pb_grpc.MorphNasStub) -> str:
    """An ACTIVE trial whose initial weights span several chunks (about 8 MB)."""
    search = stub.CreateSearch(
        pb.CreateSearchRequest(
            name="big", input_shape=[8000], num_classes=3, seed_width=256, policy=pb.POLICY_RANDOM
        )
    )
    request = pb.SuggestTrialsRequest(search_id=search.id, count=1, worker_id="w")
    return str(stub.SuggestTrials(request).trials[0].id)


def test_a_download_reads_the_database_one_chunk_at_a_time(server: RunningServer) -> None:
    """The whole blob is never loaded: a client that cancels after one chunk cost one chunk
    (gRPC may have asked for one more)."""
    repo = server.service.repo
    reads: list[int] = []
    read_chunk = repo.read_weights_chunk

    def counted(*args: object) -> bytes | None:
        chunk = read_chunk(*args)  # type: ignore[arg-type]
        reads.append(len(chunk or b""))
        return chunk

    repo.read_weights_chunk = counted  # type: ignore[method-assign]
    repo.load_weights = None  # type: ignore[assignment]  # must not be called
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.MorphNasStub(channel)
        trial_id = big_trial(stub)
        request = pb.DownloadWeightsRequest(trial_id=trial_id, kind=pb.INITIAL)
        chunks = list(stub.DownloadWeights(request))
        blob = b"".join(c.data for c in chunks)
        assert chunks[0].total_size == len(blob) > 4 * CHUNK_BYTES
        assert chunks[0].sha256 == sha256_hex(blob)
        reads.clear()
        call = stub.DownloadWeights(request)
        next(call)
        call.cancel()
        time.sleep(0.5)
    assert 1 <= len(reads) <= 3 < len(chunks)


def test_a_stalled_upload_is_cancelled_and_frees_its_slot(server: RunningServer) -> None:
    release = threading.Event()

    def stalled() -> Iterator[pb.UploadDatasetRequest]:
        yield pb.UploadDatasetRequest(name="stalled", data=b"PK\x03\x04")
        release.wait()

    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.MorphNasStub(channel)
        first = stub.UploadDataset.future(stalled(), timeout=30)
        second = stub.UploadDataset.future(stalled(), timeout=30)
        time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as third:  # both slots are taken
            stub.UploadDataset(iter([pb.UploadDatasetRequest(name="x")]), timeout=10)
        assert third.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for call in (first, second):  # the watchdog cancels them after 0.5 s
            with pytest.raises(grpc.RpcError):
                call.result(timeout=10)
        release.set()
        with pytest.raises(grpc.RpcError) as fourth:  # a slot again: refused for its bytes
            stub.UploadDataset(iter([pb.UploadDatasetRequest(name="x")]), timeout=10)
        assert fourth.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert server.service.uploads.used == 0
