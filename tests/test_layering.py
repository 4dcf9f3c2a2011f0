"""Imports flow inward (STYLE.md): a change that breaks the house plan fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "morphnas"

#: folder -> morphnas subpackages it must never import (module-level or inside functions).
FORBIDDEN = {
    "core": {"search", "nn", "storage", "server", "client", "cli", "runner"},
    "search": {"nn", "storage", "server", "client"},
    "nn": {"search", "storage", "server", "client"},
    "storage": {"search", "nn", "server", "client"},
    "client": {"server", "storage", "search", "nn"},
    # the dashboard reads through the Repository's or the SDK's read methods; the optimiser and
    # torch are none of its business (the ONNX download goes through the export use case)
    "dashboard": {"search", "nn"},
    # Adapters for other tools (Ray Tune) talk to a server through the SDK, like any user.
    "integrations": {"server", "storage", "search", "nn", "cli", "runner"},
}
#: third-party packages a folder must not import.
FORBIDDEN_LIBRARIES = {
    "core": {"grpc", "sqlalchemy", "torch"},
    "search": {"grpc", "sqlalchemy", "torch"},
    "storage": {"grpc", "torch"},
    "client": {"sqlalchemy", "torch"},
    "dashboard": {"sqlalchemy", "torch"},
    "integrations": {"sqlalchemy", "torch"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_flow_inward(folder: str) -> None:
    offences = []
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "morphnas" and len(parts) > 1 and parts[1] in FORBIDDEN[folder]:
                offences.append(f"{path.relative_to(PACKAGE)} imports {name}")
            if parts[0] in FORBIDDEN_LIBRARIES.get(folder, set()):
                offences.append(f"{path.relative_to(PACKAGE)} imports {name}")
    # The one sanctioned exception: TrialHandle.build_model compiles the graph with morphnas.nn,
    # imported lazily so the client installs and imports without torch.
    offences = [o for o in offences if o != "client/client.py imports morphnas.nn.module"]
    assert not offences, offences
