"""The ``morphnas`` command.

morphnas run --dataset digits|mnist1d|PATH.npz [--budget 2m | --trials N] [--export best.onnx]
             [--server ADDR]
morphnas serve [--db URL] [--host H] [--port P] [--workers N]
               [--executor ray [--ray-address ADDR] [--gpus-per-trial N]]
morphnas worker --db URL [--device cuda:0]
morphnas searches [--server ADDR]
morphnas trials SEARCH_ID [--server ADDR] [--state STATE]
morphnas export SEARCH_ID -o model.onnx [--server ADDR]
morphnas dashboard [--db URL | --server ADDR] [--host H] [--port P]
morphnas report SEARCH_ID -o report.html [--db URL | --server ADDR]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from morphnas import __version__
from morphnas.options import (
    CLIENT_FILES,
    SERVER_START_SECONDS,
    UsageError,
    check_database,
    check_device,
    check_files,
    check_output_file,
    check_serve,
    port_in_use_message,
    server_address,
    unreachable_message,
)
from morphnas.pareto_cli import (
    add_export_constraints,
    add_pareto_command,
    constrained,
    export_constrained,
)
from morphnas.server.limit_flags import add_limit_flags, limit_options
from morphnas.tables import describe_path, plural, table

if TYPE_CHECKING:  # imported lazily below: `morphnas --help` stays fast
    from morphnas.client import Client

DEFAULT_SERVER = os.environ.get("MORPHNAS_SERVER", "127.0.0.1:50051")


def cmd_serve(args: argparse.Namespace) -> int:
    check_serve(args)
    _serve_logging(args)  # before the imports below, which log as they load
    from morphnas.server.app import ServerOptions, serve

    if args.dashboard_port is not None:  # the web dashboard beside gRPC (morphnas/dashboard)
        from morphnas.dashboard.cli import start_beside_server

        start_beside_server(args.db, args.host, args.dashboard_port, _serve_options(args)["tokens"])
    options = ServerOptions(
        **_serve_options(args),
        db_url=args.db,
        host=args.host,
        port=args.port,
        workers=args.workers,
        worker_device=args.device,
        **_executor_options(args),
    )
    try:
        serve(options)
    except (RuntimeError, OSError) as err:  # the port was taken between the check and the bind
        if "bind" not in str(err).lower():
            raise
        raise UsageError(port_in_use_message(args.host, args.port)) from None
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    check_database(args.db, workers=1)
    check_device(args.device)
    from morphnas.server.worker import run_worker

    run_worker(args.db, name=args.name, device=args.device)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from morphnas.runner import run

    return run(args)


def cmd_export(args: argparse.Namespace) -> int:
    check_output_file(args.output, "--output")
    with client_from_args(args, timeout=300) as client:
        if constrained(args):
            blob = export_constrained(client, args)
        elif args.trial:
            blob = client.export_onnx(
                args.output,
                trial_id=args.trial,
                softmax=args.softmax,
                trained_weights=args.trained_weights,
            )
        else:
            blob = client.get_search(args.search).export_onnx(
                args.output, softmax=args.softmax, trained_weights=args.trained_weights
            )
    meta = _onnx_metadata(blob)
    test = meta.get("test_accuracy")
    print(
        f"wrote {args.output} ({len(blob):,} bytes; {meta.get('weights', 'trained')} weights"
        + (f", test accuracy {float(test):.4f}" if test else "")
        + ")"
    )
    return 0


def _onnx_metadata(blob: bytes) -> dict[str, str]:
    """The ONNX file's metadata, or nothing where onnx is not installed (a client-only SDK)."""
    try:
        import onnx
    except ImportError:
        return {}
    return {p.key: p.value for p in onnx.load_from_string(blob).metadata_props}


