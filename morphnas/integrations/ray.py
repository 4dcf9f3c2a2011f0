"""Ray Tune drives a morphnas search: :class:`MorphnasSearcher` is a Tune ``Searcher`` that asks
the morphnas server for trials and tells it their results, through the SDK (``morphnas.client``).

    from ray import tune
    from morphnas.integrations.ray import (
        WEIGHTS_KEY, MorphnasSearcher, inherited_model, upload_trained_weights)

    def trainable(config):
        model = inherited_model(config)          # the architecture, with its inherited weights
        for epoch in range(1, 4):
            accuracy = train_one_epoch(model)    # yours
            result = {"val_accuracy": accuracy}
            if epoch == 3:                        # upload the trained weights, name them
                result[WEIGHTS_KEY] = upload_trained_weights(config, model)
            tune.report(result)

    searcher = MorphnasSearcher(search.id, metric="val_accuracy", mode="max")
    tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=8),
        run_config=tune.RunConfig(stop=searcher.stopper()),
    ).fit()

How a Tune trial maps onto a morphnas trial:

- ``suggest(tune_trial_id)`` asks the search for one trial with the worker id
  ``"tune-<tune_trial_id>"``. The server hands a worker the trials it already holds, so a
  retried suggest (or one repeated after ``Tuner.restore``) gets the same morphnas trial, never
  a second one. The config carries the morphnas trial id, its number, parent and architecture
  under ``config["morphnas"]``, plus the server's address; never weights, never a token.
- Inside the trainable, :func:`inherited_model` downloads the trial's initial weights (its
  parent's trained weights carried through the morphs) and builds the torch module;
  :func:`upload_trained_weights` streams the trained weights to the server and returns their
  sha256, which the trainable reports under :data:`WEIGHTS_KEY`.
- ``on_trial_result`` reports the metric as progress (``ReportProgress``, step =
  ``training_iteration``), which renews the trial's lease; the server's answer ``should_stop``
  (early stopping across trials, or a stopped search) is honoured by the
  :meth:`MorphnasSearcher.stopper` given to ``RunConfig(stop=...)`` (a ``Searcher`` cannot stop
  a trial itself; the stopper sees each result first, so it asks the server and the searcher
  reuses the answer instead of asking twice).
- ``on_trial_complete`` reports COMPLETED with the last result's metric as the score and the
  weights named by the latest :data:`WEIGHTS_KEY` seen; a trial that errored, or never reported
  the metric, is reported FAILED with the reason.
- ``suggest`` returns ``None`` (Tune asks again later) while the search waits for results:
  while the first trial of a search trains and none is completed yet (``wait_for_seed``: later
  trials are then morphs of a *trained* parent, not untrained random variants), when
  ``max_concurrent`` trials are in flight, or while the server is unreachable. It returns
  ``Searcher.FINISHED`` once the search has handed out ``max_trials`` or was stopped.
- ``save``/``restore`` (JSON, never pickle) keep the map from Tune trial ids to morphnas trial
  ids, so ``Tuner.restore`` resumes the same morphnas search: its unfinished trials report to
  the morphnas trials they were given.

``mode="min"`` is supported by reporting minus the metric (morphnas maximises its scores).
Credentials: a bearer token comes from ``token=`` or ``$MORPHNAS_TOKEN``; it is never written
into Tune's config or checkpoints, so after ``Tuner.restore`` (and inside trainables on other
machines) it is read from ``$MORPHNAS_TOKEN`` again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any

from morphnas.client import Client, SearchHandle, TrialHandle, to_numpy_weights
from morphnas.core.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    MorphnasError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from morphnas.core.weights import weights_to_bytes

try:
    from ray.tune.search import Searcher
    from ray.tune.stopper import Stopper
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "morphnas.integrations.ray needs Ray Tune: pip install 'morphnas[ray]'"
    ) from err

log = logging.getLogger(__name__)

#: The key of ``config`` under which a Tune trial's morphnas trial travels.
CONFIG_KEY = "morphnas"
#: The result key under which a trainable names its uploaded trained weights (their sha256).
WEIGHTS_KEY = "morphnas_weights_sha256"
#: Worker ids are ``WORKER_PREFIX + tune_trial_id`` (the server allows 200 characters).
WORKER_PREFIX = "tune-"
DEFAULT_SERVER = "127.0.0.1:50051"
#: While the seed trains, how often ``suggest`` asks the server whether a trial completed.
SEED_CHECK_SECONDS = 0.5


def default_server() -> str:
    """``$MORPHNAS_SERVER``, as the ``morphnas`` command reads it, else 127.0.0.1:50051."""
    return os.environ.get("MORPHNAS_SERVER", DEFAULT_SERVER)


@dataclass
class _Live:
    """A Tune trial in flight and what the searcher learnt of it from its results."""

    morphnas_id: str
    worker_id: str
    score: float | None = None  # the latest metric, as a morphnas score (higher is better)
    weights_sha256: str = ""
    step: int = 0  # the latest training_iteration reported as progress
    stop: bool = False  # the server's latest should_stop
    ended: bool = False  # Tune completed it; its report could not be sent yet (server down)
    errored: bool = False  # ... and it ended with an error
    handle: TrialHandle | None = field(default=None, repr=False, compare=False)

    def state(self) -> dict[str, Any]:
        """What ``save`` keeps (the handle is a connection, rebuilt on demand)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "handle"}


