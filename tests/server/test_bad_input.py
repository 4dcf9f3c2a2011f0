"""Bad input gets the right status code and a message saying what to fix; the server keeps serving."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from morphnas.client import Client, SearchHandle, TrialHandle
from morphnas.core.weights import weights_to_bytes
from morphnas.v1 import morphnas_pb2 as pb

BAD = grpc.StatusCode.INVALID_ARGUMENT


def _code(client: Client, method: str, request: object) -> tuple[grpc.StatusCode, str]:
    try:
        getattr(client.stub, method)(request, timeout=30)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


@pytest.fixture
def search(client: Client) -> SearchHandle:
    return client.create_search(name="s", input_shape=(8,), num_classes=3, policy="random")


@pytest.fixture
def trial(search: SearchHandle) -> TrialHandle:
    return search.suggest(worker_id="w")[0]


@pytest.mark.parametrize(
    ("request_", "code", "words"),
    [
        (pb.CreateSearchRequest(name="x", input_shape=[], num_classes=3), BAD, "input_shape"),
        (
            pb.CreateSearchRequest(name="x", input_shape=[1, 2, 3, 4], num_classes=3),
            BAD,
            "input_shape",
        ),
        (pb.CreateSearchRequest(name="x", input_shape=[0, 8], num_classes=3), BAD, "input_shape"),
        (pb.CreateSearchRequest(name="x", input_shape=[8], num_classes=1), BAD, "num_classes"),
        (pb.CreateSearchRequest(name="x", input_shape=[8], num_classes=10**7), BAD, "num_classes"),
        (pb.CreateSearchRequest(name="", input_shape=[8], num_classes=3), BAD, "name"),
        (pb.CreateSearchRequest(name="x", input_shape=[8], num_classes=3, policy=9), BAD, "policy"),
        (
            pb.CreateSearchRequest(name="x", input_shape=[8], num_classes=3, beta=float("nan")),
            BAD,
            "beta",
        ),
        (
            pb.CreateSearchRequest(name="x", input_shape=[3, 32, 32], num_classes=3, max_params=10),
            BAD,
            "max_params",
        ),
        (pb.GetSearchRequest(search_id="0" * 32), grpc.StatusCode.NOT_FOUND, "search"),
        (pb.GetSearchRequest(search_id=""), BAD, "search_id"),
        (pb.GetTrialRequest(trial_id="f" * 32), grpc.StatusCode.NOT_FOUND, "trial"),
        (pb.DeleteSearchRequest(search_id="0" * 32), grpc.StatusCode.NOT_FOUND, "search"),
        (pb.ListSearchesRequest(page_size=-1), BAD, "page_size"),
    ],
)
def test_bad_requests(client: Client, request_: object, code: grpc.StatusCode, words: str) -> None:
    method = type(request_).__name__.removesuffix("Request")
    got, details = _code(client, method, request_)
    assert got == code, details
    assert words in details
    assert client.list_searches() == []  # still serving, and nothing was created


@pytest.mark.parametrize("count", [0, -1, 65, 10**6])
def test_bad_counts(client: Client, search: SearchHandle, count: int) -> None:
    code, details = _code(
        client, "SuggestTrials", pb.SuggestTrialsRequest(search_id=search.id, count=count)
    )
    assert code == BAD and "count" in details


@pytest.mark.parametrize("score", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_scores(client: Client, trial: TrialHandle, score: float) -> None:
    code, details = _code(
        client,
        "ReportTrial",
        pb.ReportTrialRequest(trial_id=trial.id, state=pb.COMPLETED, score=score),
    )
    assert code == BAD and "finite" in details
    assert trial.refresh().state == "ACTIVE"


def test_completed_without_score(client: Client, trial: TrialHandle) -> None:
    code, details = _code(
        client, "ReportTrial", pb.ReportTrialRequest(trial_id=trial.id, state=pb.COMPLETED)
    )
    assert code == BAD and "score" in details


def test_unknown_state(client: Client, trial: TrialHandle) -> None:
    code, _ = _code(
        client, "ReportTrial", pb.ReportTrialRequest(trial_id=trial.id, state=pb.ACTIVE, score=1)
    )
    assert code == BAD


def _report_weights(client: Client, trial: TrialHandle, blob: bytes) -> tuple[grpc.StatusCode, str]:
    request = pb.ReportTrialRequest(trial_id=trial.id, state=pb.COMPLETED, score=0.5, weights=blob)
    return _code(client, "ReportTrial", request)


def test_malformed_weights(client: Client, trial: TrialHandle) -> None:
    code, details = _report_weights(
        client, trial, b"\x80\x04\x95 this is a pickle, not safetensors"
    )
    assert code == BAD and "safetensors" in details
    assert trial.refresh().state == "ACTIVE"


def test_wrong_tensor_names(client: Client, trial: TrialHandle) -> None:
    weights = trial.initial_weights()
    weights["mystery.weight"] = weights.pop(next(iter(weights)))
    code, details = _report_weights(client, trial, weights_to_bytes(weights))
    assert code == BAD and "missing" in details and "mystery.weight" in details


def test_wrong_tensor_shapes(client: Client, trial: TrialHandle) -> None:
    weights = trial.initial_weights()
    name = next(k for k in weights if k.endswith(".weight"))
    weights[name] = np.zeros((1, 1), np.float32)
    code, details = _report_weights(client, trial, weights_to_bytes(weights))
    assert code == BAD and name in details and "shape" in details


def test_non_finite_weights(client: Client, trial: TrialHandle) -> None:
    weights = trial.initial_weights()
    name = next(iter(weights))
    weights[name] = np.full_like(weights[name], np.nan)
    code, details = _report_weights(client, trial, weights_to_bytes(weights))
    assert code == BAD and "NaN" in details


def test_oversized_weights(db_url: str) -> None:
    from tests.server.conftest import start_server

    server = start_server(db_url, max_weights_bytes=10_000)
    try:
        with Client(server.address) as c:
            search = c.create_search(name="s", input_shape=(64,), num_classes=3, policy="random")
            [trial] = search.suggest(worker_id="w")
            blob = weights_to_bytes(trial.initial_weights())
            assert len(blob) > 10_000
            code, details = _report_weights(c, trial, blob)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in details
            with pytest.raises(Exception, match="limit"):
                c.upload_weights(trial.id, blob)
            assert trial.refresh().state == "ACTIVE"
    finally:
        server.stop(0)


def test_reporting_a_finished_trial_differently(client: Client, trial: TrialHandle) -> None:
    trial.report(score=0.5)
    code, details = _code(
        client, "ReportTrial", pb.ReportTrialRequest(trial_id=trial.id, state=pb.FAILED, reason="x")
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "COMPLETED" in details


def test_weights_from_a_failed_report_are_refused(client: Client, trial: TrialHandle) -> None:
    blob = weights_to_bytes(trial.initial_weights())
    request = pb.ReportTrialRequest(
        trial_id=trial.id, state=pb.FAILED, reason="diverged", weights=blob
    )
    code, _ = _code(client, "ReportTrial", request)
    assert code == BAD


def test_upload_sha_mismatch(client: Client, trial: TrialHandle) -> None:
    blob = weights_to_bytes(trial.initial_weights())
    messages = iter(
        [
            pb.UploadWeightsRequest(
                trial_id=trial.id, total_size=len(blob), sha256="0" * 64, data=blob
            )
        ]
    )
    with pytest.raises(grpc.RpcError) as info:
        client.stub.UploadWeights(messages, timeout=30)
    assert info.value.code() == BAD and "sha256" in info.value.details()


def test_large_weights_stream_then_report(client: Client) -> None:
    search = client.create_search(
        name="big", input_shape=(1024,), num_classes=10, policy="random", seed_width=1024
    )
    [trial] = search.suggest(worker_id="w")
    weights = trial.initial_weights()
    assert len(weights_to_bytes(weights)) > 2 * 1024**2  # beyond the inline limit: streamed
    trial.report(score=0.25, weights=weights)
    back = trial.trained_weights()
    assert all(np.array_equal(back[k], weights[k]) for k in weights)