def cmd_stop(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        search = client.get_search(args.search).stop()
    print(f"stopped search {search.id}; continue it with: morphnas run --resume {search.id}")
    return 0


def cmd_searches(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        rows = []
        for s in client.list_searches():
            best = s.best_trial()
            rows.append(
                (
                    s.id,
                    s.name,
                    "x".join(str(n) for n in s.info.input_shape),
                    s.info.num_classes,
                    s.info.policy,
                    s.info.trial_count,
                    best.score if best else None,
                    "stopped" if s.info.stopped else "open",
                )
            )
    print(table(("id", "name", "input", "classes", "policy", "trials", "best", "state"), rows))
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    with client_from_args(args) as client:
        search = client.get_search(args.search)
        trials = search.trials(states=[args.state] if args.state else ())
        rows = [
            (
                t.number,
                t.state,
                t.score,
                f"{t.info.num_params:,}",
                _parent_number(trials, t.parent_id),
                _beat_parent(trials, t),
                describe_path(t.operations),
                t.info.reason[:40],
            )
            for t in trials
        ]
    print(f"search {search.id} ({search.name}): {plural(len(rows), 'trial')}")
    print(table(("#", "state", "score", "params", "parent", "beat", "morphs", "reason"), rows))
    return 0


def _beat_parent(trials: Sequence, trial: Any) -> str:
    """The "beat" cell: yes when the trial scored above its parent, no when not, - when either
    has no score."""
    parent = next((t for t in trials if t.id == trial.parent_id), None)
    if parent is None or parent.score is None or trial.score is None:
        return "-"
    return "yes" if trial.score > parent.score else "no"


def _parent_number(trials: Sequence, parent_id: str | None) -> str:
    if parent_id is None:
        return "-"
    return next((str(t.number) for t in trials if t.id == parent_id), parent_id[:8])


def _serve_logging(args: argparse.Namespace) -> None:
    """``--log-json``: one JSON object per line, with search and trial ids when a call has them."""
    from morphnas.server import logs

    if args.log_json:
        logs.configure(logging.INFO if args.verbose else logging.WARNING, json_lines=True)


def _serve_options(args: argparse.Namespace) -> dict[str, Any]:
    """The security, metrics and limit options of ``serve`` as ServerOptions fields."""
    from morphnas.server.security import load_tokens

    return {
        "tokens": load_tokens(args.tokens_file),
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_client_ca": args.tls_client_ca,
        "metrics_port": args.metrics_port,
        "max_message_bytes": args.max_message_mb * 1024**2,
        **limit_options(args, args.max_searches),  # limits and streams: the ceiling flags
    }


def _add_serve_security_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--tokens-file",
        help="require a bearer token listed in this file (one a "
        "line); MORPHNAS_TOKENS may add more, comma-separated",
    )
    serve.add_argument("--tls-cert", help="PEM certificate: serve TLS (needs --tls-key)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed")
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    serve.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    serve.add_argument(
        "--max-searches",
        type=int,
        default=100_000,
        help="refuse new searches beyond this many (default %(default)s)",
    )
    serve.add_argument(
        "--max-message-mb",
        type=int,
        default=64,
        help="largest gRPC message in MiB (default %(default)s)",
    )


def _add_serve_executor_flags(serve: argparse.ArgumentParser) -> None:
    """Where server-side training runs: local worker processes, or actors on a Ray cluster."""
    serve.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: --workers N processes beside the server (default); ray: training actors on "
        "a Ray cluster (needs morphnas[ray]; --workers 0 means one per GPU, or per CPU)",
    )
    serve.add_argument(
        "--ray-address",
        help="Ray cluster to join (e.g. auto or ray://HOST:10001; default: start a local one)",
    )
    serve.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs each Ray training actor holds (default 0: CPU only)",
    )


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--executor`` and its flags as ServerOptions fields."""
    if args.executor != "ray":
        return {}
    from morphnas.server.ray_executor import RayExecutorOptions

    options = RayExecutorOptions(
        address=args.ray_address,
        workers=args.workers,
        gpus_per_trial=args.gpus_per_trial,
        device=args.device,
    )
    return {"executor": "ray", "ray": options}


def _add_client_flags(command: argparse.ArgumentParser) -> None:
    """Credentials of the commands that talk to a server (``--server``)."""
    command.add_argument(
        "--token",
        default=os.environ.get("MORPHNAS_TOKEN"),
        help="bearer token (default $MORPHNAS_TOKEN; prefer it or --token-file)",
    )
    command.add_argument("--token-file", help="read the bearer token from this file")
    command.add_argument("--tls", action="store_true", help="use TLS with the system's CAs")
    command.add_argument("--tls-ca", help="PEM CA to trust for the server (implies TLS)")
    command.add_argument("--tls-cert", help="PEM client certificate for mutual TLS")
    command.add_argument("--tls-key", help="PEM private key of --tls-cert")


def client_from_args(args: argparse.Namespace, **kwargs: Any) -> Client:
    """A :class:`morphnas.client.Client` for ``--server`` with the credentials flags."""
    from morphnas.client import Client

    check_files(args, CLIENT_FILES)
    token = args.token
    if getattr(args, "token_file", None):
        with open(args.token_file, encoding="utf-8") as file:
            token = file.read().strip()
    client = Client(
        server_address(args.server),
        token=token or None,
        tls=getattr(args, "tls", False),
        tls_ca=getattr(args, "tls_ca", None),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        **kwargs,
    )
    client.wait_for_ready(SERVER_START_SECONDS)  # else the first call says why it cannot connect
    return client


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphnas",
        description="Neural architecture search as a service: network morphism + Bayesian optimisation.",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log at INFO level; tracebacks on errors"
    )
    parser.add_argument("--version", action="version", version=f"morphnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument(
        "--db",
        default=os.environ.get("MORPHNAS_DB", "sqlite:///morphnas.db"),
        help="SQLAlchemy URL: sqlite:///FILE (default morphnas.db) or "
        "postgresql+psycopg://USER@HOST/DB",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=50051, help="port; 0 picks a free one (default 50051)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        help="training worker processes to start beside the server (default 0: none, so "
        "`morphnas run --server` needs `morphnas worker` processes)",
    )
    serve.add_argument("--device", help="device of those workers: cpu, cuda or cuda:N")
    serve.add_argument(
        "--dashboard-port",
        type=int,
        help="also serve the read-only web dashboard on this port (0: a free one)",
    )
    _add_serve_executor_flags(serve)
    _add_serve_security_flags(serve)
    add_limit_flags(serve)
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="train jobs of server-side searches from a database")
    worker.add_argument(
        "--db",
        default=os.environ.get("MORPHNAS_DB", "sqlite:///morphnas.db"),
        help="the server's database URL",
    )
    worker.add_argument(
        "--device", help="cpu, cuda or cuda:N (default: each run's budget, CUDA when present)"
    )
    worker.add_argument("--name", help="worker id (default: host-pid-random)")
    worker.set_defaults(func=cmd_worker)

    from morphnas.runner import add_arguments

    run = sub.add_parser(
        "run", help="search on a dataset with server-side training, watch it, export the best"
    )
    add_arguments(run)
    run.set_defaults(func=cmd_run)

    export = sub.add_parser(
        "export",
        help="write a search's best model (or a trial) as ONNX",
        description="Write a search's best model (or a trial) as ONNX. Its input is named "
        "'input': float32, shape (N, *input_shape) with channels first ((N, C, H, W) images, "
        "(N, C, L) sequences, (N, D) vectors), holding the values the search was trained on, "
        "unscaled: the normalisation is baked in (digits: pixel counts 0..16 as load_digits() "
        "gives them). The metadata key 'expected_input' says the same for each file.",
    )
    export.add_argument("search", help="search id")
    export.add_argument("-o", "--output", required=True, help="ONNX file to write")
    export.add_argument("--trial", help="export this trial instead of the best")
    export.add_argument("--softmax", action="store_true", help="output probabilities, not logits")
    export.add_argument(
        "--trained-weights",
        action="store_true",
        help="export the trial's own trained weights even when a final fit stored final ones",
    )
    export.add_argument(
        "--server", default=DEFAULT_SERVER, help="server address (default %(default)s)"
    )
    add_export_constraints(export)
    export.set_defaults(func=cmd_export)
    add_pareto_command(sub, DEFAULT_SERVER)

    stop = sub.add_parser("stop", help="stop a search: no trial trains after this")
    stop.add_argument("search", help="search id")
    stop.add_argument(
        "--server", default=DEFAULT_SERVER, help="server address (default %(default)s)"
    )
    stop.set_defaults(func=cmd_stop)

    searches = sub.add_parser("searches", help="list the searches on a server")
    searches.add_argument(
        "--server", default=DEFAULT_SERVER, help="server address (default %(default)s)"
    )
    searches.set_defaults(func=cmd_searches)

    trials = sub.add_parser("trials", help="list the trials of a search")
    trials.add_argument("search", help="search id")
    trials.add_argument(
        "--server", default=DEFAULT_SERVER, help="server address (default %(default)s)"
    )
    trials.add_argument(
        "--state",
        choices=["ACTIVE", "COMPLETED", "FAILED", "INFEASIBLE", "STALE"],
        help="only the trials in this state (default: all)",
    )
    trials.set_defaults(func=cmd_trials)
    from morphnas.dashboard.cli import add_parsers as add_dashboard_parsers

    add_dashboard_parsers(sub)
    for command in sub.choices.values():  # every command that talks to a server
        if "--server" in command._option_string_actions:
            _add_client_flags(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before a command runs (while the command line loads)
        print("\nmorphnas: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from morphnas.grpc_io import prefer_low_latency_io

    prefer_low_latency_io()  # before anything imports grpc (see morphnas/grpc_io.py)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from morphnas.core.errors import MorphnasError, UnavailableError

    prog = f"morphnas {args.command}"
    try:
        return int(args.func(args))
    except UsageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except UnavailableError as err:
        if args.verbose:
            raise
        address = getattr(args, "server", None)
        detail = unreachable_message(server_address(address)) if address else str(err)
        print(f"{prog}: {detail}", file=sys.stderr)
        return 1
    except MorphnasError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug or the machine: one line unless -v asks for the traceback
        if args.verbose:
            raise
        print(
            f"{prog}: {type(err).__name__}: {err} "
            f"(`morphnas -v {args.command} ...` shows the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
