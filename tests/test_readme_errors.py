"""The README errors a new user hit: every Python snippet defines what it uses, the Quick start
starts one server, the tables keep their columns; setup.sh says what it is doing."""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _undefined_names(code: str) -> set[str]:
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.alias):
            defined.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


def test_every_python_snippet_defines_what_it_uses() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 3
    for block in blocks:
        assert _undefined_names(block) == set(), block


def test_the_quick_start_starts_one_server() -> None:
    [quick] = re.findall(r"## Quick start\n\n```bash\n(.*?)```", README, flags=re.S)
    assert quick.count("morphnas serve") == 1


def test_table_rows_keep_their_columns() -> None:
    for table in re.findall(r"((?:^\|.*\n)+)", README, flags=re.M):
        rows = table.splitlines()
        columns = [len(re.findall(r"(?<!\\)\|", row)) for row in rows]
        assert len(set(columns)) == 1, rows


def test_setup_says_what_it_is_doing() -> None:
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'step "installing morphnas' in script and "PyTorch" in script
    installs = [line for line in script.splitlines() if "pip install" in line and "torch" in line]
    assert installs and all(" -q " not in line for line in installs)
