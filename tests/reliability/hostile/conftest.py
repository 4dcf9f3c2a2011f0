"""The hostile-input suite's server: one ``morphnas serve`` process for the whole package.

Package scope, so :meth:`World.peak_rss_bytes` at the end of the suite covers every hostile
request of every module (a module that needs other ``serve`` flags starts its own
:class:`~tests.reliability.hostile.world.World`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reliability.hostile.world import World


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    running = World(tmp_path_factory.mktemp("hostile"))
    yield running
    running.close()
