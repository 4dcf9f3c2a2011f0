"""Checks of the ``morphnas`` command's options, made before anything is created.

A user's mistake gets one line naming the option and what to give instead; the command exits 2
for a usage error (as argparse does) and 1 for anything else that fails, with a traceback only
under ``-v``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import socket

from morphnas.core.records import BUILTIN_DATASET_SHAPES, MAX_BUDGET_SECONDS

#: The port ``morphnas serve`` listens on unless told otherwise.
DEFAULT_PORT = 50051
#: How long a client command waits for ``--server`` to accept connections before it reports
#: that none answers: a ``morphnas serve &`` started just before binds after a few seconds.
SERVER_START_SECONDS = 10.0
#: The most training worker processes one command starts (one per core or GPU is plenty).
MAX_WORKERS = 64

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_DATABASES = "a SQLite file (sqlite:///FILE) or postgresql+psycopg://USER@HOST/DB"


class UsageError(ValueError):
    """A mistake in the command line: printed as one line, exit status 2."""


def server_address(text: str) -> str:
    """``--server`` as gRPC wants it: a bare host gets morphnas's port (gRPC would try 443).

    ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` and gRPC URIs (``dns:``, ``unix:``...)."""
    address = text.strip()
    if not address:
        raise UsageError("--server: give HOST:PORT, e.g. 127.0.0.1:50051")
    if ":" in address and not address.startswith("["):
        scheme, _, rest = address.partition(":")
        if scheme in ("dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock") or rest == "":
            return address
        if address.count(":") > 1:  # a bare IPv6 address
            return f"[{address}]:{DEFAULT_PORT}"
        if not rest.isdigit() or not 0 < int(rest) < 65536:
            raise UsageError(f"--server {text!r}: the port must be a number in 1..65535")
        return address
    if address.startswith("["):
        return address if "]:" in address else f"{address}:{DEFAULT_PORT}"
    return f"{address}:{DEFAULT_PORT}"


def check_output_file(path: str, option: str) -> None:
    """Refuse an output path whose folder is missing or that names a folder (before any work)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder: give a file name such as best.onnx")
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r}: no such folder {folder!r}; create it first")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path!r}: cannot write in {folder!r}")


def parse_budget(text: str) -> float:
    """Seconds of a ``--budget``: ``90s``, ``10m``, ``1.5h`` or plain seconds (``600``)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    value = text.strip().lower()
    scale = units.get(value[-1:], 0.0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_BUDGET_SECONDS:
        raise UsageError(
            f"--budget {text!r}: give a positive time such as 90s, 10m, 1h or plain seconds "
            "(at most 30 days)"
        )
    return seconds


def check_run(args: argparse.Namespace) -> tuple[int, float]:
    """Every option of ``morphnas run`` checked; returns (trials, budget seconds).

    Trials 0 with a budget means as many as the budget allows (the server caps them)."""
    budget_seconds = parse_budget(args.budget) if args.budget else 0.0
    trials = args.trials if args.trials is not None else (0 if budget_seconds else 10)
    if trials < 0 or (trials == 0 and not budget_seconds):
        raise UsageError(f"--trials {trials}: give a positive number (or 0 with a --budget)")
    if args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: give at least 1")
    if not math.isfinite(args.max_seconds) or args.max_seconds <= 0:
        raise UsageError(f"--max-seconds {args.max_seconds:g}: give a positive number of seconds")
    if args.seed < 0:
        raise UsageError(f"--seed {args.seed}: give a number >= 0")
    if not args.server and args.workers < 1:
        raise UsageError(
            f"--workers {args.workers}: the embedded server needs at least 1 training worker"
        )
    check_workers(args.workers, least=1)
    check_device(args.device, workers=0 if args.server else args.workers)
    if not args.server:
        check_database(database_url(args.db), args.workers, given=args.db)
    if args.server and not args.claim_timeout > 0:
        raise UsageError(f"--claim-timeout {args.claim_timeout:g}: give a positive number")
    if args.resume:
        given = [o for o, v in (("--dataset", args.dataset), ("--trials", args.trials),
                                ("--budget", args.budget)) if v is not None]  # fmt: skip
        if given:
            raise UsageError(
                f"--resume continues a search with its own dataset and what it still owes: "
                f"drop {' and '.join(given)}"
            )
    elif not args.dataset:
        raise UsageError("--dataset is required: digits, mnist1d or PATH.npz")
    elif args.dataset not in BUILTIN_DATASET_SHAPES:
        check_dataset_file(args.dataset)
    if args.server:
        args.server = server_address(args.server)
    if args.export:
        check_output_file(args.export, "--export")
    return trials, budget_seconds


def check_workers(workers: int, least: int = 0) -> None:
    if not least <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers {workers}: give {least} to {MAX_WORKERS}")


def check_device(device: str | None, workers: int = 1) -> None:
    """``--device`` is cpu, cuda, cuda:N or auto; a CUDA device must exist where this command
    starts the workers that would use it (``workers`` > 0)."""
    if device is None:
        return
    if not _DEVICE.match(device):
        raise UsageError(f"--device {device!r}: give cpu, cuda, cuda:N or auto")
    if device.startswith("cuda") and workers > 0:
        import torch  # only here: `morphnas --help` and the client commands stay light

        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {device}: PyTorch finds no CUDA device on this machine "
                "(torch.cuda.is_available() is False); leave --device out to train on the CPU"
            )


def check_database(url: str, workers: int, given: str | None = None) -> None:
    """A ``--db`` URL that the server and its workers can open, checked before either starts:
    SQLite or PostgreSQL; a SQLite file's folder exists; an in-memory SQLite database only
    without worker processes (each process would get its own, empty one). ``given``: what the
    user typed, where ``run --db`` made a URL of a path."""
    shown = repr(given or url)
    scheme, separator, rest = url.partition("://")
    backend = scheme.split("+")[0]
    if not separator or backend not in ("sqlite", "postgresql"):
        raise UsageError(f"--db {shown}: give {_DATABASES}")
    if backend != "sqlite":
        return
    path = rest.split("?")[0]
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db, sqlite:////abs.db
    if path in ("", ":memory:"):
        if workers > 0:
            raise UsageError(
                f"--db {shown} is an in-memory database, which the training worker processes "
                "cannot share: give a file such as sqlite:///morphnas.db"
            )
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--db {shown}: no such folder {folder!r}; create it first")


def check_files(args: argparse.Namespace, options: tuple[str, ...]) -> None:
    """The files named by these options (e.g. ``tls_cert``) exist and can be read."""
    for dest in options:
        path = getattr(args, dest, None)
        option = "--" + dest.replace("_", "-")
        if path is None:
            continue
        if not os.path.exists(path):
            raise UsageError(f"{option} {path!r}: no such file")
        if not os.path.isfile(path):
            raise UsageError(f"{option} {path!r} is not a file")
        if not os.access(path, os.R_OK):
            raise UsageError(f"{option} {path!r}: cannot read it")
    if bool(getattr(args, "tls_cert", None)) != bool(getattr(args, "tls_key", None)):
        raise UsageError("--tls-cert and --tls-key go together: give both, or neither")


#: Files of the client commands' credentials options.
CLIENT_FILES = ("token_file", "tls_ca", "tls_cert", "tls_key")
#: Files of ``morphnas serve``'s security options.
SERVE_FILES = ("tokens_file", "tls_cert", "tls_key", "tls_client_ca")


def database_url(db: str) -> str:
    """``--db`` as a SQLAlchemy URL: a URL as given (SQLite or PostgreSQL), a path as SQLite."""
    return db if "://" in db else f"sqlite:///{os.path.abspath(db)}"


def check_dataset_file(path: str) -> None:
    """A user's dataset path: it exists and is a file (its content is checked on loading)."""
    if not os.path.exists(path):
        names = ", ".join(BUILTIN_DATASET_SHAPES)
        raise UsageError(f"--dataset {path!r}: no such file; use {names} or a PATH.npz")
    if os.path.isdir(path):
        raise UsageError(f"--dataset {path!r} is a folder: give a .npz file with arrays x and y")


def check_serve(args: argparse.Namespace) -> None:
    """``morphnas serve``: numbers in range and the port free, before the server is built."""
    if args.workers < 0:
        raise UsageError(f"--workers {args.workers}: give 0 or more")
    check_workers(args.workers)
    check_executor(args)
    check_device(args.device, args.workers)
    check_database(args.db, args.workers)
    check_files(args, SERVE_FILES)
    if args.tls_client_ca and not args.tls_cert:
        raise UsageError("--tls-client-ca needs TLS: give --tls-cert and --tls-key too")
    if not 0 <= args.port < 65536:
        raise UsageError(f"--port {args.port}: give a port in 0..65535 (0 picks a free one)")
    if args.metrics_port is not None and not 0 <= args.metrics_port < 65536:
        raise UsageError(f"--metrics-port {args.metrics_port}: give a port in 0..65535")
    if args.max_searches < 1:
        raise UsageError(f"--max-searches {args.max_searches}: give at least 1")
    if args.max_message_mb < 1:
        raise UsageError(f"--max-message-mb {args.max_message_mb}: give at least 1")
    if args.port and port_in_use(args.host, args.port):
        raise UsageError(port_in_use_message(args.host, args.port))


def check_executor(args: argparse.Namespace) -> None:
    """``--executor ray`` and its flags: Ray installed, the flags only with it, numbers sane."""
    executor = getattr(args, "executor", "local")
    ray_flags = getattr(args, "ray_address", None) or getattr(args, "gpus_per_trial", 0.0)
    if executor != "ray":
        if ray_flags:
            raise UsageError("--ray-address and --gpus-per-trial need --executor ray")
        return
    if not 0 <= args.gpus_per_trial <= 64 or args.gpus_per_trial != args.gpus_per_trial:
        raise UsageError(f"--gpus-per-trial {args.gpus_per_trial}: give a number from 0 to 64")
    if importlib.util.find_spec("ray") is None:
        raise UsageError(
            "--executor ray needs Ray: pip install 'morphnas[ray]' (Ray 2.45 or newer)"
        )


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on ``host:port`` (a quick connect, no bind)."""
    try:
        target = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        with socket.create_connection((target, port), 0.5):
            return True
    except OSError:
        return False


def port_in_use_message(host: str, port: int) -> str:
    return (
        f"--port {port}: {host}:{port} is already in use (another morphnas serve?); "
        "stop it, or pick another port (--port 0 picks a free one)"
    )


def unreachable_message(address: str) -> str:
    return (
        f"no morphnas server answers at {address}: start one with `morphnas serve` "
        f"(it listens on 127.0.0.1:{DEFAULT_PORT}), or give its address with --server HOST:PORT"
    )
