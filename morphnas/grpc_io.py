"""The gRPC core I/O path morphnas asks for, before gRPC loads.

grpcio (1.85) moves socket work through its EventEngine, whose callbacks run on an internal
thread pool: each unary call then crosses threads more often than with the older poller, where
the thread polling the completion queue does the reads and writes itself. On the 2-core
machines this project is measured on (``bench/grpc_floor.py``, ``bench/service.py``), turning
the EventEngine client and listener off took about 0.1–0.2 ms off every call — a fifth of what
a bare call costs — on each side that does it. The poller is the path grpcio used by default for
years, and everything morphnas serves and calls (TLS, health, reflection, streams) works on both.

The setting is gRPC's own ``GRPC_EXPERIMENTS`` environment variable, read once, when gRPC's core
starts (on ``import grpc``), so :func:`prefer_low_latency_io` must run before that. It is an
explicit choice of the ``morphnas`` command, which owns its process and calls it first thing.
A library must not reconfigure its host, so ``import morphnas.client`` (the SDK) never calls
it: a program embedding the SDK or the server keeps gRPC's defaults unless it asks. The call
never overrides a value the user has set: ``GRPC_EXPERIMENTS=`` with nothing after it keeps
gRPC's defaults. A program that wants the same path calls it itself, before it loads gRPC::

    from morphnas.grpc_io import prefer_low_latency_io
    prefer_low_latency_io()

This module imports nothing of gRPC (nor of morphnas), so calling it is always safe.
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