class MorphnasSearcher(Searcher):  # type: ignore[misc]
    """A Ray Tune ``Searcher`` backed by a morphnas search (see the module docstring)."""

    def __init__(
        self,
        search_id: str,
        server: str | None = None,
        *,
        metric: str | None = None,
        mode: str | None = None,
        max_concurrent: int = 0,
        wait_for_seed: bool = True,
        token: str | None = None,
        tls: bool = False,
        tls_ca: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        """``search_id``: a search created on ``server`` (default ``$MORPHNAS_SERVER``).
        ``max_concurrent`` > 0 caps the trials in flight (0: Tune's own limits decide)."""
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if max_concurrent < 0:
            raise ValueError(f"max_concurrent must be 0 (no cap) or more, got {max_concurrent}")
        super().__init__(metric=metric, mode=mode)
        self.search_id = search_id
        self.server = server or default_server()
        self.max_concurrent = max_concurrent
        self.wait_for_seed = wait_for_seed
        self._token = token
        self._tls = tls
        self._tls_ca = tls_ca
        self._timeout = timeout
        self._client: Client | None = None
        self._live: dict[str, _Live] = {}
        self._seeded = False  # a trial of the search is COMPLETED
        self._finished = False  # the search handed out all it will
        self._next_seed_check = 0.0  # monotonic time of the next "is a trial completed?" ask

    # ------------------------------------------------------------------ Tune's Searcher API
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Take Tune's ``metric``/``mode`` when not given here; constants in ``param_space``
        are merged into each config by Tune (morphnas proposes the architecture itself)."""
        if self._metric and metric and metric != self._metric:
            return False
        if self._mode and mode and mode != self._mode:
            return False
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        if not self.metric:
            raise ValueError("MorphnasSearcher needs a metric: give metric= here or to TuneConfig")
        self._send_late_reports()
        live = self._live.get(trial_id)
        if live is not None:  # asked again for a trial it was already given
            return self._config(self._handle(live))
        if self._finished:
            return Searcher.FINISHED
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        waiting = self.wait_for_seed and self._live and not self._seeded
        if waiting and time.monotonic() < self._next_seed_check:
            return None  # Tune asks many times a second; the server is asked every 0.5 s
        try:
            search = self.client.get_search(self.search_id)
            if search.info.stopped:
                raise FailedPreconditionError(f"search {self.search_id} was stopped")
            if waiting and not self._has_completed_trial(search):
                self._next_seed_check = time.monotonic() + SEED_CHECK_SECONDS
                return None
            handles = search.suggest(1, worker_id=WORKER_PREFIX + trial_id)
        except (ResourceExhaustedError, FailedPreconditionError) as err:
            log.info("search %s hands out no more trials: %s", self.search_id, err)
            self._finished = True
            return Searcher.FINISHED
        except UnavailableError as err:
            log.warning(
                "morphnas server %s unavailable (%s); Tune will ask again", self.server, err
            )
            return None
        if not handles:  # nothing proposable right now (e.g. every candidate over the size cap)
            return None
        [handle] = handles
        self._live[trial_id] = _Live(handle.id, WORKER_PREFIX + trial_id, handle=handle)
        return self._config(handle)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.should_stop(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        live = self._live.get(trial_id)
        if live is None:
            return
        if result:
            self._absorb(live, result)
        live.ended, live.errored = True, error
        self._send_report(trial_id, live)

    def _send_report(self, trial_id: str, live: _Live) -> None:
        try:
            self._report_outcome(trial_id, live, live.errored)
        except UnavailableError as err:
            # Kept (and saved with the searcher's state): the next suggest sends it again. The
            # trial's lease may expire meanwhile; its report still counts then.
            log.warning(
                "Tune trial %s: report not sent, the server is unavailable: %s", trial_id, err
            )
            return
        del self._live[trial_id]

    def _send_late_reports(self) -> None:
        for trial_id, live in list(self._live.items()):
            if live.ended:
                self._send_report(trial_id, live)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w", encoding="utf-8") as handle:
            json.dump(self.get_state(), handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as handle:
            self.set_state(json.load(handle))

    def get_state(self) -> dict[str, Any]:
        """The searcher's state as JSON-able data (no token, no weights)."""
        return {
            "version": 1,
            "search_id": self.search_id,
            "server": self.server,
            "metric": self._metric,
            "mode": self._mode,
            "max_concurrent": self.max_concurrent,
            "wait_for_seed": self.wait_for_seed,
            "seeded": self._seeded,
            "finished": self._finished,
            "live": {tune_id: live.state() for tune_id, live in self._live.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != 1:
            raise ValueError(f"unknown MorphnasSearcher state version {state.get('version')!r}")
        self.search_id = str(state["search_id"])
        self.server = str(state["server"])
        self._metric = state["metric"]
        self._mode = state["mode"]
        self.max_concurrent = int(state["max_concurrent"])
        self.wait_for_seed = bool(state["wait_for_seed"])
        self._seeded = bool(state["seeded"])
        self._finished = bool(state["finished"])
        self._next_seed_check = 0.0
        self._live = {tune_id: _Live(**kept) for tune_id, kept in state["live"].items()}

    # ------------------------------------------------------------------ stopping
    def stopper(self) -> MorphnasStopper:
        """A Tune ``Stopper`` for ``RunConfig(stop=...)`` that ends a trial when the server says
        it should stop (pruned by early stopping across trials, or the search was stopped)."""
        return MorphnasStopper(self)

    def should_stop(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Report ``result``'s metric as progress (once per step) and return the server's
        should_stop for the trial."""
        live = self._live.get(trial_id)
        if live is None:
            return False
        step = self._absorb(live, result)
        if step is None or step <= live.step or live.score is None:
            return live.stop
        live.step = step
        try:
            live.stop = self._handle(live).progress(step, live.score, name=self.metric)
        except AlreadyExistsError:
            # A re-run after Tuner.restore reports steps the first run reported already.
            log.info("Tune trial %s: step %d was reported before; not again", trial_id, step)
        except MorphnasError as err:
            log.warning("Tune trial %s: progress not reported: %s", trial_id, err)
        return live.stop

    # ------------------------------------------------------------------ the connection
    @property
    def client(self) -> Client:
        """The SDK client, connected on first use (and again after unpickling)."""
        if self._client is None:
            self._client = Client(
                self.server,
                timeout=self._timeout,
                token=self._token or os.environ.get("MORPHNAS_TOKEN") or None,
                tls=self._tls,
                tls_ca=self._tls_ca,
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its search algorithm into its experiment state: no connection, no token."""
        state = dict(self.__dict__)
        state["_client"] = None
        state["_token"] = None
        state["_next_seed_check"] = 0.0  # a monotonic time means nothing in another process
        state["_live"] = {k: _Live(**v.state()) for k, v in self._live.items()}
        return state

    # ------------------------------------------------------------------ helpers
    def _handle(self, live: _Live) -> TrialHandle:
        if live.handle is None:
            live.handle = self.client.get_trial(live.morphnas_id)
        return live.handle

    def _config(self, handle: TrialHandle) -> dict[str, Any]:
        return {
            CONFIG_KEY: {
                "server": self.server,
                "search_id": handle.info.search_id,
                "trial_id": handle.id,
                "number": handle.number,
                "parent_id": handle.parent_id or "",
                "architecture": handle.info.architecture_json,
            }
        }

    def _has_completed_trial(self, search: SearchHandle) -> bool:
        if not self._seeded:
            self._seeded = bool(search.trials(states=["COMPLETED"]))
        return self._seeded

    def _score(self, value: Any) -> float:
        score = float(value)
        return -score if self._mode == "min" else score

    def _absorb(self, live: _Live, result: dict[str, Any]) -> int | None:
        """Take the metric and the weights' name from a result; returns its step, if any."""
        sha = result.get(WEIGHTS_KEY)
        if isinstance(sha, str) and sha:
            live.weights_sha256 = sha
        if self.metric in result and result[self.metric] is not None:
            live.score = self._score(result[self.metric])
        step = result.get("training_iteration")
        return int(step) if step is not None else None

    def _report_outcome(self, trial_id: str, live: _Live, error: bool) -> None:
        handle = self._handle(live)
        try:
            if error:
                handle.report(
                    state="FAILED",
                    reason=f"Ray Tune trial {trial_id} raised an error (see its error file)",
                    worker_id=live.worker_id,
                )
            elif live.score is None:
                handle.report(
                    state="FAILED",
                    reason=f"Ray Tune trial {trial_id} reported no {self.metric!r}",
                    worker_id=live.worker_id,
                )
            else:
                self._report_completed(handle, live)
                self._seeded = True
        except FailedPreconditionError as err:
            log.warning("Tune trial %s: the server refused its report: %s", trial_id, err)

    def _report_completed(self, handle: TrialHandle, live: _Live) -> None:
        try:
            handle.report(live.score, weights_sha256=live.weights_sha256, worker_id=live.worker_id)
        except (InvalidArgumentError, NotFoundError, FailedPreconditionError) as err:
            if not live.weights_sha256:
                raise
            # The score still counts; children then inherit the trial's initial weights.
            log.warning("trial %s: its uploaded weights were refused (%s)", handle.id, err)
            handle.report(live.score, worker_id=live.worker_id)


class MorphnasStopper(Stopper):  # type: ignore[misc]
    """Stops a Tune trial when the morphnas server answers should_stop to its progress."""

    def __init__(self, searcher: MorphnasSearcher) -> None:
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return self.searcher.should_stop(trial_id, result)

    def stop_all(self) -> bool:
        return False


def trial_dirname(trial: Any) -> str:
    """For ``TuneConfig(trial_dirname_creator=trial_dirname)``: name a Tune trial's folder by its
    morphnas trial number (Tune's default folds the whole config, architecture JSON included,
    into the name)."""
    number = trial.config.get(CONFIG_KEY, {}).get("number", "x")
    return f"morphnas_{number}_{trial.trial_id}"


# ---------------------------------------------------------------------- inside the trainable
def trial_client(config: dict[str, Any], **kwargs: Any) -> Client:
    """A client for the server that handed out ``config``'s trial (token: ``$MORPHNAS_TOKEN``)."""
    token = kwargs.pop("token", None) or os.environ.get("MORPHNAS_TOKEN") or None
    return Client(_trial(config)["server"], token=token, **kwargs)


def inherited_model(config: dict[str, Any], client: Client | None = None) -> Any:
    """The torch module of ``config``'s trial holding its initial weights: its parent's trained
    weights carried through the morphs (fresh weights for a seed). Needs torch."""
    trial_id = _trial(config)["trial_id"]
    if client is not None:
        return client.get_trial(trial_id).build_model()
    with trial_client(config) as own:
        return own.get_trial(trial_id).build_model()


def upload_trained_weights(
    config: dict[str, Any], weights: Any, client: Client | None = None
) -> str:
    """Upload the trained weights of ``config``'s trial (a torch module, its ``state_dict()``, or
    a mapping of numpy arrays) and return their sha256: report it under :data:`WEIGHTS_KEY`."""
    if hasattr(weights, "state_dict"):
        weights = weights.state_dict()
    blob = weights_to_bytes(to_numpy_weights(weights))
    trial_id = _trial(config)["trial_id"]
    if client is not None:
        return client.upload_weights(trial_id, blob)
    with trial_client(config) as own:
        return own.upload_weights(trial_id, blob)


def _trial(config: dict[str, Any]) -> dict[str, Any]:
    trial = config.get(CONFIG_KEY)
    if not isinstance(trial, dict) or "trial_id" not in trial:
        raise ValueError(
            f"config has no {CONFIG_KEY!r} trial: run this trainable with MorphnasSearcher"
        )
    return trial
