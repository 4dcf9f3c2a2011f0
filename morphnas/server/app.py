"""Composition root: wires repository, service, servicer, health and reflection into a server.

``build_server`` returns ``(server, port)`` and binds port 0 in tests; ``serve`` runs one until
SIGTERM/SIGINT, then drains in-flight calls and returns.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2

from morphnas.core.errors import UnavailableError
from morphnas.grpc_io import io_path
from morphnas.search.cache import SearchCache
from morphnas.server.decoding import add_service
from morphnas.server.metrics import Metrics, ObservabilityInterceptor
from morphnas.server.ray_executor import RayExecutorOptions, RayWorkerPool
from morphnas.server.reflection import enable_reflection
from morphnas.server.security import TokenAuthInterceptor, server_credentials
from morphnas.server.service import SearchService, ServiceLimits
from morphnas.server.servicer import MorphNasServicer
from morphnas.server.streams import StreamGate, StreamLimits
from morphnas.server.training import TrainingService
from morphnas.server.workers import WorkerPool
from morphnas.storage.repository import Repository
from morphnas.v1 import morphnas_pb2

log = logging.getLogger(__name__)

SERVICE_DESCRIPTOR = morphnas_pb2.DESCRIPTOR.services_by_name["MorphNas"]
SERVICE_NAME = SERVICE_DESCRIPTOR.full_name
DEFAULT_DB_URL = "sqlite:///morphnas.db"


@dataclass(frozen=True)
class ServerOptions:
    db_url: str = DEFAULT_DB_URL
    host: str = "127.0.0.1"
    port: int = 50051
    max_workers: int = 32  # gRPC handler threads
    max_message_bytes: int = 64 * 1024**2
    sweep_seconds: float = 5.0  # how often expired leases are turned STALE
    grace_seconds: float = 30.0  # how long SIGTERM waits for in-flight calls
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    workers: int = 0  # training worker processes started beside the server
    worker_device: str | None = None  # e.g. "cpu" or "cuda:1"; None: each run's budget decides
    tokens: tuple[str, ...] = ()  # bearer tokens; empty: no authentication
    tls_cert: str | None = None  # PEM files; with both, the port speaks TLS
    tls_key: str | None = None
    tls_client_ca: str | None = None  # require client certificates signed by this CA (mTLS)
    metrics_port: int | None = None  # Prometheus /metrics on host:port; None: off, 0: free port
    streams: StreamLimits = field(default_factory=StreamLimits)  # upload/download streams
    executor: str = "local"  # "local": `workers` processes; "ray": actors on a Ray cluster
    ray: RayExecutorOptions | None = None  # where and how, with executor "ray"


@dataclass
class RunningServer:
    """A started server and what it owns; ``stop`` releases all of it."""

    server: grpc.Server
    port: int
    service: SearchService
    health: health.HealthServicer
    _stop: threading.Event
    metrics: Metrics | None = None
    metrics_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        self._stop.set()
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        if self.metrics is not None:
            self.metrics.close()
        self.service.repo.close()


def build_server(options: ServerOptions, repo: Repository | None = None) -> RunningServer:
    """Create, bind and start a server. ``options.port == 0`` picks a free port."""
    repo = repo or Repository.from_url(options.db_url)
    search_cache = SearchCache()  # the optimiser's one cache, shared by every request
    service = SearchService(repo, options.limits, search_cache)
    metrics = Metrics(repo, search_cache=search_cache) if options.metrics_port is not None else None
    interceptors: list[grpc.ServerInterceptor] = [ObservabilityInterceptor(metrics)]
    if options.tokens:
        interceptors.append(TokenAuthInterceptor(options.tokens))
    # Last: only authenticated calls take a stream slot (morphnas.server.streams).
    interceptors.append(StreamGate(SERVICE_NAME, options.streams))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="rpc"),
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", options.max_message_bytes),
            ("grpc.max_send_message_length", options.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    training = TrainingService(service)
    # Not the generated add_*_to_server: malformed request bytes must be INVALID_ARGUMENT.
    add_service(MorphNasServicer(service, training), SERVICE_DESCRIPTOR, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    add_service(health_servicer, health_pb2.DESCRIPTOR.services_by_name["Health"], server)
    enable_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), server
    )
    address = f"{options.host}:{options.port}"
    if options.tls_cert or options.tls_key:
        if not (options.tls_cert and options.tls_key):
            raise ValueError("TLS needs both a certificate and its key")
        credentials = server_credentials(options.tls_cert, options.tls_key, options.tls_client_ca)
        port = server.add_secure_port(address, credentials)
    elif options.tls_client_ca:
        raise ValueError("a client CA (mutual TLS) needs the server's own certificate and key")
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {options.host}:{options.port}")
    server.start()
    stop = threading.Event()
    running = RunningServer(server, port, service, health_servicer, stop, metrics)
    if metrics is not None and options.metrics_port is not None:
        running.metrics_port = metrics.serve_http(options.metrics_port, options.host)
        log.info("metrics on http://%s:%d/metrics", options.host, running.metrics_port)
    threading.Thread(
        target=_maintain, args=(running, options.sweep_seconds), name="lease-sweeper", daemon=True
    ).start()
    _set_health(running)
    return running


def _set_health(running: RunningServer) -> bool:
    try:
        running.service.repo.ping()
        status = health_pb2.HealthCheckResponse.SERVING
    except UnavailableError:
        status = health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ("", SERVICE_NAME):
        running.health.set(name, status)
    return status == health_pb2.HealthCheckResponse.SERVING


def _maintain(running: RunningServer, every: float) -> None:
    """Background duties: expire leases, delete unused uploads of finished trials, keep the
    health status in step with the database."""
    while not running._stop.wait(every):
        try:
            if _set_health(running):
                expired = running.service.expire_leases()
                if expired:
                    log.info(
                        "%d trial lease(s) expired; their architectures will be handed out again",
                        expired,
                    )
                dropped = running.service.drop_spent_uploads()
                if dropped:
                    log.info(
                        "deleted %d weight upload(s) of finished trials that never used them",
                        dropped,
                    )
        except Exception:  # noqa: BLE001 - a sweeper must survive anything
            log.exception("lease sweeper failed; retrying")


def serve(options: ServerOptions, ready_line: bool = True) -> None:
    """Run until SIGTERM or SIGINT; then stop taking calls, drain, exit."""
    running = build_server(options)
    pool = training_pool(options)
    # The pool starts first: ray.init replaces this process's SIGTERM handler, and ours below
    # must be the one that runs (drain the calls, stop the pool, exit 0).
    try:
        pool.start()
    except BaseException:
        running.stop(0)
        raise
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        log.info("signal %d: draining in-flight calls", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("gRPC I/O path: %s", io_path())
    if ready_line:
        print(f"morphnas listening on {options.host}:{running.port}", flush=True)
    done.wait()
    pool.stop()
    running.stop(options.grace_seconds)
    log.info("server stopped")


def training_pool(options: ServerOptions) -> WorkerPool | RayWorkerPool:
    """The training workers ``serve`` starts beside the server, by ``options.executor``."""
    if options.executor == "local":
        return WorkerPool(options.db_url, options.workers, device=options.worker_device)
    if options.executor == "ray":
        ray_options = options.ray or RayExecutorOptions(
            workers=options.workers, device=options.worker_device
        )
        return RayWorkerPool(options.db_url, ray_options)
    raise ValueError(f"executor must be 'local' or 'ray', got {options.executor!r}")
