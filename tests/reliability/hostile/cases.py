"""Hostile payloads: bytes that are not a request, built for one request type.

Each builder takes a valid serialised request and returns ``(label, bytes)`` pairs. Whether a
payload really is malformed is decided by protobuf itself (:func:`is_malformed`): a random byte
string or a flipped bit sometimes still parses (as unknown fields, or another value), and then
the server owes a deliberate answer, not necessarily INVALID_ARGUMENT.
"""

from __future__ import annotations

import random

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

#: protobuf's wire types.
LENGTH_DELIMITED, START_GROUP, END_GROUP = 2, 3, 4


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def is_malformed(request_type: type[Message], payload: bytes) -> bool:
    """protobuf refuses to parse ``payload`` as ``request_type``."""
    try:
        request_type.FromString(payload)
    except Exception:  # noqa: BLE001 - any refusal counts (DecodeError, RecursionError...)
        return True
    return False


def first_string_field(request_type: type[Message]) -> int | None:
    for field in request_type.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return int(field.number)
    return None


def malformed_payloads(request_type: type[Message], valid: bytes) -> list[tuple[str, bytes]]:
    """Random, truncated and bit-flipped bytes, a 2**31 length prefix, invalid UTF-8 in a string
    field, nesting deeper than protobuf's limit."""
    rng = random.Random(f"{request_type.DESCRIPTOR.full_name}")
    cases = [(f"random-{n}", rng.randbytes(n)) for n in (1, 7, 64, 4096)]
    cases.append(("length-2^31", tag(1, LENGTH_DELIMITED) + varint(2**31) + b"\0" * 16))
    cases.append(("length-2^64", tag(1, LENGTH_DELIMITED) + b"\xff" * 10 + b"\x01"))
    cases.append(("nested-groups-1000", tag(1, START_GROUP) * 1000 + tag(1, END_GROUP) * 1000))
    cases.append(("tag-zero", b"\x00\x00"))
    if valid:
        cases.append(("truncated-1", valid[:-1]))
        cases.append(("truncated-half", valid[: len(valid) // 2]))
        for position in sorted({0, len(valid) // 3, len(valid) - 1}):
            flipped = bytearray(valid)
            flipped[position] ^= 1 << rng.randrange(8)
            cases.append((f"bit-flip-{position}", bytes(flipped)))
    number = first_string_field(request_type)
    if number is not None:
        bad = b"\xff\xfe\xc3\x28"
        cases.append(("invalid-utf8", tag(number, LENGTH_DELIMITED) + varint(len(bad)) + bad))
    return cases


_INT32 = (-(2**31), -1, 0, 2**31 - 1)
_INT64 = (-(2**63), -(2**31) - 1, -1, 2**31, 2**63 - 1)
_UINT32 = (0, 2**32 - 1)
_UINT64 = (0, 2**63, 2**64 - 1)
_FLOATS = (float("nan"), float("inf"), float("-inf"), -1e308, 1e308, -0.0, 5e-324)
_STRINGS = ("", "\x00", "x" * 1_000_000, "é" * 300, "../../../etc/passwd", "' OR 1=1 --")
_BYTES = (b"", b"\x00" * 7, bytes(range(256)))
_EXTREMES: dict[int, tuple[object, ...]] = {
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_DOUBLE: _FLOATS,
    FieldDescriptor.TYPE_FLOAT: _FLOATS,
    FieldDescriptor.TYPE_BOOL: (True,),
    FieldDescriptor.TYPE_STRING: _STRINGS,
    FieldDescriptor.TYPE_BYTES: _BYTES,
    FieldDescriptor.TYPE_ENUM: (-1, 2**31 - 1),
}


def extreme_requests(valid: Message) -> list[tuple[str, Message]]:
    """Copies of ``valid`` with one field (nested messages: one field of theirs) set to an
    extreme of its type: the ends of its integer range, NaN and infinities, a 1 MB string, an
    enum value no one defined; repeated fields get extreme elements and 100,000 elements."""
    cases: list[tuple[str, Message]] = []
    for path, field in _scalar_fields(valid.DESCRIPTOR):
        for value in _EXTREMES.get(field.type, ()):
            label = f"{'.'.join(path)}={_short(value)}"
            if field.is_repeated:
                cases.append((label, _with(valid, path, [value] * 3)))
            else:
                cases.append((label, _with(valid, path, value)))
        if field.is_repeated and field.type != FieldDescriptor.TYPE_STRING:
            many = [_EXTREMES[field.type][-1]] * 100_000
            cases.append((f"{'.'.join(path)}=100000 elements", _with(valid, path, many)))
    return cases


def _scalar_fields(descriptor, prefix=()):  # type: ignore[no-untyped-def]
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if not field.is_repeated and not prefix:
                yield from _scalar_fields(field.message_type, (field.name,))
            continue
        yield (*prefix, field.name), field


def _with(valid: Message, path: tuple[str, ...], value: object) -> Message:
    request = type(valid)()
    request.CopyFrom(valid)
    target = request
    for name in path[:-1]:
        target = getattr(target, name)
    if isinstance(value, list):
        getattr(target, path[-1])[:] = value
    else:
        setattr(target, path[-1], value)
    return request


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} chars)"
