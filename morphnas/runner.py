"""``morphnas run``: a whole search on a dataset, trained by the server, watched live.

Without ``--server`` it starts an embedded server on a SQLite file in the current folder plus
training worker processes, runs the search, prints a leaderboard and the best model's test
accuracy, writes the ONNX file, and shuts everything down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from morphnas.client import Client, SearchHandle
from morphnas.core.records import BUILTIN_DATASET_SHAPES
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


def _follow(search: SearchHandle, trials: int, epochs: int, quiet: bool) -> dict[str, Any]:
    """Show an overall bar and one per trial until the run finishes; returns the final payload."""
    from tqdm import tqdm

    overall = tqdm(total=trials, desc="search", unit="trial", position=0, disable=quiet)
    per_trial: dict[str, Any] = {}
    finished: dict[str, Any] = {}
    position = 1
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
            elif event.kind == "trial_finished":
                bar = per_trial.pop(p["trial_id"], None)
                if bar is not None:
                    bar.close()
                overall.update(1)
                if p.get("score") is not None:
                    overall.set_postfix(last=f"{p['score']:.4f}")
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


def _shorten(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
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
            f"search {search.id}: {args.trials} trial(s) on {args.dataset} {shape}, {classes} classes"
        )
        search.train(
            reference,
            args.trials,
            epochs=args.epochs,
            max_seconds=args.max_seconds,
            device=args.device or "auto",
        )
        finished = _follow(search, args.trials, args.epochs, args.quiet)
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
            + f" ({finished.get('trials', args.trials)} trials in {time.perf_counter() - started:.0f} s)"
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
        "--trials", type=int, default=10, help="trials to train (default %(default)s)"
    )
    parser.add_argument(
        "--epochs", type=int, default=20, help="epochs per trial at most (default %(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="wall-clock limit per trial"
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
