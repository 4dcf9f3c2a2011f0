"""A Tune run through MorphnasSearcher, as a script: the restore test interrupts it (SIGINT)
and resumes it with ``Tuner.restore`` in the test process.

    python -m tests.ray.tune_driver RAY_ADDRESS SERVER SEARCH_ID STORAGE_PATH NAME SAMPLES
"""

from __future__ import annotations

import sys

from ray import tune

from morphnas.integrations.ray import MorphnasSearcher, trial_dirname
from tests.ray.trainables import train_digits


def tuner(server: str, search_id: str, storage: str, name: str, samples: int) -> tune.Tuner:
    """A Tuner of ``samples`` trials of the search, two at a time, two epochs each."""
    searcher = MorphnasSearcher(search_id, server, metric="val_accuracy", mode="max")
    return tune.Tuner(
        train_digits,
        param_space={"epochs": 2},
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=samples,
            max_concurrent_trials=2,
            reuse_actors=True,  # one process per slot, not per trial
            trial_dirname_creator=trial_dirname,  # folders named by morphnas trial
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, stop=searcher.stopper(), verbose=0
        ),
    )


def main(argv: list[str]) -> int:
    import ray

    address, server, search_id, storage, name, samples = argv
    ray.init(address=address, namespace="morphnas-tests", log_to_driver=False)
    tuner(server, search_id, storage, name, int(samples)).fit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
