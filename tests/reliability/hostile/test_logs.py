"""A caller's cancel or deadline is no server bug, and errors quote a short prefix of the input.

An upload the client cancelled was logged as ``ERROR bug in UploadDataset`` with a traceback; a
1 MB id came back inside the status message, which gRPC then refused to send (the client saw
RESOURCE_EXHAUSTED "metadata size exceeds hard limit" instead of the real error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from morphnas.server.errors import handles_errors
from morphnas.server.servicer import MorphNasServicer
from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.rpcs import RPCS
from tests.reliability.hostile.world import World, small_dataset

ID_FIELDS = ("search_id", "trial_id", "dataset_id", "dataset")


def _stalled_upload(release: threading.Event) -> Iterator[pb.UploadDatasetRequest]:
    blob = small_dataset()
    yield pb.UploadDatasetRequest(name="stalled", total_size=2 * len(blob), data=blob)
    release.wait(30)


def _new_lines(world: World, skip: int) -> list[str]:
    return list(world.log_lines())[skip:]


@pytest.mark.parametrize("ending", ["cancel", "deadline"])
def test_a_caller_ending_an_upload_is_not_logged_as_a_bug(world: World, ending: str) -> None:
    before = len(list(world.log_lines()))
    release = threading.Event()
    call = world.client.stub.UploadDataset.future(
        _stalled_upload(release), timeout=1.0 if ending == "deadline" else 30
    )
    time.sleep(0.5)  # the server is reading the stream now
    if ending == "cancel":
        call.cancel()
    with pytest.raises(grpc.FutureCancelledError if ending == "cancel" else grpc.RpcError):
        call.result(timeout=30)
    release.set()
    time.sleep(1.0)  # the handler notices and returns
    assert world.serving()
    # gRPC may show the handler a cancel as the end of the stream (then the upload is short:
    # INVALID_ARGUMENT, at INFO) or as an error from the stream (then: debug only, see below).
    lines = _new_lines(world, before)
    assert [line for line in lines if "ERROR" in line or "Traceback" in line] == []


class _EndedContext:
    """A ServicerContext whose caller has gone (cancelled, or its deadline passed)."""

    code: grpc.StatusCode | None = None

    def is_active(self) -> bool:
        return False

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise RuntimeError(details)  # gRPC's abort raises too


def test_an_error_raised_after_the_caller_left_is_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What a handler raises once its call has ended (the stream's RpcError, or anything) is
    the caller leaving, not a bug: debug level, no traceback, status CANCELLED."""

    class Stream(MorphNasServicer):
        @handles_errors
        def UploadDataset(self, request_iterator: object, context: object) -> None:  # type: ignore[override]
            raise grpc.RpcError()  # what gRPC's request iterator raises on a cancel

    context = _EndedContext()
    with caplog.at_level(logging.DEBUG, logger="morphnas.server.errors"):
        with pytest.raises(RuntimeError):
            Stream.UploadDataset(None, iter(()), context)  # type: ignore[arg-type]
    assert context.code == grpc.StatusCode.CANCELLED
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize(
    "rpc",
    [r for r in RPCS if any(f.name in ID_FIELDS for f in r.request_type.DESCRIPTOR.fields)],
    ids=str,
)
def test_a_one_megabyte_id_gets_a_short_invalid_argument(world: World, rpc: object) -> None:
    [request, *rest] = rpc.build(world)  # type: ignore[attr-defined]
    for field in request.DESCRIPTOR.fields:
        if field.name in ID_FIELDS:
            setattr(request, field.name, "a" * 1_000_000)
    outcome = world.call(rpc.path, rpc.kind, [request, *rest])  # type: ignore[attr-defined]
    assert outcome.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), outcome
    assert len(outcome.details) <= 300, outcome.details[:300]
