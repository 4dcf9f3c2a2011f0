"""The Python SDK: a thin, typed layer over the gRPC stubs.

    from morphnas.client import Client
    with Client("127.0.0.1:50051") as c:
        s = c.create_search(name="digits", input_shape=(1, 8, 8), num_classes=10, seed=0)
        [t] = s.suggest(count=1, worker_id="w1")
        model = t.build_model()          # torch module holding the trial's inherited weights
        ...train...
        t.report(score=0.93, weights=model.state_dict())

Needs grpcio, protobuf, numpy and safetensors only; torch is imported by ``build_model`` alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from morphnas.client.credentials import make_channel
from morphnas.client.errors import from_rpc_error
from morphnas.client.records import (
    POLICIES,
    TRIAL_STATES,
    DatasetInfo,
    FinalFitInfo,
    ParetoFront,
    SearchEvent,
    SearchInfo,
    TrainingRunInfo,
    TrialInfo,
    dataset_from_pb,
    event_from_pb,
    pareto_from_pb,
    search_from_pb,
    training_run_from_pb,
    trial_from_pb,
)
from morphnas.core.graph import Graph
from morphnas.core.records import Policy
from morphnas.core.weights import weights_from_bytes, weights_to_bytes
from morphnas.v1 import morphnas_pb2 as pb
from morphnas.v1 import morphnas_pb2_grpc as pb_grpc

#: Weights up to this size go inline in ReportTrial; larger ones are streamed first.
INLINE_WEIGHTS_BYTES = 2 * 1024**2
CHUNK_BYTES = 1024 * 1024


class Client:
    """A connection to a morphnas server. Use as a context manager, or call ``close``."""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        timeout: float = 60.0,
        max_message_bytes: int = 64 * 1024**2,
        channel: grpc.Channel | None = None,
        token: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
    ) -> None:
        """``token``: bearer token for a server started with tokens. TLS when ``tls`` or any
        ``tls_*`` file is given: ``tls_ca`` is the CA to trust (default: system roots),
        ``tls_cert`` + ``tls_key`` a client certificate for mutual TLS."""
        self.address = address
        self.timeout = timeout
        self._channel = channel or make_channel(
            address,
            [
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
            ],
            token=token,
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_server_name=tls_server_name,
        )
        self.stub = pb_grpc.MorphNasStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def wait_for_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the connection (a server started a moment ago,
        e.g. with ``morphnas serve &``, binds its port after a few seconds). True once
        connected; False after the timeout, when the next call reports why it cannot connect."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            return False
        return True

    def call(self, method: str, request: Any, **kwargs: Any) -> Any:
        """Invoke a unary RPC, turning gRPC errors into morphnas exceptions."""
        try:
            return getattr(self.stub, method)(
                request, timeout=kwargs.pop("timeout", self.timeout), **kwargs
            )
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    # ------------------------------------------------------------------ searches
    def create_search(
        self,
        name: str,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        seed: int = 0,
        policy: str | Policy = "bayesian",
        **options: Any,
    ) -> SearchHandle:
        """Create a search. ``options``: beta, seed_width, seed_depth, max_params,
        max_memory_bytes, batch_size, lease_seconds, max_trials, and for a Pareto search
        objectives (e.g. ``["params", "latency_ms"]``), max_latency_ms, latency_batch_size
        (see the proto)."""
        policy_value = Policy(policy).value if isinstance(policy, str) else policy.value
        request = pb.CreateSearchRequest(
            name=name,
            input_shape=list(input_shape),
            num_classes=num_classes,
            seed=seed,
            policy=POLICIES[policy_value],
            **options,
        )
        return SearchHandle(self, search_from_pb(self.call("CreateSearch", request)))

    def get_search(self, search_id: str) -> SearchHandle:
        request = pb.GetSearchRequest(search_id=search_id)
        return SearchHandle(self, search_from_pb(self.call("GetSearch", request)))

    def list_searches(self, page_size: int = 100) -> list[SearchHandle]:
        """Every search (all pages)."""
        return [
            SearchHandle(self, search_from_pb(s))
            for s in _all_pages(
                lambda token: self.call(
                    "ListSearches", pb.ListSearchesRequest(page_size=page_size, page_token=token)
                ),
                "searches",
            )
        ]

    def delete_search(self, search_id: str) -> None:
        self.call("DeleteSearch", pb.DeleteSearchRequest(search_id=search_id))

    def get_trial(self, trial_id: str) -> TrialHandle:
        request = pb.GetTrialRequest(trial_id=trial_id)
        return TrialHandle(self, trial_from_pb(self.call("GetTrial", request)))

    # ------------------------------------------------------------------ weights
    def download_weights(self, trial_id: str, kind: str = "initial") -> dict[str, np.ndarray]:
        """A trial's ``"initial"``, ``"trained"`` or ``"final"`` weights (a final fit's, see
        ``SearchHandle.final_fit``) as numpy arrays (checked by sha256)."""
        kinds = {"initial": pb.INITIAL, "trained": pb.TRAINED, "final": pb.FINAL}
        if kind not in kinds:
            raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
        request = pb.DownloadWeightsRequest(trial_id=trial_id, kind=kinds[kind])
        try:
            chunks = list(self.stub.DownloadWeights(request, timeout=self.timeout))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        blob = b"".join(c.data for c in chunks)
        if not chunks or hashlib.sha256(blob).hexdigest() != chunks[0].sha256:
            raise ConnectionError(f"weights of trial {trial_id} arrived damaged (sha256 mismatch)")
        return weights_from_bytes(blob)

    def upload_weights(self, trial_id: str, blob: bytes) -> str:
        """Stream safetensors bytes for a later report; returns their sha256."""
        digest = hashlib.sha256(blob).hexdigest()

        def messages() -> Iterator[pb.UploadWeightsRequest]:
            yield pb.UploadWeightsRequest(
                trial_id=trial_id, total_size=len(blob), sha256=digest, data=blob[:CHUNK_BYTES]
            )
            for start in range(CHUNK_BYTES, len(blob), CHUNK_BYTES):
                yield pb.UploadWeightsRequest(data=blob[start : start + CHUNK_BYTES])

        try:
            return self.stub.UploadWeights(messages(), timeout=self.timeout).sha256  # type: ignore[no-any-return]
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    # ------------------------------------------------------------------ datasets
    def upload_dataset(self, path_or_bytes: str | bytes, name: str | None = None) -> DatasetInfo:
        """Upload an .npz file (arrays x and y, optionally x_test and y_test) in chunks."""
        if isinstance(path_or_bytes, bytes):
            blob, label = path_or_bytes, name or "upload"
        else:
            with open(path_or_bytes, "rb") as handle:
                blob = handle.read()
            label = name or os.path.basename(path_or_bytes)

        def messages() -> Iterator[pb.UploadDatasetRequest]:
            yield pb.UploadDatasetRequest(name=label, total_size=len(blob), data=blob[:CHUNK_BYTES])
            for start in range(CHUNK_BYTES, len(blob), CHUNK_BYTES):
                yield pb.UploadDatasetRequest(data=blob[start : start + CHUNK_BYTES])

        try:
            message = self.stub.UploadDataset(messages(), timeout=max(self.timeout, 600))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        return dataset_from_pb(message)

    def list_datasets(self) -> list[DatasetInfo]:
        response = self.call("ListDatasets", pb.ListDatasetsRequest())
        return [dataset_from_pb(d) for d in response.datasets]

    def delete_dataset(self, dataset_id: str) -> None:
        self.call("DeleteDataset", pb.DeleteDatasetRequest(dataset_id=dataset_id))

    def export_onnx(
        self,
        path: str | None = None,
        *,
        search_id: str = "",
        trial_id: str = "",
        softmax: bool = False,
        trained_weights: bool = False,
        max_latency_ms: float | None = None,
        max_params: int | None = None,
    ) -> bytes:
        """The ONNX file of a trial (default: the search's best); written to ``path`` if given.

        It holds the trial's final-fit weights when it has them, else its trained ones;
        ``trained_weights=True`` exports its own trained weights regardless. The file's metadata
        ``weights`` says which, ``test_accuracy`` that model's (when the run measured it).
        ``max_latency_ms`` / ``max_params`` (with ``search_id``): the most accurate trial whose
        measured latency and parameter count meet them."""
        request = pb.ExportModelRequest(
            search_id=search_id,
            trial_id=trial_id,
            softmax=softmax,
            trained_weights=trained_weights,
        )
        if max_latency_ms is not None:
            request.max_latency_ms = max_latency_ms
        if max_params is not None:
            request.max_params = max_params
        try:
            chunks = list(self.stub.ExportModel(request, timeout=max(self.timeout, 300)))
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        blob = b"".join(c.data for c in chunks)
        if not chunks or hashlib.sha256(blob).hexdigest() != chunks[0].sha256:
            raise ConnectionError("the ONNX file arrived damaged (sha256 mismatch)")
        if path is not None:
            with open(path, "wb") as handle:
                handle.write(blob)
        return blob


def _all_pages(fetch: Callable[[str], Any], field: str) -> Iterator[Any]:
    token = ""
    while True:
        response = fetch(token)
        yield from getattr(response, field)
        token = response.next_page_token
        if not token:
            return


@dataclass
class SearchHandle:
    """A search on the server. ``info`` is what was last fetched of it."""

    client: Client
    info: SearchInfo

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def name(self) -> str:
        return self.info.name

    def refresh(self) -> SearchHandle:
        request = pb.GetSearchRequest(search_id=self.id)
        self.info = search_from_pb(self.client.call("GetSearch", request))
        return self

    def suggest(self, count: int = 1, worker_id: str = "") -> list[TrialHandle]:
        response = self.client.call(
            "SuggestTrials",
            pb.SuggestTrialsRequest(search_id=self.id, count=count, worker_id=worker_id),
        )
        return [TrialHandle(self.client, trial_from_pb(t)) for t in response.trials]

    def trials(
        self, states: Sequence[str] = (), newer_than: int | None = None, page_size: int = 500
    ) -> list[TrialHandle]:
        """All trials (every page), ordered by number; filter by state names and number."""

        def fetch(token: str) -> Any:
            request = pb.ListTrialsRequest(
                search_id=self.id,
                states=[TRIAL_STATES[s.upper()] for s in states],
                page_size=page_size,
                page_token=token,
            )
            if newer_than is not None:
                request.newer_than = newer_than
            return self.client.call("ListTrials", request)

        return [TrialHandle(self.client, trial_from_pb(t)) for t in _all_pages(fetch, "trials")]

    def pareto(
        self,
        objectives: Sequence[str] = (),
        *,
        max_latency_ms: float | None = None,
        max_params: int | None = None,
    ) -> ParetoFront:
        """The search's Pareto front: completed trials meeting the constraints that no other
        dominates (score up, each objective down). ``objectives``: default the search's own
        (``params`` for a search without any); see ``GetParetoFront`` in the proto."""
        request = pb.GetParetoFrontRequest(search_id=self.id, objectives=list(objectives))
        if max_latency_ms is not None:
            request.max_latency_ms = max_latency_ms
        if max_params is not None:
            request.max_params = max_params
        return pareto_from_pb(self.client.call("GetParetoFront", request))

    def best_trial(self) -> TrialHandle | None:
        """The completed trial with the highest score (the earliest on ties), or None."""
        completed = self.trials(states=["COMPLETED"])
        return max(completed, key=lambda t: (t.score, -t.number), default=None)

    def delete(self) -> None:
        self.client.delete_search(self.id)

    # ------------------------------------------------------------------ server-side training
    def train(
        self,
        dataset: str,
        trials: int = 0,
        *,
        budget_seconds: float = 0.0,
        epochs: int = 20,
        max_seconds: float = 120.0,
        batch_size: int = 128,
        optimizer: str = "adamw",
        learning_rate: float = 0.0,
        patience: int = 5,
        device: str = "auto",
        final_fit: str = "none",
    ) -> TrainingRunInfo:
        """Have the server's workers train ``trials`` suggestions on ``dataset`` ("digits",
        "mnist1d" or an uploaded dataset's id). Returns at once; follow with ``watch``.

        ``budget_seconds`` caps the summed training seconds of the run's trials: the run ends
        (DONE, event ``search_finished`` with reason "budget spent") once they reach it, and a
        trial's ``max_seconds`` is cut to what is left. With a budget, ``trials`` may be 0: as
        many trials as the budget allows (at most 10,000).

        ``final_fit`` "continue" or "retrain": after the search, the worker trains the best
        architecture on training + validation data, from its trained weights or from scratch
        (event ``final_fit_finished``; ``export_onnx`` then exports that model); with a budget,
        its estimated seconds are reserved out of ``budget_seconds``."""
        budget = pb.TrainingBudget(
            epochs=epochs,
            max_seconds=max_seconds,
            batch_size=batch_size,
            optimizer=optimizer,
            learning_rate=learning_rate,
            patience=patience,
            device=device,
        )
        request = pb.StartTrainingRequest(
            search_id=self.id,
            dataset=dataset,
            trials=trials,
            budget=budget,
            budget_seconds=budget_seconds,
            final_fit=final_fit,
        )
        return training_run_from_pb(self.client.call("StartTraining", request))

    def final_fit(
        self,
        mode: str = "continue",
        *,
        dataset: str | None = None,
        epochs: int = 8,
        batch_size: int = 128,
        optimizer: str = "adamw",
        learning_rate: float = 0.0,
        device: str = "auto",
        timeout: float | None = None,
    ) -> FinalFitInfo:
        """Train the current best trial's architecture on training + validation data and wait.

        ``mode``: "continue" from its trained weights, or "retrain" from scratch. The server runs
        it as a training run of no trials (one at a time per search) on ``dataset`` (default:
        the latest run's); the number of epochs comes from the best epochs along the best
        trial's lineage, ``epochs`` only stands in for trials trained outside the server. The
        weights are stored as the trial's ``"final"`` weights, which ``export_onnx`` exports."""
        if dataset is None:
            dataset = self.training_run().dataset
        budget = pb.TrainingBudget(
            epochs=epochs,
            max_seconds=120.0,
            batch_size=batch_size,
            optimizer=optimizer,
            learning_rate=learning_rate,
            patience=5,
            device=device,
        )
        request = pb.StartTrainingRequest(
            search_id=self.id, dataset=dataset, trials=0, budget=budget, final_fit=mode
        )
        run = training_run_from_pb(self.client.call("StartTraining", request))
        return self._await_final_fit(run.id, timeout)

    def _await_final_fit(self, run_id: str, timeout: float | None) -> FinalFitInfo:
        """The ``final_fit_finished`` event of run ``run_id`` (watching from its start)."""
        after, started, found = 0, False, None
        while True:
            for event in self.watch(after, timeout=timeout):
                after = event.id
                if event.kind == "run_started" and event.payload.get("run_id") == run_id:
                    started = True
                elif started and event.kind == "final_fit_finished":
                    found = FinalFitInfo.from_payload(event.payload)
                elif started and event.kind in ("search_finished", "search_stopped"):
                    if found is None:
                        raise RuntimeError(f"run {run_id} ended without a final fit")
                    return found

    def resume(self) -> TrainingRunInfo:
        """Continue this search (a stopped one too) with what its latest run still owes: the
        trials that did not complete and the budget seconds not spent. Follow with ``watch``,
        from the new run's ``run_started`` event (earlier events belong to earlier runs)."""
        request = pb.StartTrainingRequest(search_id=self.id, resume=True)
        return training_run_from_pb(self.client.call("StartTraining", request))

    def training_run(self) -> TrainingRunInfo:
        """The latest training run of this search."""
        request = pb.GetTrainingRunRequest(search_id=self.id)
        return training_run_from_pb(self.client.call("GetTrainingRun", request))

    def watch(self, after_event_id: int = 0, timeout: float | None = None) -> Iterator[SearchEvent]:
        """Events as they happen, until the search finishes or is stopped."""
        request = pb.WatchSearchRequest(search_id=self.id, after_event_id=after_event_id)
        try:
            for message in self.client.stub.WatchSearch(request, timeout=timeout):
                yield event_from_pb(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def stop(self) -> SearchHandle:
        request = pb.StopSearchRequest(search_id=self.id)
        self.info = search_from_pb(self.client.call("StopSearch", request))
        return self

    def export_onnx(
        self,
        path: str | None = None,
        *,
        softmax: bool = False,
        trained_weights: bool = False,
        max_latency_ms: float | None = None,
        max_params: int | None = None,
    ) -> bytes:
        """The best trial as ONNX (normalisation baked in); written to ``path`` if given. Its
        final-fit weights when it has them, unless ``trained_weights`` (see Client.export_onnx).
        With ``max_latency_ms`` / ``max_params``: the most accurate trial that meets them."""
        return self.client.export_onnx(
            path,
            search_id=self.id,
            softmax=softmax,
            trained_weights=trained_weights,
            max_latency_ms=max_latency_ms,
            max_params=max_params,
        )


@dataclass
class TrialHandle:
    """A trial on the server: its architecture, lineage, and the calls a worker makes.
    ``info`` is what was last fetched of it."""

    client: Client
    info: TrialInfo

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def number(self) -> int:
        return self.info.number

    @property
    def state(self) -> str:
        return self.info.state

    @property
    def parent_id(self) -> str | None:
        return self.info.parent_id

    @property
    def score(self) -> float | None:
        return self.info.score

    @property
    def architecture(self) -> dict[str, Any]:
        """The architecture as the canonical JSON object."""
        return json.loads(self.info.architecture_json)  # type: ignore[no-any-return]

    @property
    def graph(self) -> Graph:
        return Graph.from_json(self.info.architecture_json)

    @property
    def operations(self) -> list[dict[str, Any]]:
        """The morphs that made this architecture from its parent's."""
        return list(self.info.operations)

    def initial_weights(self) -> dict[str, np.ndarray]:
        return self.client.download_weights(self.id, "initial")

    def trained_weights(self) -> dict[str, np.ndarray]:
        return self.client.download_weights(self.id, "trained")

    def build_model(self, weights: str = "initial") -> Any:
        """A ``torch.nn.Module`` of this architecture holding its initial (or trained) weights."""
        try:
            from morphnas.nn.module import build_module
        except ImportError as err:  # torch missing
            raise ImportError(
                "build_model needs PyTorch: pip install 'morphnas[torch]' "
                "(on a machine without a GPU, install the CPU build of torch first)"
            ) from err
        return build_module(self.graph, self.client.download_weights(self.id, weights))

    def report(
        self,
        score: float | None = None,
        *,
        weights: Mapping[str, Any] | None = None,
        state: str = "COMPLETED",
        reason: str = "",
        worker_id: str = "",
        metrics: Mapping[str, float] | None = None,
        measured_on: str = "",
        weights_sha256: str = "",
    ) -> TrialHandle:
        """Tell the outcome. ``weights``: a torch ``state_dict()`` of the built model, or a mapping
        of numpy arrays named as in the architecture. ``weights_sha256`` instead names weights
        uploaded before with ``Client.upload_weights`` (perhaps by another process, as a Ray Tune
        trainable does). Safe to repeat with the same content. ``metrics``: named values measured
        with it, e.g. ``{"latency_ms": 0.4}`` (what a Pareto search on latency reads), measured on
        the machine ``measured_on``."""
        if weights is not None and weights_sha256:
            raise ValueError("give weights or weights_sha256, not both")
        request = pb.ReportTrialRequest(
            trial_id=self.id,
            state=TRIAL_STATES[state.upper()],
            reason=reason,
            worker_id=worker_id,
            metrics=dict(metrics or {}),
            measured_on=measured_on,
        )
        if score is not None:
            request.score = score
        if weights_sha256:
            request.weights_sha256 = weights_sha256
        if weights is not None:
            blob = weights_to_bytes(to_numpy_weights(weights))
            if len(blob) <= INLINE_WEIGHTS_BYTES:
                request.weights = blob
            else:
                request.weights_sha256 = self.client.upload_weights(self.id, blob)
        self.info = trial_from_pb(self.client.call("ReportTrial", request))
        return self

    def fail(self, reason: str, *, infeasible: bool = False) -> TrialHandle:
        return self.report(state="INFEASIBLE" if infeasible else "FAILED", reason=reason)

    def progress(self, step: int, value: float, name: str = "objective") -> bool:
        """Report an intermediate value; returns True when the worker should stop."""
        response = self.client.call(
            "ReportProgress",
            pb.ReportProgressRequest(trial_id=self.id, step=step, value=value, name=name),
        )
        self.info = trial_from_pb(response.trial)
        return bool(response.should_stop)

    def heartbeat(self) -> TrialHandle:
        response = self.client.call("Heartbeat", pb.HeartbeatRequest(trial_id=self.id))
        self.info = trial_from_pb(response.trial)
        return self

    def refresh(self) -> TrialHandle:
        request = pb.GetTrialRequest(trial_id=self.id)
        self.info = trial_from_pb(self.client.call("GetTrial", request))
        return self


def to_numpy_weights(weights: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Accept a torch state_dict of a built model (``layers.<name>.<suffix>`` keys, tensors) or
    a mapping of arrays named ``<name>.<suffix>``; BN's ``num_batches_tracked`` is dropped."""
    result: dict[str, np.ndarray] = {}
    for key, value in weights.items():
        if key.endswith("num_batches_tracked"):
            continue
        name = key.removeprefix("layers.")
        if hasattr(value, "detach"):  # a torch tensor; no torch import needed
            value = value.detach().to("cpu").float().numpy()
        result[name] = np.ascontiguousarray(value, dtype=np.float32)
    return result
