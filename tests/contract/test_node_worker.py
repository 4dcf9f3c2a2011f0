"""The Node.js example worker (examples/node/) against a real ``morphnas serve``.

It uses only protos/ and the documented formats: it parses and writes safetensors in JavaScript,
uploads in chunks and inline, and checks its own round trips. This test then checks the same from
Python: every trained file the worker uploaded comes back byte for byte, and every child of its
trials starts from those uploaded weights carried through its morphs.

Needs node and npm (``npm ci`` installs the pinned packages of package-lock.json); .ci/run has both.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from morphnas.client import Client
from morphnas.core.graph import Graph
from morphnas.core.morphs import apply_path, morph_from_dict
from morphnas.core.weights import weights_from_bytes, weights_to_bytes
from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.harness import ServerProcess

NODE_DIR = Path(__file__).resolve().parents[2] / "examples" / "node"
CYCLES = 12

pytestmark = pytest.mark.slow


def _npm_ci() -> None:
    npm = shutil.which("npm")
    assert npm is not None and shutil.which("node") is not None, "node and npm must be installed"
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _download(stub: Any, trial_id: str, kind: int) -> bytes:
    request = pb.DownloadWeightsRequest(trial_id=trial_id, kind=kind)  # type: ignore[arg-type]
    return b"".join(chunk.data for chunk in stub.DownloadWeights(request, timeout=30))


def test_the_node_worker_runs_ask_tell_cycles(tmp_path: Path) -> None:
    _npm_ci()
    server = ServerProcess(f"sqlite:///{tmp_path / 'node.db'}").start()
    try:
        with Client(server.address, timeout=30) as client:
            search = client.create_search(
                "node", input_shape=(2, 8, 8), num_classes=3, policy="random", seed_width=4
            )
            out = tmp_path / "report.json"
            run = subprocess.run(
                ["node", "worker.js", "--server", server.address, "--search", search.id,
                 "--cycles", str(CYCLES), "--worker-id", "node-1", "--out", str(out)],
                cwd=NODE_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )  # fmt: skip
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            report = json.loads(out.read_text())
            cycles = report["cycles"]
            assert len(cycles) == CYCLES and report["listed"] == CYCLES
            assert {c["upload"] for c in cycles} == {"chunks", "inline"}
            stub = client.stub
            trained = {}
            for cycle in cycles:
                blob = _download(stub, cycle["trial_id"], pb.TRAINED)
                assert hashlib.sha256(blob).hexdigest() == cycle["trained_sha256"]
                trained[cycle["trial_id"]] = blob
            children = [c for c in cycles if c["parent_id"]]
            assert len(children) >= CYCLES - 1  # every trial after the seed has a parent
            for child in children:
                # The parent reported the worker's weights, so the child starts from them.
                assert child["parent_id"] in trained
                parent = stub.GetTrial(pb.GetTrialRequest(trial_id=child["parent_id"]))
                graph, weights = apply_path(
                    Graph.from_json(parent.architecture_json),
                    [morph_from_dict(op) for op in child["operations"]],
                    weights_from_bytes(trained[child["parent_id"]]),
                )
                mine = stub.GetTrial(pb.GetTrialRequest(trial_id=child["trial_id"]))
                assert graph.to_json() == mine.architecture_json
                assert weights is not None
                initial = _download(stub, child["trial_id"], pb.INITIAL)
                assert weights_to_bytes(weights) == initial
                assert hashlib.sha256(initial).hexdigest() == child["initial_sha256"]
            best = max(cycles, key=lambda c: (c["score"], -c["number"]))
            assert report["best_trial_id"] == best["trial_id"]
            assert report["best_score"] == pytest.approx(best["score"])
    finally:
        assert server.stop() == 0
