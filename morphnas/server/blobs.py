"""Large blobs over the wire without holding them whole in memory, and never twice.

*Uploads* (UploadWeights, UploadDataset) are spooled chunk by chunk to an unlinked temporary
file while their sha256 is computed, so a stream in progress holds one 1 MiB message in memory;
the blob is then checked from the file in chunks and handed to the database as a
read-only memory map of the file (the driver's own copy is the one copy in memory).

Every byte an upload has announced (``total_size``) or received counts against one
:class:`ByteBudget` shared by all calls (``ServiceLimits.max_upload_bytes_in_flight``) until the
call ends: four concurrent uploads of
450 MiB cannot together hold 1.8 GB of memory (and disk); the one that would overrun the budget
is refused with RESOURCE_EXHAUSTED at once and its bytes released.

*Downloads* (DownloadWeights) read the stored blob one chunk at a time from the database
(:meth:`~morphnas.storage.Repository.read_weights_chunk`), so a client that cancels after one
chunk has cost one chunk.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any

from morphnas.core.errors import InvalidArgumentError, ResourceExhaustedError

log = logging.getLogger(__name__)

#: The contract's chunk size: one upload message carries at most this much, a download chunk
#: carries this much (the last one less).
CHUNK_BYTES = 1024 * 1024


class ByteBudget:
    """A count of bytes held by uploads in progress, capped at ``capacity`` (thread-safe).

    ``take`` refuses (ResourceExhaustedError) instead of waiting: a stalled client must not make
    others wait, and a refused client can retry when the budget has room again."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            return self._used

    def take(self, size: int) -> None:
        with self._lock:
            if self._used + size > self.capacity:
                raise ResourceExhaustedError(
                    f"the server is receiving {self._used:,} bytes of uploads already and holds "
                    f"at most {self.capacity:,} in flight; retry in a moment"
                )
            self._used += size

    def give(self, size: int) -> None:
        with self._lock:
            self._used -= size

    @contextmanager
    def held(self, size: int) -> Iterator[None]:
        """``size`` bytes taken for the block (for a blob read back from storage)."""
        self.take(size)
        try:
            yield
        finally:
            self.give(size)


class Upload:
    """A received blob spooled to an unlinked temporary file: size, sha256, chunked reads.

    A context manager: leaving it deletes the file and gives its bytes back to the budget."""

    def __init__(self, budget: ByteBudget, spool_dir: str | None = None) -> None:
        self._budget = budget
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="morphnas-upload-", dir=spool_dir)
        self._hash = hashlib.sha256()
        self._taken = 0
        self._map: mmap.mmap | None = None
        self.size = 0

    def reserve(self, size: int) -> None:
        """Take ``size`` bytes of the budget now (an announced ``total_size``), so an upload that
        cannot be held is refused before its bytes are sent, not after most of them."""
        if size > self._taken:
            self._budget.take(size - self._taken)
            self._taken = size

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self._taken:
            self.reserve(self.size + len(data))
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (fewer at the end)."""
        self._file.seek(offset)
        return self._file.read(size)

    def read_all(self) -> memoryview:
        """The whole blob, to be stored: a read-only view of the spool file mapped into memory
        (pages the kernel reads in as the database driver copies them, and may drop again), not
        a second copy in the heap. Valid until the upload is closed."""
        self._file.flush()
        if self.size == 0:
            return memoryview(b"")
        if self._map is None:
            self._map = mmap.mmap(self._file.fileno(), self.size, access=mmap.ACCESS_READ)
        return memoryview(self._map)

    @property
    def file(self) -> IO[bytes]:
        """The spool file, positioned at the start (for readers that stream, e.g. zipfile)."""
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        if self._map is not None:
            try:
                self._map.close()
            except BufferError:  # a view is still referenced: unmapped when it is collected
                log.debug("spool map still viewed at close")
        self._file.close()
        self._budget.give(self._taken)
        self._taken = 0

    def __enter__(self) -> Upload:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def spooled(data: bytes, budget: ByteBudget) -> Upload:
    """``data`` as an :class:`Upload` (for callers that hold the bytes already, e.g. tests)."""
    upload = Upload(budget)
    try:
        upload.write(data)
    except BaseException:
        upload.close()
        raise
    return upload


def receive(
    first: Any, rest: Iterator[Any], limit: int, budget: ByteBudget, spool_dir: str | None = None
) -> Upload:
    """Spool a client stream (the ``data`` of every message) to an :class:`Upload`.

    Refused past ``limit`` bytes (announced in ``first.total_size`` or received), past the
    budget of bytes in flight, or for a message over CHUNK_BYTES; the caller owns (and closes)
    the upload it returns. A stream that ends short of its announced ``total_size`` is refused.
    """
    limit = min(limit, budget.capacity)  # a larger upload could never be held
    if first.total_size < 0:
        raise InvalidArgumentError(f"total_size must be >= 0, got {first.total_size}")
    if first.total_size > limit:
        raise ResourceExhaustedError(
            f"an upload of {first.total_size:,} bytes exceeds the limit of {limit:,}"
        )
    upload = Upload(budget, spool_dir)
    try:
        upload.reserve(first.total_size)
        for index, message in enumerate(_chain(first, rest)):
            if len(message.data) > CHUNK_BYTES:
                raise InvalidArgumentError(
                    f"message {index} of the upload carries {len(message.data):,} bytes; "
                    f"send at most {CHUNK_BYTES:,} (1 MiB) a message"
                )
            if upload.size + len(message.data) > limit:
                raise ResourceExhaustedError(f"the upload exceeds the limit of {limit:,} bytes")
            upload.write(message.data)
        if first.total_size and first.total_size != upload.size:
            raise InvalidArgumentError(
                f"announced {first.total_size} bytes, received {upload.size}"
            )
    except BaseException:
        upload.close()
        raise
    return upload


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
