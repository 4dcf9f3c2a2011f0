"""Range checks at the edge: the documented ranges that no use case checks, before any work.

Most fields are checked where their meaning lives (a search's configuration by
:class:`~morphnas.core.records.SearchConfig`, ids by :mod:`morphnas.core.ids`, page sizes and
counts by the use cases, page tokens by the repository that issues them); each rule is written
once. This module holds the rest: ranges of fields that are passed through to code that
trusts them, and one rule for every string of every request (no NUL character). :mod:`morphnas.server.decoding` runs :func:`check_request` on every decoded request
(every message of a client stream), so a request out of range is INVALID_ARGUMENT before
anything is read or stored.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from morphnas.core.errors import InvalidArgumentError
from morphnas.v1 import morphnas_pb2 as pb

#: Seeds are 0 to 2**63 - 1: numpy's generators take no negative seeds.
MAX_SEED = 2**63 - 1


def check_request(request: Message) -> None:
    """Raise InvalidArgumentError when a field of ``request`` is outside its documented range."""
    _check_text(request)
    check = _CHECKS.get(request.DESCRIPTOR.full_name)
    if check is not None:
        check(request)


def _check_text(message: Message, prefix: str = "") -> None:
    """No string field holds a NUL character: PostgreSQL cannot store one in text (SQLite
    can), and no name, id, reason or token needs one. Nested messages are checked too."""
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else [value]
            if any("\x00" in text for text in values):
                raise InvalidArgumentError(f"{name} must not contain NUL characters (\\x00)")
        elif (
            field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry
        ):
            # a map field (e.g. ReportTrialRequest.metrics): its keys and values, not entries
            key_type, value_type = (f.type for f in field.message_type.fields)
            if key_type == FieldDescriptor.TYPE_STRING and any("\x00" in key for key in value):
                raise InvalidArgumentError(f"{name} keys must not contain NUL characters (\\x00)")
            for item in value.values():
                if value_type == FieldDescriptor.TYPE_STRING and "\x00" in item:
                    raise InvalidArgumentError(f"{name} must not contain NUL characters (\\x00)")
                if value_type == FieldDescriptor.TYPE_MESSAGE:
                    _check_text(item, f"{name}.")
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for nested in value if field.is_repeated else [value]:
                _check_text(nested, f"{name}.")


def _create_search(request: pb.CreateSearchRequest) -> None:
    if not 0 <= request.seed <= MAX_SEED:
        raise InvalidArgumentError(f"seed must be 0 to {MAX_SEED:,}, got {request.seed:,}")


_CHECKS: dict[str, Callable[[Message], None]] = {
    pb.CreateSearchRequest.DESCRIPTOR.full_name: _create_search,  # type: ignore[dict-item]
}
