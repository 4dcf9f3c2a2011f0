"""Ray Tune drives a morphnas search: Tune places the trials, morphnas proposes the architectures.

    morphnas serve &                                  # or point MORPHNAS_SERVER at a server
    MORPHNAS_SERVER=127.0.0.1:50051 python examples/ray_tune.py --trials 8

Needs ``pip install 'morphnas[ray,torch]' scikit-learn``. Starts a local Ray cluster, or joins
the one named by ``RAY_ADDRESS``. Each Tune trial builds its morphnas trial's model with the
weights it inherits from its parent (:func:`inherited_model`), trains it on scikit-learn's digits
for a few epochs, uploads the trained weights and reports the validation accuracy; the searcher
tells morphnas, whose next proposals start from those weights. About two minutes on 2 CPUs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np
import ray
import torch
from ray import tune

from morphnas.client import Client
from morphnas.integrations.ray import (
    WEIGHTS_KEY,
    MorphnasSearcher,
    default_server,
    inherited_model,
    trial_dirname,
    upload_trained_weights,
)


def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits as (N, 1, 8, 8) in [0, 1]: 1,400 to train, 397 to validate."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train_digits(config: dict[str, Any]) -> None:
    """One Tune trial = one morphnas trial: inherit, train, upload, report."""
    torch.set_num_threads(1)
    x_train, y_train, x_val, y_val = digits()
    model = inherited_model(config)  # the architecture with its inherited weights
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x_val).argmax(1) == y_val).float().mean())
        result: dict[str, Any] = {"val_accuracy": accuracy}
        if epoch == config["epochs"]:  # the trained weights go to morphnas, not through Tune
            result[WEIGHTS_KEY] = upload_trained_weights(config, model)
        tune.report(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="Tune trials (default 8)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once (default 2)")
    parser.add_argument("--storage", default=os.path.abspath("ray_results"), help="Tune's results")
    args = parser.parse_args()

    server = default_server()  # $MORPHNAS_SERVER, as the morphnas command reads it
    with Client(server) as client:
        search = client.create_search(
            "ray-tune-digits",
            (1, 8, 8),
            10,
            seed=0,
            seed_width=16,
            seed_depth=2,
            max_trials=args.trials,
        )
        print(f"search {search.id} on {server}")
        ray.init(include_dashboard=False, log_to_driver=False)  # or the cluster in $RAY_ADDRESS
        searcher = MorphnasSearcher(search.id, server, metric="val_accuracy", mode="max")
        tuner = tune.Tuner(
            train_digits,
            param_space={"epochs": args.epochs},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=args.trials,
                max_concurrent_trials=args.concurrent,
                reuse_actors=True,  # a process per slot, not per trial: less start-up time
                trial_dirname_creator=trial_dirname,  # folders named by morphnas trial
            ),
            run_config=tune.RunConfig(
                name="morphnas-digits",
                storage_path=args.storage,
                stop=searcher.stopper(),
                verbose=1,
            ),
        )
        results = tuner.fit()
        print(f"{len(results)} Tune trials, {len(results.errors)} errors")
        for trial in search.trials():
            parent = f"child of {trial.parent_id[:8]}" if trial.parent_id else "seed"
            print(f"  trial {trial.number:2d}  {trial.state:9s}  {trial.score or 0:.3f}  {parent}")
        best = search.best_trial()
        if best is not None:
            print(f"best: trial {best.number}, validation accuracy {best.score:.3f}")


if __name__ == "__main__":
    main()
