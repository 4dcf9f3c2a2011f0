"""Train one candidate architecture on the server: the loop behind a server-side trial.

:func:`train_trial` compiles the graph once (:func:`~morphnas.nn.module.build_module`), keeps the
normalised data on the device as tensors (small data: no DataLoader, no worker processes; a
seeded ``torch.Generator`` shuffles), and trains with AdamW or SGD+momentum under a per-step
cosine schedule. After every epoch it measures the validation loss and accuracy; early stopping
watches the validation loss and the weights of the best epoch are restored at the end, whatever
stopped the run. The score handed to the optimiser is that best epoch's validation accuracy; the
test split is never touched here.

Epoch 0 is the starting point: the given weights are evaluated before any step, so a morphed
child that training only makes worse returns its inherited (parent-equivalent) weights, and a
run cut short by the clock still has a scored state to return.

Images (2-D convolutions) run in channels-last memory on every device: on CUDA it feeds the
tensor cores, and on the CPU it let oneDNN's pooling and convolution kernels train the seed CNN
about 1.4× faster than the default layout (``bench/train.py``). On CUDA: automatic mixed
precision (bf16 where supported, else fp16 with a GradScaler). CPU works everywhere and is
deterministic: the same seed gives the same result. Dropout draws from torch's global
generator, which is seeded inside ``torch.random.fork_rng`` so the caller's random state is left
untouched; determinism therefore holds for one trial at a time per process.

Notation: ``n`` examples of a split, ``b`` batch size, ``K`` classes; shapes in comments.
"""

from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from morphnas.core.errors import InvalidArgumentError, MorphnasError
from morphnas.core.graph import Graph
from morphnas.core.weights import Weights, init_weights
from morphnas.nn.calibration import CALIBRATIONS, calibrate_inserted_bn
from morphnas.nn.datasets import Dataset, Normalisation, Split, validate_for
from morphnas.nn.module import GraphModule, build_module, module_weights

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
AMP_DTYPES = ("auto", "bf16", "fp16")
STOP_REASONS = ("completed", "early_stopping", "time_limit", "cancelled")
MONITORS = ("val_loss", "val_accuracy")
DEFAULT_LR = {"adamw": 3e-3, "sgd": 0.05}
DEFAULT_WEIGHT_DECAY = {"adamw": 1e-2, "sgd": 5e-4}
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class TrainingOutOfMemory(MorphnasError):
    """The device ran out of memory training this architecture (the search should lower its cap)."""

    def __init__(self, message: str, *, num_params: int, batch_size: int, device: str) -> None:
        self.num_params = num_params
        self.batch_size = batch_size
        self.device = device
        super().__init__(message)


