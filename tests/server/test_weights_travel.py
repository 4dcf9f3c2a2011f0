"""Weights travel intact: each child computes what its parent computed with the reported weights."""

from __future__ import annotations

import pytest
import torch

from morphnas.client import Client


def _train_briefly(model: torch.nn.Module, shape: tuple[int, ...], classes: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(64, *shape, generator=generator)
    y = torch.randint(0, classes, (64,), generator=generator)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(3):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()


@pytest.mark.parametrize(
    ("shape", "policy"), [((1, 8, 8), "random"), ((1, 16), "random"), ((12,), "bayesian")]
)
def test_twenty_cycles_preserve_the_parent_function(
    client: Client, shape: tuple[int, ...], policy: str
) -> None:
    torch.manual_seed(0)
    search = client.create_search(
        name="travel", input_shape=shape, num_classes=5, policy=policy, seed_width=8, seed_depth=2
    )
    x = torch.randn(7, *shape)
    checked = 0
    for cycle in range(20):
        [trial] = search.suggest(worker_id="w")
        model = trial.build_model().eval()
        if trial.parent_id is not None:
            parent = client.get_trial(trial.parent_id).build_model(weights="trained").eval()
            with torch.no_grad():
                assert torch.allclose(model(x), parent(x), atol=1e-4), (
                    f"cycle {cycle}: {trial.operations}"
                )
            checked += 1
        _train_briefly(model, shape, 5, cycle)
        trial.report(score=float(torch.rand(1)), weights=model.state_dict())
    assert checked >= 18
