"""Every limit the proto documents is enforced, with the code the proto's conventions name.

The table below holds one check per (message, field) whose comment in morphnas.proto states a
limit ("at most N", "N to M", ">= N"); a test reads the proto and fails when a documented limit
has no check here (or a check names a limit the proto does not document). Each check sends values
just outside the range (refused) and, where it is cheap, the boundary itself (accepted).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from morphnas.client import Client
from morphnas.core.weights import weights_to_bytes
from morphnas.server.app import RunningServer
from morphnas.v1 import morphnas_pb2 as pb
from tests.server.conftest import start_server

PROTO = Path(__file__).resolve().parents[2] / "protos" / "morphnas" / "v1" / "morphnas.proto"
LIMIT = re.compile(r"\bat most\b|\d[\d,]* to [\d,]+|>= ?\d", re.IGNORECASE)
BAD = grpc.StatusCode.INVALID_ARGUMENT
FULL = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK
MIB = 1024 * 1024
#: Server capacities small enough to test (the defaults are 512 MiB and 2 GiB).
MAX_WEIGHTS = 3 * MIB
MAX_DATASET = 2 * MIB


def field_comments() -> dict[tuple[str, str], str]:
    """(message, field) -> the field's comment: the comment lines right above it and its own."""
    found: dict[tuple[str, str], str] = {}
    message, comments = None, []
    for line in PROTO.read_text().splitlines():
        text = line.strip()
        if match := re.match(r"message (\w+) \{(.*)", text):
            message, comments, text = match.group(1), [], match.group(2).strip()
        if text.startswith("//"):
            comments.append(text)
            continue
        field = re.match(r"(?:optional |repeated )?[\w.]+ (\w+) = \d+;(.*)", text)
        if message and field:
            own = field.group(2).partition("//")[2]
            found[(message, field.group(1))] = " ".join([*comments, own]).strip()
        if text.endswith("}"):
            message = None
        comments = []
    return found


def documented_limits() -> set[tuple[str, str]]:
    """(message, field) of every field whose comment states a limit."""
    return {key for key, comment in field_comments().items() if LIMIT.search(comment)}


def test_every_field_is_documented() -> None:
    comments = field_comments()
    messages = pb.DESCRIPTOR.message_types_by_name.values()
    assert set(comments) == {(m.name, f.name) for m in messages for f in m.fields}  # parsed all
    assert [key for key, comment in comments.items() if not comment.strip("/ ")] == []


@dataclass
class Context:
    client: Client
    search_id: str
    trial_id: str  # ACTIVE, handed to worker "w"
    big_trial_id: str  # ACTIVE, with weights over 1 MiB
    big_weights: bytes
    dataset: bytes  # a valid .npz of 1 to 2 MiB

    def code(self, method: str, request: Any) -> grpc.StatusCode:
        """The status of a unary call (a list of messages: a client stream)."""
        call = getattr(self.client.stub, method)
        try:
            if isinstance(request, list):
                call(iter(request), timeout=60)
            elif method in ("WatchSearch", "DownloadWeights", "ExportModel"):
                list(call(request, timeout=60))
            else:
                call(request, timeout=60)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        return OK


def _create(**fields: Any) -> pb.CreateSearchRequest:
    base: dict[str, Any] = {
        "name": "limits",
        "input_shape": [8],
        "num_classes": 3,
        "policy": pb.POLICY_RANDOM,
    }
    return pb.CreateSearchRequest(**(base | fields))


def _refused(ctx: Context, method: str, code: grpc.StatusCode, *requests: Any) -> None:
    for request in requests:
        assert ctx.code(method, request) == code, (
            method,
            request if not isinstance(request, list) else "stream",
        )


def _accepted(ctx: Context, method: str, *requests: Any) -> None:
    for request in requests:
        assert ctx.code(method, request) == OK, method


