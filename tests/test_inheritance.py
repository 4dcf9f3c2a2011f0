"""Inheritance pays: a morphed child keeps its parent's accuracy after one epoch; from scratch it
does not come close. The experiment itself lives in ``bench/inheritance.py`` (median over three
seeds there; one seed here to stay fast: about 10 s on one core)."""

from __future__ import annotations

import pytest
import torch

from bench.inheritance import run

pytest.importorskip("sklearn")


def test_an_inherited_child_keeps_the_parent_accuracy_and_scratch_does_not():
    torch.set_num_threads(1)
    outcome = run(seed=0)
    assert outcome.parent > 0.95, outcome
    assert outcome.inherited >= outcome.parent - 0.01, outcome  # at most one point below
    assert outcome.scratch <= outcome.inherited - 0.10, outcome  # clearly less
