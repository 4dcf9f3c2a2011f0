"""What keeping a search's observation index up to date costs per ask, by search size.

    python bench/observation_index.py [--sizes 1200 10000]

Each ask replaces the search's ObservationIndex by one with two trials changed (the reported
trial turns COMPLETED, the new one appears ACTIVE). This times ``ObservationIndex.updated`` over
200 such asks in a row at each size, using only API that older versions had too, so the same
script measures an older checkout (``git worktree add /tmp/old REV`` and run it from there).
Medians in microseconds; results also go to bench/results/observation_index.txt.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from morphnas.core.records import Observation, ObservationIndex, TrialState  # noqa: E402


def observation(number: int, state: TrialState, score: float | None) -> Observation:
    return Observation(
        trial_id=f"{number:032x}",
        number=number,
        architecture="{}",
        arch_hash=f"{number:064x}",
        state=state,
        score=score,
        parent_id=None,
    )


def per_ask_us(size: int, asks: int = 200) -> float:
    trials = [observation(i, TrialState.COMPLETED, (i * 7919 % 1000) / 1000) for i in range(size)]
    trials.append(observation(size, TrialState.ACTIVE, None))
    index = ObservationIndex.of(trials)
    assert index is not None
    times = []
    for k in range(asks):
        active = index.observations[-1]
        done = dataclasses.replace(active, state=TrialState.COMPLETED, score=(k % 100) / 100)
        new = observation(len(index.observations), TrialState.ACTIVE, None)
        start = time.perf_counter()
        updated = index.updated([done, new])
        times.append((time.perf_counter() - start) * 1e6)
        assert updated is not None
        index = updated
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1200, 10_000])
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "observation_index.txt")
    )
    args = parser.parse_args()
    lines = ["ObservationIndex.updated per ask (two trials changed), median of 200 asks in a row"]
    for size in args.sizes:
        lines.append(f"{size:>7} trials: {per_ask_us(size):8.1f} us")
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
