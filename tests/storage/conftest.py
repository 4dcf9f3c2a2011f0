"""Storage fixtures: one repository per test, on SQLite and on PostgreSQL (``db_url``, see
``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from morphnas.core.records import SearchConfig
from morphnas.storage import Repository


@pytest.fixture
def repo(db_url: str) -> Iterator[Repository]:
    repository = Repository.from_url(db_url)
    yield repository
    repository.close()


def make_config(**overrides: object) -> SearchConfig:
    values: dict[str, object] = {"name": "test", "input_shape": (40,), "num_classes": 10}
    values.update(overrides)
    return SearchConfig(**values)  # type: ignore[arg-type]
