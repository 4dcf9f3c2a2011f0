"""The ``morphnas`` command.

    morphnas serve [--db URL] [--host H] [--port P]
    morphnas searches [--server ADDR]
    morphnas trials SEARCH_ID [--server ADDR] [--state STATE]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

DEFAULT_SERVER = os.environ.get("MORPHNAS_SERVER", "127.0.0.1:50051")


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def cmd_serve(args: argparse.Namespace) -> int:
    from morphnas.server.app import ServerOptions, serve

    serve(ServerOptions(db_url=args.db, host=args.host, port=args.port))
    return 0


def cmd_searches(args: argparse.Namespace) -> int:
    from morphnas.client import Client

    with Client(args.server) as client:
        rows = []
        for s in client.list_searches():
            best = s.best_trial()
            rows.append(
                (
                    s.id,
                    s.name,
                    "x".join(str(n) for n in s.info.input_shape),
                    s.info.num_classes,
                    {1: "bayesian", 2: "random"}.get(s.info.policy, "?"),
                    s.info.trial_count,
                    best.score if best else None,
                    "stopped" if s.info.stopped else "open",
                )
            )
    print(_table(("id", "name", "input", "classes", "policy", "trials", "best", "state"), rows))
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    from morphnas.client import Client

    with Client(args.server) as client:
        search = client.get_search(args.search)
        trials = search.trials(states=[args.state] if args.state else ())
        rows = [
            (
                t.number,
                t.state,
                t.score,
                f"{t.info.num_params:,}",
                _parent_number(trials, t.parent_id),
                ", ".join(_describe(op) for op in t.operations) or "seed",
                t.info.reason[:40],
            )
            for t in trials
        ]
    print(f"search {search.id} ({search.name}): {len(rows)} trial(s)")
    print(_table(("#", "state", "score", "params", "parent", "morphs", "reason"), rows))
    return 0


def _parent_number(trials: Sequence, parent_id: str | None) -> str:
    if parent_id is None:
        return "-"
    return next((str(t.number) for t in trials if t.id == parent_id), parent_id[:8])


def _describe(op: dict) -> str:
    kind = op.get("op", "?")
    if kind == "wider":
        return f"wider({op['layer']}+{op['add']})"
    if kind == "deeper":
        return f"deeper(after {op['after']}, k={op['kernel']})"
    if kind in ("add_skip", "concat_skip"):
        return f"{kind}({op['start']}->{op['end']})"
    return kind


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morphnas",
        description="Neural architecture search as a service: network morphism + Bayesian optimisation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC server")
    serve.add_argument("--db", default=os.environ.get("MORPHNAS_DB", "sqlite:///morphnas.db"),
                       help="SQLAlchemy URL: sqlite:///FILE (default morphnas.db) or "
                            "postgresql+psycopg://USER@HOST/DB")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=50051, help="port; 0 picks a free one (default 50051)")
    serve.set_defaults(func=cmd_serve)

    searches = sub.add_parser("searches", help="list the searches on a server")
    searches.add_argument("--server", default=DEFAULT_SERVER, help="server address (default %(default)s)")
    searches.set_defaults(func=cmd_searches)

    trials = sub.add_parser("trials", help="list the trials of a search")
    trials.add_argument("search", help="search id")
    trials.add_argument("--server", default=DEFAULT_SERVER, help="server address (default %(default)s)")
    trials.add_argument("--state", choices=["ACTIVE", "COMPLETED", "FAILED", "INFEASIBLE", "STALE"])
    trials.set_defaults(func=cmd_trials)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from morphnas.core.errors import MorphnasError

    try:
        return int(args.func(args))
    except MorphnasError as err:
        print(f"morphnas: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
