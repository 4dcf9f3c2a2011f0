"""The memory figure: the server's peak resident set through the whole hostile suite.

Named to run last in the package (pytest runs a folder's modules in name order), after every
other module sent its hostile requests to the same package-scoped server, with the default
limits. The bound is documented in docs/operations.md ("Resource ceilings"): the budget of
upload bytes in flight (512 MiB) on top of a server at rest (~150 MB) and its caches, with room
to spare. Before issue 17 single requests of this suite drove the server to 3-4 GB.
"""

from __future__ import annotations

from tests.reliability.hostile.world import World

#: docs/operations.md: peak RSS under 1.5 GB with the default limits.
BOUND_BYTES = 1_500 * 10**6


def test_peak_memory_through_the_suite_stays_under_the_bound(world: World) -> None:
    peak = world.peak_rss_bytes()
    print(f"\nserver peak RSS through the hostile suite: {peak / 10**6:.0f} MB")
    assert peak < BOUND_BYTES
    assert world.serving()
