"""Prometheus metrics and the interceptor that observes every call.

Each server has its own :class:`prometheus_client.CollectorRegistry` (never the process-global
one), so a test can run several servers in one process. Exposed on ``serve --metrics-port P``:

* ``morphnas_rpc_requests_total{method, code}`` and ``morphnas_rpc_duration_seconds{method,
  code}``: calls and their latency, by method (``MorphNas/SuggestTrials``) and status code;
* ``morphnas_trials{state}`` and ``morphnas_searches``: counted in the database when scraped
  (one grouped count; ``morphnas_database_up`` is 0 when the database does not answer);
* ``morphnas_training_samples_total`` and ``morphnas_training_seconds_total``: training
  throughput, advanced by the training workers through :func:`record_training`;
* ``morphnas_search_cache_hits_total{cache}``, ``morphnas_search_cache_misses_total{cache}``,
  ``morphnas_search_cache_hit_ratio{cache}``, ``morphnas_search_cache_entries{cache}`` and
  ``morphnas_search_cache_capacity{cache}``: each table of the optimiser's
  :class:`~morphnas.search.cache.SearchCache` (``cache`` is its name there) and the graph memos
  of :mod:`morphnas.core.graph` (``graph_*``), read when scraped.

:class:`ObservabilityInterceptor` also binds each request's search and trial ids to the log
context (:mod:`morphnas.server.logs`), so the call's log lines carry them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from morphnas.core import graph
from morphnas.core.errors import UnavailableError
from morphnas.core.records import TrialState
from morphnas.search.cache import SearchCache
from morphnas.search.memo import CacheStats
from morphnas.server import logs
from morphnas.v1 import morphnas_pb2

log = logging.getLogger(__name__)

#: Shared by every server in the process (training workers do not know which server they feed).
TRAINING_SAMPLES = Counter(
    "morphnas_training_samples", "Training samples processed by this process", registry=None
)
TRAINING_SECONDS = Counter(
    "morphnas_training_seconds", "Seconds this process's workers spent training", registry=None
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def record_training(samples: int, seconds: float) -> None:
    """Count ``samples`` trained in ``seconds`` of training (call once per epoch or batch group)."""
    if samples < 0 or seconds < 0:
        raise ValueError(f"samples and seconds must be >= 0, got {samples}, {seconds}")
    TRAINING_SAMPLES.inc(samples)
    TRAINING_SECONDS.inc(seconds)


def _known_methods() -> frozenset[str]:
    """Full names of the methods we serve: the only values of the ``method`` label."""
    services = [
        *morphnas_pb2.DESCRIPTOR.services_by_name.values(),
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    ]
    names = {f"/{s.full_name}/{m.name}" for s in services for m in s.methods}
    return frozenset(names | {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"})


class StoreCollector(Collector):
    """Gauges read from the database at scrape time: one grouped count of trials and one count
    of searches, reused for ``max_age`` seconds so that many scrapers cost no more than one."""

    def __init__(self, repo: Any, max_age: float = 5.0) -> None:
        self._repo = repo
        self._max_age = max_age
        self._cached: tuple[float, dict[TrialState, int], int] | None = None
        self._lock = threading.Lock()

    def _counts(self) -> tuple[dict[TrialState, int], int]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._max_age:
                self._cached = (
                    now,
                    self._repo.count_trials_by_state(),
                    self._repo.count_searches(),
                )
            return self._cached[1], self._cached[2]

    def describe(self) -> Iterable[Metric]:
        """The metric names, without a query (the registry asks when the collector registers)."""
        yield GaugeMetricFamily("morphnas_database_up", "")
        yield GaugeMetricFamily("morphnas_trials", "", labels=["state"])
        yield GaugeMetricFamily("morphnas_searches", "")

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("morphnas_database_up", "1 when the database answered this scrape")
        try:
            by_state, searches = self._counts()
        except UnavailableError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        trials = GaugeMetricFamily("morphnas_trials", "Trials by state", labels=["state"])
        for state in TrialState:
            trials.add_metric([state.value], by_state.get(state, 0))
        yield trials
        yield GaugeMetricFamily("morphnas_searches", "Searches stored", value=searches)


class CacheCollector(Collector):
    """Hits, misses, hit ratio and size of each table of the optimiser's cache and of the graph
    memos, read from their counters at scrape time."""

    _NAMES = ("hits", "misses", "hit_ratio", "entries", "capacity")

    def __init__(self, cache: SearchCache) -> None:
        self._cache = cache

    def _stats(self) -> dict[str, CacheStats]:
        found = self._cache.stats()
        for name, (hits, misses, entries, capacity) in graph.memo_stats().items():
            found[name] = CacheStats(hits, misses, entries, capacity)
        return found

    def describe(self) -> Iterable[Metric]:
        yield CounterMetricFamily("morphnas_search_cache_hits", "", labels=["cache"])
        yield CounterMetricFamily("morphnas_search_cache_misses", "", labels=["cache"])
        for name in self._NAMES[2:]:
            yield GaugeMetricFamily(f"morphnas_search_cache_{name}", "", labels=["cache"])

    def collect(self) -> Iterable[Metric]:
        hits = CounterMetricFamily(
            "morphnas_search_cache_hits", "Lookups answered by the cache", labels=["cache"]
        )
        misses = CounterMetricFamily(
            "morphnas_search_cache_misses", "Lookups that computed the value", labels=["cache"]
        )
        ratio = GaugeMetricFamily(
            "morphnas_search_cache_hit_ratio", "hits / (hits + misses) so far", labels=["cache"]
        )
        entries = GaugeMetricFamily(
            "morphnas_search_cache_entries", "Entries held now", labels=["cache"]
        )
        capacity = GaugeMetricFamily(
            "morphnas_search_cache_capacity", "Most entries held", labels=["cache"]
        )
        for name, stats in self._stats().items():
            hits.add_metric([name], stats.hits)
            misses.add_metric([name], stats.misses)
            ratio.add_metric([name], stats.hit_rate)
            entries.add_metric([name], stats.entries)
            capacity.add_metric([name], stats.capacity)
        yield from (hits, misses, ratio, entries, capacity)


class Metrics:
    """One server's registry: RPC counters and latencies, database gauges, training counters,
    the optimiser's cache."""

    def __init__(
        self,
        repo: Any | None = None,
        store_max_age: float = 5.0,
        search_cache: SearchCache | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "morphnas_rpc_requests", "RPCs handled", ["method", "code"], registry=self.registry
        )
        self.latency = Histogram(
            "morphnas_rpc_duration_seconds",
            "RPC latency",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(TRAINING_SAMPLES)
        self.registry.register(TRAINING_SECONDS)
        if repo is not None:
            self.registry.register(StoreCollector(repo, max_age=store_max_age))
        if search_cache is not None:
            self.registry.register(CacheCollector(search_cache))
        self._http: Any = None

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.requests.labels(method, code.name).inc()
        self.latency.labels(method, code.name).observe(seconds)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose ``/metrics`` over HTTP on ``host:port`` (0: a free port); returns the port."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Time and count every call (when given :class:`Metrics`) and bind its ids to the logs."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics
        self._known = _known_methods()
        # The wrapped handler of each method we serve, made once: this runs on gRPC's polling
        # thread, in the way of every call (wrapping per call cost about 50 µs a call there).
        self._wrapped: dict[tuple[str, int], grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full: str = handler_call_details.method  # type: ignore[attr-defined]
        if full not in self._known:  # bounded label values: invented names are not remembered
            return _wrap(handler, "unknown", self._metrics)
        key = (full, id(handler))  # the same handler object serves every call of a method
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            wrapped = _wrap(handler, full.lstrip("/").rsplit(".", 1)[-1], self._metrics)
            if len(self._wrapped) < 4 * len(self._known):  # bounded, whatever gRPC hands us
                self._wrapped[key] = wrapped
        return wrapped


def _wrap(
    handler: grpc.RpcMethodHandler, method: str, metrics: Metrics | None
) -> grpc.RpcMethodHandler:
    """The same handler whose behaviour is timed, counted and run with its ids bound."""
    if handler.request_streaming and handler.response_streaming:
        field = "stream_stream"
    elif handler.request_streaming:
        field = "stream_unary"
    elif handler.response_streaming:
        field = "unary_stream"
    else:
        field = "unary_unary"
    behavior = getattr(handler, field)

    def finish(context: grpc.ServicerContext, started: float, failed: bool) -> None:
        if metrics is None:
            return
        code = context.code()  # set by abort / set_code; None when the handler just returned
        if code is None:
            if not context.is_active():  # the client cancelled, or its deadline passed
                code = grpc.StatusCode.CANCELLED
            else:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        metrics.observe(method, code, time.perf_counter() - started)

    def unary_response(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        ids = {} if handler.request_streaming else logs.ids_of(request)
        failed = True
        try:
            with logs.bound(**ids):
                result = behavior(request, context)
            failed = False
            return result
        finally:
            finish(context, started, failed)

    def streamed_response(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        started = time.perf_counter()
        ids = {} if handler.request_streaming else logs.ids_of(request)
        failed = True
        try:
            with logs.bound(**ids):
                yield from behavior(request, context)
            failed = False
        finally:
            finish(context, started, failed)

    def callback_response(
        request: Any, context: grpc.ServicerContext, send: Callable[[Any], None]
    ) -> None:
        """A non-blocking stream (see :mod:`morphnas.server.watches`): the call ends when
        ``send(None)`` is called, maybe on another thread, after the handler returned."""
        started = time.perf_counter()

        def send_then_finish(response: Any) -> None:
            send(response)
            if response is None:
                finish(context, started, False)

        try:
            with logs.bound(**logs.ids_of(request)):
                behavior(request, context, send_then_finish)
        except BaseException:
            finish(context, started, True)
            raise

    wrapped: Callable[..., Any]
    if getattr(behavior, "experimental_non_blocking", False):
        # Keep grpc's non-blocking protocol: a generator here would hold a handler thread.
        callback_response.experimental_non_blocking = True  # type: ignore[attr-defined]
        callback_response.experimental_thread_pool = getattr(  # type: ignore[attr-defined]
            behavior, "experimental_thread_pool", None
        )
        wrapped = callback_response
    else:
        wrapped = streamed_response if handler.response_streaming else unary_response
    return handler._replace(**{field: wrapped})  # type: ignore[attr-defined, no-any-return]
