"""A tiny Ray Tune trainable for the tests: trains a morphnas trial on scikit-learn's digits for a
couple of epochs, and measures how far its first forward pass is from its parent's trained model
(network morphism: the child starts computing what its parent computed)."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import torch
from ray import tune

from morphnas.integrations.ray import (
    CONFIG_KEY,
    WEIGHTS_KEY,
    inherited_model,
    trial_client,
    upload_trained_weights,
)


@cache
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits as (N, 1, 8, 8) floats in [0, 1]: 1,400 to train on, the rest to validate."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy((bunch.images / 16.0).astype(np.float32)).unsqueeze(1)  # (N, 1, 8, 8)
    y = torch.from_numpy(bunch.target.astype(np.int64))  # (N,)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)  # (N, classes)


def parent_gap(config: dict[str, Any], child_logits: torch.Tensor, probe: torch.Tensor) -> float:
    """max |child − parent| over the probe's logits, relative to the parent's largest logit; NaN
    for a trial without a parent."""
    parent_id = config[CONFIG_KEY]["parent_id"]
    if not parent_id:
        return math.nan
    with trial_client(config) as client:
        parent = client.get_trial(parent_id).build_model("trained")
    expected = logits(parent, probe)
    return float((child_logits - expected).abs().max() / (1.0 + expected.abs().max()))


def train_digits(config: dict[str, Any]) -> None:
    """The trainable: inherit, check the first forward, train, upload the weights, report."""
    torch.set_num_threads(1)
    torch.manual_seed(config[CONFIG_KEY]["number"])
    x_train, y_train, x_val, y_val = digits()
    model = inherited_model(config)
    gap = parent_gap(config, logits(model, x_val[:64]), x_val[:64])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs = int(config.get("epochs", 2))
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimiser.step()
        accuracy = float((logits(model, x_val).argmax(1) == y_val).float().mean())
        result: dict[str, Any] = {"val_accuracy": accuracy, "parent_logit_gap": gap}
        if epoch == epochs:
            result[WEIGHTS_KEY] = upload_trained_weights(config, model)
        tune.report(result)
