"""``morphnas run``: a whole search on a dataset, trained by the server, watched live.

Without ``--server`` it starts an embedded server on a SQLite file in the current folder plus
training worker processes, runs the search, has the worker do the final fit of the best
architecture on training + validation data (``--final-fit``, see ``docs/final-fit.md``), prints
a leaderboard and the test accuracy of the best trial and of the final model, writes the ONNX
file (the final model when there is one), and shuts everything down.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from morphnas.client import Client, SearchHandle, TrainingRunInfo
from morphnas.core.records import BUILTIN_DATASET_SHAPES
from morphnas.options import SERVER_START_SECONDS, check_run, database_url
from morphnas.own_data import LAYOUTS, Upload, prepare_upload
from morphnas.pareto_cli import add_objective_arguments, objective_options
from morphnas.tables import describe_path, plural, table


@contextmanager
def embedded_server(url: str, workers: int, device: str | None) -> Iterator[str]:
    """A server on a free port and its worker processes; yields the address."""
    from morphnas.server.app import ServerOptions, build_server
    from morphnas.server.workers import WorkerPool

    running = build_server(ServerOptions(db_url=url, port=0, sweep_seconds=1.0))
    pool = WorkerPool(url, workers, device=device)
    pool.start()
    try:
        yield running.address
    finally:
        pool.stop()
        running.stop(5)


@contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so both stop the search cleanly."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (a test calling run): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


#: How long stopping the search after Ctrl-C may take (the second Ctrl-C is ignored meanwhile).
STOP_SECONDS = 10.0


def _ignore_further_interrupts() -> None:
    """From the first Ctrl-C on the command is ending: a second one (a user pressing it twice)
    must not cut short the stop of its search, nor turn the exit into a traceback."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (a test calling run): signals are not ours
        pass


def _interrupted(search: SearchHandle | None) -> int:
    """Ctrl-C or SIGTERM: stop the search this command started (it never trains again unless
    resumed), say so in one line, exit 130."""
    _ignore_further_interrupts()
    if search is None:
        print("\nmorphnas run: interrupted", file=sys.stderr)
        return 130
    try:
        search.client.timeout = STOP_SECONDS
        search.stop()
    except Exception as err:  # the server went away too: say so, still exit 130
        print(
            f"\nmorphnas run: interrupted; could not stop search {search.id}: {err}",
            file=sys.stderr,
        )
        return 130
    print(
        f"\nmorphnas run: interrupted; stopped search {search.id} "
        f"(continue it with: morphnas run --resume {search.id})",
        file=sys.stderr,
    )
    return 130


def _wait_for_a_worker(search: SearchHandle, server: str, timeout: float) -> None:
    """Fail fast when no training worker takes the run: the server queues runs for workers,
    and one that nobody claims within ``timeout`` seconds means the server has none (or none
    free). The search is stopped, so it does not start training later without the user."""
    deadline = time.monotonic() + timeout
    while _unclaimed(search.training_run()):
        if time.monotonic() >= deadline:
            search.stop()
            raise SystemExit(
                f"morphnas run: no training worker took the search in {timeout:g} s: the server "
                f"at {server} has no free worker. Start one with `morphnas serve --workers N` or "
                f"`morphnas worker --db URL`, then: morphnas run --resume {search.id} "
                f"--server {server}"
            )
        time.sleep(0.5)


def _unclaimed(run: TrainingRunInfo) -> bool:
    """Whether a run still waits for its first worker. A run of only a final fit (a resumed
    run that owes nothing else) claims no trial slot, so it is not waited for."""
    return run.state == "RUNNING" and run.trials > 0 and run.claimed == 0


def _dataset_for(
    client: Client, dataset: str, upload: Upload | None
) -> tuple[str, tuple[int, ...], int]:
    """The dataset reference the server knows, its input shape and its number of classes."""
    if upload is None:
        shape, classes = BUILTIN_DATASET_SHAPES[dataset]
        return dataset, shape, classes
    print(f"uploading {dataset}: {upload.note}", file=sys.stderr)
    info = client.upload_dataset(upload.data, name=os.path.basename(dataset))
    return info.id, tuple(info.input_shape), info.num_classes


