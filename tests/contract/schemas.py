"""The JSON Schemas of the contract (protos/morphnas/v1/*.schema.json), as validators.

``schema_errors`` runs a schema as it is. ``architecture_errors`` gives the same verdict on
architectures about fifty times faster, for checking every architecture a test session makes:
the layer schema dispatches on ``kind`` (``if kind == k then $defs/k``), so a layer whose kind is
known is valid exactly when ``$defs/<kind>`` accepts it, and each distinct layer is checked once
(a search's graphs share most of their layers). test_schema.py checks the two agree.
"""

from __future__ import annotations

import copy
import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

PROTOS = Path(__file__).resolve().parents[2] / "protos" / "morphnas" / "v1"


@cache
def schema(name: str) -> dict[str, Any]:
    """``name``: "architecture" or "operations"."""
    loaded: dict[str, Any] = json.loads((PROTOS / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(loaded)
    return loaded


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


def schema_errors(name: str, document: Any) -> list[str]:
    """Every way ``document`` breaks the schema, as readable lines (empty: valid)."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator(name).iter_errors(document)
    ]


@cache
def _pointer_validator(pointer: str, *, items_free: bool = False) -> Draft202012Validator:
    """A validator of ``#/$defs/...`` (or of the root with layers' items unchecked)."""
    full = copy.deepcopy(schema("architecture"))
    if items_free:
        full["properties"]["layers"]["items"] = True
        return Draft202012Validator(full)
    return Draft202012Validator({"$defs": full["$defs"], "$ref": pointer})


_LAYERS_OK: set[str] = set()
_LOCK = threading.Lock()


def architecture_errors(document: Any) -> list[str]:
    """``schema_errors("architecture", document)``'s verdict (empty or not), fast."""
    errors = [e.message for e in _pointer_validator("#", items_free=True).iter_errors(document)]
    layers = document.get("layers") if isinstance(document, dict) else None
    for index, layer in enumerate(layers if isinstance(layers, list) else []):
        key = json.dumps(layer, sort_keys=True)
        with _LOCK:
            if key in _LAYERS_OK:
                continue
        kind = layer.get("kind") if isinstance(layer, dict) else None
        known = kind in schema("architecture")["$defs"]["layer"]["properties"]["kind"]["enum"]
        pointer = f"#/$defs/{kind}" if known else "#/$defs/layer"
        found = [
            f"layers/{index}: {e.message}" for e in _pointer_validator(pointer).iter_errors(layer)
        ]
        if found:
            errors += found
        else:
            with _LOCK:
                _LAYERS_OK.add(key)
    return errors
