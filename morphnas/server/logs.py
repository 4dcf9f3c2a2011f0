"""Structured logs: every record made while a call runs carries its search and trial ids.

The ids live in context variables that the server's observability interceptor binds from each
request (``search_id`` / ``trial_id`` fields, when the message has them); :class:`ContextFilter`
copies them onto log records, and :class:`JsonFormatter` writes one JSON object per line:

    {"time": "2026-11-22T09:00:00.123Z", "level": "INFO", "logger": "morphnas.server.errors",
     "message": "ReportTrial -> INVALID_ARGUMENT: ...", "search_id": "...", "trial_id": "..."}

A ``logging`` call may also pass ``extra={"search_id": ..., "trial_id": ...}`` itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

CONTEXT_FIELDS = ("search_id", "trial_id")
_context: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(name, default=None) for name in CONTEXT_FIELDS
}


@contextlib.contextmanager
def bound(**ids: str | None) -> Iterator[None]:
    """Within the block, log records carry these ids (empty values are left out)."""
    tokens = [(_context[k], _context[k].set(v or None)) for k, v in ids.items() if k in _context]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def ids_of(request: Any) -> dict[str, str | None]:
    """The search and trial ids a request message names (no field: None), at most 64 characters
    of each: an id is the caller's string until it is checked, and every log line carries it."""
    ids = {name: getattr(request, name, None) or None for name in CONTEXT_FIELDS}
    return {name: None if value is None else str(value)[:64] for name, value in ids.items()}


class ContextFilter(logging.Filter):
    """Copy the bound ids onto each record (unless the call passed them in ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context.items():
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids when present, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int = logging.INFO, *, json_lines: bool = False) -> None:
    """Log to stderr, as JSON lines or as plain text that still shows the ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