def _create_limits(field: str, bad: list[Any], good: list[Any]) -> Callable[[Context], None]:
    def check(ctx: Context) -> None:
        _refused(ctx, "CreateSearch", BAD, *[_create(**{field: v}) for v in bad])
        _accepted(ctx, "CreateSearch", *[_create(**{field: v}) for v in good])

    return check


def _report(ctx: Context, **fields: Any) -> pb.ReportTrialRequest:
    return pb.ReportTrialRequest(trial_id=ctx.trial_id, state=pb.FAILED, **fields)


def _upload(trial_id: str, total_size: int, *chunks: bytes) -> list[pb.UploadWeightsRequest]:
    first = pb.UploadWeightsRequest(
        trial_id=trial_id, total_size=total_size, data=chunks[0] if chunks else b""
    )
    return [first, *(pb.UploadWeightsRequest(data=c) for c in chunks[1:])]


def _dataset(name: str, total_size: int, *chunks: bytes) -> list[pb.UploadDatasetRequest]:
    first = pb.UploadDatasetRequest(
        name=name, total_size=total_size, data=chunks[0] if chunks else b""
    )
    return [first, *(pb.UploadDatasetRequest(data=c) for c in chunks[1:])]


def _chunks(blob: bytes, size: int) -> list[bytes]:
    return [blob[i : i + size] for i in range(0, len(blob), size)]


