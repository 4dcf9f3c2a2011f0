"""``morphnas run``: a whole search on a dataset, trained by the server, watched live.

Without ``--server`` it starts an embedded server on a SQLite file in the current folder plus
training worker processes, runs the search, prints a leaderboard and the best model's test
accuracy, writes the ONNX file, and shuts everything down.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from morphnas.client import Client, SearchHandle
from morphnas.core.records import BUILTIN_DATASET_SHAPES, MAX_BUDGET_SECONDS
from morphnas.tables import describe_path, table


@contextmanager
def embedded_server(db_path: str, workers: int, device: str | None) -> Iterator[str]:
    """A server on a free port and its worker processes; yields the address."""
    from morphnas.server.app import ServerOptions, build_server
    from morphnas.server.workers import WorkerPool

    url = f"sqlite:///{os.path.abspath(db_path)}"
    running = build_server(ServerOptions(db_url=url, port=0, sweep_seconds=1.0))
    pool = WorkerPool(url, workers, device=device)
    pool.start()
    try:
        yield running.address
    finally:
        pool.stop()
        running.stop(5)


def _dataset_for(client: Client, dataset: str) -> tuple[str, tuple[int, ...], int]:
    """The dataset reference the server knows, its input shape and its number of classes."""
    if dataset in BUILTIN_DATASET_SHAPES:
        shape, classes = BUILTIN_DATASET_SHAPES[dataset]
        return dataset, shape, classes
    if not os.path.exists(dataset):
        raise SystemExit(
            f"morphnas: no such dataset {dataset!r}: use digits, mnist1d or a PATH.npz"
        )
    print(f"uploading {dataset} ...", file=sys.stderr)
    info = client.upload_dataset(dataset)
    return info.id, tuple(info.input_shape), info.num_classes


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str) -> float:
    """Seconds of a ``--budget``: ``90s``, ``10m``, ``1.5h`` or plain seconds (``600``).

    Raises ValueError with a message fit for one line of output."""
    value = text.strip().lower()
    scale = _UNITS.get(value[-1:], 0.0)
    number = value[:-1] if scale else value
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_BUDGET_SECONDS:
        raise ValueError(
            f"--budget {text!r}: give a positive time such as 90s, 10m, 1h or plain seconds "
            "(at most 30 days)"
        )
    return seconds


def _follow(
    search: SearchHandle, trials: int, epochs: int, quiet: bool, budget_seconds: float = 0.0
) -> dict[str, Any]:
    """Show an overall bar and one per trial until the run finishes; returns the final payload.

    With a compute budget the overall bar counts training seconds spent against the budget (the
    same seconds the workers charge: each trial's time at its epochs), and the trials done."""
    from tqdm import tqdm

    if budget_seconds > 0:
        overall = tqdm(
            total=round(budget_seconds),
            desc="search",
            unit="s",
            position=0,
            disable=quiet,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s of budget "
            "[{elapsed}<{remaining}{postfix}]",
        )
    else:
        overall = tqdm(total=trials, desc="search", unit="trial", position=0, disable=quiet)
    per_trial: dict[str, Any] = {}
    seconds: dict[str, float] = {}  # per trial: seconds already shown on the budget bar
    done = 0
    finished: dict[str, Any] = {}
    position = 1

    def spend(trial_id: str, at: float | None) -> None:
        """Move the budget bar by the trial's seconds since its last event (capped at the
        budget: a trial may overshoot it by a batch)."""
        if budget_seconds <= 0 or at is None:
            return
        step = max(0.0, at - seconds.get(trial_id, 0.0))
        seconds[trial_id] = max(at, seconds.get(trial_id, 0.0))
        overall.update(min(step, max(0.0, overall.total - overall.n)))

    try:
        for event in search.watch():
            p = event.payload
            if event.kind == "trial_started":
                per_trial[p["trial_id"]] = tqdm(
                    total=epochs,
                    desc=f"trial {p['number']:>3} ({p['num_params']:,} params)",
                    unit="epoch",
                    position=position,
                    leave=False,
                    disable=quiet,
                )
                position = position % 4 + 1
            elif event.kind == "epoch_finished" and p["trial_id"] in per_trial:
                bar = per_trial[p["trial_id"]]
                bar.update(1)
                bar.set_postfix(val_acc=f"{p['val_accuracy']:.4f}", refresh=False)
                spend(p["trial_id"], p.get("seconds"))
            elif event.kind == "trial_finished":
                bar = per_trial.pop(p["trial_id"], None)
                if bar is not None:
                    bar.close()
                done += 1
                if budget_seconds > 0:
                    spend(p["trial_id"], p.get("seconds"))
                else:
                    overall.update(1)
                postfix: dict[str, object] = {"trials": done} if budget_seconds > 0 else {}
                if p.get("score") is not None:
                    postfix["last"] = f"{p['score']:.4f}"
                if p.get("stopped_reason") == "pruned":
                    postfix["last"] = "pruned"
                overall.set_postfix(postfix)
                if p.get("state") != "COMPLETED":
                    overall.write(f"trial {p['number']} {p['state']}: {p.get('reason', '')}")
            elif event.kind in ("search_finished", "search_stopped"):
                finished = dict(p, kind=event.kind)
                break
    finally:
        for bar in per_trial.values():
            bar.close()
        overall.close()
    return finished


def _leaderboard(search: SearchHandle, top: int = 10) -> str:
    trials = search.trials()
    numbers = {t.id: t.number for t in trials}
    completed = sorted(
        (t for t in trials if t.state == "COMPLETED"), key=lambda t: (-(t.score or 0.0), t.number)
    )
    rows = [
        (
            rank,
            t.number,
            t.score,
            f"{t.info.num_params:,}",
            numbers.get(t.parent_id or "", "-"),
            _shorten(describe_path(t.operations)),
        )
        for rank, t in enumerate(completed[:top], start=1)
    ]
    return table(("rank", "trial", "val acc", "params", "parent", "morphs"), rows)


def _plan(trials: int, budget_seconds: float) -> str:
    if not budget_seconds:
        return f"{trials} trial(s)"
    limit = f"at most {trials} trial(s)" if trials else "as many trials as fit"
    return f"{budget_seconds:g} s of training ({limit})"


def _budget_note(finished: dict[str, Any]) -> str:
    """The end of the summary line of a run with a budget ("; budget spent: 121 of 120 s")."""
    budget = finished.get("budget_seconds") or 0.0
    if not budget:
        return ""
    spent = finished.get("spent_seconds") or 0.0
    return f"; {finished.get('reason', '')}: {spent:.0f} of {budget:.0f} s of training"


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:  # checked before anything is created
        budget_seconds = parse_budget(args.budget) if args.budget else 0.0
    except ValueError as err:
        raise SystemExit(f"morphnas run: {err}") from None
    # With a budget and no --trials, as many trials as the budget allows (the server caps them).
    trials = args.trials if args.trials is not None else (0 if budget_seconds else 10)
    if trials < 0 or (trials == 0 and not budget_seconds):
        raise SystemExit("morphnas run: --trials must be positive (or 0 with a --budget)")
    if args.server:
        context: Any = nullcontext(args.server)
    else:
        context = embedded_server(args.db, args.workers, args.device)
    with context as address, Client(address, timeout=120) as client:
        reference, shape, classes = _dataset_for(client, args.dataset)
        search = client.create_search(
            name=args.name or f"{os.path.basename(args.dataset)}-{time.strftime('%Y%m%d-%H%M%S')}",
            input_shape=shape,
            num_classes=classes,
            seed=args.seed,
            policy=args.policy,
        )
        print(
            f"search {search.id}: {_plan(trials, budget_seconds)} on {args.dataset} {shape}, "
            f"{classes} classes"
        )
        search.train(
            reference,
            trials,
            budget_seconds=budget_seconds,
            epochs=args.epochs,
            max_seconds=args.max_seconds,
            device=args.device or "auto",
        )
        finished = _follow(search, trials, args.epochs, args.quiet, budget_seconds)
        print()
        print(_leaderboard(search))
        run_info = search.training_run()
        best = search.best_trial()
        if best is None:
            print("no trial completed", file=sys.stderr)
            return 1
        test = run_info.test_accuracy
        print(
            f"\nbest: trial {best.number}, validation accuracy {best.score:.4f}"
            + (f", test accuracy {test:.4f}" if test is not None else "")
            + f" ({finished.get('trials', trials)} trials in {time.perf_counter() - started:.0f} s"
            + _budget_note(finished)
            + ")"
        )
        if args.export:
            blob = search.export_onnx(args.export)
            print(f"wrote {args.export} ({len(blob):,} bytes)")
            print(_verify_export(blob, args.dataset, args.seed, best))
    return 0


def _verify_export(blob: bytes, dataset: str, seed: int, best: Any) -> str:
    """Run the ONNX file in onnxruntime on the search's test split and compare with torch."""
    import numpy as np

    from morphnas.nn.datasets import Normalisation, builtin_dataset, dataset_split, load_npz
    from morphnas.nn.onnx_export import check_onnx_matches, onnx_metadata, run_onnx

    if dataset in BUILTIN_DATASET_SHAPES:
        data = builtin_dataset(dataset)
    else:
        with open(dataset, "rb") as handle:
            data = load_npz(handle.read(), max_bytes=2**40)
    test = dataset_split(data, seed=seed).test
    if len(test) == 0:
        return "the dataset has no test split to check the ONNX file on"
    x, y = data.x[test], data.y[test]
    accuracy = float((run_onnx(blob, x).argmax(1) == y).mean())
    norm = Normalisation.from_dict(json.loads(onnx_metadata(blob)["normalisation"]))
    agreement, diff = check_onnx_matches(blob, best.graph, best.trained_weights(), norm, x)
    return (
        f"onnxruntime on the {len(test)} test examples: accuracy {accuracy:.4f}; "
        f"argmax agreement with torch {100 * agreement:.1f}%, max |logit difference| {diff:.1e}"
    ) + ("" if np.isfinite(diff) else " (not finite!)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", required=True, help="digits, mnist1d, or PATH.npz (arrays x and y)"
    )
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="trials to train (default 10; with --budget: as many as the budget allows)",
    )
    parser.add_argument(
        "--budget",
        metavar="TIME",
        help="compute budget of the search: training seconds of all its trials together, "
        "e.g. 90s, 10m, 1h or plain seconds; the search stops cleanly when it is spent",
    )
    parser.add_argument(
        "--epochs", type=int, default=8, help="epochs per trial at most (default %(default)s)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        help="wall-clock limit per trial, a guard against a runaway trial (default %(default)s)",
    )
    parser.add_argument("--policy", choices=["bayesian", "random"], default="bayesian")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", help="search name (default: dataset and time)")
    parser.add_argument("--export", metavar="PATH", help="write the best model as ONNX here")
    parser.add_argument("--server", help="use this server instead of an embedded one")
    parser.add_argument("--db", default="morphnas.db", help="SQLite file of the embedded server")
    parser.add_argument(
        "--workers", type=int, default=1, help="embedded training workers (default 1)"
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
