"""The final fit: test accuracy of the final model against the search's best trial's.

Per dataset and seed: a short server-side search (an in-process server on a temporary SQLite
file and one worker thread, ``morphnas run``'s per-trial settings: 8 epochs a trial), then the
final fit of its best trial in both modes with :func:`morphnas.nn.recipe.final_fit` (the
function the worker calls), epochs from :func:`final_fit_epochs` on the lineage's best epochs.
Both modes fit the same best trial, so each row is a paired comparison. The test split is
evaluated once per model: the best trial's trained weights, the ``continue`` model and the
``retrain`` model. One torch thread per process; ``--jobs`` searches at a time.

    python bench/final_fit.py [--datasets digits mnist1d] [--seeds 0 1 2] [--trials 8] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from morphnas.core.records import BUILTIN_DATASET_SHAPES

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def one_search(dataset: str, seed: int, trials: int, epochs: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from morphnas.client import Client
    from morphnas.core.graph import Graph
    from morphnas.core.weights import check_weights, weights_from_bytes
    from morphnas.nn.recipe import final_fit, final_fit_epochs, recipe_config
    from morphnas.nn.train import evaluate
    from morphnas.server.app import ServerOptions, build_server
    from morphnas.server.training import TrainingService
    from morphnas.server.worker import Worker

    shape, classes = BUILTIN_DATASET_SHAPES[dataset]
    with tempfile.TemporaryDirectory(prefix="morphnas-final-fit-") as folder:
        url = f"sqlite:///{os.path.join(folder, 'morphnas.db')}"
        server = build_server(ServerOptions(db_url=url, port=0, sweep_seconds=1.0))
        training = TrainingService(server.service)
        worker = Worker(training, name="bench", poll_seconds=0.1, device="cpu")
        thread = threading.Thread(target=worker.run_forever, daemon=True)
        thread.start()
        try:
            with Client(server.address, timeout=120) as client:
                search = client.create_search(
                    name=dataset, input_shape=shape, num_classes=classes, seed=seed
                )
                started = time.perf_counter()
                search.train(dataset, trials, epochs=epochs, max_seconds=600, device="cpu")
                events = list(search.watch(timeout=3600))
                search_seconds = time.perf_counter() - started
            finished = {
                e.payload["trial_id"]: e.payload for e in events if e.kind == "trial_finished"
            }
            best = training.best_trial(search.id)
            lineage = [best]
            while lineage[-1].parent_id:
                lineage.append(server.service.get_trial(lineage[-1].parent_id))
            lineage.reverse()
            best_epochs = [int(finished[t.id]["best_epoch"]) for t in lineage]
            stored = server.service.get_search(search.id)
            prepared = training.prepared(dataset, stored)
            graph = Graph.from_json(best.architecture)
            weights = check_weights(
                graph, weights_from_bytes(server.service.weights(best.id, "trained"))
            )
            best_test, _ = evaluate(
                graph, weights, prepared.data, prepared.split.test, prepared.norm
            )
            run = training.latest_run(search.id)
            assert run is not None
            base = recipe_config(run.budget, seed=seed * 100_003 + 99_999, inherited=False)
            fits = {}
            for mode in ("continue", "retrain"):
                fit = final_fit(
                    graph,
                    weights,
                    prepared.data,
                    prepared.split,
                    prepared.norm,
                    epochs=final_fit_epochs(best_epochs, mode),
                    mode=mode,
                    config=base,
                )
                fits[mode] = {
                    "test": fit.test_accuracy,
                    "epochs": fit.epochs,
                    "seconds": fit.seconds,
                }
            return {
                "dataset": dataset,
                "seed": seed,
                "trials": len(finished),
                "best_number": best.number,
                "best_val": best.score,
                "best_test": best_test,
                "lineage_best_epochs": best_epochs,
                "search_seconds": search_seconds,
                "best_trial_seconds": finished[best.id]["seconds"],
                "fits": fits,
            }
        finally:
            worker.stop()
            thread.join(60)
            server.stop(0)


def _row(r: dict[str, Any]) -> str:
    c, t = r["fits"]["continue"], r["fits"]["retrain"]
    return (
        f"| {r['dataset']} | {r['seed']} | {r['best_number']} | {r['best_val']:.4f} "
        f"| {r['best_test']:.4f} | {c['test']:.4f} ({c['epochs']} ep, {c['seconds']:.0f} s) "
        f"| {t['test']:.4f} ({t['epochs']} ep, {t['seconds']:.0f} s) "
        f"| {r['search_seconds']:.0f} |"
    )


def report(results: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# The final fit: the final model's test accuracy against the best trial's",
        "",
        f"`{command}` (one torch thread per process, shared 2-core machine; seconds are wall).",
        "Per run: a server-side search (`--epochs` a trial, `morphnas run`'s default 8), then",
        "`final_fit` of its best trial on",
        "train+validation in both modes (epochs from `final_fit_epochs` over the lineage's best",
        "epochs). Test accuracy on the search's test split, measured once per model.",
        "",
        "| dataset | seed | best trial | best val | best test | continue test | "
        "retrain test | search s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(r) for r in results]
    lines += ["", "Mean test accuracy (points: final − best trial):", ""]
    for dataset in sorted({r["dataset"] for r in results}):
        rows = [r for r in results if r["dataset"] == dataset]
        best = statistics.mean(r["best_test"] for r in rows)
        parts = [f"- {dataset}: best trial {best:.4f}"]
        for mode in ("continue", "retrain"):
            mean = statistics.mean(r["fits"][mode]["test"] for r in rows)
            seconds = statistics.mean(r["fits"][mode]["seconds"] for r in rows)
            wins = sum(r["fits"][mode]["test"] > r["best_test"] for r in rows)
            ties = sum(r["fits"][mode]["test"] == r["best_test"] for r in rows)
            parts.append(
                f"{mode} {mean:.4f} ({100 * (mean - best):+.2f}; better in {wins}, "
                f"equal in {ties} of {len(rows)}; {seconds:.0f} s)"
            )
        lines.append(", ".join(parts))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist1d"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(RESULTS, "final_fit"))
    args = parser.parse_args()
    runs = [(d, s) for d in args.datasets for s in args.seeds]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_search, d, s, args.trials, args.epochs) for d, s in runs]
        results = []
        for future in futures:
            results.append(future.result())
            print(json.dumps(results[-1]), flush=True)
    command = "python bench/final_fit.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items()
        if k != "out"
    )
    text = report(results, command)
    with open(args.out + ".md", "w") as handle:
        handle.write(text)
    with open(args.out + ".json", "w") as handle:
        json.dump(results, handle, indent=1)
    print(text)


if __name__ == "__main__":
    main()