@dataclass(frozen=True)
class TrainConfig:
    """How one trial trains. ``lr`` / ``weight_decay`` of None take the optimiser's default.

    ``monitor`` picks the best epoch (whose weights are returned): ``val_loss`` (lower by more
    than ``min_delta``) or ``val_accuracy`` (higher; an equal accuracy counts only with a loss
    lower by more than ``min_delta``). ``patience``: stop after this many epochs that do not
    improve on the best (None: never stop early); epochs of the warm-up and epochs up to
    ``patience_after`` are not counted.
    ``warmup_epochs``: the learning rate rises linearly from about 0 to ``lr`` over this many
    epochs (in steps; 0: none), then follows ``schedule`` over the remaining steps.
    ``bn_calibration``: before the first step, BatchNorm channels still at the identity a morph
    inserted (see :mod:`morphnas.nn.calibration`) are calibrated on ``calibration_batches``
    training batches: ``preserve`` keeps the layer the identity, ``estimate`` normalises with the
    measured statistics (changes the function), ``none`` leaves them. ``max_seconds``:
    wall-clock limit for the whole trial, checked before every batch (None: no limit).
    ``ema_epochs``: judge and return an exponential moving average of the weights with a
    horizon of this many epochs instead of the raw weights (see :class:`_Average`; None: off).
    """

    epochs: int = 20
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    schedule: str = "cosine"
    patience: int | None = 5
    min_delta: float = 1e-4
    max_seconds: float | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "auto"
    channels_last: bool = True
    eval_batch_size: int = 1024
    monitor: str = "val_loss"
    warmup_epochs: float = 0.0
    bn_calibration: str = "none"
    calibration_batches: int = 8
    ema_epochs: float | None = None
    patience_after: int = 0

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _require(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        _require(self.eval_batch_size >= 1, "eval_batch_size must be at least 1")
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}")
        _require(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}")
        _require(self.amp_dtype in AMP_DTYPES, f"amp_dtype must be one of {AMP_DTYPES}")
        _require(self.monitor in MONITORS, f"monitor must be one of {MONITORS}")
        _require(
            self.bn_calibration in CALIBRATIONS, f"bn_calibration must be one of {CALIBRATIONS}"
        )
        _require(self.calibration_batches >= 1, "calibration_batches must be at least 1")
        _require(self.patience_after >= 0, "patience_after must be >= 0")
        _require(
            self.ema_epochs is None or _positive(self.ema_epochs),
            f"ema_epochs must be positive or None, got {self.ema_epochs}",
        )
        _require(
            math.isfinite(self.warmup_epochs) and 0 <= self.warmup_epochs < self.epochs,
            f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs}",
        )
        _require(self.lr is None or _positive(self.lr), f"lr must be positive, got {self.lr}")
        _require(
            self.weight_decay is None or (_positive(self.weight_decay) or self.weight_decay == 0),
            f"weight_decay must be >= 0, got {self.weight_decay}",
        )
        _require(0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}")
        _require(self.patience is None or self.patience >= 1, "patience must be at least 1 or None")
        _require(self.min_delta >= 0, f"min_delta must be >= 0, got {self.min_delta}")
        _require(0 <= self.seed < 2**63, f"seed must be in [0, 2**63), got {self.seed}")
        _require(
            self.max_seconds is None or _positive(self.max_seconds),
            f"max_seconds must be positive or None, got {self.max_seconds}",
        )
        _require(
            bool(_DEVICE.match(self.device)),
            f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return DEFAULT_WEIGHT_DECAY[self.optimizer]


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArgumentError(message)


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@dataclass(frozen=True)
class EpochResult:
    """Measurements after one epoch. ``seconds``: wall-clock since the trial started."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What a trial produced. ``weights``, ``val_accuracy`` and ``val_loss`` are the best epoch's
    (epoch 0 = the starting weights, after any BatchNorm calibration; ``start_val_accuracy`` and
    ``start_val_loss`` are its measurements). ``samples_per_second`` counts training steps only.
    With no validation examples (:func:`train_fixed`) the validation figures are NaN."""

    weights: Weights
    val_accuracy: float
    val_loss: float
    best_epoch: int
    epochs_run: int
    seconds: float
    samples_per_second: float
    stopped_reason: str
    history: tuple[EpochResult, ...]
    device: str
    start_val_accuracy: float = float("nan")
    start_val_loss: float = float("nan")
    calibrated_channels: int = 0


EpochCallback = Callable[[EpochResult], bool]
StopCallback = Callable[[], bool]


# ------------------------------------------------------------------------------------ devices


def resolve_device(spec: str) -> torch.device:
    """``auto`` → the first CUDA device when there is one, else the CPU."""
    _require(bool(_DEVICE.match(spec)), f"device must be auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        _require(torch.cuda.is_available(), f"device {spec!r} requested but CUDA is not available")
        index = device.index or 0
        _require(index < torch.cuda.device_count(), f"device {spec!r} does not exist")
    return device


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp or device.type != "cuda":
        return None
    if config.amp_dtype == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if config.amp_dtype == "bf16":
        return torch.bfloat16
    return torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[object]:
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err)


# ------------------------------------------------------------------------------------ public API


def train_trial(
    graph: Graph,
    weights: Mapping[str, np.ndarray] | None,
    data: Dataset,
    split: Split,
    norm: Normalisation,
    config: TrainConfig | None = None,
    *,
    on_epoch: EpochCallback | None = None,
    should_stop: StopCallback | None = None,
) -> TrainResult:
    """Train ``graph`` from ``weights`` (None: fresh, seeded) on ``split.train`` of ``data``.

    ``on_epoch`` is called after each epoch; returning True stops the run (reason "cancelled").
    ``should_stop`` is polled before every batch; True cancels. Raises
    :class:`TrainingOutOfMemory` when the device runs out of memory.
    """
    config = config or TrainConfig()
    return _guarded(
        graph,
        weights,
        config,
        lambda trainer_for: trainer_for(split).run(on_epoch, should_stop),
        data,
        norm,
    )


def train_fixed(
    graph: Graph,
    weights: Mapping[str, np.ndarray] | None,
    data: Dataset,
    indices: np.ndarray,
    norm: Normalisation,
    config: TrainConfig,
    *,
    should_stop: StopCallback | None = None,
) -> TrainResult:
    """Train on ``data[indices]`` for exactly ``config.epochs`` epochs and return the last weights.

    No validation data and no early stopping (``config.patience`` and ``config.monitor`` are
    ignored; the validation figures of the result are NaN): for a final fit, whose epoch count
    was chosen beforehand. Warm-up, schedule, calibration, limits and determinism as in
    :func:`train_trial`.
    """
    parts = _Parts(train=np.asarray(indices, dtype=np.int64), val=np.zeros(0, np.int64))
    _require(len(parts.train) > 0, "train_fixed needs training examples")
    return _guarded(
        graph,
        weights,
        config,
        lambda trainer_for: trainer_for(parts).run(None, should_stop, keep_last=True),
        data,
        norm,
    )


class _Parts(NamedTuple):
    """Training and validation indices (a :class:`Split` without its checks and test part)."""

    train: np.ndarray
    val: np.ndarray


def _guarded(
    graph: Graph,
    weights: Mapping[str, np.ndarray] | None,
    config: TrainConfig,
    body: Callable[[Callable[[Split | _Parts], _Trainer]], TrainResult],
    data: Dataset,
    norm: Normalisation,
) -> TrainResult:
    """Run ``body`` with a trainer factory, seeded, turning out-of-memory into a domain error."""
    validate_for(data, graph.input_shape, num_outputs(graph))
    device = resolve_device(config.device)
    start_weights = dict(weights) if weights is not None else init_weights(graph, config.seed)
    failure = ""
    try:
        with torch.random.fork_rng(devices=_rng_devices(device)):
            torch.manual_seed(config.seed)
            return body(
                lambda parts: _Trainer(graph, start_weights, data, parts, norm, config, device)
            )
    except RuntimeError as err:
        if not _is_oom(err):
            raise
        failure = str(err).splitlines()[0]
    # Outside the except block, the failed run's frames (and tensors) are already released.
    if device.type == "cuda":
        torch.cuda.empty_cache()
    raise TrainingOutOfMemory(
        f"out of memory training a {graph.num_params}-parameter network with batch size "
        f"{config.batch_size} on {device}: {failure}",
        num_params=graph.num_params,
        batch_size=config.batch_size,
        device=str(device),
    )


def evaluate(
    graph: Graph,
    weights: Mapping[str, np.ndarray],
    data: Dataset,
    indices: np.ndarray,
    norm: Normalisation,
    *,
    device: str = "cpu",
    batch_size: int = 1024,
) -> tuple[float, np.ndarray]:
    """Accuracy and logits ``(len(indices), K)`` float32 of the model on ``data[indices]``."""
    validate_for(data, graph.input_shape, num_outputs(graph))
    target = resolve_device(device)
    layout = _memory_format(graph, TrainConfig())  # as the trainer validates, float32
    module = _placed(build_module(graph, weights), target, layout).eval()
    x = _normalised(data, indices, norm, target)
    y = torch.from_numpy(np.asarray(data.y[indices])).to(target)
    logits = _predict(module, x, batch_size, nullcontext, layout)
    accuracy = float((logits.argmax(1) == y).float().mean()) if len(y) else float("nan")
    return accuracy, logits.cpu().numpy()


def num_outputs(graph: Graph) -> int:
    """Number of classes a graph predicts (the width of its output layer)."""
    return graph.shape_of(graph.output.name)[0]


# ------------------------------------------------------------------------------------ the loop


def _normalised(
    data: Dataset, indices: np.ndarray, norm: Normalisation, device: torch.device
) -> torch.Tensor:
    # Normalisation is applied to the data once, not inside the module (the ONNX export bakes
    # the same statistics in front of the module instead).
    return torch.from_numpy(norm.apply(data.x[indices])).to(device)  # (n, *input_shape)


@torch.inference_mode()
def _predict(
    module: GraphModule,
    x: torch.Tensor,
    batch_size: int,
    autocast: Callable[[], AbstractContextManager[object]],
    memory_format: torch.memory_format = torch.contiguous_format,
) -> torch.Tensor:
    chunks = []
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].contiguous(memory_format=memory_format)
        with autocast():
            chunks.append(module(xb).float())  # (b, K)
    if not chunks:
        return torch.zeros((0, num_outputs(module.graph)), device=x.device)
    return torch.cat(chunks)  # (n, K)


