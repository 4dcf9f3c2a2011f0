"""``serve --executor ray`` before any cluster starts: its flags, and how many actors (fast)."""

from __future__ import annotations

import pytest

from morphnas.cli import build_parser
from morphnas.options import UsageError, check_serve
from morphnas.server.app import ServerOptions, training_pool
from morphnas.server.ray_executor import RayExecutorOptions, RayWorkerPool, actor_count
from morphnas.server.workers import WorkerPool


def serve_args(*flags: str):
    return build_parser().parse_args(["serve", "--port", "0", *flags])


def test_ray_flags_need_the_ray_executor() -> None:
    with pytest.raises(UsageError, match="need --executor ray"):
        check_serve(serve_args("--ray-address", "auto"))
    with pytest.raises(UsageError, match="need --executor ray"):
        check_serve(serve_args("--gpus-per-trial", "1"))
    with pytest.raises(UsageError, match="from 0 to 64"):
        check_serve(serve_args("--executor", "ray", "--gpus-per-trial", "-1"))
    check_serve(serve_args("--executor", "ray", "--ray-address", "auto", "--gpus-per-trial", "1"))


def test_the_executor_picks_the_pool() -> None:
    assert isinstance(training_pool(ServerOptions(workers=2)), WorkerPool)
    options = RayExecutorOptions(address="auto", gpus_per_trial=1)
    pool = training_pool(ServerOptions(executor="ray", ray=options, db_url="sqlite:///m.db"))
    assert isinstance(pool, RayWorkerPool) and pool.options == options
    assert pool.db_url.startswith("sqlite:////")  # absolute: Ray workers have their own cwd
    with pytest.raises(ValueError, match="executor"):
        training_pool(ServerOptions(executor="celery"))


def test_one_actor_per_gpu_or_per_cpu_unless_counted() -> None:
    gpus = RayExecutorOptions(gpus_per_trial=1)
    assert actor_count(gpus, {"CPU": 64.0, "GPU": 8.0}) == 8  # one trial per GPU
    assert actor_count(RayExecutorOptions(gpus_per_trial=0.5), {"GPU": 3.0}) == 6
    assert actor_count(RayExecutorOptions(), {"CPU": 2.0}) == 2
    assert actor_count(RayExecutorOptions(workers=3), {"CPU": 2.0, "GPU": 8.0}) == 3
    with pytest.raises(RuntimeError, match="fewer than --gpus-per-trial"):
        actor_count(gpus, {"CPU": 16.0})


def test_an_unreachable_cluster_address_fails_at_once() -> None:
    # ray.init retries an address that does not answer for minutes; the executor checks first.
    import socket
    import time

    from morphnas.core.errors import InvalidArgumentError, UnavailableError
    from morphnas.server.ray_executor import check_reachable

    check_reachable(None)  # a new local cluster: nothing to reach
    check_reachable("auto")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(UnavailableError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}")  # closed now
    assert time.monotonic() - started < 10
    for bad in ("head", "ray://head", "head:port", ":6379"):
        with pytest.raises(InvalidArgumentError, match="host:port"):
            check_reachable(bad)
