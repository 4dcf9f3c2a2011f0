"""The recipe for inherited weights: BN calibration, warm-up, accuracy monitor, final fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphnas.core.errors import InvalidArgumentError
from morphnas.core.graph import Graph
from morphnas.core.morphs import Deeper, Wider, apply_path
from morphnas.core.records import (
    RunState,
    Search,
    SearchConfig,
    TrainingBudget,
    TrainingRun,
    Trial,
    TrialState,
)
from morphnas.core.weights import check_weights
from morphnas.nn import train as train_module
from morphnas.nn.calibration import calibrate_inserted_bn, inserted_channels
from morphnas.nn.datasets import Dataset, Normalisation, Split
from morphnas.nn.module import build_module, module_weights
from morphnas.nn.recipe import (
    CHILD_LR_SCALE,
    child_patience_after,
    final_fit,
    final_fit_epochs,
    recipe_config,
    trial_train_config,
)
from morphnas.nn.train import TrainConfig, evaluate, train_fixed, train_trial

FAST = dict(batch_size=64, device="cpu", seed=0)


def same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def parent(small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation):
    config = TrainConfig(epochs=3, **FAST)
    return train_trial(small_cnn, None, digits, digits_split, digits_norm, config).weights


@pytest.fixture(scope="module")
def deeper_child(small_cnn: Graph, parent):
    """The parent with two stacked conv+BN identity blocks inserted after its first conv."""
    first_conv = next(layer.name for layer in small_cnn.layers if layer.kind == "conv")
    child, weights = apply_path(small_cnn, [Deeper(first_conv, 3)], parent)
    inserted = next(
        layer.name
        for layer in child.layers
        if layer.kind == "conv" and layer.name not in small_cnn.by_name
    )
    child, weights = apply_path(child, [Deeper(inserted, 3)], weights)
    assert weights is not None
    return child, weights


def _x(digits: Dataset, split: Split, norm: Normalisation, n: int = 512) -> torch.Tensor:
    return torch.from_numpy(norm.apply(digits.x[split.train[:n]]))


def _calibrated(graph: Graph, weights, x: torch.Tensor, mode: str):
    module = build_module(graph, weights)
    count = calibrate_inserted_bn(
        module, x, mode=mode, batches=4, batch_size=128, generator=torch.Generator().manual_seed(0)
    )
    return module, count


def _bns(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_preserve_keeps_the_function_in_eval_and_nearly_in_train_mode(
    small_cnn: Graph, parent, deeper_child, digits: Dataset, digits_split: Split, digits_norm
) -> None:
    child, weights = deeper_child
    x = _x(digits, digits_split, digits_norm)
    reference = build_module(small_cnn, parent).eval()
    module, count = _calibrated(child, weights, x, "preserve")
    assert count == 2 * 16  # two inserted BN layers of 16 channels, nothing else
    with torch.no_grad():
        expected = reference(x)
        assert torch.allclose(module.eval()(x), expected, atol=1e-4, rtol=1e-4)
        # Train mode (batch statistics; dropout off for a like-for-like comparison): the
        # calibrated child computes nearly what its parent computes; uncalibrated, it does not.
        for m in (reference, module):
            m.train()
            for d in m.modules():
                if isinstance(d, torch.nn.Dropout):
                    d.p = 0.0
        uncalibrated = build_module(child, weights).train()
        for d in uncalibrated.modules():
            if isinstance(d, torch.nn.Dropout):
                d.p = 0.0
        parent_train = reference(x)
        preserved_gap = (module(x) - parent_train).abs().max()
        raw_gap = (uncalibrated(x) - parent_train).abs().max()
    assert preserved_gap < 0.05 * raw_gap


def test_only_identity_channels_are_calibrated(
    small_cnn: Graph, parent, deeper_child, digits: Dataset, digits_split: Split, digits_norm
) -> None:
    child, weights = deeper_child
    x = _x(digits, digits_split, digits_norm)
    before = build_module(child, weights)
    masks = [inserted_channels(bn) for bn in _bns(before)]
    assert [int(m.sum()) for m in masks].count(16) == 2
    module, _ = _calibrated(child, weights, x, "estimate")
    for old, new, mask in zip(_bns(before), _bns(module), masks, strict=True):
        if not mask.any():  # trained layers: untouched, running statistics included
            for name in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(getattr(old, name), getattr(new, name))
        else:  # estimate: statistics measured, affine left at the identity
            assert torch.equal(new.weight, old.weight) and torch.equal(new.bias, old.bias)
            assert not torch.equal(new.running_var, old.running_var)
            assert not inserted_channels(new).any()
    # Estimating changes the eval-mode function (the layer now normalises).
    with torch.no_grad():
        changed = (module.eval()(x) - build_module(small_cnn, parent).eval()(x)).abs().max()
    assert changed > 1e-2


def test_calibration_is_a_no_op_without_inserted_channels(
    small_cnn: Graph, parent, digits: Dataset, digits_split: Split, digits_norm
) -> None:
    module, count = _calibrated(
        small_cnn, parent, _x(digits, digits_split, digits_norm), "preserve"
    )
    assert count == 0 and same_weights(module_weights(module), check_weights(small_cnn, parent))


def test_widened_bn_channels_are_calibrated(
    small_cnn: Graph, parent, digits: Dataset, digits_split: Split, digits_norm
) -> None:
    conv = next(layer.name for layer in small_cnn.layers if layer.kind == "conv")
    child, weights = apply_path(small_cnn, [Wider(conv, 4)], parent)
    x = _x(digits, digits_split, digits_norm)
    module, count = _calibrated(child, weights, x, "preserve")
    assert count == 4
    with torch.no_grad():
        reference = build_module(small_cnn, parent).eval()(x)
        assert torch.allclose(module.eval()(x), reference, atol=1e-4, rtol=1e-4)


def test_a_calibrated_child_starts_at_its_parents_accuracy(
    small_cnn: Graph, parent, deeper_child, digits: Dataset, digits_split: Split, digits_norm
) -> None:
    child, weights = deeper_child
    parent_accuracy, _ = evaluate(small_cnn, parent, digits, digits_split.val, digits_norm)
    config = TrainConfig(epochs=2, bn_calibration="preserve", **FAST)
    result = train_trial(child, weights, digits, digits_split, digits_norm, config)
    assert result.calibrated_channels == 32
    assert result.start_val_accuracy == pytest.approx(parent_accuracy, abs=1e-6)


def test_warm_up_then_cosine(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    config = TrainConfig(epochs=4, warmup_epochs=1.0, lr=0.01, **FAST)
    trainer = train_module._Trainer(
        small_cnn,
        train_module.init_weights(small_cnn, 0),
        digits,
        digits_split,
        digits_norm,
        config,
        torch.device("cpu"),
    )
    rates = []
    for step in range(trainer.total_steps):
        trainer.step = step
        trainer._set_lr()
        rates.append(trainer.optimizer.param_groups[0]["lr"])
    warm = trainer.warmup_steps
    assert warm == trainer.steps_per_epoch
    assert rates[:warm] == sorted(rates[:warm]) and rates[0] < 0.01 / warm * 1.01
    assert rates[warm] == pytest.approx(0.01)  # the peak, then a cosine down to near 0
    assert rates[warm:] == sorted(rates[warm:], reverse=True) and rates[-1] < 1e-3


def _scripted(monkeypatch: pytest.MonkeyPatch, values: list[tuple[float, float]]) -> None:
    scripted = iter(values)
    monkeypatch.setattr(train_module._Trainer, "_validate", lambda self: next(scripted))


def test_accuracy_monitor_breaks_ties_on_loss_and_keeps_epoch_0_only_if_never_beaten(
    monkeypatch: pytest.MonkeyPatch,
    small_cnn: Graph,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    #        (loss, accuracy) epoch 0      1            2             3            4
    _scripted(monkeypatch, [(0.5, 0.90), (0.9, 0.90), (0.40, 0.90), (0.8, 0.92), (0.3, 0.91)])
    config = TrainConfig(epochs=4, monitor="val_accuracy", **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.best_epoch == 3 and result.val_accuracy == 0.92 and result.val_loss == 0.8

    _scripted(monkeypatch, [(0.5, 0.90), (0.9, 0.90), (0.40, 0.90), (0.45, 0.89)])
    config = TrainConfig(epochs=3, monitor="val_accuracy", **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.best_epoch == 2  # equal accuracy, lower loss

    _scripted(monkeypatch, [(0.5, 0.90), (0.3, 0.89), (0.2, 0.88)])
    config = TrainConfig(epochs=2, monitor="val_accuracy", **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.best_epoch == 0 and result.val_accuracy == 0.90  # the honest best


def test_patience_counts_from_the_first_epoch_after_warm_up(
    monkeypatch: pytest.MonkeyPatch,
    small_cnn: Graph,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    values = [(0.5, 0.9)] + [(1.0, 0.5)] * 10
    _scripted(monkeypatch, values)
    config = TrainConfig(epochs=10, patience=2, warmup_epochs=3.0, monitor="val_accuracy", **FAST)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.stopped_reason == "early_stopping" and result.epochs_run == 5
    assert result.best_epoch == 0


def test_patience_after_keeps_the_first_half_of_a_childs_schedule(
    monkeypatch: pytest.MonkeyPatch,
    small_cnn: Graph,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    # Never better than the start: stale epochs count only after epoch 5, so patience 2 ends
    # the run at epoch 7 instead of epoch 3.
    _scripted(monkeypatch, [(0.5, 0.9)] + [(1.0, 0.5)] * 10)
    config = TrainConfig(
        epochs=10, patience=2, warmup_epochs=1.0, patience_after=5, monitor="val_accuracy", **FAST
    )
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.stopped_reason == "early_stopping" and result.epochs_run == 7
    # morphnas run's 8 epochs with patience 5: a child always reaches the end of its schedule.
    kid = recipe_config(TrainingBudget(epochs=8, patience=5), seed=0, inherited=True)
    assert kid.patience_after == child_patience_after(8, 1.0) == 5
    assert kid.patience_after + kid.patience > kid.epochs
    # A long run still stops early, once past the middle of its schedule.
    long = recipe_config(TrainingBudget(epochs=100, patience=5), seed=0, inherited=True)
    assert long.patience_after == 51


def test_the_child_recipe_is_deterministic(
    deeper_child, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    child, weights = deeper_child
    config = recipe_config(TrainingBudget(epochs=2, device="cpu"), seed=3, inherited=True)
    first = train_trial(child, weights, digits, digits_split, digits_norm, config)
    again = train_trial(child, weights, digits, digits_split, digits_norm, config)
    assert same_weights(first.weights, again.weights)
    assert [h.val_loss for h in first.history] == [h.val_loss for h in again.history]


def _records(parent_has_weights: bool) -> tuple[TrainingRun, Search, Trial, Trial]:
    config = SearchConfig(name="s", input_shape=(1, 8, 8), num_classes=10, seed=2)
    search = Search(id="s1", config=config, created_at=0.0, size_cap_params=10**6)
    budget = TrainingBudget(epochs=7, learning_rate=0.01, patience=3, device="cpu")
    run = TrainingRun(
        id="r", search_id="s1", dataset="digits", trials=3, claimed=0, budget=budget,
        state=RunState.RUNNING, first_number=0, created_at=0.0,
    )  # fmt: skip
    common = dict(search_id="s1", architecture="{}", arch_hash="h", created_at=0.0, updated_at=0.0)
    parent = Trial(id="p", number=0, state=TrialState.COMPLETED, parent_id=None, operations=(),
                   has_trained_weights=parent_has_weights, score=0.9, **common)  # fmt: skip
    child = Trial(id="c", number=4, state=TrialState.ACTIVE, parent_id="p", operations=(), **common)
    return run, search, parent, child


def test_trial_train_config_for_a_seed_and_a_child() -> None:
    run, search, parent, child = _records(parent_has_weights=True)
    seed = trial_train_config(run, search, parent, None)
    assert (seed.epochs, seed.lr, seed.patience, seed.monitor) == (7, 0.01, 3, "val_accuracy")
    assert seed.warmup_epochs == 0 and seed.bn_calibration == "none" and seed.seed == 200_006
    kid = trial_train_config(run, search, child, parent, device="cuda")
    assert kid.lr == pytest.approx(0.01 * CHILD_LR_SCALE) and kid.warmup_epochs > 0
    assert kid.bn_calibration != "none" and kid.device == "cuda" and kid.seed == 200_010
    # A parent without trained weights handed down nothing to continue from.
    run, search, parent, child = _records(parent_has_weights=False)
    assert trial_train_config(run, search, child, parent).warmup_epochs == 0


def test_train_fixed_runs_exactly_its_epochs_and_keeps_the_last_weights(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    indices = np.concatenate([digits_split.train, digits_split.val])
    config = TrainConfig(epochs=2, patience=1, **FAST)
    seen: list[dict] = []
    original = train_module._Trainer._train_epoch

    def spy(self, should_stop):  # type: ignore[no-untyped-def]
        out = original(self, should_stop)
        seen.append(module_weights(self.module))
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module._Trainer, "_train_epoch", spy)
        result = train_fixed(small_cnn, None, digits, indices, digits_norm, config)
    assert result.epochs_run == 2 and result.best_epoch == 2 and np.isnan(result.val_accuracy)
    assert same_weights(result.weights, seen[-1])


@pytest.mark.parametrize("mode", ["continue", "retrain"])
def test_final_fit(
    mode: str,
    small_cnn: Graph,
    parent,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    config = TrainConfig(**FAST)
    fit = final_fit(
        small_cnn, parent, digits, digits_split, digits_norm, epochs=3, mode=mode, config=config
    )
    again = final_fit(
        small_cnn, parent, digits, digits_split, digits_norm, epochs=3, mode=mode, config=config
    )
    assert fit.mode == mode and fit.epochs == 3 and len(fit.train_losses) == 3
    assert same_weights(fit.weights, again.weights) and fit.test_accuracy == again.test_accuracy
    accuracy, _ = evaluate(small_cnn, fit.weights, digits, digits_split.test, digits_norm)
    assert fit.test_accuracy == pytest.approx(accuracy, abs=1e-6)
    check_weights(small_cnn, fit.weights)
    if mode == "continue":  # the parent is a short 3-epoch training: continuing improves it
        before, _ = evaluate(small_cnn, parent, digits, digits_split.test, digits_norm)
        assert accuracy > before + 0.03
    else:
        assert accuracy > 0.5  # chance is 0.1


def test_final_fit_touches_the_test_split_once(
    monkeypatch: pytest.MonkeyPatch,
    small_cnn: Graph,
    parent,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    test_rows = set(digits_split.test.tolist())
    trained_on: set[int] = set()
    original = train_module._normalised

    def spy(data, indices, norm, device):  # type: ignore[no-untyped-def]
        trained_on.update(np.asarray(indices).tolist())
        return original(data, indices, norm, device)

    monkeypatch.setattr(train_module, "_normalised", spy)
    from morphnas.nn import recipe

    evaluated: list[np.ndarray] = []
    monkeypatch.setattr(
        recipe, "evaluate", lambda g, w, d, idx, n, **kw: evaluated.append(idx) or (0.5, None)
    )
    fit = final_fit(small_cnn, parent, digits, digits_split, digits_norm, epochs=1,
                    config=TrainConfig(**FAST))  # fmt: skip
    assert not trained_on & test_rows
    assert trained_on == set(digits_split.train.tolist()) | set(digits_split.val.tolist())
    assert len(evaluated) == 1 and np.array_equal(evaluated[0], digits_split.test)
    assert fit.test_accuracy == 0.5


def test_final_fit_epochs_and_arguments(
    small_cnn: Graph, digits, digits_split, digits_norm
) -> None:
    assert final_fit_epochs([12, 3, 5], "retrain") == 20
    assert final_fit_epochs([12, 3, 5], "continue") == 5
    assert final_fit_epochs([12, 0], "continue") == 2
    with pytest.raises(InvalidArgumentError):
        final_fit_epochs([], "retrain")
    with pytest.raises(InvalidArgumentError):
        final_fit_epochs([3], "again")
    with pytest.raises(InvalidArgumentError, match="continue"):
        final_fit(small_cnn, None, digits, digits_split, digits_norm, epochs=1, mode="continue")
    with pytest.raises(InvalidArgumentError):
        final_fit(small_cnn, None, digits, digits_split, digits_norm, epochs=0, mode="retrain")


@pytest.mark.parametrize(
    "bad",
    [
        {"monitor": "accuracy"},
        {"bn_calibration": "all"},
        {"calibration_batches": 0},
        {"warmup_epochs": -1.0},
        {"warmup_epochs": 20.0},
        {"warmup_epochs": float("nan")},
        {"patience_after": -1},
    ],
)
def test_recipe_fields_are_validated(bad: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        TrainConfig(**bad)