CHECKS: dict[tuple[str, str], Callable[[Context], None]] = {
    ("CreateSearchRequest", "name"): lambda ctx: (
        _refused(ctx, "CreateSearch", BAD, _create(name=""), _create(name="n" * 201)),
        _accepted(ctx, "CreateSearch", _create(name="n" * 200)),
    ),
    ("CreateSearchRequest", "input_shape"): _create_limits(
        "input_shape", [[], [1, 2, 3, 4], [0, 8], [8, -1], [1, 4001, 4000]], [[1, 2, 2], [3, 5]]
    ),
    ("CreateSearchRequest", "num_classes"): _create_limits("num_classes", [0, 1, 100_001], [2]),
    ("CreateSearchRequest", "seed"): _create_limits("seed", [-1, -(2**63)], [0, 2**63 - 1]),
    ("CreateSearchRequest", "beta"): _create_limits("beta", [-0.01, float("nan")], [0.0]),
    ("CreateSearchRequest", "seed_width"): _create_limits("seed_width", [0, 4097], [1]),
    ("CreateSearchRequest", "seed_depth"): _create_limits("seed_depth", [0, 21], [1, 20]),
    # 20,000,000: the server's ceiling by default (above it: RESOURCE_EXHAUSTED, tested in
    # tests/reliability/hostile/test_bombs.py).
    ("CreateSearchRequest", "max_params"): _create_limits("max_params", [0, -5, 10], [20_000_000]),
    ("CreateSearchRequest", "max_memory_bytes"): _create_limits("max_memory_bytes", [0], [1]),
    ("CreateSearchRequest", "batch_size"): _create_limits("batch_size", [0], [1]),
    ("CreateSearchRequest", "lease_seconds"): _create_limits(
        "lease_seconds", [0.5, 604_801.0], [1.0, 604_800.0]
    ),
    ("CreateSearchRequest", "max_trials"): _create_limits(
        "max_trials", [0, 1_000_001], [1, 1_000_000]
    ),
    ("ListSearchesRequest", "page_size"): lambda ctx: (
        _refused(
            ctx,
            "ListSearches",
            BAD,
            pb.ListSearchesRequest(page_size=-1),
            pb.ListSearchesRequest(page_size=1001),
        ),
        _accepted(
            ctx,
            "ListSearches",
            pb.ListSearchesRequest(page_size=1000),
            pb.ListSearchesRequest(page_size=0),
        ),
    ),
    ("ListSearchesRequest", "page_token"): lambda ctx: _refused(
        ctx,
        "ListSearches",
        BAD,
        *[pb.ListSearchesRequest(page_token=t) for t in ("A" * 201, "WzFlNDAwXQ", "x")],
    ),
    ("ListTrialsRequest", "page_token"): lambda ctx: _refused(
        ctx,
        "ListTrials",
        BAD,
        *[
            pb.ListTrialsRequest(search_id=ctx.search_id, page_token=t)
            for t in ("A" * 201, "WzFlNDAwXQ", "Wy0xXQ")  # [1e400], [-1]
        ],
    ),
    ("SuggestTrialsRequest", "count"): lambda ctx: (
        _refused(
            ctx,
            "SuggestTrials",
            BAD,
            *[pb.SuggestTrialsRequest(search_id=ctx.search_id, count=n) for n in (-1, 0, 65)],
        ),
        _accepted(
            ctx,
            "SuggestTrials",
            pb.SuggestTrialsRequest(search_id=ctx.search_id, count=64, worker_id="many"),
        ),
    ),
    ("SuggestTrialsRequest", "worker_id"): lambda ctx: (
        _refused(
            ctx,
            "SuggestTrials",
            BAD,
            pb.SuggestTrialsRequest(search_id=ctx.search_id, count=1, worker_id="w" * 201),
        ),
        _accepted(
            ctx,
            "SuggestTrials",
            pb.SuggestTrialsRequest(search_id=ctx.search_id, count=1, worker_id="w" * 200),
        ),
    ),
    ("ReportTrialRequest", "reason"): lambda ctx: _refused(
        ctx, "ReportTrial", BAD, _report(ctx, reason="r" * 10_001, worker_id="w")
    ),
    ("ReportTrialRequest", "worker_id"): lambda ctx: _refused(
        ctx, "ReportTrial", BAD, _report(ctx, reason="x", worker_id="w" * 201)
    ),
    ("ReportProgressRequest", "step"): lambda ctx: (
        _refused(
            ctx,
            "ReportProgress",
            BAD,
            pb.ReportProgressRequest(trial_id=ctx.trial_id, step=-1, value=1.0),
        ),
        _accepted(
            ctx,
            "ReportProgress",
            pb.ReportProgressRequest(trial_id=ctx.trial_id, step=0, value=1.0),
        ),
    ),
    ("ReportProgressRequest", "name"): lambda ctx: (
        _refused(
            ctx,
            "ReportProgress",
            BAD,
            pb.ReportProgressRequest(trial_id=ctx.trial_id, step=1, value=1.0, name="n" * 101),
        ),
        _accepted(
            ctx,
            "ReportProgress",
            pb.ReportProgressRequest(trial_id=ctx.trial_id, step=1, value=1.0, name="n" * 100),
        ),
    ),
    ("ListTrialsRequest", "page_size"): lambda ctx: (
        _refused(
            ctx,
            "ListTrials",
            BAD,
            *[
                pb.ListTrialsRequest(search_id=ctx.search_id, page_size=n)
                for n in (-1, 1001, 10**6)
            ],
        ),
        _accepted(ctx, "ListTrials", pb.ListTrialsRequest(search_id=ctx.search_id, page_size=1000)),
    ),
    ("UploadWeightsRequest", "total_size"): lambda ctx: (
        _refused(ctx, "UploadWeights", BAD, _upload(ctx.big_trial_id, -1, ctx.big_weights[:10])),
        _refused(
            ctx,
            "UploadWeights",
            FULL,
            _upload(ctx.big_trial_id, MAX_WEIGHTS + 1, ctx.big_weights[:10]),
        ),
        # unannounced, but more than the limit arrives
        _refused(ctx, "UploadWeights", FULL, _upload(ctx.big_trial_id, 0, *[b"\0" * MIB] * 4)),
    ),
    ("UploadWeightsRequest", "data"): lambda ctx: (
        # valid weights: only the messages are too large
        _refused(
            ctx,
            "UploadWeights",
            BAD,
            _upload(ctx.big_trial_id, 0, *_chunks(ctx.big_weights, MIB + 1)),
        ),
        _refused(
            ctx,
            "UploadWeights",
            BAD,
            _upload(ctx.big_trial_id, 0, ctx.big_weights[:10], ctx.big_weights[10:]),
        ),
        _accepted(
            ctx,
            "UploadWeights",
            _upload(ctx.big_trial_id, len(ctx.big_weights), *_chunks(ctx.big_weights, MIB)),
        ),
    ),
    ("StartTrainingRequest", "trials"): lambda ctx: _refused(
        ctx,
        "StartTraining",
        BAD,
        *[
            pb.StartTrainingRequest(search_id=ctx.search_id, dataset="digits", trials=n)
            for n in (0, 10_001)
        ],
    ),
    ("StartTrainingRequest", "budget_seconds"): lambda ctx: _refused(
        ctx,
        "StartTraining",
        BAD,
        *[
            pb.StartTrainingRequest(
                search_id=ctx.search_id, dataset="digits", trials=1, budget_seconds=b
            )
            for b in (-1.0, 30 * 86_400 + 1.0, float("nan"))
        ],
    ),
    ("UploadDatasetRequest", "name"): lambda ctx: (
        _refused(
            ctx,
            "UploadDataset",
            BAD,
            *[_dataset(n, 0, *_chunks(ctx.dataset, MIB)) for n in ("", "n" * 201)],
        ),
        _accepted(ctx, "UploadDataset", _dataset("n" * 200, 0, *_chunks(ctx.dataset, MIB))),
    ),
    ("UploadDatasetRequest", "total_size"): lambda ctx: (
        _refused(ctx, "UploadDataset", BAD, _dataset("d", -1, b"x")),
        _refused(ctx, "UploadDataset", FULL, _dataset("d", MAX_DATASET + 1, b"x")),
        _refused(ctx, "UploadDataset", FULL, _dataset("d", 0, *[b"\0" * MIB] * 3)),
    ),
    ("UploadDatasetRequest", "data"): lambda ctx: (
        # a valid .npz: only the messages are too large
        _refused(ctx, "UploadDataset", BAD, _dataset("d", 0, *_chunks(ctx.dataset, MIB + 1))),
        _accepted(
            ctx, "UploadDataset", _dataset("d", len(ctx.dataset), *_chunks(ctx.dataset, MIB))
        ),
    ),
}


