"""Every architecture a test session makes, checked against the contract's JSON Schema.

``record_architectures`` wraps :meth:`Graph.to_json`, the one way morphnas writes an
architecture (the server stores and sends exactly that text), for a whole pytest session; at its
end every distinct text is validated (tests/conftest.py installs it). Architectures made in
subprocesses (the ``morphnas`` command) are not seen here; tests/contract/test_schema.py
validates what a real server hands out over the wire.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from morphnas.core.graph import Graph
from tests.contract.schemas import architecture_errors


@contextmanager
def record_architectures() -> Iterator[set[str]]:
    """While open, the canonical JSON of every graph serialised in this process."""
    seen: set[str] = set()
    original = Graph.to_json

    def to_json(self: Graph) -> str:
        text = original(self)
        seen.add(text)
        return text

    Graph.to_json = to_json  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        Graph.to_json = original  # type: ignore[method-assign]


def invalid_architectures(texts: set[str], limit: int = 5) -> list[str]:
    """A few of ``texts`` that break the schema, each with its first error."""
    bad = []
    for text in sorted(texts):
        errors = architecture_errors(json.loads(text))
        if errors:
            bad.append(f"{errors[0]} in {text[:300]}")
            if len(bad) >= limit:
                break
    return bad
