"""Searches with made-up scores for the dashboard's tests and benchmark: real architectures,
morphs, measurements and weights, no training.

Each trial comes from the service's ask (the random policy: random morphs of earlier trials, so
the genealogy has wider, deeper and skip morphs), gets a few per-epoch ``val_accuracy``
measurements rising towards its score, and is reported COMPLETED with its initial weights as its
"trained" weights, so its ONNX file can be exported. The score is a smooth function of the
architecture (more parameters and skips help a little) plus noise, so the plots have shape.
"""

from __future__ import annotations

import json
import math
import random

from morphnas.core.records import Policy, SearchConfig, TrialState
from morphnas.server.service import SearchService
from morphnas.storage import Repository

EPOCHS = 4


def synthetic_score(architecture: str, num_params: int | None, rng: random.Random) -> float:
    """A made-up validation accuracy in (0, 1): log-parameters and skips help, plus noise."""
    layers = json.loads(architecture)["layers"]
    skips = sum(1 for layer in layers if layer["kind"] in ("add", "concat"))
    base = 0.55 + 0.03 * math.log10(max(num_params or 1, 1)) + 0.02 * skips
    return min(0.99, max(0.05, base + rng.gauss(0.0, 0.03)))


def build_search(
    repo: Repository,
    trials: int,
    *,
    name: str = "synthetic",
    seed: int = 3,
    fail_every: int = 0,
    service: SearchService | None = None,
) -> str:
    """A search of ``trials`` finished trials on digits-shaped input; returns its id. With
    ``fail_every`` = k, every k-th trial is reported FAILED instead (no score)."""
    service = service or SearchService(repo)
    config = SearchConfig(
        name=name,
        input_shape=(1, 8, 8),
        num_classes=10,
        seed=seed,
        policy=Policy.RANDOM,
        seed_width=8,
        seed_depth=2,
    )
    search = service.create_search(config)
    rng = random.Random(seed)
    for _ in range(trials):
        add_trial(service, repo, search.id, rng, fail_every)
    return search.id


def add_trial(
    service: SearchService,
    repo: Repository,
    search_id: str,
    rng: random.Random,
    fail_every: int = 0,
) -> str:
    """Ask for one trial, store its curve and report it; returns its id."""
    (trial,) = service.suggest(search_id, 1, "synthetic")
    if fail_every and trial.number % fail_every == fail_every - 1:
        service.report(trial.id, state=TrialState.FAILED, score=None, reason="synthetic failure")
        return trial.id
    score = synthetic_score(trial.architecture, trial.num_params, rng)
    for epoch in range(1, EPOCHS + 1):
        value = score * (1 - math.exp(-1.2 * epoch)) / (1 - math.exp(-1.2 * EPOCHS))
        service.progress(trial.id, epoch, value, "val_accuracy")
    weights = repo.load_weights(trial.id, "initial") or b""
    service.report(trial.id, state=TrialState.COMPLETED, score=score, weights=weights)
    return trial.id
