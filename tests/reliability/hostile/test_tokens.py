"""Crafted page tokens are INVALID_ARGUMENT; the tokens the server issues still page through.

A page token is opaque, but it is the caller's bytes: base64 of JSON that overflows a float
(``[1e400]``), a 31-digit integer (beyond SQLite's INTEGER), 100,000 nested brackets (Python's
recursion limit), the wrong types, or no base64 at all.
"""

from __future__ import annotations

import base64

import grpc
import pytest

from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.world import MAX_DETAILS_CHARS, World


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


CRAFTED = {
    "float-overflow": token("[1e400]"),
    "31-digit-int": token("[" + "9" * 31 + "]"),
    "2^63": token(f"[{2**63}]"),
    "negative": token("[-5]"),
    "nested-100000": token("[" * 100_000 + "]" * 100_000),
    "nan": token("[NaN]"),
    "infinity": token("[Infinity]"),
    "bool": token("[true]"),
    "null": token("[null]"),
    "string": token('["x"]'),
    "float": token("[1.5]"),
    "object": token('{"a": 1}'),
    "empty-list": token("[]"),
    "two-values": token('[1e400, "00000000000000000000000000000000"]'),
    "searches-nan": token('[NaN, "00000000000000000000000000000000"]'),
    "searches-long-id": token(f'[1.0, "{"a" * 5000}"]'),
    "not-base64": "%%%***",
    "not-json": token("\xff\xfe not json"),
    "1-MB": "A" * 1_000_000,
}


def _list(world: World, method: str, page_token: str, page_size: int = 0) -> object:
    if method == "ListTrials":
        request = pb.ListTrialsRequest(
            search_id=world.search_id, page_token=page_token, page_size=page_size
        )
        return world.client.stub.ListTrials(request, timeout=30)
    return world.client.stub.ListSearches(
        pb.ListSearchesRequest(page_token=page_token, page_size=page_size), timeout=30
    )


@pytest.mark.parametrize("method", ["ListTrials", "ListSearches"])
@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_a_crafted_page_token_is_invalid_argument(world: World, method: str, name: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        _list(world, method, CRAFTED[name])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert "page_token" in caught.value.details()
    assert len(caught.value.details()) <= MAX_DETAILS_CHARS


@pytest.mark.parametrize("method", ["ListTrials", "ListSearches"])
def test_issued_tokens_page_through_everything(world: World, method: str) -> None:
    everything = _list(world, method, "", page_size=1000)
    items = "trials" if method == "ListTrials" else "searches"
    expected = [item.id for item in getattr(everything, items)]
    seen: list[str] = []
    page_token = ""
    while True:
        page = _list(world, method, page_token, page_size=2)
        seen.extend(item.id for item in getattr(page, items))
        page_token = page.next_page_token  # type: ignore[attr-defined]
        if not page_token:
            break
    assert seen[: len(expected)] == expected
