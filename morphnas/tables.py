"""Plain-text tables and one-line morph descriptions for the command line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (floats with 4 decimals, None as '-')."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plural(count: int, noun: str) -> str:
    """``1 trial``, ``3 trials``, ``10 classes``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith("s") else f"{count} {noun}s"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def describe_morph(op: Mapping[str, Any]) -> str:
    """A morph's JSON form as a short phrase, e.g. ``wider(conv1+32)``."""
    kind = op.get("op", "?")
    if kind == "wider":
        return f"wider({op['layer']}+{op['add']})"
    if kind == "deeper":
        return f"deeper(after {op['after']}, k={op['kernel']})"
    if kind in ("add_skip", "concat_skip"):
        return f"{kind}({op['start']}->{op['end']})"
    return str(kind)


def describe_path(operations: Sequence[Mapping[str, Any]]) -> str:
    """The morphs that made a trial, or 'seed' for none."""
    return ", ".join(describe_morph(op) for op in operations) or "seed"
