"""Does the main job improve on its seed? ``morphnas run`` with default settings, several seeds.

Runs ``morphnas run --dataset D --trials N --seed S --quiet`` (an embedded server and its
worker, everything else default) in a fresh temporary folder per run, then reads the run's
SQLite file and prints, per run: the best trial's number and score, the seed's (trial 0) score,
and how many children beat their parent (score strictly above the parent's).

    python bench/main_job.py [--datasets mnist1d digits] [--seeds 0 1 2] [--trials 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from morphnas.core.records import TrialState
from morphnas.storage.repository import Repository
from morphnas.tables import table


def one_run(dataset: str, seed: int, trials: int) -> tuple[object, ...]:
    with tempfile.TemporaryDirectory(prefix="morphnas-main-job-") as folder:
        started = time.perf_counter()
        command = [sys.executable, "-m", "morphnas.cli", "run", "--dataset", dataset]
        command += ["--trials", str(trials), "--seed", str(seed), "--quiet"]
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        repo = Repository.from_url(f"sqlite:///{os.path.join(folder, 'morphnas.db')}")
        try:
            [search], _ = repo.list_searches()
            completed, _ = repo.list_trials(
                search.id, states=(TrialState.COMPLETED,), page_size=10_000
            )
            events = repo.list_events(search.id, 0, limit=10_000)
        finally:
            repo.close()
    for event in events:
        if event.kind == "trial_finished":
            p = event.payload
            print(
                f"  trial {p['number']}: {p['state']} score {p['score']} parent "
                f"{p.get('parent_score')} best epoch {p.get('best_epoch')}/{p.get('epochs')} "
                f"{p.get('stopped_reason')} {p.get('seconds', 0):.0f} s",
                flush=True,
            )
    scores = {t.id: t.score for t in completed}
    best = max(completed, key=lambda t: (t.score, -t.number))
    seed_score = next(t.score for t in completed if t.number == 0)
    children = [t for t in completed if t.parent_id in scores]
    beat = sum(t.score > scores[t.parent_id] for t in children)  # type: ignore[index,operator]
    test = (
        done.stdout.split("test accuracy ")[-1].split(" ")[0]
        if "test accuracy" in done.stdout
        else "-"
    )
    return (
        dataset,
        seed,
        best.number,
        best.score,
        seed_score,
        f"{beat}/{len(children)}",
        test,
        round(seconds),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist1d", "digits"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    rows = []
    for dataset in args.datasets:
        for seed in args.seeds:
            rows.append(one_run(dataset, seed, args.trials))
            print(rows[-1], flush=True)
    headers = (
        "dataset",
        "seed",
        "best trial",
        "best score",
        "seed score",
        "beat parent",
        "test",
        "s",
    )
    print(table(headers, rows))


if __name__ == "__main__":
    main()