class _Trainer:
    """One training run; holds the module, the device tensors and the early-stopping state."""

    def __init__(
        self,
        graph: Graph,
        weights: Weights,
        data: Dataset,
        split: Split | _Parts,
        norm: Normalisation,
        config: TrainConfig,
        device: torch.device,
    ) -> None:
        self.config = config
        self.device = device
        self.started = time.perf_counter()
        self.amp_dtype = _amp_dtype(config, device)
        self.memory_format = _memory_format(graph, config)
        self.module = _placed(build_module(graph, weights), device, self.memory_format)
        self.x_train = _normalised(data, split.train, norm, device)  # (n_train, *input_shape)
        self.y_train = torch.from_numpy(np.asarray(data.y[split.train])).to(device)  # (n_train,)
        self.x_val = _normalised(data, split.val, norm, device)  # (n_val, *input_shape)
        self.y_val = torch.from_numpy(np.asarray(data.y[split.val])).to(device)  # (n_val,)
        self.batch_size = min(config.batch_size, len(self.y_train))
        self.steps_per_epoch = _steps_per_epoch(len(self.y_train), self.batch_size)
        self.total_steps = max(1, config.epochs * self.steps_per_epoch)
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        self.optimizer = _make_optimizer(self.module, config, device)
        self.average: _Average | None = None  # made after calibration, in run()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.train_seconds = 0.0
        self.samples = 0

    # ---------------------------------------------------------------- run
    def run(
        self,
        on_epoch: EpochCallback | None,
        should_stop: StopCallback | None,
        *,
        keep_last: bool = False,
    ) -> TrainResult:
        """Train; return the best epoch's weights (``keep_last``: the last epoch's, unselected)."""
        calibrated = self._calibrate()
        if self.config.ema_epochs is not None:
            self.average = _Average(self.module, self.config.ema_epochs * self.steps_per_epoch)
        start_loss, start_accuracy = self._validate()
        best_loss, best_accuracy = start_loss, start_accuracy
        best_epoch = 0
        best_state = None if keep_last else self._snapshot()
        history: list[EpochResult] = []
        stale = 0
        reason = "completed"
        # Patience starts after the warm-up: a child is expected to get worse while its learning
        # rate rises, and those epochs must not use up its chances.
        warm = max(math.ceil(self.config.warmup_epochs), self.config.patience_after)
        for epoch in range(1, self.config.epochs + 1):
            train_loss, interrupted = self._train_epoch(should_stop)
            if interrupted:
                reason = interrupted
                break
            val_loss, val_accuracy = self._validate()
            result = EpochResult(epoch, train_loss, val_loss, val_accuracy, self._elapsed())
            history.append(result)
            logger.debug("epoch %d: %s", epoch, result)
            if keep_last or self._improves(val_loss, val_accuracy, best_loss, best_accuracy):
                best_loss, best_accuracy, best_epoch = val_loss, val_accuracy, epoch
                best_state = None if keep_last else self._snapshot()
                stale = 0
            elif epoch > warm:
                stale += 1
            if on_epoch is not None and on_epoch(result):
                reason = "cancelled"
                break
            if not math.isfinite(train_loss):
                logger.warning("training diverged (train loss %s) at epoch %d", train_loss, epoch)
                reason = "early_stopping"
                break
            if self.config.patience is not None and stale >= self.config.patience:
                reason = "early_stopping"
                break
        if best_state is None and self.average is not None:
            best_state = self._snapshot()
        if best_state is not None:
            self.module.load_state_dict(best_state)
        return TrainResult(
            weights=module_weights(self.module),
            val_accuracy=best_accuracy,
            val_loss=best_loss,
            best_epoch=best_epoch,
            epochs_run=len(history),
            seconds=self._elapsed(),
            samples_per_second=self.samples / self.train_seconds if self.train_seconds else 0.0,
            stopped_reason=reason,
            history=tuple(history),
            device=str(self.device),
            start_val_accuracy=start_accuracy,
            start_val_loss=start_loss,
            calibrated_channels=calibrated,
        )

    def _improves(
        self, loss: float, accuracy: float, best_loss: float, best_accuracy: float
    ) -> bool:
        """Whether an epoch's (loss, accuracy) beats the best so far under ``config.monitor``."""
        lower_loss = loss < best_loss - self.config.min_delta
        if self.config.monitor == "val_loss":
            return lower_loss
        # Accuracies of one split are multiples of 1/n_val: equal means the same count.
        return accuracy > best_accuracy or (accuracy == best_accuracy and lower_loss)

    def _calibrate(self) -> int:
        if self.config.bn_calibration == "none":
            return 0
        generator = torch.Generator().manual_seed(self.config.seed + 1)
        return calibrate_inserted_bn(
            self.module,
            self.x_train,
            mode=self.config.bn_calibration,
            batches=self.config.calibration_batches,
            batch_size=self.batch_size,
            generator=generator,
            memory_format=self.memory_format,
        )

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started

    def _interruption(self, should_stop: StopCallback | None) -> str:
        limit = self.config.max_seconds
        if limit is not None and self._elapsed() >= limit:
            return "time_limit"
        if should_stop is not None and should_stop():
            return "cancelled"
        return ""

    # ---------------------------------------------------------------- one epoch
    def _train_epoch(self, should_stop: StopCallback | None) -> tuple[float, str]:
        """Mean training loss of the epoch, and why it was interrupted ("" if it was not)."""
        self.module.train()
        began = time.perf_counter()
        n = len(self.y_train)
        order = torch.randperm(n, generator=self.generator).to(self.device)  # (n,)
        total = torch.zeros((), device=self.device)
        seen = 0
        interrupted = ""
        for batch in _batches(order, self.batch_size, self.steps_per_epoch):
            interrupted = self._interruption(should_stop)
            if interrupted:
                break
            total += self._train_step(batch) * len(batch)
            seen += len(batch)
        self.train_seconds += time.perf_counter() - began
        self.samples += seen
        return (float(total) / seen if seen else float("nan")), interrupted

    def _train_step(self, batch: torch.Tensor) -> torch.Tensor:
        xb = self.x_train[batch].contiguous(memory_format=self.memory_format)  # (b, *input_shape)
        yb = self.y_train[batch]  # (b,)
        self._set_lr()
        with _autocast(self.device, self.amp_dtype):
            loss = F.cross_entropy(self.module(xb), yb)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.step += 1
        if self.average is not None:
            self.average.update()
        return loss.detach().float()

    def _set_lr(self) -> None:
        base = self.config.learning_rate
        warmup = min(self.warmup_steps, self.total_steps - 1)
        if self.step < warmup:
            lr = base * (self.step + 1) / (warmup + 1)
        elif self.config.schedule == "cosine":
            progress = (self.step - warmup) / (self.total_steps - warmup)
            lr = base * 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            lr = base
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # ---------------------------------------------------------------- validation and state
    def _validate(self) -> tuple[float, float]:
        """Mean validation loss and accuracy of the current weights (eval mode); NaN without
        validation examples."""
        if len(self.y_val) == 0:
            return float("nan"), float("nan")
        module = self._evaluated()
        module.eval()
        logits = _predict(
            module,
            self.x_val,
            self.config.eval_batch_size,
            lambda: _autocast(self.device, self.amp_dtype),
            self.memory_format,
        )  # (n_val, K)
        loss = float(F.cross_entropy(logits, self.y_val))
        accuracy = float((logits.argmax(1) == self.y_val).float().mean())
        return loss, accuracy

    def _evaluated(self) -> GraphModule:
        """The weights an epoch is judged by: the running average when there is one."""
        return self.module if self.average is None else self.average.module

    def _snapshot(self) -> dict[str, torch.Tensor]:
        state = self._evaluated().state_dict()
        return {name: value.detach().clone() for name, value in state.items()}


