"""Checkpointing a SQLite database's write-ahead log from a background thread.

In WAL mode a commit appends pages to the ``-wal`` file; a *checkpoint* copies them back into the
database file (and syncs it). By default SQLite runs one inside whichever commit takes the log
past 1000 pages: with an ask writing about 20 pages (its initial weights), one ask in fifty
paid 5–10 ms for everyone's pages, which made the 99th percentile of SuggestTrials and
ReportTrial four times their median.

So a :class:`WalCheckpointer` thread runs ``PRAGMA wal_checkpoint(PASSIVE)`` every quarter of a
second on a connection of its own; PASSIVE never waits for readers or writers and copies what it
can. Request connections keep an automatic checkpoint only as a backstop, at
:data:`BACKSTOP_PAGES`, in case this thread falls behind or stops. Several processes on one
database each run their own; SQLite lets one checkpoint at a time and the others return busy,
which is fine. Nothing here changes what is stored or when a commit is durable
(``synchronous=NORMAL`` in WAL mode: a commit survives a crash of the process; a power cut may
lose the last ones, never corrupt the file).
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

#: The log size at which a commit checkpoints after all (SQLite's default is 1000 pages).
BACKSTOP_PAGES = 20_000
INTERVAL_SECONDS = 0.25


class WalCheckpointer:
    """A daemon thread checkpointing the WAL of the SQLite file at ``path``; ``close`` stops it."""

    def __init__(self, path: str, interval_s: float = INTERVAL_SECONDS) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            log.warning("no background checkpoints for %s: %s", self._path, error)
            return
        try:
            while not self._stop.wait(self._interval_s):
                checkpoint(connection, self._path)
            checkpoint(connection, self._path)  # what the last commits wrote
        finally:
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def checkpoint(connection: sqlite3.Connection, path: str) -> None:
    """One PASSIVE checkpoint; a busy database (another checkpoint running) is not an error."""
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.Error as error:  # e.g. the file was deleted under us: retried next time
        log.debug("checkpoint of %s skipped: %s", path, error)