def test_every_documented_limit_has_a_check() -> None:
    assert documented_limits() == set(CHECKS)


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    url = f"sqlite:///{tmp_path_factory.mktemp('limits') / 'l.db'}"
    server: RunningServer = start_server(
        url, max_weights_bytes=MAX_WEIGHTS, max_dataset_bytes=MAX_DATASET
    )
    with Client(server.address, timeout=60) as client:
        search = client.create_search("limits", input_shape=(8,), num_classes=3, policy="random")
        [trial] = search.suggest(worker_id="w")
        # A vector seed of width 400 has about 1.3 MB of weights: an upload of several chunks.
        big = client.create_search(
            "big", input_shape=(8,), num_classes=3, policy="random", seed_width=400, seed_depth=3
        )
        [big_trial] = big.suggest(worker_id="w")
        weights = weights_to_bytes(
            {k: np.asarray(v) for k, v in big_trial.initial_weights().items()}
        )
        assert MIB < len(weights) < MAX_WEIGHTS
        buffer = io.BytesIO()
        rng = np.random.default_rng(0)
        np.savez(buffer, x=rng.normal(size=(40_000, 8)).astype(np.float32), y=np.arange(40_000) % 3)
        dataset = buffer.getvalue()
        assert MIB < len(dataset) < MAX_DATASET
        yield Context(client, search.id, trial.id, big_trial.id, weights, dataset)
    server.stop(0)


@pytest.mark.parametrize("limit", sorted(CHECKS), ids=lambda k: f"{k[0]}.{k[1]}")
def test_the_limit_is_enforced(context: Context, limit: tuple[str, str]) -> None:
    CHECKS[limit](context)