class _Average:
    """An exponential moving average of a module's weights and BatchNorm statistics.

    After every optimiser step, each floating-point tensor ``a`` of the average moves towards
    the module's ``w``: ``a ← a + (w − a) / horizon`` (decay ``1 − 1/horizon`` per step, so a
    step's weight halves after about ``0.69 · horizon`` steps); integer buffers (BatchNorm's
    batch count) are copied. The average starts at the module's weights when training begins:
    for a child, its inherited weights, so the averaged child moves from its parent's function
    gradually instead of jumping with the first steps at the raised learning rate. Averaging
    BatchNorm's running statistics along with the weights is an approximation (the statistics
    of averaged weights are not the average of the statistics) that is small when the weights
    move little within a horizon, as at the end of a schedule.
    """

    def __init__(self, module: GraphModule, horizon_steps: float) -> None:
        self.module = copy.deepcopy(module)
        self.rate = 1.0 / max(1.0, horizon_steps)
        # state_dict() tensors share storage with the live parameters and buffers.
        pairs = list(
            zip(self.module.state_dict().values(), module.state_dict().values(), strict=True)
        )
        self.averaged = [mine for mine, _ in pairs if mine.is_floating_point()]
        self.followed = [theirs for mine, theirs in pairs if mine.is_floating_point()]
        self.copied = [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average one step towards the module's current weights (after every step:
        one multi-tensor lerp, as the optimiser's own multi-tensor kernels, not one per tensor)."""
        torch._foreach_lerp_(self.averaged, self.followed, self.rate)
        for mine, theirs in self.copied:
            mine.copy_(theirs)


def _placed(module: GraphModule, device: torch.device, layout: torch.memory_format) -> GraphModule:
    """The module on ``device`` with its weights in ``layout``."""
    # torch's type stubs omit Module.to(memory_format=...), which torch has long accepted.
    return module.to(device, memory_format=layout)  # type: ignore[call-overload,no-any-return]


def _memory_format(graph: Graph, config: TrainConfig) -> torch.memory_format:
    image = len(graph.input_shape) == 3
    return torch.channels_last if config.channels_last and image else torch.contiguous_format


def _steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    # A last batch of one example is dropped: BatchNorm cannot normalise a single value.
    return full + (1 if rest >= 2 else 0) if n >= 2 else 1


def _batches(order: torch.Tensor, batch_size: int, steps: int) -> Iterator[torch.Tensor]:
    for step in range(steps):
        yield order[step * batch_size : (step + 1) * batch_size]


def _make_optimizer(
    module: GraphModule, config: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    # Biases and BatchNorm parameters (1-D) are not decayed.
    decayed = [p for p in module.parameters() if p.ndim >= 2]
    plain = [p for p in module.parameters() if p.ndim < 2]
    groups = [
        {"params": decayed, "weight_decay": config.decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    # Multi-tensor kernels: torch picks them by default on CUDA only, yet on the CPU they halve
    # the optimiser step for a network of many small tensors. Fused AdamW is faster still on CUDA.
    if config.optimizer == "adamw":
        if device.type == "cuda":
            return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)
        return torch.optim.AdamW(groups, lr=config.learning_rate, foreach=True)
    return torch.optim.SGD(groups, lr=config.learning_rate, momentum=config.momentum, foreach=True)
