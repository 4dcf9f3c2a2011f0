"""Seed architectures: where every search starts.

* images ``(C, H, W)`` and sequences ``(C, L)``: ``depth`` blocks of
  [Conv k(width) → BN → ReLU], a max-pool 2 after every second block (while the map is at
  least 4 wide), then GlobalAvgPool → Dropout(0.25) → Dense(classes).
* vectors ``(D,)``: ``depth`` × [Dense(width) → Dropout(0.25) → ReLU] → Dense(classes) (the
  Auto-Keras MLP).

Why this CNN and not Auto-Keras' ([ReLU →] BN → Conv → MaxPool per block, three blocks, a
Dense(width) → ReLU hidden head): measured one factor at a time with ``bench/seed_strength.py``
on MNIST-1D (8 epochs, the search's trial length, seeds 0-1, one torch thread), the Auto-Keras
seed reached 96.3 % validation / 94.4 % test in 3 CPU-s, and a conventional CNN as
``bench/peers.py``'s Optuna samples it (4 post-activation blocks, pools after blocks 2 and 4,
linear head) 98.5 % / 98.1 % in 6 CPU-s, trained by the same trainer: the trainer was not the
cause. What mattered was the depth at full resolution: with the pools after every block, the
third and fourth convolution see a map of 10 and 5 positions; one block less cost 0.8 points of
validation and 1.5 of test; pre-activation order, the hidden head, width 64 against 70 or a
learning rate of 3e-3 against 6e-3 each moved the result by at most 0.3 points. Morphs only
add layers and units, so the seed must start with enough depth at full resolution for the
search to refine rather than to repair.

The first convolution sees the normalised input directly (no ReLU before it: on MNIST-1D a ReLU
on the input cost 40 points of test accuracy, and no morph can take a layer out).
"""

from __future__ import annotations

from morphnas.core.graph import INPUT, Graph, build_graph
from morphnas.core.layers import Layer, Shape

DEFAULT_WIDTH = 64
DEFAULT_DEPTH = 4
#: A max-pool 2 follows every ``POOL_EVERY``-th block while the map is at least
#: ``MIN_POOLED_MAP`` wide (so that a pooled map keeps at least 2 positions).
POOL_EVERY = 2
MIN_POOLED_MAP = 4


def seed_graph(
    input_shape: Shape,
    num_classes: int,
    width: int = DEFAULT_WIDTH,
    depth: int = DEFAULT_DEPTH,
    kernel: int = 3,
    dropout: float = 0.25,
) -> Graph:
    """The seed for an input shape: a CNN for images and sequences, an MLP for vectors."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    if width < 1 or depth < 1:
        raise ValueError(f"width and depth must be positive, got {width}, {depth}")
    if len(input_shape) == 1:
        return mlp_seed(input_shape, num_classes, width, depth, dropout)
    return cnn_seed(input_shape, num_classes, width, depth, kernel, dropout)


def cnn_seed(
    input_shape: Shape,
    num_classes: int,
    width: int = DEFAULT_WIDTH,
    depth: int = DEFAULT_DEPTH,
    kernel: int = 3,
    dropout: float = 0.25,
) -> Graph:
    """Post-activation CNN (2-D for images, 1-D for sequences); see the module docstring."""
    layers: list[Layer] = []
    previous = INPUT
    spatial = list(input_shape[1:])

    def add(kind: str, **attrs: int | float) -> None:
        nonlocal previous
        name = f"{kind}{len(layers)}"
        layers.append(Layer(name=name, kind=kind, inputs=(previous,), **attrs))  # type: ignore[arg-type]
        previous = name

    for block in range(1, depth + 1):
        add("conv", units=width, kernel=kernel, stride=1)
        add("bn")
        add("relu")
        if block % POOL_EVERY == 0 and min(spatial) >= MIN_POOLED_MAP:
            add("maxpool", kernel=2, stride=2)
            spatial = [n // 2 for n in spatial]
    add("gap")
    add("dropout", rate=dropout)
    add("dense", units=num_classes)
    return build_graph(input_shape, layers)


def mlp_seed(
    input_shape: Shape,
    num_classes: int,
    width: int = DEFAULT_WIDTH,
    depth: int = DEFAULT_DEPTH,
    dropout: float = 0.25,
) -> Graph:
    """Multi-layer perceptron for vector inputs."""
    layers: list[Layer] = []
    previous = INPUT
    for _ in range(depth):
        for kind, attrs in (
            ("dense", {"units": width}),
            ("dropout", {"rate": dropout}),
            ("relu", {}),
        ):
            name = f"{kind}{len(layers)}"
            layers.append(Layer(name=name, kind=kind, inputs=(previous,), **attrs))  # type: ignore[arg-type]
            previous = name
    layers.append(
        Layer(name=f"dense{len(layers)}", kind="dense", inputs=(previous,), units=num_classes)
    )
    return build_graph(input_shape, layers)
