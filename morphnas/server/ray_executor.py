"""Server-side training on a Ray cluster (``morphnas serve --executor ray``).

The design: N Ray *actors*, each running the same :class:`morphnas.server.worker.Worker` loop
that ``serve --workers N`` runs in local processes, against the same database. Ray only places
them (one per ``--gpus-per-trial`` GPUs, or per CPU) and restarts the ones that die; the job
queue, leases and retries stay where they are proven, in the database
(:mod:`morphnas.storage.training`):

- a worker claims a slot of a run, asks the search for a trial under its own worker id, trains
  it while a heartbeat renews the trial's lease, and reports it;
- an actor (or its node) that dies stops renewing: the lease expires, the trial turns STALE and
  its architecture is handed out again to the next worker that claims, without taking a new slot
  (so no trial is lost and none is counted twice); Ray restarts the actor (``max_restarts=-1``)
  under a new worker id, and it resumes claiming.

Why actors and not one Ray task per trial: a task per trial would need a dispatcher in the server
that claims on the workers' behalf and re-submits lost tasks, a second retry mechanism beside the
leases that could disagree with them (Ray retrying a task whose trial was already re-issued would
train it twice). A long-lived actor also keeps its prepared dataset cached between trials, as a
local worker process does. The price: an idle actor holds its GPU while no run is waiting; stop
the server (or scale the cluster) to free it.

Every actor needs the database: a SQLite file works only when the actors share the server's
machine (a one-node cluster); across nodes use PostgreSQL, reachable from every node.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from morphnas.core.errors import InvalidArgumentError, UnavailableError

log = logging.getLogger(__name__)

#: The namespace of the actors, so ``ray.get_actor`` finds them from other drivers.
NAMESPACE = "morphnas"


@dataclass(frozen=True)
class RayExecutorOptions:
    """Where and how the training actors run."""

    address: str | None = None  # a cluster to join ("auto", "ray://host:10001"); None: start one
    workers: int = 0  # actors; 0: as many as the cluster's GPUs (or CPUs) allow
    gpus_per_trial: float = 0.0  # GPUs each actor holds; CUDA_VISIBLE_DEVICES is set by Ray
    cpus_per_trial: float = 1.0
    device: str | None = None  # as `morphnas worker --device`; None: each run's budget decides


def absolute_db_url(db_url: str) -> str:
    """The URL with a relative SQLite path made absolute: Ray workers have their own cwd."""
    scheme, sep, rest = db_url.partition(":///")
    if (
        not sep
        or not scheme.startswith("sqlite")
        or rest.startswith("/")
        or rest in ("", ":memory:")
    ):
        return db_url
    path, query_sep, query = rest.partition("?")
    return f"{scheme}:///{os.path.abspath(path)}{query_sep}{query}"


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail fast when a cluster address (``host:port`` or ``ray://host:port``) does not answer.

    ``ray.init`` retries an unreachable address for minutes (over 200 s measured) before it
    gives up; one TCP connection with a timeout tells the user at once. ``None`` (start a local
    cluster) and ``"auto"`` (an address Ray finds itself) are not checked.
    """
    if address is None or address == "auto":
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidArgumentError(
            f"--ray-address must be auto, host:port or ray://host:port, got {address!r}"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        raise UnavailableError(
            f"cannot reach the Ray cluster at {address} within {timeout:g} s: {err}"
        ) from err


def actor_count(options: RayExecutorOptions, resources: dict[str, float]) -> int:
    """How many actors to start: ``options.workers``, or what the cluster's resources hold."""
    if options.workers:
        return options.workers
    if options.gpus_per_trial > 0:
        count = int(resources.get("GPU", 0.0) // options.gpus_per_trial)
        if count < 1:
            raise RuntimeError(
                f"the Ray cluster has {resources.get('GPU', 0.0):g} GPUs, fewer than "
                f"--gpus-per-trial {options.gpus_per_trial:g}"
            )
        return count
    return max(1, int(resources.get("CPU", 1.0) // options.cpus_per_trial))


def actor_name(server_pid: int, index: int) -> str:
    """The name of a server's ``index``-th training actor (in :data:`NAMESPACE`)."""
    return f"morphnas-trainer-{server_pid}-{index}"


class TrainingActor:
    """The body of one Ray actor: a :class:`Worker` looping in a thread from construction, so an
    actor that Ray restarts resumes training without being asked."""

    def __init__(self, db_url: str, device: str | None, index: int) -> None:
        from morphnas.server.service import SearchService
        from morphnas.server.training import TrainingService
        from morphnas.server.worker import Worker, worker_name
        from morphnas.storage.repository import Repository

        self.repo = Repository.from_url(db_url)
        self.worker = Worker(
            TrainingService(SearchService(self.repo)),
            name=f"ray{index}-{worker_name()}",
            device=device,
        )
        self.trained = 0
        self.thread = threading.Thread(target=self._loop, name="morphnas-worker", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            self.trained = self.worker.run_forever()
        except Exception:  # noqa: BLE001 - logged; the actor stays up for stop() to answer
            log.exception("worker %s crashed", self.worker.name)

    def info(self) -> dict[str, Any]:
        """The actor's worker id, process id and trained trials (for tests and operators)."""
        return {"name": self.worker.name, "pid": os.getpid(), "alive": self.thread.is_alive()}

    def stop(self, seconds: float) -> int:
        """Finish the current trial's epoch (its lease is released for a retry), then stop."""
        self.worker.stop()
        self.thread.join(seconds)
        self.repo.close()
        return self.trained


class RayWorkerPool:
    """Training actors on a Ray cluster; the same ``start``/``alive``/``stop`` as
    :class:`morphnas.server.workers.WorkerPool`."""

    def __init__(
        self, db_url: str, options: RayExecutorOptions, *, stop_seconds: float = 30.0
    ) -> None:
        self.db_url = absolute_db_url(db_url)
        self.options = options
        self.stop_seconds = stop_seconds
        self.actors: list[Any] = []
        self._owns_ray = False

    def start(self) -> None:
        """Join (or start) the cluster and start the actors. ``ray.init`` installs its own
        SIGTERM handler in this process: ``serve`` installs its own after this returns."""
        import ray

        if not ray.is_initialized():
            check_reachable(self.options.address)
            try:
                ray.init(
                    address=self.options.address,
                    namespace=NAMESPACE,
                    include_dashboard=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = self.options.address or "a new local cluster"
                raise UnavailableError(f"cannot start Ray on {where}: {err}") from err
            self._owns_ray = True
        if self.db_url.startswith("sqlite") and len(ray.nodes()) > 1:
            log.warning(
                "the Ray cluster has %d nodes but the database is a SQLite file: actors on other "
                "nodes cannot reach it; use PostgreSQL",
                len(ray.nodes()),
            )
        count = actor_count(self.options, ray.cluster_resources())
        actor_class = ray.remote(TrainingActor)
        self.actors = [
            actor_class.options(  # type: ignore[attr-defined]
                name=actor_name(os.getpid(), i),
                namespace=NAMESPACE,
                num_cpus=self.options.cpus_per_trial,
                num_gpus=self.options.gpus_per_trial,
                max_restarts=-1,  # a dead actor comes back (a new worker id); its trial is retried
                max_concurrency=2,  # stop() and info() answer while the loop thread trains
            ).remote(self.db_url, self.options.device, i)
            for i in range(count)
        ]
        log.info(
            "started %d training actor(s) on Ray (%g GPU, %g CPU each)",
            count,
            self.options.gpus_per_trial,
            self.options.cpus_per_trial,
        )

    def infos(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Each actor's :meth:`TrainingActor.info` (waits for actors still starting)."""
        import ray

        return list(ray.get([a.info.remote() for a in self.actors], timeout=timeout))

    def alive(self, timeout: float = 5.0) -> int:
        """How many actors answer within ``timeout`` seconds."""
        import ray

        refs = [a.info.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        return len(ready)

    def stop(self) -> None:
        """Ask every actor to stop, wait up to ``stop_seconds``, then kill what is left."""
        import ray

        pending = [a.stop.remote(self.stop_seconds) for a in self.actors]
        deadline = time.monotonic() + self.stop_seconds + 5.0
        try:
            ray.wait(
                pending, num_returns=len(pending), timeout=max(0.0, deadline - time.monotonic())
            )
        finally:
            for actor in self.actors:
                ray.kill(actor, no_restart=True)
            self.actors.clear()
            if self._owns_ray:
                ray.shutdown()
