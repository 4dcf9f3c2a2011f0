"""How a trial trains, and the final fit after a search.

:func:`trial_train_config` is the one place that turns a run's :class:`TrainingBudget` into the
:class:`TrainConfig` of a trial; the server's workers and ``bench/peers.py`` both call it, so a
benchmark trains trials exactly as the product does.

**Inherited weights are not a fresh start.** A child (a trial whose parent has trained weights)
starts where its converged parent ended. Trained like a fresh network (full learning rate at
once, patience 5 on the validation loss), it got worse for a few epochs and early stopping
restored its starting weights: on MNIST-1D 28 of 30 trials of a default search had best epoch 0
and all scored the seed's accuracy. A child therefore trains with

* a lower peak learning rate, ``CHILD_LR_SCALE`` × the budget's, reached after a linear warm-up
  of ``CHILD_WARMUP_EPOCHS`` (Adam's moment estimates start empty, so the first steps are the
  least reliable ones);
* its morph-inserted BatchNorm channels calibrated with ``CHILD_BN_CALIBRATION`` (see
  :mod:`morphnas.nn.calibration`);
* the best epoch chosen on validation *accuracy* (the score the optimiser sees) with ties going
  to the lower loss. Epoch 0, the inherited weights, is returned only when no later epoch
  reaches a higher accuracy: a child that cannot improve reports its own honest best, which
  equals its parent's score;
* patience counted only in the second half of its schedule (:func:`child_patience_after`):
  restarted at a raised rate, a child recovers as the cosine schedule brings the rate down, and
  patience 5 after a one-epoch warm-up ended an 8-epoch child at epoch 6, before that.

Every trial, seed included, is judged by an exponential moving average of its weights with a
horizon of ``EMA_EPOCHS`` epochs (``TrainConfig.ema_epochs``): the epoch's validation accuracy
and loss, the weights returned and stored, are the average's. For a child the average starts at
its inherited weights, so it leaves its parent's function gradually and the evaluated network
is a blend of parent and trained child, which on a flat optimum is better than either (the
argument of stochastic weight averaging and of weight-space ensembles); the average of one
epoch also smooths the last steps' noise out of the score the optimiser sees. Every trial also
selects its best epoch by validation accuracy, so a child and its parent are scored the same way.

The recipe alone is not enough when every trial trains to convergence: with ``morphnas run``'s
old 20 epochs a trial, the seed converged (MNIST-1D 0.975 validation, the maximum of 20 noisy
epochs) and its children (mostly concat skips, as the bayesian policy picked them) reached
0.970-0.973 at the end of a 6-, 10- or 20-epoch child cycle at 0.1 or 0.3 × the rate: none beat
the parent's maximum. A search continues training along each lineage, so a trial need not
converge on its own: ``morphnas run`` now trains 8 epochs a trial (see ``runner.py``).

Measured with ``bench/recipe.py`` on the depth-3 seed, before the weight average (seed 0, 6 children of 1-3 random morphs, one torch thread, on
a loaded shared 2-core machine; val/test gain = mean over children of child − parent, points):

============  ===========  ==============  ======  ========  =============================
dataset       recipe       beat parent     val     test      best epoch 0 (kept inherited)
============  ===========  ==============  ======  ========  =============================
digits        old          1/6             +0.12   0.00      5/6
digits        new          5/6             +0.31   0.00      1/6
digits        new, lr ×1   5/6             +0.43   −0.62     1/6
digits        new, lr ×0.1 2/6             +0.12   −0.06     0/6
MNIST-1D      old          0/6             0.00    0.00      6/6
MNIST-1D      new          5/6             +0.53   +0.37     1/6
============  ===========  ==============  ======  ========  =============================

So 0.3 × the rate: the full rate "beats" the parent on validation but loses on test (it moves
the network away from its converged state); 0.1 × rarely moves it. Digits' validation split
(270 examples) is near its ceiling (the seed scores 268/270), so a gain there is one or two
examples and the test gain is nil: there the beat-parent figure is mostly selection on a small
split, which is why the final fit (below) and the test split exist. BN calibration
(``preserve``): without it, all 3 children measured (digits children 1-2, MNIST-1D child 1)
kept their inherited weights (best epoch 0), where ``preserve`` improved 2 of the 3; few runs
(``estimate`` was not reached before the deadline), so the choice rests
mainly on the argument in :mod:`morphnas.nn.calibration` (the child's train-mode function equals
its parent's only when the inserted channels are calibrated this way).

With the seed network of issue 15 (four post-activation blocks, :mod:`morphnas.core.seeds`), in
``bench/peers.py``'s MNIST-1D searches of 60 CPU-s (seeds 0-2) 5 of 26 bayesian and 7 of 24
random children beat their parent and 18 of 26 / 14 of 24 kept their inherited weights: the
first children of the seed gain (the seed's 98.2-98.5 % validation rises to 98.8-99.0 %), after
which validation accuracy sits within one or two of 600 examples of its ceiling. Re-tuned for that seed (``python bench/main_job.py``, ``morphnas run --trials 8``;
children that beat their parent by score, of 7): the previous recipe (0.3 × the rate, patience
from the end of the warm-up, no average) gave MNIST-1D seed 0 1/7 and digits seed 2 1/7 — every
child of the best trial stopped at epoch 6 with its inherited weights; a full 8 epochs alone 1/7
and 1/7; the weight average alone 3/7 and 1/7; both at 0.3 × 1/7 on digits; both at 0.1 × (this
recipe) 6/7 and 4/7, and over 3 seeds of each dataset 35 of 42 (11 of 42 by accuracy alone;
MNIST-1D final-model test accuracy 98.60 % against 97.67 %). Figures in docs/performance.md,
"The main job". With the weight average, 0.1 × no longer "rarely moves" a child (the table
above was measured on the depth-3 seed without it).

:func:`final_fit` trains the search's best architecture on training + validation data for a
number of epochs fixed beforehand and measures the test split once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.records import Search, TrainingBudget, TrainingRun, Trial
from morphnas.core.weights import Weights, init_weights
from morphnas.nn.datasets import Dataset, Normalisation, Split
from morphnas.nn.train import TrainConfig, evaluate, train_fixed

CHILD_LR_SCALE = 0.1
CHILD_WARMUP_EPOCHS = 1.0
CHILD_BN_CALIBRATION = "preserve"
MONITOR = "val_accuracy"
EMA_EPOCHS = 1.0
FINAL_FIT_MODES = ("continue", "retrain")


def trial_seed(search: Search, trial: Trial) -> int:
    """The training seed of a trial: differs per trial, fixed by the search's seed."""
    return search.config.seed * 100_003 + trial.number


