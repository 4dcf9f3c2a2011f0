"""The contract's other promises on the wire: one code per kind of bad id, F32-only weights, the
best trial on Search, health and reflection (v1 beside v1alpha)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from morphnas.client import Client, SearchHandle
from morphnas.core.weights import weights_from_bytes
from morphnas.server.app import RunningServer
from morphnas.server.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME
from morphnas.v1 import morphnas_pb2 as pb
from tests.server.conftest import start_server

BAD = grpc.StatusCode.INVALID_ARGUMENT
MISSING = grpc.StatusCode.NOT_FOUND
MALFORMED = ["", "abc", "0" * 31, "0" * 33, "A" * 32, "g" * 32, "0" * 31 + " ", "ß" * 32]
UNKNOWN = "0123456789abcdef" * 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(f"sqlite:///{tmp_path_factory.mktemp('wire') / 'w.db'}")
    yield running
    running.stop(0)


@pytest.fixture
def client(server: RunningServer) -> Iterator[Client]:
    with Client(server.address, timeout=30) as c:
        yield c


def _code(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


#: Every call that takes an id: (name, how to call it with a given id).
ID_CALLS: list[tuple[str, Callable[[Any, str], Any]]] = [
    ("GetSearch", lambda s, i: s.GetSearch(pb.GetSearchRequest(search_id=i))),
    ("DeleteSearch", lambda s, i: s.DeleteSearch(pb.DeleteSearchRequest(search_id=i))),
    ("SuggestTrials", lambda s, i: s.SuggestTrials(pb.SuggestTrialsRequest(search_id=i, count=1))),
    ("ListTrials", lambda s, i: s.ListTrials(pb.ListTrialsRequest(search_id=i))),
    ("StopSearch", lambda s, i: s.StopSearch(pb.StopSearchRequest(search_id=i))),
    ("GetTrainingRun", lambda s, i: s.GetTrainingRun(pb.GetTrainingRunRequest(search_id=i))),
    ("WatchSearch", lambda s, i: s.WatchSearch(pb.WatchSearchRequest(search_id=i), timeout=10)),
    (
        "StartTraining",
        lambda s, i: s.StartTraining(
            pb.StartTrainingRequest(search_id=i, dataset="digits", trials=1)
        ),
    ),
    ("ExportModel(search)", lambda s, i: s.ExportModel(pb.ExportModelRequest(search_id=i))),
    ("ExportModel(trial)", lambda s, i: s.ExportModel(pb.ExportModelRequest(trial_id=i))),
    ("GetTrial", lambda s, i: s.GetTrial(pb.GetTrialRequest(trial_id=i))),
    ("Heartbeat", lambda s, i: s.Heartbeat(pb.HeartbeatRequest(trial_id=i))),
    (
        "ReportTrial",
        lambda s, i: s.ReportTrial(pb.ReportTrialRequest(trial_id=i, state=pb.COMPLETED, score=1)),
    ),
    (
        "ReportProgress",
        lambda s, i: s.ReportProgress(pb.ReportProgressRequest(trial_id=i, step=0, value=1.0)),
    ),
    ("DownloadWeights", lambda s, i: s.DownloadWeights(pb.DownloadWeightsRequest(trial_id=i))),
    (
        "UploadWeights",
        lambda s, i: s.UploadWeights(iter([pb.UploadWeightsRequest(trial_id=i, data=b"x")])),
    ),
    ("DeleteDataset", lambda s, i: s.DeleteDataset(pb.DeleteDatasetRequest(dataset_id=i))),
]


@pytest.mark.parametrize(("name", "call"), ID_CALLS, ids=[c[0] for c in ID_CALLS])
def test_one_code_per_kind_of_bad_id(client: Client, name: str, call: Callable[..., Any]) -> None:
    stub = client.stub
    stub.search_id = client.create_search(  # type: ignore[attr-defined]
        "ids", input_shape=(8,), num_classes=3, policy="random"
    ).id
    for malformed in MALFORMED:
        assert _code(lambda m=malformed: call(stub, m)) == BAD, (name, malformed)
    assert _code(lambda: call(stub, UNKNOWN)) == MISSING, name


def test_a_dataset_reference_that_names_no_dataset_is_not_found(client: Client) -> None:
    """StartTrainingRequest.dataset is a built-in name or a dataset id, so any other string
    names nothing (it is not a malformed id)."""
    search = client.create_search("ds", input_shape=(8,), num_classes=3, policy="random")
    for ref in ["nope", UNKNOWN, "A" * 32]:
        request = pb.StartTrainingRequest(search_id=search.id, dataset=ref, trials=1)
        assert _code(lambda r=request: client.stub.StartTraining(r)) == MISSING, ref


@pytest.fixture
def search(client: Client) -> SearchHandle:
    return client.create_search("wire", input_shape=(8,), num_classes=3, policy="random")


def _download(client: Client, trial_id: str, kind: int) -> bytes:
    request = pb.DownloadWeightsRequest(trial_id=trial_id, kind=kind)  # type: ignore[arg-type]
    return b"".join(c.data for c in client.stub.DownloadWeights(request, timeout=30))


def test_a_malformed_weights_digest_is_invalid_and_an_unknown_one_a_precondition(
    client: Client, search: SearchHandle
) -> None:
    [trial] = search.suggest(worker_id="w")

    def report(sha: str) -> grpc.StatusCode:
        request = pb.ReportTrialRequest(
            trial_id=trial.id, state=pb.COMPLETED, score=1.0, weights_sha256=sha, worker_id="w"
        )
        return _code(lambda: client.stub.ReportTrial(request))

    assert report("xyz") == BAD and report("A" * 64) == BAD and report("0" * 63) == BAD
    assert report("0" * 64) == grpc.StatusCode.FAILED_PRECONDITION  # never uploaded


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_weights_other_than_float32_are_refused_not_converted(
    client: Client, search: SearchHandle, dtype: type
) -> None:
    from safetensors.numpy import save

    worker = f"w-{np.dtype(dtype).name}"
    [trial] = search.suggest(worker_id=worker)
    initial = weights_from_bytes(_download(client, trial.id, pb.INITIAL))
    blob = save({k: v.astype(dtype) for k, v in initial.items()})
    inline = pb.ReportTrialRequest(
        trial_id=trial.id, state=pb.COMPLETED, score=0.5, weights=blob, worker_id=worker
    )
    try:
        client.stub.ReportTrial(inline)
        raise AssertionError("accepted")
    except grpc.RpcError as err:
        assert err.code() == BAD and "float32" in (err.details() or "")
    upload = iter([pb.UploadWeightsRequest(trial_id=trial.id, total_size=len(blob), data=blob)])
    assert _code(lambda: client.stub.UploadWeights(upload)) == BAD
    # The same weights as F32 are accepted and come back byte for byte.
    f32 = save({k: v.astype(np.float32) for k, v in initial.items()})
    client.stub.ReportTrial(
        pb.ReportTrialRequest(
            trial_id=trial.id, state=pb.COMPLETED, score=0.5, weights=f32, worker_id=worker
        )
    )
    assert _download(client, trial.id, pb.TRAINED) == f32


def test_search_carries_its_best_trial_and_score(client: Client, search: SearchHandle) -> None:
    first = client.stub.GetSearch(pb.GetSearchRequest(search_id=search.id))
    assert first.best_trial_id == "" and not first.HasField("best_score")
    scores = [0.3, 0.9, 0.9, 0.1]
    ids = []
    for i, score in enumerate(scores):
        [trial] = search.suggest(worker_id=f"b{i}")
        ids.append(trial.id)
        trial.report(score=score)
    [failed] = search.suggest(worker_id="f")
    failed.report(state="failed", reason="gave up")
    got = client.stub.GetSearch(pb.GetSearchRequest(search_id=search.id))
    assert got.best_trial_id == ids[1] and got.best_score == 0.9  # the earlier of a tie
    listed = client.stub.ListSearches(pb.ListSearchesRequest(page_size=1000)).searches
    [mine] = [s for s in listed if s.id == search.id]
    assert mine.best_trial_id == ids[1] and mine.best_score == 0.9
    stopped = client.stub.StopSearch(pb.StopSearchRequest(search_id=search.id))
    assert stopped.best_trial_id == ids[1]


def _reflect(channel: grpc.Channel, service: str, request: Any) -> list[Any]:
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    return list(call(iter([request]), timeout=10))


@pytest.mark.parametrize("service", [V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME])
def test_reflection_answers_on_v1_and_v1alpha(server: RunningServer, service: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        [listing] = _reflect(
            channel, service, reflection_pb2.ServerReflectionRequest(list_services="")
        )
        names = {s.name for s in listing.list_services_response.service}
        assert {
            "morphnas.v1.MorphNas",
            "grpc.health.v1.Health",
            V1_SERVICE_NAME,
            V1ALPHA_SERVICE_NAME,
        } <= names
        [found] = _reflect(
            channel,
            service,
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="morphnas.v1.MorphNas"),
        )
        files = found.file_descriptor_response.file_descriptor_proto
        assert files and any(b"morphnas/v1/morphnas.proto" in f for f in files)


def test_health_names_the_service_and_the_server(server: RunningServer) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "morphnas.v1.MorphNas"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_max_trials_is_a_capacity(client: Client) -> None:
    search = client.create_search(
        "cap", input_shape=(8,), num_classes=3, policy="random", max_trials=2
    )
    request = pb.SuggestTrialsRequest(search_id=search.id, count=3, worker_id="a")
    assert len(client.stub.SuggestTrials(request).trials) == 2  # fewer than asked
    more = pb.SuggestTrialsRequest(search_id=search.id, count=1, worker_id="b")
    assert _code(lambda: client.stub.SuggestTrials(more)) == grpc.StatusCode.RESOURCE_EXHAUSTED
