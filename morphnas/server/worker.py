"""The training worker: claims jobs from the database and trains them until stopped.

Workers are processes started by ``morphnas serve --workers N`` (see
:mod:`morphnas.server.workers`) or ``morphnas worker --db URL`` on other machines. Each loops:

1. claim a slot of a running run from the database (the job queue, see
   :mod:`morphnas.storage.training`);
2. ask the search for a trial with its own worker id (the same ``suggest`` remote workers use,
   so the optimiser sees one history);
3. train it from its inherited weights, renewing the lease from a heartbeat thread and writing an
   event after every epoch;
4. report the validation accuracy and the trained weights (or FAILED with the reason: an
   out-of-memory failure lowers the search's size cap);
5. when the run has all its trials, or its compute budget is spent
   (:mod:`morphnas.server.budget`), evaluate the best model on the test split and close the run;
6. if the run asks for a final fit, the worker that closed it trains the best architecture on
   training + validation data (:func:`morphnas.nn.recipe.final_fit`), stores the result as the
   best trial's ``final`` weights, evaluates it on the test split (event ``final_fit_finished``)
   and then writes ``search_finished`` with both test accuracies. With a compute budget, an
   estimate of the final fit's seconds is reserved out of it after every trial
   (:func:`morphnas.server.budget.final_fit_reserve`), so the trials stop early enough.

A trial whose learning curve falls clearly below its parent's and its peers' is stopped early
(``SearchService.progress`` answers should_stop, :mod:`morphnas.search.stopping`) and reports
its best epoch so far as COMPLETED, ``stopped_reason`` "pruned".

A worker that dies stops renewing its lease: the trial goes STALE and the next worker retries its
architecture. Training never runs on a gRPC thread. The use cases the worker calls (datasets,
best trial) live in :mod:`morphnas.server.training`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

from morphnas.core.errors import FailedPreconditionError, UnavailableError
from morphnas.core.graph import Graph
from morphnas.core.records import FINAL_STATES, RunState, Search, TrainingRun, Trial, TrialState
from morphnas.core.weights import check_weights, weights_from_bytes, weights_to_bytes
from morphnas.server.budget import (
    BUDGET_SPENT,
    TRIALS_DONE,
    TrialMeter,
    final_fit_reserve,
    stopped_by_search,
)
from morphnas.server.metrics import record_training
from morphnas.server.service import SearchService
from morphnas.server.training import PreparedData, TrainingService

if TYPE_CHECKING:
    from morphnas.core.weights import Weights
    from morphnas.nn.latency import Latency
    from morphnas.nn.train import EpochResult, TrainConfig, TrainResult

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class _Job:
    """One claimed trial of a run, and the signals besides the worker's own stop that end its
    training early: the lease was lost, the search was stopped (seen in a progress report), or
    the meter says the run's budget is spent or the trial was pruned."""

    run: TrainingRun
    search: Search
    trial: Trial
    lease_lost: threading.Event
    search_stopped: threading.Event = field(default_factory=threading.Event)
    #: The trial's share of the run's compute budget, set by ``Worker._train`` when the trial's
    #: data and weights are loaded (so their loading is not charged).
    meter: TrialMeter = field(init=False, repr=False)
    #: The trial it was morphed from (None for a seed), read when training starts.
    parent: Trial | None = field(init=False, default=None)


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
        # A spent run, or one of a final fit only, is handed out only to be closed.
        if run.budget_spent or run.trials == 0:
            self._finish_run_if_done(run, search)
            return False
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
            self._train(_Job(run, search, trial, beat.lost))
        finally:
            beat.stop()
        self._reserve_final_fit(run, search)
        self._finish_run_if_done(run, search)
        return True

    # ------------------------------------------------------------------ one trial
    def _train(self, job: _Job) -> None:
        """Prepare, train and report one trial; a failure is reported, never raised."""
        from morphnas.nn.train import TrainingOutOfMemory

        graph = Graph.from_json(job.trial.architecture)
        self._announce_start(job, graph)
        prepared = self.training.prepared(job.run.dataset, job.search)
        weights = self._initial_weights(job, graph)
        parent_id = job.trial.parent_id
        job.parent = self.service.get_trial(parent_id) if parent_id else None
        job.meter = TrialMeter(self.repo.charge_training_run, job.run)  # budget: charges this trial
        try:
            result = self._fit(job, graph, weights, prepared)
        except TrainingOutOfMemory as err:
            job.meter.charge()
            self._report_failed(job, f"out of memory: {err}")
            return
        except Exception as err:  # noqa: BLE001 - a failed trial must not kill the worker
            log.exception("trial %d failed", job.trial.number)
            job.meter.charge()
            self._report_failed(job, f"{type(err).__name__}: {err}")
            return
        job.meter.charge()
        self._report_result(job, result, self._latency(job, graph, result, prepared))

    def _announce_start(self, job: _Job, graph: Graph) -> None:
        trial = job.trial
        self.repo.add_event(
            job.search.id,
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

    def _initial_weights(self, job: _Job, graph: Graph) -> Weights:
        """The weights the trial inherits from its parent (morphed to its graph)."""
        return check_weights(
            graph, weights_from_bytes(self.service.weights(job.trial.id, "initial"))
        )

    def _train_config(self, job: _Job) -> TrainConfig:
        """How this trial trains: the recipe of :func:`morphnas.nn.recipe.trial_train_config`
        (a child inheriting trained weights trains gentler than a seed), its ``max_seconds`` cut
        to what is left of the run's compute budget."""
        from morphnas.nn.recipe import trial_train_config

        config = trial_train_config(job.run, job.search, job.trial, job.parent, device=self.device)
        return replace(config, max_seconds=job.meter.max_seconds(job.run.budget.max_seconds))

    def _fit(
        self, job: _Job, graph: Graph, weights: Weights, prepared: PreparedData
    ) -> TrainResult:
        """Train until the budget is spent or any stop signal is raised."""
        from morphnas.nn.train import train_trial

        return train_trial(
            graph,
            weights,
            prepared.data,
            prepared.split,
            prepared.norm,
            self._train_config(job),
            on_epoch=lambda epoch: self._on_epoch(job, epoch),
            should_stop=lambda: self._should_stop(job),
        )

    def _should_stop(self, job: _Job) -> bool:
        return (
            job.lease_lost.is_set()
            or self.stopping.is_set()
            or job.search_stopped.is_set()
            or job.meter.exhausted()
        )

    def _on_epoch(self, job: _Job, epoch: EpochResult) -> bool:
        """Report an epoch's progress (which may stop the search, or prune the trial) and charge
        it to the run's budget; True stops training."""
        values = asdict(epoch)
        current, stop = self.service.progress(
            job.trial.id, values["epoch"], values["val_accuracy"], "val_accuracy"
        )
        self.repo.add_event(
            job.search.id,
            "epoch_finished",
            {"trial_id": job.trial.id, "number": job.trial.number, **values},
        )
        job.meter.charge()  # budget
        if stop:
            job.meter.cause = stopped_by_search(self.service, job.search, current)  # or ""
            if not job.meter.cause:  # "pruned" stops only this trial
                job.search_stopped.set()
        return bool(stop) or self.stopping.is_set() or job.meter.exhausted()

    def _latency(
        self, job: _Job, graph: Graph, result: TrainResult, prepared: PreparedData
    ) -> Latency | None:
        """The trained model's ONNX Runtime latency when the search wants it (a Pareto search
        on latency, or one with max_latency_ms); None otherwise or when it cannot be measured
        (logged: the trial still counts, only without a latency)."""
        config = job.search.config
        if not config.measures_latency or result.stopped_reason == "cancelled":
            return None
        from morphnas.nn.latency import LatencySettings, measure_latency

        try:
            return measure_latency(
                graph,
                result.weights,
                prepared.norm,
                LatencySettings(batch_size=config.latency_batch_size),
            )
        except Exception:  # noqa: BLE001 - a measurement must not lose the trained trial
            log.exception("trial %d: latency could not be measured", job.trial.number)
            return None

    # ------------------------------------------------------------------ reporting
    def _report_result(
        self, job: _Job, result: TrainResult, latency: Latency | None = None
    ) -> None:
        """Report a finished training as COMPLETED (also when the budget or pruning stopped it:
        its best so far), FAILED (search stopped), or not at all."""
        from morphnas.nn.recipe import validation_score

        if job.lease_lost.is_set():
            # The lease ran out (this worker stalled): the trial was or will be handed out again,
            # so this result would only compete with the retry.
            log.warning("trial %d: lease lost while training; not reporting", job.trial.number)
            return
        if result.stopped_reason == "cancelled" and job.meter.cause:  # budget spent, or pruned:
            result = replace(result, stopped_reason=job.meter.cause)  # report the best so far
        if result.stopped_reason == "cancelled" and not job.search_stopped.is_set():
            self.repo.release_trial(job.trial.id)  # this worker is shutting down: retry elsewhere
            return
        if result.stopped_reason == "cancelled":
            self._report_failed(job, "cancelled: the search was stopped")
            return
        record_training(int(result.samples_per_second * result.seconds), result.seconds)
        score = validation_score(result.val_accuracy, result.val_loss)
        self._report(
            job,
            state=TrialState.COMPLETED,
            score=score,
            reason="",
            weights=weights_to_bytes(result.weights),
            metrics=latency.metrics() if latency is not None else None,
            measured_on=latency.machine if latency is not None else "",
            extra={
                "epochs": result.epochs_run,
                "best_epoch": result.best_epoch,
                "seconds": result.seconds,
                "samples_per_second": result.samples_per_second,
                "stopped_reason": result.stopped_reason,
                "device": result.device,
                "val_loss": result.val_loss,
                "val_accuracy": result.val_accuracy,
                **parent_comparison(score, job.parent),
            },
        )

    def _report_failed(self, job: _Job, reason: str) -> None:
        self._report(job, state=TrialState.FAILED, score=None, reason=reason)

    def _report(
        self,
        job: _Job,
        *,
        state: TrialState,
        score: float | None,
        reason: str,
        weights: bytes = b"",
        extra: dict | None = None,
        metrics: dict[str, float] | None = None,
        measured_on: str = "",
    ) -> None:
        """Report the trial to the search and write its ``trial_finished`` event."""
        trial = job.trial
        try:
            reported = self.service.report(
                trial.id,
                state=state,
                score=score,
                reason=reason,
                weights=weights,
                metrics=metrics,
                measured_on=measured_on,
            )
        except FailedPreconditionError as err:
            log.warning("trial %d: report refused: %s", trial.number, err)
            return
        self.repo.add_event(
            job.search.id,
            "trial_finished",
            {
                "trial_id": trial.id,
                "number": trial.number,
                "state": reported.state.value,
                "score": reported.score,
                "reason": reported.reason,
                **(metrics or {}),
                **(extra or {}),
            },
        )

    # ------------------------------------------------------------------ the run
    def _finish_run_if_done(self, run: TrainingRun, search: Search) -> None:
        """Close the run once all its trials are final, or its budget is spent and none is
        active: evaluate the best, write the event."""
        counts = self.repo.run_counts(run)
        final = sum(counts.get(s, 0) for s in FINAL_STATES)
        if counts.get(TrialState.ACTIVE, 0):
            return
        run = self.repo.get_training_run(run.id)  # budget: its seconds spent so far
        if final < run.trials and not run.budget_spent:
            return
        best_id, test_accuracy = self._evaluate_best(run, search)
        if not self.repo.finish_training_run(
            run.id, state=RunState.DONE, best_trial_id=best_id, test_accuracy=test_accuracy
        ):
            return  # another worker closed it
        final_test = None
        if run.final_fit != "none" and best_id is not None:
            final_test = self._final_fit(run, search, best_id, test_accuracy)
        closed = self.repo.get_training_run(run.id)  # with the final fit's seconds charged
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
                "reason": BUDGET_SPENT if run.budget_spent else TRIALS_DONE,
                "budget_seconds": closed.budget_seconds,
                "spent_seconds": closed.spent_seconds,
                "final_fit": run.final_fit,
                "final_test_accuracy": final_test,
            },
        )

    def _evaluate_best(self, run: TrainingRun, search: Search) -> tuple[str | None, float | None]:
        """The best trial's id and its accuracy on the test split (None without one)."""
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

    # ------------------------------------------------------------------ the final fit
    def _finished_payloads(self, search: Search) -> dict[str, dict]:
        """The latest ``trial_finished`` payload of each trial of the search, by trial id."""
        events = self.repo.list_events(search.id, 0, limit=1_000_000)
        return {e.payload["trial_id"]: e.payload for e in events if e.kind == "trial_finished"}

    def _lineage_best_epochs(self, run: TrainingRun, search: Search, best: Trial) -> list[int]:
        """The best epoch of each trial from the seed down to ``best`` (the seed's first), from
        their ``trial_finished`` events; a trial trained outside the server (ask/tell) counts
        as the run's epochs a trial."""
        payloads = self._finished_payloads(search)
        lineage = [best]
        while lineage[-1].parent_id:
            lineage.append(self.service.get_trial(lineage[-1].parent_id))
        return [
            int(payloads.get(t.id, {}).get("best_epoch", run.budget.epochs))
            for t in reversed(lineage)
        ]

    def _reserve_final_fit(self, run: TrainingRun, search: Search) -> None:
        """Hold back the current best trial's final-fit estimate out of the run's budget."""
        if run.final_fit == "none" or run.budget_seconds <= 0:
            return
        from morphnas.nn.recipe import final_fit_epochs

        try:
            best = self.training.best_trial(search.id)
        except FailedPreconditionError:
            return
        payload = self._finished_payloads(search).get(best.id)
        if payload is None or not payload.get("samples_per_second"):
            return
        prepared = self.training.prepared(run.dataset, search)
        epochs = final_fit_epochs(self._lineage_best_epochs(run, search, best), run.final_fit)
        reserve = final_fit_reserve(
            samples_per_second=float(payload["samples_per_second"]),
            final_epochs=epochs,
            examples=len(prepared.split.train) + len(prepared.split.val),
            budget_seconds=run.budget_seconds,
        )
        self.repo.reserve_training_seconds(run.id, reserve)

    def _final_fit(
        self, run: TrainingRun, search: Search, best_id: str, best_test: float | None
    ) -> float | None:
        """Train the best trial's architecture on training + validation data; store the
        weights as its ``final`` ones, write ``final_fit_finished``; the final model's test
        accuracy (None without a test split, or when the fit failed)."""
        from morphnas.nn.recipe import final_fit, final_fit_epochs, recipe_config

        best = self.service.get_trial(best_id)
        payload: dict[str, object] = {
            "trial_id": best.id,
            "number": best.number,
            "mode": run.final_fit,
            "epochs": None,
            "best_trial_test_accuracy": best_test,
            "reserved_seconds": run.reserved_seconds,
        }
        started = time.perf_counter()
        test_accuracy = None
        try:
            graph = Graph.from_json(best.architecture)
            prepared = self.training.prepared(run.dataset, search)
            epochs = final_fit_epochs(self._lineage_best_epochs(run, search, best), run.final_fit)
            payload["epochs"] = epochs
            config = replace(
                recipe_config(
                    run.budget, seed=final_fit_seed(search), inherited=False, device=self.device
                ),
                max_seconds=None,  # its seconds are reserved out of a budget, not cut
            )
            weights = check_weights(
                graph, weights_from_bytes(self.service.weights(best.id, "trained"))
            )
            fit = final_fit(
                graph,
                weights,
                prepared.data,
                prepared.split,
                prepared.norm,
                epochs=epochs,
                mode=run.final_fit,
                config=config,
            )
            self.repo.store_final_weights(best.id, weights_to_bytes(fit.weights))
            test_accuracy = fit.test_accuracy
            self.repo.set_final_test_accuracy(run.id, test_accuracy)
        except Exception as err:  # noqa: BLE001 - the search's result stands without it
            log.exception("final fit of trial %d failed", best.number)
            payload["error"] = f"{type(err).__name__}: {err}"
        seconds = time.perf_counter() - started
        if run.budget_seconds > 0:
            self.repo.charge_training_run(run.id, seconds)
        payload.update(seconds=seconds, test_accuracy=test_accuracy)
        self.repo.add_event(search.id, "final_fit_finished", payload)
        return test_accuracy


def parent_comparison(score: float, parent: Trial | None) -> dict[str, float | bool | None]:
    """``parent_score`` (None for a seed or an unscored parent) and ``beat_parent``."""
    parent_score = parent.score if parent is not None else None
    return {
        "parent_score": parent_score,
        "beat_parent": parent_score is not None and score > parent_score,
    }


def final_fit_seed(search: Search) -> int:
    """The final fit's training seed: fixed by the search's, apart from every trial's."""
    return search.config.seed * 100_003 + 100_002  # a trial's is seed * 100_003 + its number


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
