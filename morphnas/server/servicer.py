"""gRPC handlers: convert → use case → convert. No logic lives here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc

from morphnas.core.errors import InvalidArgumentError, NotFoundError
from morphnas.core.ids import check_id
from morphnas.core.records import Search
from morphnas.server import blobs, convert
from morphnas.server.errors import handles_errors, handles_stream_errors
from morphnas.server.service import SearchService, sha256_hex
from morphnas.server.training import TrainingService
from morphnas.server.watches import MAX_WATCHES, EventWatches
from morphnas.v1 import morphnas_pb2 as pb
from morphnas.v1 import morphnas_pb2_grpc as pb_grpc

CHUNK_BYTES = blobs.CHUNK_BYTES
_WEIGHT_KINDS = {
    pb.WEIGHTS_KIND_UNSPECIFIED: "initial",
    pb.INITIAL: "initial",
    pb.TRAINED: "trained",
    pb.FINAL: "final",
}


class MorphNasServicer(pb_grpc.MorphNasServicer):
    def __init__(
        self,
        service: SearchService,
        training: TrainingService,
        watch_poll_seconds: float = 0.25,
        max_watches: int = MAX_WATCHES,
    ) -> None:
        self.service = service
        self.training = training
        self.watches = EventWatches(
            training.events, poll_seconds=watch_poll_seconds, max_watches=max_watches
        )

    @handles_errors
    def CreateSearch(
        self, request: pb.CreateSearchRequest, context: grpc.ServicerContext
    ) -> pb.Search:
        search = self.service.create_search(convert.search_config_from_pb(request))
        return convert.search_to_pb(search)

    @handles_errors
    def GetSearch(self, request: pb.GetSearchRequest, context: grpc.ServicerContext) -> pb.Search:
        return self._search_to_pb(self.service.get_search(request.search_id))

    @handles_errors
    def ListSearches(
        self, request: pb.ListSearchesRequest, context: grpc.ServicerContext
    ) -> pb.ListSearchesResponse:
        searches, token = self.service.list_searches(request.page_size, request.page_token)
        best = self.service.best_trials([s.id for s in searches])
        return pb.ListSearchesResponse(
            searches=[convert.search_to_pb(s, best.get(s.id)) for s in searches],
            next_page_token=token,
        )

    @handles_errors
    def DeleteSearch(
        self, request: pb.DeleteSearchRequest, context: grpc.ServicerContext
    ) -> pb.DeleteSearchResponse:
        self.service.delete_search(request.search_id)
        return pb.DeleteSearchResponse()

    @handles_errors
    def SuggestTrials(
        self, request: pb.SuggestTrialsRequest, context: grpc.ServicerContext
    ) -> pb.SuggestTrialsResponse:
        trials = self.service.suggest(request.search_id, request.count, request.worker_id)
        return pb.SuggestTrialsResponse(trials=[convert.trial_to_pb(t) for t in trials])

    @handles_errors
    def ReportTrial(
        self, request: pb.ReportTrialRequest, context: grpc.ServicerContext
    ) -> pb.Trial:
        trial = self.service.report(
            request.trial_id,
            state=convert.state_from_pb(request.state),
            score=request.score if request.HasField("score") else None,
            reason=request.reason,
            weights=request.weights,
            weights_sha256=request.weights_sha256,
            worker_id=request.worker_id,
            metrics=dict(request.metrics),
            measured_on=request.measured_on,
        )
        return convert.trial_to_pb(trial)

    @handles_errors
    def ReportProgress(
        self, request: pb.ReportProgressRequest, context: grpc.ServicerContext
    ) -> pb.ReportProgressResponse:
        trial, stop = self.service.progress(
            request.trial_id, request.step, request.value, request.name
        )
        return pb.ReportProgressResponse(should_stop=stop, trial=convert.trial_to_pb(trial))

    @handles_errors
    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatResponse:
        return pb.HeartbeatResponse(
            trial=convert.trial_to_pb(self.service.heartbeat(request.trial_id))
        )

    @handles_errors
    def GetTrial(self, request: pb.GetTrialRequest, context: grpc.ServicerContext) -> pb.Trial:
        return convert.trial_to_pb(self.service.get_trial(request.trial_id))

    @handles_errors
    def GetParetoFront(
        self, request: pb.GetParetoFrontRequest, context: grpc.ServicerContext
    ) -> pb.GetParetoFrontResponse:
        objectives, trials = self.service.pareto_front(
            request.search_id, tuple(request.objectives), convert.constraints_from_pb(request)
        )
        return pb.GetParetoFrontResponse(
            objectives=list(objectives), trials=[convert.trial_to_pb(t) for t in trials]
        )

    @handles_errors
    def ListTrials(
        self, request: pb.ListTrialsRequest, context: grpc.ServicerContext
    ) -> pb.ListTrialsResponse:
        trials, token = self.service.list_trials(
            request.search_id,
            states=[convert.state_from_pb(s) for s in request.states],
            newer_than=request.newer_than if request.HasField("newer_than") else -1,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return pb.ListTrialsResponse(
            trials=[convert.trial_to_pb(t) for t in trials], next_page_token=token
        )

    @handles_errors
    def UploadWeights(
        self, request_iterator: Iterator[pb.UploadWeightsRequest], context: grpc.ServicerContext
    ) -> pb.UploadWeightsResponse:
        first = next(request_iterator, None)
        if first is None or not first.trial_id:
            raise InvalidArgumentError("the first UploadWeights message must name trial_id")
        limit = self.service.limits.max_weights_bytes
        with blobs.receive(first, request_iterator, limit, self.service.uploads) as upload:
            digest = self.service.stage_weights(first.trial_id, upload, first.sha256)
            return pb.UploadWeightsResponse(sha256=digest, size=upload.size)

    @handles_stream_errors
    def DownloadWeights(
        self, request: pb.DownloadWeightsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WeightsChunk]:
        kind = _WEIGHT_KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgumentError(f"unknown weights kind {request.kind}")
        sha, size, chunks = self.service.weights_chunks(request.trial_id, kind)
        for index, chunk in enumerate(chunks):  # read from storage as the client takes them
            if index and not context.is_active():
                return
            if index == 0:  # the header (size, sha256) rides on the first chunk
                yield pb.WeightsChunk(total_size=size, sha256=sha, data=chunk)
            else:
                yield pb.WeightsChunk(data=chunk)

    # ------------------------------------------------------------------ server-side training
    @handles_errors
    def StartTraining(
        self, request: pb.StartTrainingRequest, context: grpc.ServicerContext
    ) -> pb.TrainingRun:
        if request.resume:
            if (
                request.dataset
                or request.trials
                or request.budget_seconds
                or request.HasField("budget")
                or request.final_fit
            ):
                raise InvalidArgumentError(
                    "resume continues the latest run as it was: leave dataset, trials, budget, "
                    "budget_seconds and final_fit unset"
                )
            return convert.run_to_pb(self.training.resume_training(request.search_id))
        run = self.training.start_training(
            request.search_id,
            request.dataset,
            request.trials,
            convert.budget_from_pb(request.budget),
            request.budget_seconds,
            request.final_fit or "none",
        )
        return convert.run_to_pb(run)

    @handles_errors
    def GetTrainingRun(
        self, request: pb.GetTrainingRunRequest, context: grpc.ServicerContext
    ) -> pb.TrainingRun:
        search = self.service.get_search(request.search_id)
        run = self.training.latest_run(search.id)
        if run is None:
            raise NotFoundError(f"search {search.id!r} has no training run")
        return convert.run_to_pb(run)

    @handles_errors
    def StopSearch(self, request: pb.StopSearchRequest, context: grpc.ServicerContext) -> pb.Search:
        return self._search_to_pb(self.training.stop(request.search_id))

    @handles_errors
    def WatchSearch(
        self,
        request: pb.WatchSearchRequest,
        context: grpc.ServicerContext,
        send_response_callback: Callable[[pb.SearchEvent | None], None] | None = None,
    ) -> None:
        """Registers the watch and returns: its events are sent by :class:`EventWatches`, so an
        open watch holds no handler thread."""
        if send_response_callback is None:  # a wrapper dropped experimental_non_blocking
            raise RuntimeError("WatchSearch must be served as a non-blocking stream handler")
        search = self.service.get_search(request.search_id)
        self.watches.open(search.id, request.after_event_id, context, send_response_callback)

    # grpc calls it with a send_response_callback instead of consuming a generator on a thread.
    WatchSearch.experimental_non_blocking = True  # type: ignore[attr-defined]

    @handles_stream_errors
    def ExportModel(
        self, request: pb.ExportModelRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ExportChunk]:
        blob = self.training.export_onnx(
            request.search_id,
            request.trial_id,
            request.softmax,
            weights="trained" if request.trained_weights else "auto",
            constraints=convert.constraints_from_pb(request),
        )
        yield from _chunks(blob, pb.ExportChunk, context)

    @handles_errors
    def UploadDataset(
        self, request_iterator: Iterator[pb.UploadDatasetRequest], context: grpc.ServicerContext
    ) -> pb.Dataset:
        first = next(request_iterator, None)
        if first is None or not first.name:
            raise InvalidArgumentError(
                "the first UploadDataset message must carry the dataset name"
            )
        limit = self.training.max_dataset_bytes
        with blobs.receive(first, request_iterator, limit, self.service.uploads) as upload:
            return convert.dataset_to_pb(self.training.upload_dataset(first.name, upload))

    @handles_errors
    def ListDatasets(
        self, request: pb.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> pb.ListDatasetsResponse:
        return pb.ListDatasetsResponse(
            datasets=[convert.dataset_to_pb(d) for d in self.training.list_datasets()]
        )

    def _search_to_pb(self, search: Search) -> pb.Search:
        return convert.search_to_pb(search, self.service.best_trials([search.id]).get(search.id))

    @handles_errors
    def DeleteDataset(
        self, request: pb.DeleteDatasetRequest, context: grpc.ServicerContext
    ) -> pb.DeleteDatasetResponse:
        self.training.delete_dataset(check_id(request.dataset_id, "dataset_id"))
        return pb.DeleteDatasetResponse()


def _chunks(blob: bytes, message: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    """A blob as a server stream: the header (size, sha256) rides on the first chunk; a
    cancelled call stops the stream."""
    yield message(total_size=len(blob), sha256=sha256_hex(blob), data=blob[:CHUNK_BYTES])
    for start in range(CHUNK_BYTES, len(blob), CHUNK_BYTES):
        if not context.is_active():
            return
        yield message(data=blob[start : start + CHUNK_BYTES])
