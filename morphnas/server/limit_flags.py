"""``morphnas serve`` flags of the resource ceilings (docs/operations.md, "Resource ceilings").

Each flag sets one field of :class:`~morphnas.server.service.ServiceLimits` (or of its nested
safetensors / npz limits) or of :class:`~morphnas.server.streams.StreamLimits`; a flag left out
keeps the dataclass's default, so the defaults live in one place (the help texts quote them and
a test holds them equal). Nothing heavy is imported until the options are built.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import Any

from morphnas.options import UsageError

MIB = 1024**2


@dataclass(frozen=True)
class Flag:
    """One ceiling flag: where its value goes, its unit (bytes per unit) and its default."""

    flag: str
    target: str  # "limits.<field>", "limits.safetensors.<field>", "limits.npz.<field>", "streams.<field>"
    unit: int | float
    default: int | float  # in the flag's unit, as the help text shows it
    help: str
    kind: type = int


FLAGS = (
    Flag("--max-params", "limits.max_params", 1, 20_000_000, "largest max_params a search may ask"),
    Flag(
        "--max-model-memory-mb",
        "limits.max_model_memory_bytes",
        MIB,
        8192,
        "largest max_memory_bytes (training-step estimate) a search may ask, MiB",
    ),
    Flag(
        "--max-input-values",
        "limits.max_input_values",
        1,
        1024**2,
        "largest input a search may declare (product of input_shape)",
    ),
    Flag("--max-weights-mb", "limits.max_weights_bytes", MIB, 512, "largest weights file, MiB"),
    Flag("--max-dataset-mb", "limits.max_dataset_bytes", MIB, 512, "largest dataset upload, MiB"),
    Flag(
        "--max-upload-mb-in-flight",
        "limits.max_upload_bytes_in_flight",
        MIB,
        512,
        "upload bytes held by all upload streams together, MiB",
    ),
    Flag(
        "--max-safetensors-header-kb",
        "limits.safetensors.max_header_bytes",
        1024,
        2048,
        "largest safetensors header, KiB (checked before parsing)",
    ),
    Flag(
        "--max-safetensors-tensors",
        "limits.safetensors.max_tensors",
        1,
        10_000,
        "most tensors in a safetensors file (checked before parsing)",
    ),
    Flag(
        "--max-dataset-inflated-mb",
        "limits.npz.max_inflated_bytes",
        MIB,
        2048,
        "largest inflated .npz dataset, MiB (checked while inflating)",
    ),
    Flag(
        "--max-inflate-ratio",
        "limits.npz.max_ratio",
        1.0,
        100.0,
        "largest inflated/compressed ratio of an .npz member past 16 MiB",
        float,
    ),
    Flag("--max-upload-streams", "streams.max_uploads", 1, 8, "upload streams served at once"),
    Flag(
        "--max-download-streams",
        "streams.max_downloads",
        1,
        8,
        "download/export streams served at once",
    ),
    Flag(
        "--stream-idle-seconds",
        "streams.idle_seconds",
        1.0,
        30.0,
        "cancel an upload/download that moves nothing for this long",
        float,
    ),
)


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("resource ceilings (clients cannot raise them)")
    for flag in FLAGS:
        group.add_argument(
            flag.flag, type=flag.kind, default=None, help=f"{flag.help} (default {flag.default:,})"
        )


def limit_options(args: argparse.Namespace, max_searches: int) -> dict[str, Any]:
    """``limits`` and ``streams`` of :class:`~morphnas.server.app.ServerOptions` from the flags."""
    from morphnas.server.service import ServiceLimits
    from morphnas.server.streams import StreamLimits

    options: dict[str, Any] = {
        "limits": ServiceLimits(max_searches=max_searches),
        "streams": StreamLimits(),
    }
    for flag in FLAGS:
        value = getattr(args, flag.flag.lstrip("-").replace("-", "_"))
        if value is None:
            continue
        if not value > 0:
            raise UsageError(f"{flag.flag} {value}: give a positive number")
        scaled = value * flag.unit if flag.kind is float else int(value * flag.unit)
        options = _set(options, flag.target.split("."), scaled)
    return options


def _set(root: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """``root`` with the (frozen dataclass) field at ``path`` replaced."""
    head, *rest = path
    updated = dict(root)
    updated[head] = _replace_in(root[head], rest, value)
    return updated


def _replace_in(obj: Any, path: list[str], value: Any) -> Any:
    head, *rest = path
    if not rest:
        return replace(obj, **{head: value})
    return replace(obj, **{head: _replace_in(getattr(obj, head), rest, value)})
