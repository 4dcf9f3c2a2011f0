"""Server-side training: datasets, training runs, the worker loop, and ONNX export.

A *training run* asks for N trained trials of a search on a dataset. Workers (processes started
by ``morphnas serve --workers N`` or ``morphnas worker --db URL`` on other machines) loop:

1. claim a slot of a running run from the database (the job queue, see
   :mod:`morphnas.storage.training`);
2. ask the search for a trial with their own worker id (the same ``suggest`` remote workers use,
   so the optimiser sees one history);
3. train it from its inherited weights, renewing the lease from a heartbeat thread and writing an
   event after every epoch;
4. report the validation accuracy and the trained weights (or FAILED with the reason: an
   out-of-memory failure lowers the search's size cap);
5. when the run has all its trials, evaluate the best model on the test split and close the run.

A worker that dies stops renewing its lease: the trial goes STALE and the next worker retries its
architecture. Training never runs on a gRPC thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass
from functools import lru_cache

from morphnas.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from morphnas.core.graph import Graph
from morphnas.core.records import (
    BUILTIN_DATASETS,
    DatasetInfo,
    RunState,
    Search,
    SearchEvent,
    TrainingBudget,
    TrainingRun,
    Trial,
    TrialState,
)
from morphnas.core.weights import check_weights, weights_from_bytes, weights_to_bytes
from morphnas.nn.datasets import (
    Dataset,
    Normalisation,
    Split,
    builtin_dataset,
    compute_normalisation,
    dataset_split,
    load_npz,
    validate_for,
)
from morphnas.server.metrics import record_training
from morphnas.server.service import SearchService, sha256_hex

log = logging.getLogger(__name__)

MAX_RUN_TRIALS = 10_000


@dataclass(frozen=True)
class PreparedData:
    """A dataset with the search's split and the normalisation computed on its training part."""

    data: Dataset
    split: Split
    norm: Normalisation


