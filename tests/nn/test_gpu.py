"""CUDA training (AMP, channels-last) and ONNX export of a CUDA-trained model.

Marked ``gpu`` (deselected by default; run with ``pytest -m gpu``) and skipped without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morphnas.core.graph import Graph
from morphnas.core.weights import check_weights, init_weights
from morphnas.nn import train as train_module
from morphnas.nn.datasets import Dataset, Normalisation, Split
from morphnas.nn.onnx_export import check_onnx_matches, export_onnx
from morphnas.nn.train import TrainConfig, evaluate, train_trial

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("amp_dtype", ["bf16", "fp16"])
def test_cuda_training_with_amp_and_channels_last(
    monkeypatch: pytest.MonkeyPatch,
    amp_dtype: str,
    small_cnn: Graph,
    digits: Dataset,
    digits_split: Split,
    digits_norm: Normalisation,
) -> None:
    if amp_dtype == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    seen: dict[str, object] = {}
    original = train_module._Trainer._train_step

    def spy(self: train_module._Trainer, batch: torch.Tensor) -> torch.Tensor:
        seen["memory_format"] = self.memory_format
        seen["amp"] = self.amp_dtype
        seen["scaler"] = self.scaler is not None
        seen["weight_channels_last"] = next(
            p for p in self.module.parameters() if p.ndim == 4
        ).is_contiguous(memory_format=torch.channels_last)
        return original(self, batch)

    monkeypatch.setattr(train_module._Trainer, "_train_step", spy)
    config = TrainConfig(epochs=3, batch_size=64, device="cuda", amp=True, amp_dtype=amp_dtype)
    start = init_weights(small_cnn, 0)
    chance, _ = evaluate(small_cnn, start, digits, digits_split.val, digits_norm)
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    assert result.device.startswith("cuda")
    assert seen["memory_format"] == torch.channels_last and seen["weight_channels_last"]
    assert seen["amp"] == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp_dtype]
    assert seen["scaler"] == (amp_dtype == "fp16")
    assert result.val_accuracy > chance + 0.3
    weights = check_weights(small_cnn, result.weights)  # float32, finite, on the host
    assert all(w.dtype == np.float32 for w in weights.values())
    accuracy, _ = evaluate(small_cnn, result.weights, digits, digits_split.val, digits_norm)
    # Validation ran under autocast; a float32 evaluation of the same weights is close to it.
    assert abs(accuracy - result.val_accuracy) < 0.05


def test_onnx_export_of_a_cuda_trained_model(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    config = TrainConfig(epochs=2, batch_size=64, device="cuda")
    result = train_trial(small_cnn, None, digits, digits_split, digits_norm, config)
    exported = export_onnx(small_cnn, result.weights, digits_norm, metadata={"trial": "1"})
    for batch in (1, 2, 7):
        x = digits.x[digits_split.test[:batch]]
        agreement, max_abs_diff = check_onnx_matches(
            exported, small_cnn, result.weights, digits_norm, x
        )
        assert agreement == 1.0 and max_abs_diff <= 1e-4


def test_cuda_training_is_close_to_cpu_without_amp(
    small_cnn: Graph, digits: Dataset, digits_split: Split, digits_norm: Normalisation
) -> None:
    results = {
        device: train_trial(
            small_cnn,
            None,
            digits,
            digits_split,
            digits_norm,
            TrainConfig(epochs=1, batch_size=64, device=device, amp=False, seed=0),
        )
        for device in ("cpu", "cuda")
    }
    # Same seed, same shuffling (the CPU generator drives both), float32 both sides.
    assert results["cpu"].history[0].train_loss == pytest.approx(
        results["cuda"].history[0].train_loss, rel=0.1
    )