def recipe_config(
    budget: TrainingBudget, *, seed: int, inherited: bool, device: str | None = None
) -> TrainConfig:
    """The TrainConfig of a trial trained under ``budget``; ``inherited``: it starts from a
    parent's trained weights (a child), else from a fresh initialisation (a seed)."""
    base = TrainConfig(
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        optimizer=budget.optimizer,
        lr=budget.learning_rate or None,
        patience=budget.patience,
        max_seconds=budget.max_seconds,
        seed=seed,
        device=device or budget.device,
        monitor=MONITOR,
        ema_epochs=EMA_EPOCHS,
    )
    return child_config(base) if inherited else base


def child_config(base: TrainConfig) -> TrainConfig:
    """``base`` adapted to a network that inherited trained weights (see the module docstring)."""
    warmup = min(CHILD_WARMUP_EPOCHS, base.epochs - 1)
    return replace(
        base,
        lr=base.learning_rate * CHILD_LR_SCALE,
        warmup_epochs=warmup,
        patience_after=child_patience_after(base.epochs, warmup),
        bn_calibration=CHILD_BN_CALIBRATION,
        monitor=MONITOR,
    )


def child_patience_after(epochs: int, warmup_epochs: float) -> int:
    """The last epoch of a child's run that patience does not count: the middle of its cosine
    schedule after the warm-up. A child restarted at a raised rate recovers as the rate falls,
    in the second half of the schedule; stopping it before then (as patience 5 of an 8-epoch
    run did, at epoch 6) returned its inherited weights."""
    return math.ceil(warmup_epochs + (epochs - warmup_epochs) / 2)


def trial_train_config(
    run: TrainingRun,
    search: Search,
    trial: Trial,
    parent: Trial | None,
    *,
    device: str | None = None,
) -> TrainConfig:
    """How ``trial`` of ``search`` trains in ``run``.

    ``parent``: the trial it was morphed from (``service.get_trial(trial.parent_id)``), None for
    a seed. The trial counts as inherited when the parent has trained weights (the service then
    morphed them into the trial's initial weights). ``device`` overrides the budget's.
    """
    inherited = parent is not None and parent.has_trained_weights
    return recipe_config(
        run.budget, seed=trial_seed(search, trial), inherited=inherited, device=device
    )


# ---------------------------------------------------------------------------- the final fit


@dataclass(frozen=True, eq=False)
class FinalFit:
    """The result of :func:`final_fit`. ``test_accuracy`` is None when the split has no test
    part; ``train_losses`` has one mean training loss per epoch."""

    weights: Weights
    test_accuracy: float | None
    mode: str
    epochs: int
    seconds: float
    train_losses: tuple[float, ...]


