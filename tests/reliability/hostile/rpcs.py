"""The table of every RPC of the MorphNas service, with a valid minimal request for each.

Each hostile-input class is parametrised over :data:`RPCS`; ``test_the_table_names_every_rpc``
fails when the service gains an RPC the table does not name, so a new RPC cannot escape the
suite. ``build`` returns the messages of one valid call (one message for a unary request, the
stream's messages for a client stream), built against a :class:`~.world.World`; it may use up
what it names (a fresh ACTIVE trial, a new search), so every call gets its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.hostile.world import World, small_dataset

SERVICE = pb.DESCRIPTOR.services_by_name["MorphNas"]


@dataclass(frozen=True)
class Rpc:
    """One RPC: its name, request type, streaming kind and a valid minimal request."""

    name: str
    request_type: type[Message]
    kind: str  # unary_unary, unary_stream (server stream) or stream_unary (client stream)
    build: Callable[[World], list[Message]]

    @property
    def path(self) -> str:
        return f"/{SERVICE.full_name}/{self.name}"

    @property
    def client_streaming(self) -> bool:
        return self.kind.startswith("stream")

    def __str__(self) -> str:
        return self.name


def _weights_upload(world: World) -> list[Message]:
    trial_id = world.active_trial()
    blob = world.initial_weights(trial_id)
    return [pb.UploadWeightsRequest(trial_id=trial_id, total_size=len(blob), data=blob)]


RPCS: tuple[Rpc, ...] = (
    Rpc(
        "CreateSearch",
        pb.CreateSearchRequest,
        "unary_unary",
        lambda w: [
            pb.CreateSearchRequest(
                name="minimal", input_shape=[8], num_classes=3, policy=pb.POLICY_RANDOM
            )
        ],
    ),
    Rpc(
        "GetSearch",
        pb.GetSearchRequest,
        "unary_unary",
        lambda w: [pb.GetSearchRequest(search_id=w.search_id)],
    ),
    Rpc(
        "ListSearches", pb.ListSearchesRequest, "unary_unary", lambda w: [pb.ListSearchesRequest()]
    ),
    Rpc(
        "DeleteSearch",
        pb.DeleteSearchRequest,
        "unary_unary",
        lambda w: [pb.DeleteSearchRequest(search_id=w.new_search())],
    ),
    Rpc(
        "SuggestTrials",
        pb.SuggestTrialsRequest,
        "unary_unary",
        lambda w: [pb.SuggestTrialsRequest(search_id=w.search_id, count=1, worker_id="minimal")],
    ),
    Rpc(
        "ReportTrial",
        pb.ReportTrialRequest,
        "unary_unary",
        lambda w: [pb.ReportTrialRequest(trial_id=w.active_trial(), state=pb.COMPLETED, score=0.5)],
    ),
    Rpc(
        "ReportProgress",
        pb.ReportProgressRequest,
        "unary_unary",
        lambda w: [pb.ReportProgressRequest(trial_id=w.active_trial(), step=0, value=0.5)],
    ),
    Rpc(
        "Heartbeat",
        pb.HeartbeatRequest,
        "unary_unary",
        lambda w: [pb.HeartbeatRequest(trial_id=w.active_trial())],
    ),
    Rpc(
        "GetTrial",
        pb.GetTrialRequest,
        "unary_unary",
        lambda w: [pb.GetTrialRequest(trial_id=w.done_id)],
    ),
    Rpc(
        "ListTrials",
        pb.ListTrialsRequest,
        "unary_unary",
        lambda w: [pb.ListTrialsRequest(search_id=w.search_id)],
    ),
    Rpc("UploadWeights", pb.UploadWeightsRequest, "stream_unary", _weights_upload),
    Rpc(
        "DownloadWeights",
        pb.DownloadWeightsRequest,
        "unary_stream",
        lambda w: [pb.DownloadWeightsRequest(trial_id=w.done_id, kind=pb.TRAINED)],
    ),
    Rpc(
        "GetParetoFront",
        pb.GetParetoFrontRequest,
        "unary_unary",
        lambda w: [pb.GetParetoFrontRequest(search_id=w.search_id, objectives=["params"])],
    ),
    Rpc(
        "StartTraining",
        pb.StartTrainingRequest,
        "unary_unary",
        lambda w: [
            pb.StartTrainingRequest(search_id=w.new_search(), dataset=w.dataset_id, trials=1)
        ],
    ),
    Rpc(
        "GetTrainingRun",
        pb.GetTrainingRunRequest,
        "unary_unary",
        lambda w: [pb.GetTrainingRunRequest(search_id=w.training_search_id)],
    ),
    Rpc(
        "StopSearch",
        pb.StopSearchRequest,
        "unary_unary",
        lambda w: [pb.StopSearchRequest(search_id=w.new_search())],
    ),
    Rpc(
        "WatchSearch",
        pb.WatchSearchRequest,
        "unary_stream",
        lambda w: [pb.WatchSearchRequest(search_id=w.stopped_search())],
    ),
    Rpc(
        "ExportModel",
        pb.ExportModelRequest,
        "unary_stream",
        lambda w: [pb.ExportModelRequest(search_id=w.search_id, trial_id=w.done_id)],
    ),
    Rpc(
        "UploadDataset",
        pb.UploadDatasetRequest,
        "stream_unary",
        lambda w: [pb.UploadDatasetRequest(name="minimal", data=small_dataset())],
    ),
    Rpc(
        "ListDatasets", pb.ListDatasetsRequest, "unary_unary", lambda w: [pb.ListDatasetsRequest()]
    ),
    Rpc(
        "DeleteDataset",
        pb.DeleteDatasetRequest,
        "unary_unary",
        lambda w: [pb.DeleteDatasetRequest(dataset_id=w.upload_dataset())],
    ),
)

BY_NAME = {rpc.name: rpc for rpc in RPCS}
