"""Watches of a search's events (``WatchSearch``), served without a handler thread each.

The server is grpc's thread-pool server with ``max_workers`` handler threads
(:mod:`morphnas.server.app`). A watch used to loop on its handler thread, sleeping between polls
of the event table, so 32 open watches left no thread to answer anything else.

Now the handler only registers the watch and returns: grpc's ``experimental_non_blocking``
server-streaming handlers receive a ``send_response_callback`` that any thread may call (``None``
ends the call). It is the mechanism grpc's own health service uses for its Watch, on the same
server, so this is the smallest sound change: no second (asyncio) server, no handler made async.
One *ticker* thread wakes every ``poll_seconds`` and hands each watch not already being served to
a small pool of ``senders`` threads, which read the watch's new events and send them; a watch
whose search finished or stopped, or whose client left, is closed. An idle watch costs an entry
in a set and one indexed query a tick; ``max_watches`` bounds those queries, and a watch past it
is refused with RESOURCE_EXHAUSTED.

A send returns once gRPC has taken the message (flow control): a client that stops reading keeps
one sender busy until its deadline or cancel, while the other senders carry on. The ticker and
the pool start with the first watch and end after the last, so a server without watches holds
no thread for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc

from morphnas.core.errors import ResourceExhaustedError
from morphnas.core.records import SearchEvent
from morphnas.server import convert
from morphnas.server.errors import status_for

log = logging.getLogger(__name__)

#: A watch ends after one of these events.
FINAL_EVENTS = ("search_finished", "search_stopped")
MAX_WATCHES = 256
SENDERS = 4


@dataclass(eq=False)
class _Watch:
    """One open WatchSearch call: where it is in the feed and how to reach its client."""

    search_id: str
    after: int  # the id of the last event sent
    context: grpc.ServicerContext
    send: Callable[[Any], None]  # grpc's send_response_callback; None ends the call
    busy: bool = True  # a sender serves it now (a new watch is served at once)


class EventWatches:
    """The open watches of one server, served by a ticker thread and a few sender threads."""

    def __init__(
        self,
        events: Callable[[str, int], list[SearchEvent]],
        *,
        poll_seconds: float = 0.25,
        max_watches: int = MAX_WATCHES,
        senders: int = SENDERS,
    ) -> None:
        self._events = events  # (search id, after event id) -> the next events, oldest first
        self.poll_seconds = poll_seconds
        self.max_watches = max_watches
        self.senders = senders
        self._lock = threading.Lock()
        self._watches: set[_Watch] = set()
        self._pool: ThreadPoolExecutor | None = None  # with the ticker: both live while watches do

    def open(
        self,
        search_id: str,
        after: int,
        context: grpc.ServicerContext,
        send: Callable[[Any], None],
    ) -> None:
        """Register a watch and return at once; its events follow from the senders."""
        watch = _Watch(search_id, after, context, send)
        with self._lock:
            if len(self._watches) >= self.max_watches:
                raise ResourceExhaustedError(
                    f"this server already serves {self.max_watches} watches; retry later, "
                    "or poll GetTrainingRun instead"
                )
            self._watches.add(watch)
            pool = self._started_pool()
        pool.submit(self._serve, watch)

    def __len__(self) -> int:
        with self._lock:
            return len(self._watches)

    def _started_pool(self) -> ThreadPoolExecutor:
        """The sender pool, starting it and the ticker if no watch was open (lock held)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.senders, thread_name_prefix="watch-sender")
            threading.Thread(target=self._tick, name="watch-ticker", daemon=True).start()
        return self._pool

    def _tick(self) -> None:
        """Every ``poll_seconds``, hand the idle watches to the senders; end with the last."""
        while True:
            time.sleep(self.poll_seconds)
            with self._lock:
                pool = self._pool
                if not self._watches or pool is None:
                    self._pool = None  # the next watch starts a new ticker and pool
                    break
                due = [watch for watch in self._watches if not watch.busy]
                for watch in due:
                    watch.busy = True
            for watch in due:
                pool.submit(self._serve, watch)
        if pool is not None:
            pool.shutdown(wait=False)  # no watch is left, so no sender has work queued

    def _serve(self, watch: _Watch) -> None:
        """Send a watch its new events; close it if it is over."""
        try:
            over = self._send_new_events(watch)
        except Exception as error:  # noqa: BLE001 - ends this watch with a status, like a handler
            _set_status(watch.context, error, watch.search_id)
            over = True
        if over:
            watch.send(None)  # the status (OK unless set above); a no-op if the client left
        with self._lock:
            watch.busy = False
            if over:
                self._watches.discard(watch)

    def _send_new_events(self, watch: _Watch) -> bool:
        """Send what happened since the watch's last event; True when the watch is over.

        The watch ends right after a final event unless a later event of the same batch is a
        ``run_started`` (a resumed search), in which case it goes on. Events after a final one
        that are not a new run (a worker's late ``trial_finished`` after ``search_finished``
        when the budget ran out as it started a trial) do not keep it open."""
        while watch.context.is_active():
            events = self._events(watch.search_id, watch.after)
            if not events:
                return False
            for index, event in enumerate(events):
                watch.send(convert.event_to_pb(event))
                watch.after = event.id
                if event.kind in FINAL_EVENTS and not any(
                    later.kind == "run_started" for later in events[index + 1 :]
                ):
                    return True
        return True  # the client cancelled or its deadline passed


def _set_status(context: grpc.ServicerContext, error: Exception, search_id: str) -> None:
    """The status a watch ends with after ``error``, through the one error table."""
    code = status_for(error)
    if code is None:
        log.exception("bug in WatchSearch of search %s", search_id)
        code, details = grpc.StatusCode.INTERNAL, "internal error in WatchSearch; see server log"
    else:
        log.info("WatchSearch -> %s: %s", code.name, error)
        details = str(error)
    context.set_code(code)
    context.set_details(details)
