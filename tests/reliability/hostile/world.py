"""A ``morphnas serve`` subprocess with a small world in it, for hostile requests to name.

The server runs as a separate process (:class:`tests.reliability.harness.ServerProcess`) so the
suite can read its peak memory from ``/proc/PID/status`` (``VmHWM``, the high-water mark of its
resident set) and its log at the end. :meth:`World.call` sends a request as raw bytes on the
method's path, so a test can send bytes that are not a message at all, exactly as a hostile
client would; requests built from messages go through the same path.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from google.protobuf.message import Message

from morphnas.client import Client
from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.harness import ServerProcess

#: Codes that mean a bug in the server (never an answer to anything a client sends).
BUGS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
#: The longest status message a hostile request may get back (errors quote a short prefix).
MAX_DETAILS_CHARS = 2_000
#: Channel options: the client must not refuse what the test means to send or receive.
_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 256 * 1024**2),
    ("grpc.max_receive_message_length", 256 * 1024**2),
]


@dataclass(frozen=True)
class Outcome:
    """How a call ended: its status code and status message."""

    code: grpc.StatusCode
    details: str

    @property
    def is_bug(self) -> bool:
        return self.code in BUGS


def small_dataset(
    labels: Sequence[int] = (0, 1, 2), examples: int = 20, dtype: str = "int64"
) -> bytes:
    """An ``.npz`` upload: ``examples`` vectors of 8 floats, labels cycling through ``labels``."""
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    y = np.resize(np.asarray(labels, dtype=dtype), examples)
    np.savez(buffer, x=rng.normal(size=(examples, 8)).astype(np.float32), y=y)
    return buffer.getvalue()


class World:
    """A server process and what the table's requests name: a search with an ACTIVE and a
    COMPLETED trial (with weights), an uploaded dataset and a search with a training run.

    ``extra`` are more ``serve`` flags (e.g. limits); ``db_url`` the database (default: a
    SQLite file in ``folder``); the server's log goes to ``folder / "server.log"``.
    """

    def __init__(
        self, folder: Path, *extra: str, db_url: str | None = None, verbose: bool = True
    ) -> None:
        self.folder = folder
        self.db_url = db_url or f"sqlite:///{folder / 'hostile.db'}"
        self.log = folder / "server.log"
        self.process = ServerProcess(self.db_url, None, *extra, log=self.log, verbose=verbose)
        self.process.start()
        self.channel = grpc.insecure_channel(self.address, options=_CHANNEL_OPTIONS)
        self.client = Client(self.address, timeout=60)
        search = self.client.create_search(
            "hostile", input_shape=(8,), num_classes=3, policy="random"
        )
        done, active = search.suggest(count=2, worker_id="hostile")
        self.weights = done.initial_weights()
        done.report(score=0.5, weights=self.weights)
        self.search_id, self.done_id, self.active_id = search.id, done.id, active.id
        self.dataset_id = self.upload_dataset("hostile")
        self.training_search_id = self.new_search("training")
        self.client.stub.StartTraining(
            pb.StartTrainingRequest(
                search_id=self.training_search_id, dataset=self.dataset_id, trials=1
            ),
            timeout=60,
        )
        self._fresh = 0

    @property
    def address(self) -> str:
        return self.process.address

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    # -------------------------------------------------------------------- what requests name
    def new_search(self, name: str = "scratch") -> str:
        """A new search of the same shape, for requests that use one up (delete, stop, start)."""
        request = pb.CreateSearchRequest(
            name=name, input_shape=[8], num_classes=3, policy=pb.POLICY_RANDOM
        )
        return str(self.client.stub.CreateSearch(request, timeout=60).id)

    def active_trial(self) -> str:
        """A new ACTIVE trial handed to worker ``hostile-N`` of the world's search."""
        self._fresh += 1
        request = pb.SuggestTrialsRequest(
            search_id=self.search_id, count=1, worker_id=f"hostile-{self._fresh}"
        )
        return str(self.client.stub.SuggestTrials(request, timeout=60).trials[0].id)

    def initial_weights(self, trial_id: str) -> bytes:
        """A trial's INITIAL weights, as its safetensors file."""
        request = pb.DownloadWeightsRequest(trial_id=trial_id, kind=pb.INITIAL)
        return b"".join(c.data for c in self.client.stub.DownloadWeights(request, timeout=60))

    def stopped_search(self) -> str:
        """A new search, stopped: its WatchSearch stream ends after its events."""
        search_id = self.new_search("stopped")
        self.client.stub.StopSearch(pb.StopSearchRequest(search_id=search_id), timeout=60)
        return search_id

    def upload_dataset(self, name: str = "scratch", blob: bytes | None = None) -> str:
        data = small_dataset() if blob is None else blob
        request = pb.UploadDatasetRequest(name=name, total_size=len(data), data=data)
        return str(self.client.stub.UploadDataset(iter([request]), timeout=60).id)

    # -------------------------------------------------------------------- calls
    def call(
        self,
        path: str,
        kind: str,
        payloads: Sequence[bytes | Message],
        timeout: float = 60.0,
    ) -> Outcome:
        """Send ``payloads`` (raw bytes, or messages serialised here) to ``path``.

        ``kind`` is the method's streaming kind (see :mod:`.rpcs`); a unary request sends the
        first payload only. Response streams are read to their end.
        """
        raw = [p if isinstance(p, bytes) else p.SerializeToString() for p in payloads]
        try:
            if kind == "unary_unary":
                self.channel.unary_unary(path)(raw[0], timeout=timeout)
            elif kind == "unary_stream":
                for _ in self.channel.unary_stream(path)(raw[0], timeout=timeout):
                    pass
            elif kind == "stream_unary":
                self.channel.stream_unary(path)(iter(raw), timeout=timeout)
            else:
                raise ValueError(f"unknown streaming kind {kind!r}")
        except grpc.RpcError as error:
            return Outcome(error.code(), error.details() or "")
        return Outcome(grpc.StatusCode.OK, "")

    def serving(self) -> bool:
        """The server still answers a plain call at once."""
        try:
            self.client.stub.GetSearch(pb.GetSearchRequest(search_id=self.search_id), timeout=10)
        except grpc.RpcError:
            return False
        return True

    # -------------------------------------------------------------------- what it cost
    def peak_rss_bytes(self) -> int:
        """The server process's peak resident set so far (``VmHWM`` in ``/proc/PID/status``)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert match, "no VmHWM in /proc/PID/status"
        return int(match.group(1)) * 1024

    def rss_bytes(self) -> int:
        """The server process's resident set now (``VmRSS``)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match, "no VmRSS in /proc/PID/status"
        return int(match.group(1)) * 1024

    def log_lines(self) -> Iterator[str]:
        """The server's log so far."""
        if self.log.exists():
            yield from self.log.read_text(errors="replace").splitlines()

    def close(self) -> None:
        self.client.close()
        self.channel.close()
        self.process.stop()
