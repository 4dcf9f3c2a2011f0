"""What the reliability tests and bench/load.py share: real ``morphnas serve`` processes, ask/tell
workers that survive server crashes, a ledger of what the server acknowledged, and the audit that
checks the database against that ledger.

A worker records a report or a measurement in the ledger only once the RPC has *returned*: that is
the promise the server made. The audit then reads the database directly (not through a server)
and checks every promise was kept, that trial numbers are unique and gapless, and that the trials
of workers that "died" (abandoned their trial) were reclaimed after their leases expired.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import sqlalchemy as sa

from morphnas.client import Client, ServerError, UnavailableError
from morphnas.client.errors import from_rpc_error
from morphnas.core.errors import FailedPreconditionError
from morphnas.core.weights import weights_from_bytes, weights_to_bytes
from morphnas.v1 import morphnas_pb2 as pb

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The message of an INTERNAL status the server itself sends: a bug, never retried.
SERVER_BUG = "see server log"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``python -m morphnas.cli serve`` on a fixed port, so restarts keep the address."""

    def __init__(
        self,
        db_url: str,
        port: int | None = None,
        *extra: str,
        log: Path | None = None,
        verbose: bool = False,
    ) -> None:
        self.db_url = db_url
        self.verbose = verbose
        self.port = port or free_port()
        self.extra = extra
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "morphnas.cli",
            *(["-v"] if self.verbose else []),
            "serve",
            "--db",
            self.db_url,
            "--port",
            str(self.port),
            *self.extra,
        ]
        stderr = open(self.log, "a") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if self.log:
            stderr.close()  # type: ignore[union-attr]
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        line = ready[0].strip() if ready else ""
        if line != f"morphnas listening on {self.address}":
            self.kill()
            raise RuntimeError(f"server did not start on {self.address}: {line!r}")
        return self

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup, as in a power cut of the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)


@dataclass
class Ledger:
    """What the servers acknowledged, and what went wrong on the way (thread-safe)."""

    reports: dict[str, tuple[float, str]] = field(default_factory=dict)  # trial → (score, sha)
    measurements: dict[tuple[str, int], float] = field(default_factory=dict)
    abandoned: set[str] = field(default_factory=set)  # trials whose worker "died"
    refused: set[str] = field(default_factory=set)  # late or superseded reports, refused
    cycles: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)  # failures that are not transient
    latencies: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, method: str, seconds: float) -> None:
        with self.lock:
            self.latencies.setdefault(method, []).append(seconds)


def is_transient(error: Exception) -> bool:
    """Errors a worker retries: the server is down or restarting (never a server bug)."""
    if isinstance(error, UnavailableError | ConnectionError):
        return True
    # A stream reset by a dying server may surface as UNKNOWN/INTERNAL from the gRPC library;
    # an INTERNAL the server sends on purpose says "see server log" and is a bug.
    return isinstance(error, ServerError) and SERVER_BUG not in str(error)


class Worker:
    """One ask/tell worker thread: suggest → initial weights → progress → report, forever.

    ``address`` is read before every connection, so workers follow a restarted server. With
    probability ``die_rate`` the worker abandons its trial and comes back under a new worker id,
    as if its process had been killed: the server must reclaim that trial when its lease ends.
    """

    def __init__(
        self,
        name: str,
        address: Callable[[], str],
        search_id: str,
        ledger: Ledger,
        stop: threading.Event,
        *,
        die_rate: float = 0.0,
        seed: int = 0,
        timeout: float = 10.0,
        with_weights: bool = True,
    ) -> None:
        self.name = name
        self.address = address
        self.search_id = search_id
        self.ledger = ledger
        self.stop = stop
        self.die_rate = die_rate
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.with_weights = with_weights
        self.incarnation = 0
        self._client: Client | None = None
        self._client_address = ""

    @property
    def worker_id(self) -> str:
        return f"{self.name}-{self.incarnation}"

    def client(self) -> Client:
        address = self.address()
        if self._client is None or self._client_address != address:
            if self._client is not None:
                self._client.close()
            self._client = Client(address, timeout=self.timeout)
            self._client_address = address
        return self._client

    def call(self, method: str, request: object) -> object:
        """A unary call, retried (same request: every call here is idempotent) until it lands."""
        while True:
            started = time.perf_counter()
            try:
                result = self.client().call(method, request)
            except Exception as error:  # noqa: BLE001 - sorted below
                if not is_transient(error):
                    raise
                with self.ledger.lock:
                    self.ledger.retries += 1
                if self.stop.is_set() and method == "SuggestTrials":
                    raise
                time.sleep(0.05 + self.rng.random() * 0.2)
                continue
            self.ledger.timed(method, time.perf_counter() - started)
            return result

    def initial_weights(self, trial_id: str) -> bytes:
        while True:
            started = time.perf_counter()
            try:
                chunks = list(
                    self.client().stub.DownloadWeights(
                        pb.DownloadWeightsRequest(trial_id=trial_id, kind=pb.INITIAL),
                        timeout=self.timeout,
                    )
                )
            except grpc.RpcError as error:
                if not is_transient(from_rpc_error(error)):
                    raise
                with self.ledger.lock:
                    self.ledger.retries += 1
                time.sleep(0.05 + self.rng.random() * 0.2)
                continue
            self.ledger.timed("DownloadWeights", time.perf_counter() - started)
            return b"".join(c.data for c in chunks)

    def one_cycle(self) -> None:
        ask = pb.SuggestTrialsRequest(search_id=self.search_id, count=1, worker_id=self.worker_id)
        [trial] = self.call("SuggestTrials", ask).trials  # type: ignore[attr-defined]
        if self.rng.random() < self.die_rate:
            with self.ledger.lock:
                self.ledger.abandoned.add(trial.id)
            self.incarnation += 1
            return
        step, value = 0, round(self.rng.random(), 6)
        progress = pb.ReportProgressRequest(trial_id=trial.id, step=step, value=value)
        answer = self.call("ReportProgress", progress)
        if not answer.should_stop:  # type: ignore[attr-defined]
            # (a trial closed meanwhile, e.g. superseded by its late original, stores nothing
            # and answers should_stop: see docs/operations.md "Retries and late reports")
            with self.ledger.lock:
                self.ledger.measurements[(trial.id, step)] = value
        score = round(self.rng.random(), 6)
        report = pb.ReportTrialRequest(
            trial_id=trial.id, state=pb.COMPLETED, score=score, worker_id=self.worker_id
        )
        sha = ""
        if self.with_weights:
            blob = trained(self.initial_weights(trial.id), self.rng.random())
            report.weights = blob
            sha = hashlib.sha256(blob).hexdigest()
        try:
            self.call("ReportTrial", report)
        except FailedPreconditionError as error:
            # One result per proposal, the first to arrive: a late report of a trial whose copy
            # reported first, or a copy superseded by its late original, is refused and kept
            # nowhere (docs/operations.md "Retries and late reports"); the audit holds the rest.
            if "handed out again" not in str(error) and "superseded" not in str(error):
                raise
            with self.ledger.lock:
                self.ledger.refused.add(trial.id)
                self.ledger.cycles += 1
            return
        with self.ledger.lock:
            self.ledger.reports[trial.id] = (score, sha)
            self.ledger.cycles += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.one_cycle()
        except Exception as error:  # noqa: BLE001 - recorded for the test to show
            if not (self.stop.is_set() and is_transient(error)):
                with self.ledger.lock:
                    self.ledger.errors.append(f"{self.name}: {type(error).__name__}: {error}")
        finally:
            if self._client is not None:
                self._client.close()


