"""The command line of Pareto searches: ``morphnas pareto SEARCH``, the constraint options of
``morphnas export`` and the objective options of ``morphnas run``.

Wired into :mod:`morphnas.cli` and :mod:`morphnas.runner` by a few lines, so those stay about
their own commands.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from morphnas.tables import table

if TYPE_CHECKING:  # `morphnas --help` stays fast: grpc is imported only by commands that call
    from morphnas.client import Client

OBJECTIVE_NAMES = ("params", "flops", "latency_ms")


def add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    """``morphnas run``'s options that make its search a Pareto search."""
    parser.add_argument(
        "--objectives",
        nargs="+",
        choices=OBJECTIVE_NAMES,
        default=[],
        help="also minimise these (a Pareto search): params, flops, latency_ms (the ONNX "
        "Runtime CPU latency at batch 1, measured by the worker after training); then see "
        "`morphnas pareto SEARCH` and `morphnas export SEARCH --max-latency-ms X`",
    )
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        help="hard constraint on the measured batch-1 latency (milliseconds)",
    )


def objective_options(args: argparse.Namespace) -> dict[str, Any]:
    """The create_search options of :func:`add_objective_arguments`' flags."""
    options: dict[str, Any] = {}
    if getattr(args, "objectives", None):
        options["objectives"] = list(args.objectives)
    if getattr(args, "max_latency_ms", None) is not None:
        options["max_latency_ms"] = args.max_latency_ms
    return options


def add_export_constraints(export: argparse.ArgumentParser) -> None:
    """``morphnas export``'s choice of the most accurate model that meets a budget."""
    export.add_argument(
        "--max-latency-ms",
        type=float,
        help="export the most accurate trial whose measured batch-1 latency is at most this",
    )
    export.add_argument(
        "--max-params",
        type=int,
        help="export the most accurate trial with at most this many parameters",
    )


def constrained(args: argparse.Namespace) -> bool:
    return args.max_latency_ms is not None or args.max_params is not None


def export_constrained(client: Client, args: argparse.Namespace) -> bytes:
    """The ONNX file of the most accurate trial meeting ``--max-latency-ms`` / ``--max-params``."""
    if args.trial:
        raise SystemExit("morphnas export: give --trial or a constraint, not both")
    return client.export_onnx(
        args.output,
        search_id=args.search,
        softmax=args.softmax,
        trained_weights=args.trained_weights,
        max_latency_ms=args.max_latency_ms,
        max_params=args.max_params,
    )


def add_pareto_command(sub: Any, default_server: str) -> None:
    """``morphnas pareto SEARCH``."""
    pareto = sub.add_parser(
        "pareto",
        help="print a search's Pareto front (accuracy against size and latency)",
        description="Print the completed trials of a search that no other trial beats on "
        "score and every objective at once, cheapest first. Export one with "
        "`morphnas export SEARCH --trial N` or by budget with --max-latency-ms / --max-params.",
    )
    pareto.add_argument("search", help="search id")
    pareto.add_argument(
        "--objectives",
        nargs="+",
        choices=OBJECTIVE_NAMES,
        default=[],
        help="objectives to minimise (default: the search's own, or params)",
    )
    pareto.add_argument("--max-latency-ms", type=float, help="only trials at most this fast")
    pareto.add_argument("--max-params", type=int, help="only trials with at most this many params")
    pareto.add_argument(
        "--server", default=default_server, help="server address (default %(default)s)"
    )
    pareto.set_defaults(func=cmd_pareto)


def cmd_pareto(args: argparse.Namespace) -> int:
    from morphnas.cli import client_from_args

    with client_from_args(args) as client:
        front = client.get_search(args.search).pareto(
            args.objectives, max_latency_ms=args.max_latency_ms, max_params=args.max_params
        )
    rows = [
        (
            t.number,
            t.score,
            f"{t.num_params:,}",
            _ms(t.metrics.get("latency_ms")),
            _ms(t.metrics.get("latency_ms_batch")),
            t.id,
        )
        for t in front.trials
    ]
    batch = next(
        (
            int(t.metrics["latency_batch_size"])
            for t in front.trials
            if "latency_batch_size" in t.metrics
        ),
        None,
    )
    print(
        f"Pareto front of {args.search}: score up, {', '.join(front.objectives)} down; "
        f"{len(rows)} trial(s)"
    )
    headers = ("#", "score", "params", "latency ms (b=1)", f"latency ms (b={batch or '-'})", "id")
    print(table(headers, rows))
    machines = sorted({t.measured_on for t in front.trials if t.measured_on})
    if machines:
        print("latency measured on: " + "; ".join(machines))
    return 0


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
