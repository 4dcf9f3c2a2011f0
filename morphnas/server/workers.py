"""Training worker processes started beside a server (``morphnas serve --workers N``).

Each worker is its own process (``python -m morphnas.cli worker --db URL``): training never runs
on a gRPC thread, a crash in one trial cannot take the server down, and a worker that dies only
loses its lease (its trial is retried by another).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

log = logging.getLogger(__name__)


class WorkerPool:
    """N worker processes on one database; ``stop`` asks them to finish (SIGTERM) and waits."""

    def __init__(
        self, db_url: str, count: int, *, device: str | None = None, stop_seconds: float = 30.0
    ) -> None:
        self.db_url = db_url
        self.count = count
        self.device = device
        self.stop_seconds = stop_seconds
        self.processes: list[subprocess.Popen[bytes]] = []

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "morphnas.cli", "worker", "--db", self.db_url]
        if self.device:
            args += ["--device", self.device]
        return args

    def start(self) -> None:
        env = dict(os.environ)
        # Several workers on one machine share its cores: keep each to a fair share of threads.
        threads = max(1, (os.cpu_count() or 1) // max(1, self.count))
        env.setdefault("OMP_NUM_THREADS", str(threads))
        for _ in range(self.count):
            self.processes.append(subprocess.Popen(self.command(), env=env))
        if self.count:
            log.info("started %d training worker(s)", self.count)

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(self.stop_seconds)
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        self.processes.clear()