def final_fit_epochs(lineage_best_epochs: Sequence[int], mode: str) -> int:
    """Epochs of a final fit, from the best epochs along the best trial's lineage.

    ``lineage_best_epochs``: the best epoch of each trial from the seed down to the best trial
    (the seed's first). ``retrain`` repeats all the descent that made the best weights: their
    sum. ``continue`` starts from the best weights and trains as long as the best trial itself
    needed to improve on its parent (its best epoch; at least 2, so that the warm-up is
    followed by at least one epoch at the peak rate).
    """
    if mode not in FINAL_FIT_MODES:
        raise InvalidArgumentError(f"mode must be one of {FINAL_FIT_MODES}, got {mode!r}")
    if not lineage_best_epochs or min(lineage_best_epochs) < 0:
        raise InvalidArgumentError("give the best epoch (>= 0) of each trial of the lineage")
    if mode == "retrain":
        return max(1, sum(lineage_best_epochs))
    return max(2, lineage_best_epochs[-1])


def final_fit(
    graph: Graph,
    weights: Mapping[str, np.ndarray] | None,
    data: Dataset,
    split: Split,
    norm: Normalisation,
    *,
    epochs: int,
    mode: str = "continue",
    config: TrainConfig | None = None,
) -> FinalFit:
    """Train ``graph`` on ``split.train`` + ``split.val`` for ``epochs`` epochs; test once.

    ``mode="continue"`` starts from ``weights`` (the best trial's trained weights) with the
    child recipe (lower learning rate after a warm-up); ``"retrain"`` starts from a fresh
    initialisation seeded by ``config.seed`` at the full learning rate (``weights`` is ignored
    and may be None). ``config`` supplies batch size, optimiser, base learning rate, device and
    seed (default: :class:`TrainConfig`'s); its epoch count, patience and monitor are replaced.

    Why a fixed epoch count (:func:`final_fit_epochs`) and no held-out part: every validation
    example is then training data, and no model is chosen on a small split again (choosing the
    best epoch on a held-out slice overstates it, as choosing the best trial on the validation
    split did). The test split is touched once, after training, for the report. ``norm`` stays
    the search's (computed on its training part): the weights of ``continue`` expect it, and it
    is what the exported model bakes in.
    """
    if mode not in FINAL_FIT_MODES:
        raise InvalidArgumentError(f"mode must be one of {FINAL_FIT_MODES}, got {mode!r}")
    if epochs < 1:
        raise InvalidArgumentError(f"epochs must be at least 1, got {epochs}")
    base = replace(config or TrainConfig(), epochs=epochs, patience=None, monitor=MONITOR)
    if mode == "continue":
        if weights is None:
            raise InvalidArgumentError("mode='continue' needs the trained weights to continue")
        fit_config = child_config(base)
        start: Mapping[str, np.ndarray] = weights
    else:
        fit_config = replace(base, warmup_epochs=0.0, bn_calibration="none")
        start = init_weights(graph, fit_config.seed)
    started = time.perf_counter()
    indices = np.concatenate([split.train, split.val])
    result = train_fixed(graph, start, data, indices, norm, fit_config)
    test_accuracy = None
    if len(split.test):
        test_accuracy, _ = evaluate(
            graph, result.weights, data, split.test, norm, device=str(result.device)
        )
    return FinalFit(
        weights=result.weights,
        test_accuracy=test_accuracy,
        mode=mode,
        epochs=result.epochs_run,
        seconds=time.perf_counter() - started,
        train_losses=tuple(h.train_loss for h in result.history),
    )


#: Largest weight of the validation loss in a server-side trial's score (see validation_score).
LOSS_TIE_BREAK = 1e-9


def validation_score(accuracy: float, loss: float) -> float:
    """A server-side trial's score: its validation accuracy, ties broken by validation loss.

    ``accuracy + ε / (1 + loss)`` with ε = :data:`LOSS_TIE_BREAK`: strictly decreasing in the
    loss and below ε, so it orders only trials of *equal* accuracy (two different accuracies on
    a split of n ≤ 10⁷ examples differ by at least 1/n ≥ 10⁻⁷). On a small validation split
    accuracies tie often (digits: 270 examples, the seed already 99.6-100 %), and a tie went to
    the earlier trial: the seed, or the parent of a child that kept its accuracy and lowered its
    loss. Cross-entropy is a proper scoring rule on the same held-out examples, so the lower
    loss is the better model at equal accuracy, not a relabelling. A loss that is not finite
    adds nothing. The accuracy alone is in the ``trial_finished`` event (``val_accuracy``).
    """
    bonus = LOSS_TIE_BREAK / (1.0 + loss) if math.isfinite(loss) and loss >= 0 else 0.0
    return float(accuracy) + bonus
