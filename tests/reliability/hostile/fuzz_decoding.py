"""Coverage-guided fuzzing (atheris, libFuzzer) of request decoding and the edge checks.

Run by ``test_fuzz_decoding.py`` in a subprocess (libFuzzer ends its process when done)::

    python -m tests.reliability.hostile.fuzz_decoding -max_total_time=60

Each input picks an RPC by its first byte; the rest are the request bytes. Whatever they are,
decoding returns a message or :class:`~morphnas.server.decoding.Malformed`, the handler
wrapper answers a bad one with INVALID_ARGUMENT before the servicer sees it, and the checks a
request then meets (the edge table, a search's configuration, page tokens, a dataset upload's
``.npz``) raise only domain errors. Any other exception is a crash: libFuzzer prints the input
and the traceback and exits non-zero.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["morphnas"]):
    from morphnas.core.errors import InvalidArgumentError, MorphnasError
    from morphnas.nn.datasets import inspect_npz, load_npz
    from morphnas.server import convert, validation
    from morphnas.server.decoding import Malformed, decoder, method_handler
    from morphnas.storage import repository
    from morphnas.v1 import morphnas_pb2 as pb
    from tests.reliability.hostile.world import small_dataset

import grpc
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

METHODS = list(pb.DESCRIPTOR.services_by_name["MorphNas"].methods)
DECODERS = [decoder(GetMessageClass(m.input_type)) for m in METHODS]


class Aborted(Exception):
    """What the fake context's ``abort`` raises (gRPC's raises a bare Exception)."""


class Context:
    """The part of a ServicerContext the handler wrapper uses."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        assert len(details) < 2_000, details
        self.code = code
        raise Aborted(details)


def _reached(request: Any, context: Any, *rest: Any) -> Any:
    """The servicer's place: returns the request (a client stream's messages, read)."""
    return request if isinstance(request, Message) else list(request)


def test_one(data: bytes) -> None:
    if not data:
        return
    index = data[0] % len(METHODS)
    method, payload = METHODS[index], data[1:]
    request = DECODERS[index](payload)
    handle = method_handler(_reached, method)
    behavior = handle.unary_unary or handle.unary_stream or handle.stream_unary
    context = Context()
    try:
        if method.client_streaming:
            [reached] = behavior(iter([request]), context)
        else:
            reached = behavior(request, context)
    except Aborted:  # a unary request: the wrapper answered INVALID_ARGUMENT
        assert context.code == grpc.StatusCode.INVALID_ARGUMENT
        return
    except InvalidArgumentError:  # a client stream: the servicer's error table answers it
        assert method.client_streaming
        return
    assert reached is request and not isinstance(request, Malformed)
    try:
        validation.check_request(request)
        if isinstance(request, pb.CreateSearchRequest):
            convert.search_config_from_pb(request)
        if isinstance(request, pb.ListTrialsRequest) and request.page_token:
            repository._decode_token(request.page_token, int)
        if isinstance(request, pb.ListSearchesRequest) and request.page_token:
            repository._decode_token(request.page_token, float, str)
        if isinstance(request, pb.UploadDatasetRequest) and request.data:
            load_npz(request.data, max_bytes=1 << 20)
        if isinstance(request, pb.UploadDatasetRequest) and request.data:
            # What the server runs on an upload (streaming); the same refusals, never a crash.
            inspect_npz(io.BytesIO(request.data), max_bytes=1 << 20)
    except MorphnasError:
        pass


def seed_corpus(folder: Path) -> None:
    """Valid requests to start from (libFuzzer mutates them): every RPC's empty request, and
    ones with a search's configuration, issued page tokens and a small dataset upload."""
    tokens = (repository._encode_token(5), repository._encode_token(1.5, "0" * 32))
    examples: dict[str, list[Message]] = {
        "CreateSearch": [
            pb.CreateSearchRequest(
                name="s", input_shape=[3, 8, 8], num_classes=10, seed=7, max_params=10**6
            )
        ],
        "ListTrials": [pb.ListTrialsRequest(search_id="0" * 32, page_token=tokens[0])],
        "ListSearches": [pb.ListSearchesRequest(page_size=2, page_token=tokens[1])],
        "UploadDataset": [pb.UploadDatasetRequest(name="d", data=small_dataset(examples=10))],
    }
    for index, method in enumerate(METHODS):
        for number, request in enumerate(
            [GetMessageClass(method.input_type)(), *examples.get(method.name, [])]
        ):
            (folder / f"{method.name}-{number}").write_bytes(
                bytes([index]) + request.SerializeToString()
            )


def main() -> None:
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
