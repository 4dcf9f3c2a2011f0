"""WatchSearch holds no handler thread while a watch waits (morphnas.server.watches)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from morphnas.client import Client, NotFoundError, ResourceExhaustedError
from morphnas.server.app import RunningServer
from morphnas.server.service import SearchService
from morphnas.server.servicer import MorphNasServicer
from morphnas.server.training import TrainingService
from morphnas.storage.repository import Repository
from morphnas.v1 import morphnas_pb2 as pb
from morphnas.v1 import morphnas_pb2_grpc as pb_grpc

HANDLER_THREADS = 32  # ServerOptions.max_workers, which start_server keeps
WATCHES = 40


def _search(client: Client):
    return client.create_search(
        name="watched", input_shape=(1, 8, 8), num_classes=10, seed=0, seed_width=16
    )


def test_more_watches_than_handler_threads_while_unary_calls_answer(
    server: RunningServer, client: Client
) -> None:
    search = _search(client)
    search.train("digits", 1, epochs=1, device="cpu")  # writes run_started; no worker trains it
    first_seen = [threading.Event() for _ in range(WATCHES)]
    kinds: list[list[str]] = [[] for _ in range(WATCHES)]

    def watch(i: int) -> None:
        with Client(server.address, timeout=60) as own:  # its own connection, like a real user
            for event in own.get_search(search.id).watch(timeout=60):
                kinds[i].append(event.kind)
                first_seen[i].set()

    threads = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(WATCHES)]
    for thread in threads:
        thread.start()
    # Every watch is served, though there are more of them than handler threads.
    deadline = time.monotonic() + 30
    for seen in first_seen:
        assert seen.wait(max(0.0, deadline - time.monotonic())), "a watch got no event"
    # All 40 are open and waiting; a unary call still finds a thread at once.
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        assert client.get_search(search.id).id == search.id
        latencies.append(time.perf_counter() - started)
    assert max(latencies) < 1.0, latencies
    search.stop()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    assert kinds == [["run_started", "search_stopped"]] * WATCHES


@pytest.fixture
def capped(sqlite_url: str) -> Iterator[tuple[MorphNasServicer, str]]:
    """A bare server whose servicer serves at most two watches."""
    repo = Repository.from_url(sqlite_url)
    service = SearchService(repo)
    servicer = MorphNasServicer(
        service, TrainingService(service), watch_poll_seconds=0.05, max_watches=2
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_MorphNasServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(0).wait()
    repo.close()


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_watch_past_the_cap_is_refused_and_cancelled_watches_are_released(
    capped: tuple[MorphNasServicer, str],
) -> None:
    servicer, address = capped
    with Client(address, timeout=30) as client:
        search = _search(client)
        request = pb.WatchSearchRequest(search_id=search.id)
        # Two watches fill the cap (and both handler threads, were a watch to hold one).
        calls = [client.stub.WatchSearch(request, timeout=30) for _ in range(2)]
        assert _wait_for(lambda: len(servicer.watches) == 2)
        with pytest.raises(ResourceExhaustedError, match="2 watches"):
            list(search.watch(timeout=10))
        assert client.get_search(search.id).id == search.id  # the handler threads are free
        for call in calls:
            call.cancel()
        assert _wait_for(lambda: len(servicer.watches) == 0)  # a cancelled watch is dropped
        search.stop()
        assert [e.kind for e in search.watch(timeout=10)] == ["search_stopped"]


def test_a_watch_of_a_missing_search_is_not_found(client: Client) -> None:
    search = _search(client)
    search.info = dataclasses.replace(search.info, id="0" * 32)  # well-formed, unknown
    with pytest.raises(NotFoundError):
        list(search.watch(timeout=10))


def _feed_watch(kinds: list[str]) -> tuple[bool, list[str], int]:
    """Serve one watch over a feed of events of ``kinds`` fetched as one batch: whether it is
    over, the kinds it sent and the id of its last event."""
    from types import SimpleNamespace

    from morphnas.core.records import SearchEvent
    from morphnas.server.watches import EventWatches, _Watch

    feed = [
        SearchEvent(id=i, search_id="s", kind=kind, payload={}, created_at=0.0)
        for i, kind in enumerate(kinds, start=1)
    ]

    def events(search_id: str, after: int) -> list[SearchEvent]:
        return [e for e in feed if e.id > after]

    sent: list[Any] = []
    context = SimpleNamespace(is_active=lambda: True)
    watch = _Watch("s", 0, context, sent.append)  # type: ignore[arg-type]
    over = EventWatches(events)._send_new_events(watch)
    return over, [message.kind for message in sent], watch.after


def test_a_late_trial_finished_after_search_finished_ends_the_watch_there() -> None:
    """A worker may write a trial_finished after search_finished (the budget ran out while it
    was starting a trial): the watch ends at search_finished instead of waiting for ever."""
    kinds = ["run_started", "trial_finished", "search_finished", "trial_finished"]
    over, sent, after = _feed_watch(kinds)
    assert over is True
    assert sent == ["run_started", "trial_finished", "search_finished"]
    assert after == 3


def test_search_stopped_then_run_started_continues_the_watch() -> None:
    """A resumed search: the first run's search_stopped is followed by the new run's events."""
    kinds = ["run_started", "search_stopped", "run_started", "trial_finished"]
    over, sent, after = _feed_watch(kinds)
    assert over is False  # not over: the search runs again
    assert sent == kinds and after == 4
    over, sent, after = _feed_watch([*kinds, "search_finished"])
    assert over is True and sent[-1] == "search_finished" and after == 5
