"""Streams that hold a handler thread are capped and timed, so they cannot starve the server.

The server is grpc's thread-pool server (``ServerOptions.max_workers`` handler threads, 32 by
default). A unary call holds a thread for as long as it computes; a client-streaming call
(UploadWeights, UploadDataset) holds one for as long as its client takes to send, and a
server-streaming call (DownloadWeights, ExportModel) for as long as its client takes to read.
Measured before this module: 40 UploadDataset streams that sent one message and stalled left no
thread, and a GetSearch (and the health check) on a fresh connection timed out at 5 s.
(WatchSearch holds no thread: :mod:`morphnas.server.watches`; 200 idle watches cost nothing.)

What :class:`StreamGate` (a server interceptor) does, and why this rather than an asyncio server:

- **Per-group concurrency limits.** At most ``max_uploads`` upload streams and
  ``max_downloads`` download streams run at once; one more is refused at once with
  RESOURCE_EXHAUSTED, which frees its thread in microseconds. With the defaults (8 + 8 of 32
  threads) at least 16 threads are always left for unary calls and health, whatever streams do.
- **Idle timeouts.** An upload whose next message does not arrive within ``idle_seconds``, or a
  download whose client does not take the next chunk within it, is cancelled by one watchdog
  thread (``context.cancel()``, which wakes the handler blocked on the stream); a stalled
  client holds a slot for ``idle_seconds`` at most.

An asyncio server would hold no thread per stream at all, but every handler would have to
become a coroutine (or run in an executor, which brings the thread back), storage and the
optimiser are synchronous, and grpc's non-blocking stream handler already serves the one
stream that stays open for long (WatchSearch). Two counters and a watchdog on the existing
server are the smaller, sound change.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from morphnas.core.errors import ResourceExhaustedError

log = logging.getLogger(__name__)

UPLOADS = ("UploadWeights", "UploadDataset")
DOWNLOADS = ("DownloadWeights", "ExportModel")


@dataclass(frozen=True)
class StreamLimits:
    """Concurrency and idle limits of the streams that hold a handler thread."""

    max_uploads: int = 8
    max_downloads: int = 8
    #: An upload or download that moves no message for this long is cancelled.
    idle_seconds: float = 30.0


class _Slots:
    """A counter with a cap that refuses instead of waiting."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.capacity:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


class IdleWatchdog:
    """Cancels calls whose stream has not moved for ``idle_seconds`` (one thread, lazily)."""

    def __init__(self, idle_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._armed: dict[int, tuple[float, grpc.ServicerContext, str]] = {}
        self._fired: set[int] = set()
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def arm(self, context: grpc.ServicerContext, method: str) -> int:
        token = next(self._tokens)
        with self._lock:
            self._armed[token] = (self._clock() + self.idle_seconds, context, method)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="stream-watchdog", daemon=True
                )
                self._thread.start()
        return token

    def disarm(self, token: int) -> bool:
        """Stop watching; True if the watchdog cancelled the call meanwhile."""
        with self._lock:
            self._armed.pop(token, None)
            fired = token in self._fired
            self._fired.discard(token)
            return fired

    def _watch(self) -> None:
        tick = max(0.05, min(1.0, self.idle_seconds / 4))
        while True:
            time.sleep(tick)
            now = self._clock()
            with self._lock:
                due = [(t, c, m) for t, (at, c, m) in self._armed.items() if at <= now]
                for token, _, _ in due:
                    del self._armed[token]
                    self._fired.add(token)
            for _, context, method in due:
                log.info("%s moved nothing for %.0f s: cancelled", method, self.idle_seconds)
                context.cancel()


class StreamGate(grpc.ServerInterceptor):
    """Applies :class:`StreamLimits` to the upload and download methods of ``service``."""

    def __init__(self, service: str, limits: StreamLimits | None = None) -> None:
        self.service = service
        self.limits = limits or StreamLimits()
        self.uploads = _Slots("upload", self.limits.max_uploads)
        self.downloads = _Slots("download", self.limits.max_downloads)
        self.watchdog = IdleWatchdog(self.limits.idle_seconds)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        service, _, method = details.method.lstrip("/").rpartition("/")
        if handler is None or service != self.service:
            return handler
        if method in UPLOADS and handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._upload(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if method in DOWNLOADS and handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._download(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _upload(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def gated(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            _enter(self.uploads, context, method)
            try:
                return behavior(self._timed(requests, context, method), context)
            finally:
                self.uploads.give()

        return gated

    def _download(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def gated(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            _enter(self.downloads, context, method)
            try:
                for response in behavior(request, context):
                    token = self.watchdog.arm(context, method)  # until the client takes it
                    try:
                        yield response
                    finally:
                        self.watchdog.disarm(token)
            finally:
                self.downloads.give()

        return gated

    def _timed(
        self, requests: Iterator[Any], context: grpc.ServicerContext, method: str
    ) -> Iterator[Any]:
        """The request stream, cancelled when a message takes longer than ``idle_seconds``."""
        while True:
            token = self.watchdog.arm(context, method)
            try:
                request = next(requests)
            except (StopIteration, grpc.RpcError) as end:
                # A cancelled call may look like a stream that ended: never take it for one.
                if self.watchdog.disarm(token):
                    raise ResourceExhaustedError(
                        f"{method} sent no message for {self.limits.idle_seconds:g} s and was "
                        "cancelled (serve --stream-idle-seconds)"
                    ) from None
                if isinstance(end, StopIteration) and context.is_active():
                    return
                raise
            self.watchdog.disarm(token)
            yield request


def _enter(slots: _Slots, context: grpc.ServicerContext, method: str) -> None:
    if not slots.take():
        log.info("%s refused: %d %s streams are open", method, slots.capacity, slots.name)
        context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"this server runs {slots.capacity} {slots.name} streams at once, its limit; "
            "retry in a moment",
        )
