"""The server's training loop: learning, early stopping, limits, cancellation, determinism."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.morphs import Deeper, apply_path
from morphnas.core.seeds import seed_graph
from morphnas.core.weights import check_weights, init_weights
from morphnas.nn import train as train_module
from morphnas.nn.datasets import (
    Dataset,
    Normalisation,
    Split,
    builtin_dataset,
    compute_normalisation,
    dataset_split,
)
from morphnas.nn.module import module_weights
from morphnas.nn.train import (
    EpochResult,
    TrainConfig,
    TrainingOutOfMemory,
    evaluate,
    resolve_device,
    train_trial,
)

FAST = dict(batch_size=64, device="cpu", seed=0)


def same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained(small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation):
    config = TrainConfig(epochs=3, **FAST)
    return train_trial(small_cnn, None, digits, digits_split, digits_norm, config)


def test_three_epochs_on_digits_learn(
    trained, small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    start = init_weights(small_cnn, 0)
    chance, _ = evaluate(small_cnn, start, digits, digits_split.val, digits_norm)
    assert trained.stopped_reason == "completed" and trained.epochs_run == 3
    assert [h.epoch for h in trained.history] == [1, 2, 3]
    assert trained.history[-1].train_loss < trained.history[0].train_loss
    assert trained.val_accuracy > chance + 0.3
    assert trained.best_epoch == 3
    assert trained.samples_per_second > 0 and trained.seconds > 0
    check_weights(small_cnn, trained.weights)


def test_result_is_the_best_epoch_and_evaluate_agrees(
    trained, small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    best = trained.history[trained.best_epoch - 1]
    assert trained.val_accuracy == best.val_accuracy and trained.val_loss == best.val_loss
    accuracy, logits = evaluate(small_cnn, trained.weights, digits, digits_split.val, digits_norm)
    assert logits.shape == (len(digits_split.val), 10) and logits.dtype == np.float32
    assert accuracy == pytest.approx(trained.val_accuracy, abs=1e-6)


def test_same_seed_same_result(
    trained, small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    again = train_trial(
        small_cnn, None, digits, digits_split, digits_norm, TrainConfig(epochs=3, **FAST)
    )
    assert same_weights(again.weights, trained.weights)
    assert [(h.train_loss, h.val_loss) for h in again.history] == [
        (h.train_loss, h.val_loss) for h in trained.history
    ]
    other = train_trial(
        small_cnn,
        None,
        digits,
        digits_split,
        digits_norm,
        TrainConfig(epochs=1, **{**FAST, "seed": 1}),
    )
    assert not same_weights(other.weights, trained.weights)


def test_caller_random_state_is_untouched(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    config = TrainConfig(epochs=1, max_seconds=0.5, **FAST)
    train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert torch.equal(torch.rand(3), expected)


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, losses: list[float]) -> list[dict]:
    """Make validation report ``losses`` in turn; record the weights at each validation."""
    seen: list[dict] = []
    scripted = iter(losses)
    original = train_module._Trainer._validate

    def validate(self: train_module._Trainer) -> tuple[float, float]:
        _, accuracy = original(self)
        seen.append(module_weights(self.module))
        return next(scripted), accuracy

    monkeypatch.setattr(train_module._Trainer, "_validate", validate)
    return seen


def test_early_stopping_after_patience_restores_the_best_epoch(
    monkeypatch: pytest.MonkeyPatch,
    small_cnn: Graph,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    # epoch:       0    1    2    3     4         5     6
    losses = [2.0, 1.0, 0.5, 0.6, 0.49995, 0.7, 0.8, 0.1]
    seen = _scripted_validation(monkeypatch, losses)
    config = TrainConfig(epochs=20, patience=3, **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    # Epoch 4 is better by less than min_delta (1e-4): not an improvement.
    assert result.stopped_reason == "early_stopping"
    assert result.epochs_run == 5 and result.best_epoch == 2 and result.val_loss == 0.5
    assert same_weights(result.weights, seen[2])
    assert not same_weights(result.weights, seen[5])


def test_never_improving_returns_the_starting_weights(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    start = init_weights(small_cnn, 5)
    config = TrainConfig(epochs=10, patience=2, min_delta=1e9, **FAST)
    result = train_trial(small_cnn, start, digits, digits_split, digits_norm, config)
    assert result.stopped_reason == "early_stopping" and result.epochs_run == 2
    assert result.best_epoch == 0
    assert same_weights(result.weights, check_weights(small_cnn, start))


def test_an_average_of_one_step_is_the_plain_run(
    trained, small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    # A horizon of one step (rate 1) copies the weights after every step: nothing is averaged.
    config = TrainConfig(epochs=3, ema_epochs=1e-9, **FAST)
    again = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert same_weights(again.weights, trained.weights)
    assert [h.val_loss for h in again.history] == [h.val_loss for h in trained.history]


def test_an_average_starts_at_the_inherited_weights_and_moves_slowly(
    trained, small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    # A child starting from trained weights: with a horizon of a million epochs its average
    # barely leaves them; with one epoch it follows training, yet is not the raw weights.
    inherited = trained.weights
    slow = TrainConfig(epochs=2, lr=0.05, ema_epochs=1e6, monitor="val_accuracy", **FAST)
    kept = train_trial(small_cnn, inherited, digits, digits_split, digits_norm, slow)
    assert kept.start_val_accuracy == pytest.approx(trained.val_accuracy, abs=1e-6)
    drift = max(float(np.abs(kept.weights[k] - inherited[k]).max()) for k in inherited)
    assert drift < 1e-3
    one = TrainConfig(epochs=2, lr=0.05, ema_epochs=1.0, patience=None, **FAST)
    raw = TrainConfig(epochs=2, lr=0.05, patience=None, **FAST)
    averaged = train_trial(small_cnn, inherited, digits, digits_split, digits_norm, one)
    plain = train_trial(small_cnn, inherited, digits, digits_split, digits_norm, raw)
    assert not same_weights(averaged.weights, plain.weights)
    # The returned weights are the ones judged: evaluating them gives the reported accuracy.
    accuracy, _ = evaluate(small_cnn, averaged.weights, digits, digits_split.val, digits_norm)
    assert accuracy == pytest.approx(averaged.val_accuracy, abs=1e-6)


def test_time_limit_stops_within_a_batch(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    config = TrainConfig(epochs=100_000, patience=None, max_seconds=0.5, **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.stopped_reason == "time_limit"
    assert result.epochs_run < 100_000
    assert result.seconds < 2.5
    check_weights(small_cnn, result.weights)


def test_should_stop_cancels_mid_epoch(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    calls = itertools.count()
    config = TrainConfig(epochs=5, **FAST)
    result = train_trial(
        small_cnn,
        None,
        digits,
        digits_split,
        digits_norm,
        config,
        should_stop=lambda: next(calls) >= 3,
    )
    assert result.stopped_reason == "cancelled" and result.epochs_run == 0
    assert result.best_epoch == 0


def test_on_epoch_sees_every_epoch_and_can_stop(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    seen: list[EpochResult] = []

    def on_epoch(result: EpochResult) -> bool:
        seen.append(result)
        return result.epoch == 2

    config = TrainConfig(epochs=5, **FAST)
    result = train_trial(
        small_cnn, None, digits, digits_split, digits_norm, config, on_epoch=on_epoch
    )
    assert result.stopped_reason == "cancelled" and result.epochs_run == 2
    assert tuple(seen) == result.history
    assert seen[0].seconds <= seen[1].seconds


def test_morphed_child_starts_from_the_parents_function(
    trained, small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    op = Deeper.candidates(small_cnn)[0]
    child, child_weights = apply_path(small_cnn, [op], trained.weights)
    assert child_weights is not None
    parent_accuracy, _ = evaluate(small_cnn, trained.weights, digits, digits_split.val, digits_norm)
    config = TrainConfig(epochs=1, min_delta=1e9, **FAST)
    result = train_trial(child, child_weights, digits, digits_split, digits_norm, config)
    assert result.best_epoch == 0
    assert result.val_accuracy == pytest.approx(parent_accuracy, abs=1e-6)


def test_sgd_and_constant_schedule(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    config = TrainConfig(epochs=1, optimizer="sgd", schedule="constant", **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.epochs_run == 1 and np.isfinite(result.history[0].train_loss)


def test_sequence_model_on_mnist1d_and_vector_model() -> None:
    # mnist1d is generated locally (a few seconds); a vector view of digits covers MLPs.
    data = builtin_dataset("mnist1d")
    split = dataset_split(data, seed=0)
    norm = compute_normalisation(data.x, split.train)
    graph = seed_graph(data.input_shape, 10, width=8, depth=2)
    result = train_trial(graph, None, data, split, norm, TrainConfig(epochs=1, **FAST))
    assert result.epochs_run == 1 and 0.0 <= result.val_accuracy <= 1.0

    digits = builtin_dataset("digits")
    flat = Dataset("flat", digits.x.reshape(len(digits), 64), digits.y, 10, (64,))
    split = dataset_split(flat, seed=0)
    norm = compute_normalisation(flat.x, split.train)
    mlp = seed_graph((64,), 10, width=32, depth=1)
    result = train_trial(mlp, None, flat, split, norm, TrainConfig(epochs=2, **FAST))
    assert result.val_accuracy > 0.5


def test_dataset_must_fit_the_graph(digits: Dataset, digits_split: Split) -> None:
    graph = seed_graph((1, 40), 10, width=8, depth=1)
    with pytest.raises(InvalidArgumentError, match="shape"):
        train_trial(graph, None, digits, digits_split, Normalisation.identity(1), TrainConfig())
    five = seed_graph(digits.input_shape, 5, width=8, depth=1)
    with pytest.raises(InvalidArgumentError, match="classes"):
        train_trial(five, None, digits, digits_split, Normalisation.identity(1), TrainConfig())


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"batch_size": 0},
        {"optimizer": "adam"},
        {"lr": -1.0},
        {"lr": float("nan")},
        {"weight_decay": -0.1},
        {"patience": 0},
        {"max_seconds": 0},
        {"device": "tpu"},
        {"device": "cuda:x"},
        {"schedule": "step"},
        {"amp_dtype": "fp8"},
        {"seed": -1},
        {"seed": 2**64},
        {"ema_epochs": 0.0},
        {"ema_epochs": float("inf")},
    ],
)
def test_config_is_validated(bad: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        TrainConfig(**bad)


def test_config_defaults() -> None:
    assert TrainConfig().learning_rate == 3e-3
    assert TrainConfig(optimizer="sgd").learning_rate == 0.05
    assert TrainConfig(lr=0.1).learning_rate == 0.1
    assert TrainConfig().patience == 5 and TrainConfig().min_delta == 1e-4


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgumentError, match="CUDA"):
            resolve_device("cuda:0")


def test_out_of_memory_becomes_a_domain_error(
    monkeypatch: pytest.MonkeyPatch,
    small_cnn: Graph,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    def oom(self: object, *args: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module._Trainer, "run", oom)
    with pytest.raises(TrainingOutOfMemory) as info:
        train_trial(small_cnn, None, digits, digits_split, digits_norm, TrainConfig(**FAST))
    assert info.value.num_params == small_cnn.num_params and info.value.batch_size == 64

    def other(self: object, *args: object) -> None:
        raise RuntimeError("something else broke")

    monkeypatch.setattr(train_module._Trainer, "run", other)
    with pytest.raises(RuntimeError, match="something else"):
        train_trial(small_cnn, None, digits, digits_split, digits_norm, TrainConfig(**FAST))