def trained(initial: bytes, shift: float) -> bytes:
    """ "Train": the initial weights moved a little, so trained and initial weights differ."""
    weights = weights_from_bytes(initial)
    return weights_to_bytes({k: (v + np.float32(shift)) for k, v in weights.items()})


def run_workers(workers: Sequence[Worker]) -> list[threading.Thread]:
    threads = [threading.Thread(target=w.run, name=w.name, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    return threads


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_cycles(ledger: Ledger, more: int, timeout: float = 60.0) -> None:
    """Wait until the workers finish ``more`` ask/tell cycles."""
    target = ledger.cycles + more
    wait_for(lambda: ledger.cycles >= target, timeout, f"{more} more ask/tell cycles")


@dataclass
class Audit:
    trials: int
    completed: int
    stale: int
    problems: list[str]
    seen: set[str]  # ids of the search's trials


def audit(db_url: str, search_id: str, ledger: Ledger, *, shared: bool = False) -> Audit:
    """Check the database against the ledger; ``problems`` lists every broken promise.

    ``shared``: the ledger also holds other searches' trials; check only this search's (the
    caller then checks that every acknowledged trial was seen by one audit).
    """
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT id, number, state, score, weights_sha256, reissued_as, reason FROM trials "
                    "WHERE search_id = :s ORDER BY number"
                ),
                {"s": search_id},
            ).all()
            stored = {
                (r.trial_id, r.step): r.value
                for r in c.execute(
                    sa.text(
                        "SELECT m.trial_id, m.step, m.value FROM measurements m "
                        "JOIN trials t ON t.id = m.trial_id WHERE t.search_id = :s"
                    ),
                    {"s": search_id},
                )
            }
    finally:
        engine.dispose()
    problems: list[str] = []
    numbers = [r.number for r in rows]
    if numbers != list(range(len(rows))):
        problems.append(f"trial numbers are not 0..{len(rows) - 1} exactly once: {numbers}")
    by_id = {r.id: r for r in rows}
    for trial_id, (score, sha) in ledger.reports.items():
        row = by_id.get(trial_id)
        if row is None:
            if not shared:
                problems.append(f"acknowledged trial {trial_id} is missing")
        elif row.state != "COMPLETED" or row.score != score:
            problems.append(f"trial {row.number}: {score} acked, {row.state} {row.score} kept")
        elif sha and row.weights_sha256 != sha:
            problems.append(f"trial {row.number}: weights {sha[:12]} acknowledged, not stored")
    for key, value in ledger.measurements.items():
        if shared and key[0] not in by_id:
            continue
        if stored.get(key) != value:
            problems.append(f"acknowledged measurement {key} = {value}, stored {stored.get(key)}")
    for trial_id in ledger.abandoned:
        if shared and trial_id not in by_id:
            continue
        row = by_id.get(trial_id)
        superseded = row is not None and row.state == "FAILED" and "superseded" in row.reason
        # reclaimed: handed out again, or (a copy itself) closed when its late original reported
        if not superseded and (row is None or row.state != "STALE" or row.reissued_as is None):
            problems.append(f"abandoned trial {trial_id} was not reclaimed: {row}")
    for row in rows:  # a worker that vanished mid-call also leaves a trial behind: reclaimed too
        if row.state == "STALE" and row.reissued_as is None:
            problems.append(f"STALE trial {row.number} was not handed out again")
    states = [r.state for r in rows]
    return Audit(len(rows), states.count("COMPLETED"), states.count("STALE"), problems, set(by_id))
