"""Regenerate the conformance vectors in conformance/ (the one command; a test checks that the
committed files are exactly what it writes).

python scripts/gen_conformance.py            # write conformance/forward, morphs, manifest.json
python scripts/gen_conformance.py --check    # exit 1 if the committed files differ

Every input is seeded, weights are written by morphnas's own safetensors writer and the expected
logits come from conformance/reference.py (numpy, float64 inside), so the bytes do not depend on
torch or on the machine. See conformance/README.md for what the files mean.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.reference import forward  # noqa: E402
from morphnas.core.graph import Graph  # noqa: E402
from morphnas.core.morphs import MORPH_KINDS, Morph, neighbourhood, widening_plan  # noqa: E402
from morphnas.core.seeds import seed_graph  # noqa: E402
from morphnas.core.weights import Weights, init_weights, weights_to_bytes  # noqa: E402

OUT = ROOT / "conformance"
FORMAT = "morphnas.conformance/1"
BATCH = 4
#: Small seeds, one per input kind: (input shape, classes, width, depth).
SEEDS: dict[str, tuple[tuple[int, ...], int, int, int]] = {
    "image": ((2, 8, 8), 3, 6, 2),
    "sequence": ((3, 16), 3, 6, 2),
    "vector": ((10,), 3, 8, 2),
}
#: Morph kinds in the order a "morphed" graph receives one of each.
KIND_ORDER = ("deeper", "wider", "add_skip", "concat_skip")


def trained_like(graph: Graph, seed: int) -> Weights:
    """Weights far from any identity: fresh ones plus noise, BN statistics spread out (so no
    morph's zero or identity weights hide a wrong index)."""
    rng = np.random.default_rng(seed)
    weights: Weights = {}
    for name, value in init_weights(graph, seed).items():
        noisy = value + rng.normal(0.0, 0.2, value.shape)
        if name.endswith(".running_var"):
            noisy = rng.uniform(0.5, 2.0, value.shape)
        weights[name] = noisy.astype(np.float32)
    return weights


def pick(graph: Graph, kind: str, rng: np.random.Generator, want: str = "") -> Morph | None:
    """A seeded choice among the legal morphs of one kind; ``want`` narrows it:
    "relu": a deeper that inserts a ReLU; "join": a wider whose change passes an add or concat.
    None when the graph has no such morph."""
    options = [op for op in neighbourhood(graph) if op.kind == kind]
    if want == "relu":
        options = [op for op in options if graph.is_non_negative(op.after)]  # type: ignore[attr-defined]
    elif want == "join":
        options = [
            op
            for op in options
            if any(
                graph.by_name[t].kind in ("add", "concat")
                for t in widening_plan(graph, op.layer, op.add).tensors  # type: ignore[attr-defined]
            )
        ]
    if not options:
        return None
    return options[int(rng.integers(len(options)))]


def morphed(graph: Graph, rng: np.random.Generator) -> Graph:
    """The seed after one morph of every kind (deeper, wider, add_skip, concat_skip)."""
    for kind in KIND_ORDER:
        op = pick(graph, kind, rng)
        assert op is not None, f"a seed has every kind of morph, {kind} included"
        graph = op.apply(graph)
    return graph


def write_weights(path: Path, weights: Weights) -> str:
    path.write_bytes(weights_to_bytes(weights))
    return path.name


def write_json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    return path.name


def generate(out: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "tolerance": {
            "logits": "abs(got - expected) <= 1e-4 * (1 + abs(expected)), float32 arithmetic",
            "morph_architecture": "the child's canonical JSON, character for character",
            "morph_weights": "every child tensor bit for bit (morphs copy values, insert zeros, "
            "ones and float32(1 - 1e-5))",
            "function_preserved": "child logits equal parent logits within 1e-5 * (1 + |parent|)",
        },
        "forward": [],
        "morphs": [],
    }
    for index, (kind, (shape, classes, width, depth)) in enumerate(sorted(SEEDS.items())):
        rng = np.random.default_rng(1000 + index)
        x = rng.normal(size=(BATCH, *shape)).astype(np.float32)
        seed = seed_graph(shape, classes, width=width, depth=depth)
        graphs = {f"seed_{kind}": seed, f"morphed_{kind}": morphed(seed, rng)}
        for offset, (name, graph) in enumerate(graphs.items()):
            case = out / "forward" / name
            case.mkdir(parents=True)
            weights = trained_like(graph, 10 * index + offset)
            logits = forward(json.loads(graph.to_json()), weights, x)
            manifest["forward"].append(
                {
                    "name": name,
                    "input_kind": kind,
                    "architecture": f"forward/{name}/architecture.json",
                    "weights": f"forward/{name}/weights.safetensors",
                    "io": f"forward/{name}/io.safetensors",
                }
            )
            (case / "architecture.json").write_text(graph.to_json() + "\n")
            write_weights(case / "weights.safetensors", weights)
            write_weights(case / "io.safetensors", {"input": x, "logits": logits})
        parent = graphs[f"morphed_{kind}"]
        parent_weights = trained_like(parent, 100 + index)
        parent_logits = forward(json.loads(parent.to_json()), parent_weights, x)
        shared = out / "morphs" / f"parent_{kind}"  # one parent for every morph of this kind
        shared.mkdir(parents=True)
        (shared / "parent.json").write_text(parent.to_json() + "\n")
        write_weights(shared / "parent.safetensors", parent_weights)
        variants = [(k, "") for k in KIND_ORDER] + [("deeper", "relu"), ("wider", "join")]
        for morph_kind, want in variants:
            op = pick(parent, morph_kind, rng, want)
            if op is None:
                continue  # e.g. no widening of this graph passes a join
            child = op.apply(parent)
            child_weights = op.transfer(parent, parent_weights)
            name = f"{kind}_{morph_kind}" + (f"_{want}" if want else "")
            case = out / "morphs" / name
            case.mkdir(parents=True)
            write_json(case / "operations.json", [op.to_dict()])
            (case / "child.json").write_text(child.to_json() + "\n")
            write_weights(case / "child.safetensors", child_weights)
            child_logits = forward(json.loads(child.to_json()), child_weights, x)
            write_weights(
                case / "io.safetensors",
                {"input": x, "parent_logits": parent_logits, "child_logits": child_logits},
            )
            manifest["morphs"].append(
                {
                    "name": name,
                    "input_kind": kind,
                    "op": morph_kind,
                    "parent_architecture": f"morphs/parent_{kind}/parent.json",
                    "parent_weights": f"morphs/parent_{kind}/parent.safetensors",
                    "operations": f"morphs/{name}/operations.json",
                    "child_architecture": f"morphs/{name}/child.json",
                    "child_weights": f"morphs/{name}/child.safetensors",
                    "io": f"morphs/{name}/io.safetensors",
                }
            )
    assert {m["op"] for m in manifest["morphs"]} == set(MORPH_KINDS)
    write_json(out / "manifest.json", manifest)
    return manifest


GENERATED = ("forward", "morphs", "manifest.json")


def _files(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root))
        for name in GENERATED
        for p in ([root / name] if (root / name).is_file() else (root / name).rglob("*"))
        if p.is_file()
    )


def differences(expected: Path, actual: Path) -> list[str]:
    """Files that differ, are missing or are extra in ``actual`` compared with ``expected``."""
    mine, theirs = _files(expected), _files(actual)
    diff = sorted(set(mine) ^ set(theirs))
    diff += [
        f
        for f in sorted(set(mine) & set(theirs))
        if not filecmp.cmp(expected / f, actual / f, shallow=False)
    ]
    return diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            diff = differences(fresh, OUT)
            for name in diff:
                print(f"differs: conformance/{name}")
            return 1 if diff else 0
        import shutil

        for name in GENERATED:
            target = OUT / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            source = fresh / name
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)
    print(f"wrote {len(_files(OUT))} files under {OUT.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