def _follow(
    search: SearchHandle,
    trials: int,
    epochs: int,
    quiet: bool,
    budget_seconds: float = 0.0,
    run_id: str = "",
) -> dict[str, Any]:
    """Show an overall bar and one per trial until the run finishes; returns the final payload.

    With ``run_id``, the events before that run's ``run_started`` are skipped: a resumed
    search's earlier runs ended with ``search_stopped`` or ``search_finished`` too.

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
            if run_id:
                if event.kind == "run_started" and p.get("run_id") == run_id:
                    run_id = ""  # the events of this run follow
                continue
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
            elif event.kind == "final_fit_finished":
                overall.write(_final_fit_line(p))
            elif event.kind in ("search_finished", "search_stopped"):
                finished = dict(p, kind=event.kind)
                break
    finally:
        for bar in per_trial.values():
            bar.close()
        overall.close()
    return finished


def _final_fit_line(p: dict[str, Any]) -> str:
    if p.get("error"):
        return f"final fit ({p['mode']}) failed: {p['error']}"
    test = p.get("test_accuracy")
    return (
        f"final fit of trial {p['number']} ({p['mode']}, {p['epochs']} epochs on training + "
        f"validation data) in {p['seconds']:.0f} s"
        + (f": test accuracy {test:.4f}" if test is not None else "")
    )


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
        return plural(trials, "trial")
    limit = f"at most {plural(trials, 'trial')}" if trials else "as many trials as fit"
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


def _create(
    client: Client,
    args: argparse.Namespace,
    trials: int,
    budget_seconds: float,
    upload: Upload | None,
) -> tuple[SearchHandle, str, str]:
    """A new search on ``--dataset``; returns it, the dataset reference the server knows and
    the line that announces it (printed once its training run exists)."""
    reference, shape, classes = _dataset_for(client, args.dataset, upload)
    search = client.create_search(
        name=args.name or f"{os.path.basename(args.dataset)}-{time.strftime('%Y%m%d-%H%M%S')}",
        input_shape=shape,
        num_classes=classes,
        seed=args.seed,
        policy=args.policy,
        **objective_options(args),
    )
    announce = (
        f"search {search.id}: {_plan(trials, budget_seconds)} on {args.dataset} {shape}, "
        f"{plural(classes, 'class')}"
    )
    return search, reference, announce


def _resume(client: Client, search_id: str) -> tuple[SearchHandle, int, float, str]:
    """``--resume``: the search's training continued with what it is still owed; returns the
    search, the trials and budget seconds of the new run, and the run's id."""
    search = client.get_search(search_id)
    resumed = search.resume()
    fit = f"the final fit ({resumed.final_fit})" if resumed.final_fit != "none" else ""
    if resumed.trials:
        left = _plan(resumed.trials, resumed.budget_seconds) + (f" and {fit}" if fit else "")
    else:  # the server resumes only a run that owes something: here, only its final fit
        left = f"only {fit}"
    print(f"search {search.id}: resumed, {left} left on {resumed.dataset}", flush=True)
    return search, resumed.trials, resumed.budget_seconds, resumed.id


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    trials, budget_seconds = check_run(args)  # every option checked before anything is created
    upload = None
    if args.dataset and args.dataset not in BUILTIN_DATASET_SHAPES:
        upload = prepare_upload(args.dataset, args.layout)  # the user's arrays checked here too
    if args.server:
        context: Any = nullcontext(args.server)
    else:
        context = embedded_server(database_url(args.db), args.workers, args.device)
    search: SearchHandle | None = None
    from morphnas.dashboard.cli import dashboard_for_run

    with (
        stop_signals(),
        context as address,
        Client(address, timeout=120) as client,
        dashboard_for_run(args, database_url(args.db)) as show_dashboard,
    ):
        if args.server:  # a `morphnas serve &` started just before may not listen yet
            client.wait_for_ready(SERVER_START_SECONDS)
        try:
            if args.resume:
                search, trials, budget_seconds, run_id = _resume(client, args.resume)
                show_dashboard(search.id)
                epochs = search.training_run().budget.epochs
            else:
                search, reference, announce = _create(client, args, trials, budget_seconds, upload)
                run = search.train(
                    reference,
                    trials,
                    budget_seconds=budget_seconds,
                    epochs=args.epochs,
                    max_seconds=args.max_seconds,
                    device=args.device or "auto",
                    final_fit=args.final_fit,
                )
                print(announce, flush=True)
                show_dashboard(search.id)
                run_id, epochs = run.id, args.epochs
            if args.server:
                _wait_for_a_worker(search, args.server, args.claim_timeout)
            finished = _follow(search, trials, epochs, args.quiet, budget_seconds, run_id)
        except KeyboardInterrupt:
            return _interrupted(search)
        print()
        print(_leaderboard(search))
        run_info = search.training_run()
        best = search.best_trial()
        if best is None:
            print("no trial completed", file=sys.stderr)
            return 1
        test = run_info.test_accuracy
        final_test = run_info.final_test_accuracy
        print(
            f"\nbest: trial {best.number}, validation accuracy {best.score:.4f}"
            + (f", test accuracy {test:.4f}" if test is not None else "")
            + (
                f"; final model ({run_info.final_fit}) test accuracy {final_test:.4f}"
                if final_test is not None
                else ""
            )
            + f" ({plural(finished.get('trials', trials), 'trial')} in "
            + f"{time.perf_counter() - started:.0f} s"
            + _budget_note(finished)
            + ")"
        )
        if args.export:
            blob = search.export_onnx(args.export)
            print(f"wrote {args.export} ({len(blob):,} bytes)")
            dataset = args.dataset or run_info.dataset
            if dataset in BUILTIN_DATASET_SHAPES or os.path.isfile(dataset):
                print(_verify_export(blob, dataset, search.info.seed, best, upload))
    return 0


