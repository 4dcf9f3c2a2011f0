"""Server-side training use cases: datasets, training runs, events, the best trial, ONNX export.

A *training run* asks for N trained trials of a search on a dataset. The servicer calls these
use cases to upload datasets, start and stop runs, stream events and export the best model; the
workers that claim and train the run's trials (:mod:`morphnas.server.worker`) call them for the
prepared dataset and the best trial. Training itself never runs on a gRPC thread.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from morphnas.core.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    shown,
)
from morphnas.core.graph import Graph
from morphnas.core.records import (
    BUILTIN_DATASETS,
    FINAL_FIT_OPTIONS,
    DatasetInfo,
    RunState,
    Search,
    SearchEvent,
    TrainingBudget,
    TrainingRun,
    Trial,
    TrialState,
)
from morphnas.core.weights import check_weights, weights_from_bytes
from morphnas.nn.datasets import (
    Dataset,
    Normalisation,
    Split,
    builtin_dataset,
    check_fits,
    compute_normalisation,
    dataset_split,
    expected_input,
    inspect_npz,
    load_npz,
    validate_for,
)
from morphnas.server.blobs import Upload
from morphnas.server.budget import INITIAL_FINAL_FIT_SHARE, run_trials
from morphnas.server.service import SearchService

log = logging.getLogger(__name__)

DATASET_CACHE_SIZE = 8  # parsed datasets kept per TrainingService (datasets never change)


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
        self._datasets = _DatasetCache(DATASET_CACHE_SIZE)

    # ------------------------------------------------------------------ datasets
    def upload_dataset(self, name: str, upload: Upload) -> DatasetInfo:
        """Check a spooled npz upload (x, y; no pickle) as it inflates, member by member in
        chunks (:func:`~morphnas.nn.datasets.inspect_npz`), then store it with its checksum:
        the arrays are never materialised here, only the file is read once, to be stored."""
        if not 1 <= len(name) <= 200:
            raise InvalidArgumentError("a dataset name must be 1 to 200 characters")
        summary = inspect_npz(
            upload.file, max_bytes=self.max_dataset_bytes, limits=self.service.limits.npz
        )
        return self.repo.create_dataset(
            name=name,
            input_shape=summary.input_shape,
            num_classes=summary.num_classes,
            num_examples=summary.num_examples,
            sha256=upload.sha256,
            data=upload.read_all(),
        )

    def list_datasets(self) -> list[DatasetInfo]:
        return self.repo.list_datasets()

    def delete_dataset(self, dataset_id: str) -> None:
        self.repo.delete_dataset(dataset_id)

    def dataset(self, ref: str) -> Dataset:
        """A built-in dataset by name, or an uploaded one by id (cached: datasets never change)."""
        if ref in BUILTIN_DATASETS:
            return self._datasets.get(("builtin", ref), lambda: builtin_dataset(ref))
        info = self.repo.get_dataset(ref)
        # ``sha256`` is in the key as well as the id: an id is never reused for other bytes.
        return self._datasets.get(
            ("upload", info.id, info.sha256),
            lambda: load_npz(
                self.repo.load_dataset_bytes(info.id), max_bytes=self.max_dataset_bytes
            ),
        )

    def prepared(self, ref: str, search: Search) -> PreparedData:
        data = self.dataset(ref)
        split = dataset_split(data, seed=search.config.seed)
        return PreparedData(data, split, compute_normalisation(data.x, split.train))

    # ------------------------------------------------------------------ runs
    def start_training(
        self,
        search_id: str,
        dataset: str,
        trials: int,
        budget: TrainingBudget,
        budget_seconds: float = 0.0,
        final_fit: str = "none",
    ) -> TrainingRun:
        """Start a run of ``trials`` trials, or of as many as ``budget_seconds`` of training
        allow when ``trials`` is 0 (at most ``MAX_RUN_TRIALS``); with both, the first reached
        ends the run. ``final_fit``: "none", or how the worker that closes the run trains the
        best architecture on training + validation data ("continue" or "retrain").

        ``trials`` 0 without a budget but with a final fit: a run that only does the final fit
        of the search's current best trial (``SearchHandle.final_fit``)."""
        if final_fit not in FINAL_FIT_OPTIONS:
            raise InvalidArgumentError(
                f"final_fit must be one of {FINAL_FIT_OPTIONS}, got {shown(final_fit)}"
            )
        fit_only = trials == 0 and budget_seconds == 0 and final_fit != "none"
        if fit_only:
            self.best_trial(search_id)  # FailedPrecondition when there is nothing to fit
        else:
            trials = run_trials(trials, budget_seconds)
        if not dataset:
            raise InvalidArgumentError(
                f"name a dataset: one of {BUILTIN_DATASETS} or an uploaded id"
            )
        search = self.service.get_search(search_id)
        config = search.config
        if dataset in BUILTIN_DATASETS:
            validate_for(self.dataset(dataset), config.input_shape, config.num_classes)
        else:  # checked on its record: the API server never loads an uploaded dataset
            try:
                info = self.repo.get_dataset(dataset)
            except NotFoundError:
                raise NotFoundError(
                    f"no dataset {shown(dataset)}: use one of {BUILTIN_DATASETS} or upload one"
                ) from None
            # An upload's num_classes is its highest label + 1 (inspect_npz).
            check_fits(
                info.name,
                info.input_shape,
                info.num_classes - 1,
                config.input_shape,
                config.num_classes,
            )
        # Writes the run_started event too (before any worker can claim the run).
        return self.repo.create_training_run(
            search.id,
            dataset=dataset,
            trials=trials,
            budget=budget,
            budget_seconds=budget_seconds,
            final_fit=final_fit,
            # Until a trial measures the architecture's speed (see morphnas.server.budget).
            reserved_seconds=(
                INITIAL_FINAL_FIT_SHARE * budget_seconds if final_fit != "none" else 0.0
            ),
        )

    def resume_training(self, search_id: str) -> TrainingRun:
        """Continue a search (a stopped one too) with what its latest run still owes: the
        trials that did not complete (those the stop cancelled included) and the budget seconds
        not spent, on the same dataset and per-trial budget."""
        search = self.service.get_search(search_id)
        last = self.repo.latest_training_run(search.id)
        if last is None:
            raise FailedPreconditionError(
                f"search {search.id!r} never trained: start a run with a dataset first"
            )
        if last.state is RunState.RUNNING and not search.stopped:
            raise FailedPreconditionError(
                f"search {search.id!r} is training now (run {last.id}); watch it instead"
            )
        completed = self.repo.run_counts(last).get(TrialState.COMPLETED, 0)
        owed = last.trials - completed
        seconds_left = last.seconds_left  # for trials: the final fit's reservation held back
        trials_owed = owed > 0 and (seconds_left is None or seconds_left > 0)
        # The final fit the last run asked for is owed until it has run (a stop during the
        # search or the fit); the resumed run does it, like the run it continues.
        fit_owed = last.final_fit != "none" and last.final_test_accuracy is None
        if not trials_owed and not fit_owed:
            raise FailedPreconditionError(
                f"search {search.id!r} is owed no training: its last run trained all it was "
                "asked to; start a new run to train more"
            )
        if not trials_owed:
            # Only the final fit is left: a run that only does it (no trials, no budget).
            self.best_trial(search.id)  # FailedPrecondition when there is nothing to fit
            return self.repo.create_training_run(
                search.id,
                dataset=last.dataset,
                trials=0,
                budget=last.budget,
                final_fit=last.final_fit,
                resume=True,
            )
        # The budget seconds not spent, the final fit's reservation included (reserved anew).
        budget_seconds = (
            max(0.0, last.budget_seconds - last.spent_seconds) if last.budget_seconds > 0 else 0.0
        )
        return self.repo.create_training_run(
            search.id,
            dataset=last.dataset,
            trials=owed,
            budget=last.budget,
            budget_seconds=budget_seconds,
            final_fit=last.final_fit,
            reserved_seconds=(
                INITIAL_FINAL_FIT_SHARE * budget_seconds if last.final_fit != "none" else 0.0
            ),
            resume=True,
        )

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

    def export_onnx(
        self, search_id: str, trial_id: str, softmax: bool, weights: str = "auto"
    ) -> bytes:
        """ONNX bytes of a trial (default: the search's best) with its normalisation baked in.

        ``weights``: "auto" exports the trial's ``final`` weights (a final fit on training +
        validation data) when it has them, else its ``trained`` ones; "trained" always the
        trial's own trained weights. The metadata says which (``weights``) and, when the run
        measured it, that model's ``test_accuracy``."""
        if weights not in ("auto", "trained"):
            raise InvalidArgumentError(f"weights must be 'auto' or 'trained', got {weights!r}")
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
        final = self.repo.load_weights(trial.id, "final") if weights == "auto" else None
        kind = "trained" if final is None else "final"
        blob = final if final is not None else self.service.weights(trial.id, "trained")
        tensors = check_weights(graph, weights_from_bytes(blob))
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
            "weights": kind,
            "expected_input": expected_input(graph.input_shape, run.dataset if run else None),
        }
        if run is not None and run.best_trial_id == trial.id:
            measured = run.final_test_accuracy if kind == "final" else run.test_accuracy
            if measured is not None:
                metadata["test_accuracy"] = repr(measured)
        return export_onnx(graph, tensors, norm, softmax=softmax, metadata=metadata)


class _DatasetCache:
    """Parsed datasets by key, the most recently used ``capacity`` kept (thread-safe).

    Owned by one :class:`TrainingService`, so it lives and dies with it (a module-level
    ``lru_cache`` keyed by the repository kept every repository alive). A miss parses outside the
    lock: two threads missing the same key both parse, and the second result replaces the first.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, ...], Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...], load: Callable[[], Dataset]) -> Dataset:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = load()
        with self._lock:
            self._items[key] = data
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
