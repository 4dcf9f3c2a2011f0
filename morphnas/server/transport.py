"""The gRPC core I/O path a morphnas server process asks for, before gRPC starts.

grpcio (1.85) moves socket work through its EventEngine, whose callbacks run on an internal
thread pool: each unary call then crosses threads more often than with the older poller, where
the thread polling the completion queue does the reads and writes itself. On the 2-core
machines this project is measured on (``bench/service.py``, ``bench/grpc_floor.py``), turning
the EventEngine client and listener off took about 0.1–0.2 ms off every call — a fifth of what
a bare call costs — on each side that does it. The older path is the one grpcio used by default
for years, and everything morphnas serves (TLS, health, reflection, streams) works on both.

The setting is gRPC's own ``GRPC_EXPERIMENTS`` environment variable, read once, when gRPC's core
starts (on ``import grpc``): :func:`prefer_low_latency_io` must run before that, which is why
the ``morphnas`` command calls it first thing. It never overrides a value the user has set
(``GRPC_EXPERIMENTS=`` with nothing after it keeps gRPC's defaults). A worker process using the
client SDK can do the same, before it imports morphnas or grpc::

    from morphnas.server.transport import prefer_low_latency_io
    prefer_low_latency_io()

This module imports nothing of gRPC, so calling it is always safe.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

#: The gRPC core experiments turned off: EventEngine for client channels and for listeners.
LOW_LATENCY_EXPERIMENTS = "-event_engine_client,-event_engine_listener"
_VARIABLE = "GRPC_EXPERIMENTS"


def prefer_low_latency_io() -> bool:
    """Ask gRPC for the lower-latency I/O path, unless the user chose or it is too late.

    Returns True when the setting was made now (gRPC not loaded yet and ``GRPC_EXPERIMENTS``
    unset), False otherwise.
    """
    if _VARIABLE in os.environ:
        return False
    if "grpc" in sys.modules:  # its core already read the variable: setting it now does nothing
        log.debug("grpc is already loaded; %s left unset", _VARIABLE)
        return False
    os.environ[_VARIABLE] = LOW_LATENCY_EXPERIMENTS
    return True


def io_path() -> str:
    """A short description of the gRPC I/O path in force, for logs and benchmark reports."""
    value = os.environ.get(_VARIABLE)
    if value == LOW_LATENCY_EXPERIMENTS:
        return "poller (EventEngine client and listener off)"
    if value:
        return f"GRPC_EXPERIMENTS={value}"
    return "gRPC default (EventEngine)"