class TrainingService:
    """Use cases of server-side training, shared by the servicer and the workers."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.repo = service.repo
        self.max_dataset_bytes = service.limits.max_dataset_bytes

    # ------------------------------------------------------------------ datasets
    def upload_dataset(self, name: str, blob: bytes) -> DatasetInfo:
        """Check an npz upload (x, y; allow_pickle=False) and store it with its checksum."""
        if not 1 <= len(name) <= 200:
            raise InvalidArgumentError("a dataset name must be 1 to 200 characters")
        data = load_npz(blob, max_bytes=self.max_dataset_bytes, name=name)
        return self.repo.create_dataset(
            name=name,
            input_shape=tuple(data.input_shape),
            num_classes=data.num_classes,
            num_examples=len(data),
            sha256=sha256_hex(blob),
            data=blob,
        )

    def list_datasets(self) -> list[DatasetInfo]:
        return self.repo.list_datasets()

    def delete_dataset(self, dataset_id: str) -> None:
        self.repo.delete_dataset(dataset_id)

    def dataset(self, ref: str) -> Dataset:
        """A built-in dataset by name, or an uploaded one by id (cached: datasets never change)."""
        if ref in BUILTIN_DATASETS:
            return _builtin(ref)
        info = self.repo.get_dataset(ref)
        return _uploaded(self.repo, info.id, info.sha256, self.max_dataset_bytes)

    def prepared(self, ref: str, search: Search) -> PreparedData:
        data = self.dataset(ref)
        split = dataset_split(data, seed=search.config.seed)
        return PreparedData(data, split, compute_normalisation(data.x, split.train))

    # ------------------------------------------------------------------ runs
    def start_training(
        self, search_id: str, dataset: str, trials: int, budget: TrainingBudget
    ) -> TrainingRun:
        if not 1 <= trials <= MAX_RUN_TRIALS:
            raise InvalidArgumentError(
                f"trials must be between 1 and {MAX_RUN_TRIALS}, got {trials}"
            )
        if not dataset:
            raise InvalidArgumentError(
                f"name a dataset: one of {BUILTIN_DATASETS} or an uploaded id"
            )
        search = self.service.get_search(search_id)
        try:
            data = self.dataset(dataset)
        except NotFoundError:
            raise NotFoundError(
                f"no dataset {dataset!r}: use one of {BUILTIN_DATASETS} or upload one"
            ) from None
        validate_for(data, search.config.input_shape, search.config.num_classes)
        run = self.repo.create_training_run(
            search.id, dataset=dataset, trials=trials, budget=budget
        )
        self.repo.add_event(
            search.id, "run_started", {"run_id": run.id, "dataset": dataset, "trials": trials}
        )
        return run

    def stop(self, search_id: str) -> Search:
        self.repo.stop_training(self.service.get_search(search_id).id)
        search = self.repo.stop_search(search_id)
        self.repo.add_event(search_id, "search_stopped", {})
        return search

    def events(self, search_id: str, after_id: int) -> list[SearchEvent]:
        return self.repo.list_events(search_id, after_id)

    def latest_run(self, search_id: str) -> TrainingRun | None:
        return self.repo.latest_training_run(search_id)

    # ------------------------------------------------------------------ export
    def best_trial(self, search_id: str) -> Trial:
        """The completed trial with trained weights and the highest score (earliest on ties)."""
        best: Trial | None = None
        token = ""
        while True:
            page, token = self.repo.list_trials(
                search_id, states=(TrialState.COMPLETED,), page_size=1000, page_token=token
            )
            for trial in page:
                if trial.has_trained_weights and (best is None or trial.score > best.score):  # type: ignore[operator]
                    best = trial
            if not token:
                break
        if best is None:
            raise FailedPreconditionError(
                f"search {search_id!r} has no completed trial with trained weights to export yet"
            )
        return best

    def export_onnx(self, search_id: str, trial_id: str, softmax: bool) -> bytes:
        """ONNX bytes of a trial (default: the search's best) with its normalisation baked in."""
        from morphnas.nn.onnx_export import export_onnx

        if trial_id:
            trial = self.service.get_trial(trial_id)
            if search_id and trial.search_id != search_id:
                raise InvalidArgumentError(f"trial {trial_id!r} is not in search {search_id!r}")
        elif search_id:
            trial = self.best_trial(self.service.get_search(search_id).id)
        else:
            raise InvalidArgumentError("name a search_id or a trial_id to export")
        if not trial.has_trained_weights:
            raise FailedPreconditionError(f"trial {trial.number} has no trained weights to export")
        search = self.service.get_search(trial.search_id)
        graph = Graph.from_json(trial.architecture)
        weights = check_weights(
            graph, weights_from_bytes(self.service.weights(trial.id, "trained"))
        )
        run = self.repo.latest_training_run(search.id)
        norm = (
            self.prepared(run.dataset, search).norm
            if run is not None
            else Normalisation.identity(
                graph.input_shape[0]
            )  # ask/tell: the user's own preprocessing
        )
        metadata = {
            "search": search.id,
            "search_name": search.config.name,
            "trial": trial.id,
            "trial_number": str(trial.number),
            "score": repr(trial.score),
            "dataset": run.dataset if run else "",
        }
        if run is not None and run.test_accuracy is not None and run.best_trial_id == trial.id:
            metadata["test_accuracy"] = repr(run.test_accuracy)
        return export_onnx(graph, weights, norm, softmax=softmax, metadata=metadata)


@lru_cache(maxsize=4)
def _builtin(name: str) -> Dataset:
    return builtin_dataset(name)


@lru_cache(maxsize=8)
def _uploaded(repo: object, dataset_id: str, sha: str, max_bytes: int) -> Dataset:
    """An uploaded dataset, parsed once per process (``sha`` keys the cache: ids never change)."""
    return load_npz(repo.load_dataset_bytes(dataset_id), max_bytes=max_bytes)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- the worker


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Claims training jobs from the database and trains them until stopped."""

    def __init__(
        self,
        training: TrainingService,
        *,
        name: str | None = None,
        poll_seconds: float = 0.5,
        device: str | None = None,
    ) -> None:
        self.training = training
        self.service = training.service
        self.repo = training.repo
        self.name = name or worker_name()
        self.poll_seconds = poll_seconds
        self.device = device
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run_forever(self, max_jobs: int | None = None) -> int:
        """Train until stopped (or ``max_jobs`` trials); returns how many trials it trained."""
        done = 0
        while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
            try:
                worked = self.run_once()
            except UnavailableError as err:
                log.warning("database unavailable (%s); retrying", err)
                worked = False
            if worked:
                done += 1
            else:
                self.stopping.wait(self.poll_seconds)
        return done

    def run_once(self) -> bool:
        """Claim and train one trial; False when there was nothing to do."""
        run = self.repo.claim_training_slot()
        if run is None:
            return False
        search = self.service.get_search(run.search_id)
        try:
            [trial] = self.service.suggest(search.id, 1, self.name)
        except FailedPreconditionError as err:  # the search was stopped meanwhile
            log.info("run %s: %s", run.id, err)
            return False
        log.info("worker %s trains trial %d of search %s", self.name, trial.number, search.id)
        # Renew the lease from now on: loading data can take longer than a short lease.
        beat = _Heartbeat(self.service, trial)
        beat.start()
        try:
            self._train(run, search, trial, beat.lost)
        finally:
            beat.stop()
        self._finish_if_done(run, search)
        return True

    def _train(self, run: TrainingRun, search: Search, trial: Trial, lost: threading.Event) -> None:
        from morphnas.nn.train import TrainConfig, TrainingOutOfMemory, train_trial

        graph = Graph.from_json(trial.architecture)
        self.repo.add_event(
            search.id,
            "trial_started",
            {
                "trial_id": trial.id,
                "number": trial.number,
                "parent_id": trial.parent_id,
                "operations": list(trial.operations),
                "num_params": graph.num_params,
                "worker": self.name,
            },
        )
        prepared = self.training.prepared(run.dataset, search)
        weights = check_weights(
            graph, weights_from_bytes(self.service.weights(trial.id, "initial"))
        )
        budget = run.budget
        config = TrainConfig(
            epochs=budget.epochs,
            batch_size=budget.batch_size,
            optimizer=budget.optimizer,
            lr=budget.learning_rate or None,
            patience=budget.patience,
            max_seconds=budget.max_seconds,
            seed=search.config.seed * 100_003 + trial.number,
            device=self.device or budget.device,
        )
        search_stopped = threading.Event()
        try:
            result = train_trial(
                graph,
                weights,
                prepared.data,
                prepared.split,
                prepared.norm,
                config,
                on_epoch=lambda epoch: self._on_epoch(search, trial, epoch, search_stopped),
                should_stop=lambda: (
                    lost.is_set() or self.stopping.is_set() or search_stopped.is_set()
                ),
            )
        except TrainingOutOfMemory as err:
            self._report(
                search, trial, state=TrialState.FAILED, score=None, reason=f"out of memory: {err}"
            )
            return
        except Exception as err:  # noqa: BLE001 - a failed trial must not kill the worker
            log.exception("trial %d failed", trial.number)
            self._report(
                search,
                trial,
                state=TrialState.FAILED,
                score=None,
                reason=f"{type(err).__name__}: {err}",
            )
            return
        if lost.is_set():
            # The lease ran out (this worker stalled): the trial was or will be handed out again,
            # so this result would only compete with the retry.
            log.warning("trial %d: lease lost while training; not reporting", trial.number)
            return
        if result.stopped_reason == "cancelled" and not search_stopped.is_set():
            self.repo.release_trial(trial.id)  # this worker is shutting down: retry elsewhere now
            return
        if result.stopped_reason == "cancelled":
            self._report(
                search,
                trial,
                state=TrialState.FAILED,
                score=None,
                reason="cancelled: the search was stopped",
            )
            return
        record_training(int(result.samples_per_second * result.seconds), result.seconds)
        self._report(
            search,
            trial,
            state=TrialState.COMPLETED,
            score=result.val_accuracy,
            reason="",
            weights=weights_to_bytes(result.weights),
            extra={
                "epochs": result.epochs_run,
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "samples_per_second": result.samples_per_second,
                "stopped_reason": result.stopped_reason,
                "device": result.device,
                "val_loss": result.val_loss,
            },
        )

    def _on_epoch(
        self, search: Search, trial: Trial, epoch: object, search_stopped: threading.Event
    ) -> bool:
        values = asdict(epoch)  # type: ignore[call-overload]
        _, stop = self.service.progress(
            trial.id, values["epoch"], values["val_accuracy"], "val_accuracy"
        )
        self.repo.add_event(
            search.id, "epoch_finished", {"trial_id": trial.id, "number": trial.number, **values}
        )
        if stop:
            search_stopped.set()
        return bool(stop) or self.stopping.is_set()

    def _report(
        self,
        search: Search,
        trial: Trial,
        *,
        state: TrialState,
        score: float | None,
        reason: str,
        weights: bytes = b"",
        extra: dict | None = None,
    ) -> None:
        try:
            reported = self.service.report(
                trial.id, state=state, score=score, reason=reason, weights=weights
            )
        except FailedPreconditionError as err:
            log.warning("trial %d: report refused: %s", trial.number, err)
            return
        self.repo.add_event(
            search.id,
            "trial_finished",
            {
                "trial_id": trial.id,
                "number": trial.number,
                "state": reported.state.value,
                "score": reported.score,
                "reason": reported.reason,
                **(extra or {}),
            },
        )

    def _finish_if_done(self, run: TrainingRun, search: Search) -> None:
        counts = self.repo.run_counts(run)
        final = sum(
            counts.get(s, 0)
            for s in (TrialState.COMPLETED, TrialState.FAILED, TrialState.INFEASIBLE)
        )
        if final < run.trials or counts.get(TrialState.ACTIVE, 0):
            return
        best_id, test_accuracy = self._evaluate_best(run, search)
        if self.repo.finish_training_run(
            run.id, state=RunState.DONE, best_trial_id=best_id, test_accuracy=test_accuracy
        ):
            best = self.service.get_trial(best_id) if best_id else None
            self.repo.add_event(
                search.id,
                "search_finished",
                {
                    "run_id": run.id,
                    "best_trial_id": best_id,
                    "best_number": best.number if best else None,
                    "best_score": best.score if best else None,
                    "test_accuracy": test_accuracy,
                    "trials": final,
                },
            )

    def _evaluate_best(self, run: TrainingRun, search: Search) -> tuple[str | None, float | None]:
        from morphnas.nn.train import evaluate

        try:
            best = self.training.best_trial(search.id)
        except FailedPreconditionError:
            return None, None
        prepared = self.training.prepared(run.dataset, search)
        if len(prepared.split.test) == 0:
            return best.id, None
        graph = Graph.from_json(best.architecture)
        weights = check_weights(graph, weights_from_bytes(self.service.weights(best.id, "trained")))
        accuracy, _ = evaluate(graph, weights, prepared.data, prepared.split.test, prepared.norm)
        return best.id, accuracy


class _Heartbeat:
    """Renews a trial's lease while it trains; sets ``lost`` if the trial stops being ours."""

    def __init__(self, service: SearchService, trial: Trial) -> None:
        self.service = service
        self.trial = trial
        self.lost = threading.Event()
        self.done = threading.Event()
        self.every = max(0.2, trial_lease(service, trial) / 3)
        self.thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{trial.number}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join()

    def _beat(self) -> None:
        while not self.done.wait(self.every):
            try:
                self.service.heartbeat(self.trial.id)
            except FailedPreconditionError:
                self.lost.set()  # expired or finished elsewhere: stop wasting the device
                return
            except Exception:  # noqa: BLE001 - keep trying; the lease has slack
                log.warning("heartbeat of trial %d failed", self.trial.number, exc_info=True)


def trial_lease(service: SearchService, trial: Trial) -> float:
    return service.get_search(trial.search_id).config.lease_seconds


def run_worker(
    db_url: str, *, name: str | None = None, device: str | None = None, poll_seconds: float = 0.5
) -> None:
    """Entry point of ``morphnas worker``: train until SIGTERM/SIGINT."""
    import signal

    from morphnas.storage.repository import Repository

    repo = Repository.from_url(db_url)
    worker = Worker(
        TrainingService(SearchService(repo)), name=name, device=device, poll_seconds=poll_seconds
    )

    def on_signal(signum: int, frame: object) -> None:
        log.info("worker %s: signal %d, finishing", worker.name, signum)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("worker %s polling %s", worker.name, db_url.split("@")[-1])
    try:
        worker.run_forever()
    finally:
        repo.close()
