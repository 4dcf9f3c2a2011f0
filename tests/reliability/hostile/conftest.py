"""The hostile-input suite's server: one ``morphnas serve`` process per database for the whole
package (SQLite, and PostgreSQL as in ``tests/conftest.py``'s ``db_url``).

Package scope, so :meth:`World.peak_rss_bytes` at the end of the suite covers every hostile
request of every module (a module that needs other ``serve`` flags starts its own
:class:`~tests.reliability.hostile.world.World`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dbs import DATABASES, fresh_schema
from tests.reliability.hostile.world import World


@pytest.fixture(scope="package", params=DATABASES)
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("hostile")
    if request.param == "sqlite":
        running = World(folder)
        yield running
        running.close()
        return
    schemas = fresh_schema(request.getfixturevalue("postgres_database"))
    running = World(folder, db_url=next(schemas))
    yield running
    running.close()
    schemas.close()
