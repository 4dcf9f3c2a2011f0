"""Range checks at the edge: the documented ranges that no use case checks, before any work.

Most fields are checked where their meaning lives (a search's configuration by
:class:`~morphnas.core.records.SearchConfig`, ids by :mod:`morphnas.core.ids`, page sizes and
counts by the use cases, page tokens by the repository that issues them); each rule is written
once. This table holds the rest: ranges of fields that are passed through to code that trusts
them. :mod:`morphnas.server.decoding` runs :func:`check_request` on every decoded request
(every message of a client stream), so a request out of range is INVALID_ARGUMENT before
anything is read or stored.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.message import Message

from morphnas.core.errors import InvalidArgumentError
from morphnas.v1 import morphnas_pb2 as pb

#: Seeds are 0 to 2**63 - 1: numpy's generators take no negative seeds.
MAX_SEED = 2**63 - 1


def check_request(request: Message) -> None:
    """Raise InvalidArgumentError when a field of ``request`` is outside its documented range."""
    check = _CHECKS.get(request.DESCRIPTOR.full_name)
    if check is not None:
        check(request)


def _create_search(request: pb.CreateSearchRequest) -> None:
    if not 0 <= request.seed <= MAX_SEED:
        raise InvalidArgumentError(f"seed must be 0 to {MAX_SEED:,}, got {request.seed:,}")


_CHECKS: dict[str, Callable[[Message], None]] = {
    pb.CreateSearchRequest.DESCRIPTOR.full_name: _create_search,  # type: ignore[dict-item]
}
