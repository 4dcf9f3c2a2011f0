"""The dashboard's commands, wired into :mod:`morphnas.cli` by a few lines.

morphnas dashboard [--db URL | --server ADDR] [--host H] [--port P] [--tokens-file F]
morphnas report SEARCH -o report.html [--db URL | --server ADDR]
morphnas serve ... --dashboard-port P          (see :func:`start_beside_server`)
morphnas run ...                                (see :func:`start_for_run`)
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from morphnas.options import UsageError, check_output_file

READY = "morphnas dashboard on {url}"


def add_parsers(sub: Any) -> None:
    """Add ``dashboard`` and ``report`` to the ``morphnas`` subcommands (``morphnas.cli`` adds
    the credentials flags to every command with ``--server``)."""
    dashboard = sub.add_parser(
        "dashboard",
        help="a read-only web dashboard of the searches in a database or on a server",
        description="Serve a read-only web dashboard: every search, each search's progress, "
        "morph genealogy, learning curves and trials, each trial's architecture and ONNX file. "
        "Prints one line, 'morphnas dashboard on http://HOST:PORT/', once it is ready.",
    )
    _add_source_flags(dashboard)
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default %(default)s)"
    )
    dashboard.add_argument(
        "--port", type=int, default=8050, help="port; 0 picks a free one (default %(default)s)"
    )
    dashboard.add_argument(
        "--tokens-file",
        help="require a bearer token listed in this file (one a line; MORPHNAS_TOKENS may add "
        "more); with --server and --token, that token is required too",
    )
    dashboard.set_defaults(func=cmd_dashboard)

    report = sub.add_parser(
        "report",
        help="write one self-contained HTML file with a search's plots",
        description="Write a search's plots (progress, genealogy, learning curves, trials, "
        "score against cost) as one HTML file with every asset inlined: it opens offline.",
    )
    report.add_argument("search", help="search id")
    report.add_argument("-o", "--output", required=True, help="HTML file to write")
    _add_source_flags(report)
    report.set_defaults(func=cmd_report)


def _add_source_flags(command: argparse.ArgumentParser) -> None:
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--db",
        help="read this database: a SQLite file, sqlite:///FILE or postgresql+psycopg://USER@HOST/DB "
        "(default $MORPHNAS_DB, else morphnas.db, unless --server)",
    )
    where.add_argument("--server", help="read the searches of this running server (HOST:PORT)")


def open_source(args: argparse.Namespace) -> Any:
    """The :class:`~morphnas.dashboard.data.Source` the flags name."""
    from morphnas.dashboard.data import DatabaseSource, ServerSource

    if args.server:
        from morphnas.cli import client_from_args

        return ServerSource(client_from_args(args, timeout=120))
    from morphnas.runner import database_url

    db = args.db or os.environ.get("MORPHNAS_DB", "morphnas.db")
    url = database_url(db)
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///") :]):
        raise UsageError(f"no database at {url[len('sqlite:///') :]} (name one with --db)")
    return DatabaseSource.from_url(url)


def _tokens(args: argparse.Namespace) -> tuple[str, ...]:
    from morphnas.server.security import load_tokens

    tokens = list(load_tokens(args.tokens_file))
    if args.server and args.token:  # the server's own token unlocks its dashboard
        tokens.append(args.token)
    if args.server and getattr(args, "token_file", None):
        with open(args.token_file, encoding="utf-8") as handle:
            tokens.append(handle.read().strip())
    return tuple(dict.fromkeys(t for t in tokens if t))


def cmd_dashboard(args: argparse.Namespace) -> int:
    from morphnas.dashboard.app import start_dashboard
    from morphnas.options import port_in_use_message

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    tokens = _tokens(args)
    source = open_source(args)
    source.searches()  # fail now, with the source's own error, if it cannot be read
    try:
        running = start_dashboard(source, args.host, args.port, tokens)
    except OSError:
        source.close()
        raise UsageError(port_in_use_message(args.host, args.port)) from None
    print(READY.format(url=running.url), flush=True)
    _wait_for_signal()
    running.stop()
    source.close()
    return 0


def _wait_for_signal() -> None:
    done = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(1.0):
        pass


def cmd_report(args: argparse.Namespace) -> int:
    from morphnas.dashboard.report import write_report

    check_output_file(args.output, "--output")
    source = open_source(args)
    try:
        size = write_report(source, args.search, args.output)
    finally:
        source.close()
    print(f"wrote {args.output} ({size:,} bytes; opens offline)")
    return 0


def start_beside_server(db_url: str, host: str, port: int, tokens: tuple[str, ...]) -> Any:
    """``serve --dashboard-port``: the dashboard of the server's database, with its tokens;
    prints the ready line. It opens the database as the server does (creating or upgrading the
    schema), so it may start first; it only ever reads."""
    from morphnas.dashboard.app import start_dashboard
    from morphnas.dashboard.data import DatabaseSource
    from morphnas.options import port_in_use_message
    from morphnas.storage import Repository

    if not 0 <= port <= 65535:
        raise UsageError(f"--dashboard-port must be between 0 and 65535, got {port}")
    source = DatabaseSource(Repository.from_url(db_url))
    try:
        running = start_dashboard(source, host, port, tokens)
    except OSError:
        source.close()
        raise UsageError(port_in_use_message(host, port) + " (--dashboard-port)") from None
    print(READY.format(url=running.url), flush=True)
    return running


@contextmanager
def dashboard_for_run(args: argparse.Namespace, db_url: str) -> Iterator[Callable[[str], None]]:
    """``morphnas run``: yields ``announce(search_id)``, which prints the search's dashboard
    address. With an embedded server that is a dashboard of its database on a free local port,
    started here and stopped on exit (none where starlette/uvicorn are missing, or with
    ``--no-dashboard``); with ``--server``, the ``--dashboard URL`` given, if any."""
    running, source = None, None
    base = getattr(args, "dashboard", None)
    if not args.server and not getattr(args, "no_dashboard", False):
        try:
            from morphnas.dashboard.app import start_dashboard
            from morphnas.dashboard.data import DatabaseSource
        except ImportError:  # the dashboard extra is not installed
            start_dashboard = None  # type: ignore[assignment]
        if start_dashboard is not None:
            source = DatabaseSource.from_url(db_url)
            running = start_dashboard(source, "127.0.0.1", 0)
            base = running.url

    def announce(search_id: str) -> None:
        if base:
            print(f"dashboard: {base.rstrip('/')}/search/{search_id}", flush=True)

    try:
        yield announce
    finally:
        if running is not None:
            running.stop()
        if source is not None:
            source.close()
