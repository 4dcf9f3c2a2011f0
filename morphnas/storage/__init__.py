"""Storage of searches, trials, weights and measurements (SQLite or PostgreSQL).

The only part of morphnas that knows SQLAlchemy. Use :class:`Repository`; it returns the
records of :mod:`morphnas.core.records` and raises the errors of :mod:`morphnas.core.errors`.
"""

from __future__ import annotations

from morphnas.storage.repository import (
    DEFAULT_URL,
    Repository,
    SchemaVersionError,
    StalePlan,
    SuggestState,
)

__all__ = ["DEFAULT_URL", "Repository", "SchemaVersionError", "StalePlan", "SuggestState"]