def _verify_export(
    blob: bytes, dataset: str, seed: int, best: Any, upload: Upload | None = None
) -> str:
    """Run the ONNX file in onnxruntime on the search's test split and compare with torch."""
    import numpy as np

    from morphnas.nn.datasets import Normalisation, builtin_dataset, dataset_split, load_npz
    from morphnas.nn.onnx_export import check_onnx_matches, onnx_metadata, run_onnx

    if dataset in BUILTIN_DATASET_SHAPES:
        data = builtin_dataset(dataset)
    elif upload is not None:  # as uploaded (channels first)
        data = load_npz(upload.data, max_bytes=2**40)
    else:
        with open(dataset, "rb") as handle:
            data = load_npz(handle.read(), max_bytes=2**40)
    test = dataset_split(data, seed=seed).test
    if len(test) == 0:
        return "the dataset has no test split to check the ONNX file on"
    x, y = data.x[test], data.y[test]
    accuracy = float((run_onnx(blob, x).argmax(1) == y).mean())
    norm = Normalisation.from_dict(json.loads(onnx_metadata(blob)["normalisation"]))
    kind = onnx_metadata(blob).get("weights", "trained")  # "final" after a final fit
    weights = best.client.download_weights(best.id, kind)
    agreement, diff = check_onnx_matches(blob, best.graph, weights, norm, x)
    return (
        f"onnxruntime on the {len(test)} test examples: accuracy {accuracy:.4f}; "
        f"argmax agreement with torch {100 * agreement:.1f}%, max |logit difference| {diff:.1e}"
    ) + ("" if np.isfinite(diff) else " (not finite!)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="digits, mnist1d, or PATH.npz (arrays x and y); required")
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
    parser.add_argument(
        "--policy",
        choices=["bayesian", "random"],
        default="bayesian",
        help="how the next network is chosen: bayesian (a Gaussian process weighing expected "
        "gain against cost) or random (random morphs, the baseline) (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the data split, the first network's weights and the policy; the same seed "
        "and options repeat a search (default %(default)s)",
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="nchw",
        help="layout of your PATH.npz's x: nchw, channels first as morphnas trains (default), "
        "or nhwc, channels last (N, H, W, C) / (N, L, C), transposed before the upload",
    )
    parser.add_argument("--name", help="search name (default: dataset and time)")
    parser.add_argument(
        "--final-fit",
        choices=["continue", "retrain", "none"],
        default="retrain",
        help="after the search, train the best architecture on training + validation data, "
        "from its weights (continue) or from scratch (retrain); within --budget "
        "(default %(default)s; a --resume keeps the resumed run's; see docs/final-fit.md)",
    )
    parser.add_argument(
        "--resume",
        metavar="SEARCH",
        help="continue a stopped search (Ctrl-C, `morphnas stop`) with the trials and budget it "
        "still owes, on its own dataset (no --dataset)",
    )
    parser.add_argument(
        "--export",
        metavar="PATH",
        help="write the final model (the best trial's, with --final-fit none) as ONNX here",
    )
    parser.add_argument(
        "--server",
        help="use this server (HOST:PORT; a bare HOST means port 50051) instead of an embedded one",
    )
    parser.add_argument(
        "--claim-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="with --server: give up when no training worker takes the search within this long "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--db",
        default=os.environ.get("MORPHNAS_DB", "morphnas.db"),
        help="database of the embedded server: a SQLite file, sqlite:///FILE or "
        "postgresql+psycopg://USER@HOST/DB (default $MORPHNAS_DB or morphnas.db)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="embedded training workers (default 1)"
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_objective_arguments(parser)
    parser.add_argument(
        "--no-dashboard",
        action="store_true",
        help="embedded server: start no web dashboard (by default one serves the search on a "
        "free local port and its address is printed)",
    )
    parser.add_argument(
        "--dashboard",
        metavar="URL",
        help="with --server: the address of that server's dashboard (serve --dashboard-port), "
        "printed with the search's page",
    )
