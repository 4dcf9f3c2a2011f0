"""BatchNorm calibration of the channels a morph inserted, before an inherited child trains.

A deeper morph inserts BN with γ = 1, β = 0, μ = 0, σ² = 1 − ε (``identity_bn``): the identity
in eval mode. A wider morph gives the new channels of an existing BN the same values. In train
mode, however, BN normalises with the *batch* statistics, so an identity BN is not the identity
there: the first training steps of such a child optimise a different function from the one its
parent handed over (activations rescaled to unit variance), and the running statistics drift
from 0/1 towards the data's as they go. Those channels are recognised exactly by these values
(a trained BN never holds them, a fresh one has σ² = 1) and calibrated on a few training batches:

* ``preserve``: measure the per-channel mean m and (biased) variance v of the layer's input, set
  μ = m, σ² = v, γ = sqrt(v + ε), β = m. Eval mode computes γ (x − m)/sqrt(v + ε) + β = x: still
  the identity; train mode computes nearly x too (batch statistics ≈ m, v). The child starts, in
  both modes, where its parent ended, and γ/β take over the scale of the signal.
* ``estimate``: set μ = m, σ² = v only. The layer now normalises in eval mode as it does in train
  mode, which CHANGES the child's function (its epoch-0 accuracy is no longer the parent's).

``bench/recipe.py`` compares both with ``none``; the worker's recipe uses the winner (see
:mod:`morphnas.nn.recipe`). Measurement runs in train mode with no gradient (dropout active, the
other BN layers on batch statistics, as training will see them); the calibrated layers
themselves stay in eval mode (exactly the identity) while measuring, so a stack of inserted
layers is measured on the function the child really computes, and the running statistics of
the other BN layers are put back afterwards.
"""

from __future__ import annotations

import torch
from torch import nn

CALIBRATIONS = ("none", "preserve", "estimate")


def inserted_channels(bn: nn.modules.batchnorm._BatchNorm) -> torch.Tensor:
    """Boolean mask ``(C,)`` of channels still exactly at a morph's identity initialisation."""
    assert bn.running_mean is not None and bn.running_var is not None and bn.weight is not None
    identity_var = torch.tensor(1.0 - bn.eps, dtype=bn.running_var.dtype)
    return (
        (bn.weight.detach() == 1)
        & (bn.bias.detach() == 0)
        & (bn.running_mean == 0)
        & (bn.running_var == identity_var.to(bn.running_var.device))
    )


@torch.no_grad()
def calibrate_inserted_bn(
    module: nn.Module,
    x: torch.Tensor,
    *,
    mode: str,
    batches: int,
    batch_size: int,
    generator: torch.Generator,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> int:
    """Calibrate the identity-initialised BN channels of ``module`` on ``x`` ``(n, *input)``.

    ``batches`` batches of ``batch_size`` examples drawn by ``generator``. Returns the number of
    channels calibrated (0: nothing to do, the module is untouched).
    """
    if mode not in CALIBRATIONS:
        raise ValueError(f"mode must be one of {CALIBRATIONS}, got {mode!r}")
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    masks = {bn: inserted_channels(bn) for bn in layers}
    targets = [bn for bn in layers if bool(masks[bn].any())]
    if mode == "none" or not targets or len(x) == 0:
        return 0
    saved = {bn: (bn.running_mean.clone(), bn.running_var.clone()) for bn in layers}  # type: ignore[union-attr]
    sums: dict[nn.Module, list[torch.Tensor]] = {}

    def record(bn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        (value,) = inputs
        dims = [d for d in range(value.dim()) if d != 1]
        flat = value.detach().double()
        count = flat.numel() // flat.shape[1]
        acc = sums.setdefault(bn, [torch.zeros(()), torch.zeros(()), torch.zeros(())])
        acc[0] = acc[0] + flat.sum(dims).cpu()  # (C,)
        acc[1] = acc[1] + (flat * flat).sum(dims).cpu()  # (C,)
        acc[2] = acc[2] + count

    hooks = [bn.register_forward_pre_hook(record) for bn in targets]
    was_training = module.training
    try:
        module.train()
        for bn in targets:
            bn.eval()  # exactly the identity while measuring
        order = torch.randperm(len(x), generator=generator).to(x.device)
        for step in range(batches):
            batch = order[step * batch_size : (step + 1) * batch_size]
            if len(batch) < 2:
                break
            module(x[batch].contiguous(memory_format=memory_format))
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)
    calibrated = 0
    for bn in layers:
        mean, var = saved[bn]
        bn.running_mean.copy_(mean)  # type: ignore[union-attr]
        bn.running_var.copy_(var)  # type: ignore[union-attr]
        if bn not in sums:
            continue
        total, squares, count = sums[bn]
        m = total / count  # (C,)
        v = (squares / count - m * m).clamp_min(0.0)  # (C,) biased, as train-mode BN uses
        mask = masks[bn]
        device, dtype = bn.running_mean.device, bn.running_mean.dtype  # type: ignore[union-attr]
        m, v = m.to(device, dtype), v.to(device, dtype)
        bn.running_mean[mask] = m[mask]  # type: ignore[index]
        bn.running_var[mask] = v[mask]  # type: ignore[index]
        if mode == "preserve":
            bn.weight[mask] = torch.sqrt(v[mask] + bn.eps)  # type: ignore[index]
            bn.bias[mask] = m[mask]  # type: ignore[index]
        calibrated += int(mask.sum())
    return calibrated
