"""The dashboard's JSON API over a real socket: what the pages read, the tokens, the errors,
the static report, on SQLite and PostgreSQL (the browser tests are in test_browser.py)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from morphnas.core.records import Policy, SearchConfig, TrialState
from morphnas.dashboard import payload
from morphnas.dashboard.app import RunningDashboard, start_dashboard
from morphnas.dashboard.data import DatabaseSource
from morphnas.dashboard.report import report_html
from morphnas.server.service import SearchService
from morphnas.storage import Repository
from tests.dashboard.synthetic import build_search


@pytest.fixture
def source(db_url: str) -> Iterator[DatabaseSource]:
    repo = Repository.from_url(db_url)
    yield DatabaseSource(repo)
    repo.close()


@pytest.fixture
def search_id(source: DatabaseSource) -> str:
    return build_search(source.repo, 12, fail_every=5)


@pytest.fixture
def dashboard(source: DatabaseSource, search_id: str) -> Iterator[RunningDashboard]:
    running = start_dashboard(source)
    yield running
    running.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    status, _, body = get(url, headers)
    assert status == 200, body
    return json.loads(body)


def test_search_payload_has_every_trial_with_its_parent(
    dashboard: RunningDashboard, source: DatabaseSource, search_id: str
) -> None:
    data = get_json(f"{dashboard.url}api/search/{search_id}")
    trials = source.trials(search_id)
    assert [row["n"] for row in data["trials"]] == [t.number for t in trials]
    number_of = {t.id: t.number for t in trials}
    for row, trial in zip(data["trials"], trials, strict=True):
        assert row["parent"] == (number_of[trial.parent_id] if trial.parent_id else None)
        assert row["params"] == trial.num_params and row["flops"] > 0
        assert row["kinds"] == [op["op"] for op in trial.operations]
    summary = data["search"]
    assert summary["counts"]["FAILED"] == 2 and summary["counts"]["COMPLETED"] == 10
    best = max((t for t in trials if t.score is not None), key=lambda t: t.score or 0.0)
    assert summary["best"] == best.score and data["best_path"][-1] == best.number
    assert data["best_path"][0] == 0  # the seed
    assert set(data["axes"]) >= {"params", "flops"}


def test_search_answers_not_modified_until_a_trial_changes(
    dashboard: RunningDashboard, source: DatabaseSource, search_id: str
) -> None:
    import random

    from tests.dashboard.synthetic import add_trial

    url = f"{dashboard.url}api/search/{search_id}"
    _, headers, _ = get(url)
    etag = headers["etag"]
    assert get(url, {"If-None-Match": etag})[0] == 304
    from morphnas.server.service import SearchService

    add_trial(SearchService(source.repo), source.repo, search_id, random.Random(0))
    status, _, body = get(url, {"If-None-Match": etag})
    assert status == 200 and len(json.loads(body)["trials"]) == 13


def test_searches_curves_and_trial(
    dashboard: RunningDashboard, source: DatabaseSource, search_id: str
) -> None:
    (row,) = get_json(f"{dashboard.url}api/searches")["searches"]
    assert row["id"] == search_id and row["trials"] == 12 and row["policy"] == "random"
    trial = source.trials(search_id)[3]
    curves = get_json(f"{dashboard.url}api/search/{search_id}/curves?trials={trial.id}")
    assert [step for step, _ in curves[trial.id]["val_accuracy"]] == [1, 2, 3, 4]
    data = get_json(f"{dashboard.url}api/trial/{trial.id}")
    assert data["trial"]["n"] == 3 and data["onnx"] is True
    assert [layer["name"] for layer in data["layers"]] == [
        layer["name"] for layer in json.loads(trial.architecture)["layers"]
    ]
    assert data["curves"] == curves


def test_unknown_ids_are_404_and_pages_are_html(dashboard: RunningDashboard) -> None:
    status, _, body = get(f"{dashboard.url}api/search/{'0' * 32}")
    assert status == 404 and "error" in json.loads(body)
    assert get(f"{dashboard.url}api/trial/nope")[0] == 404
    status, headers, body = get(f"{dashboard.url}search/{'0' * 32}")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'data-page="search"' in body


def test_tokens_guard_everything_but_static_assets(source: DatabaseSource, search_id: str) -> None:
    running = start_dashboard(source, tokens=("s3cret",))
    try:
        api = f"{running.url}api/searches"
        assert get(api)[0] == 401
        assert get(api, {"Authorization": "Bearer wrong"})[0] == 401
        assert get(api, {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(f"{running.url}search/{search_id}")[0] == 401  # the page asks for a token
        assert get(f"{running.url}static/dashboard.js")[0] == 200
        # ?token= sets the cookie and drops the token from the address
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{running.url}search/{search_id}?token=s3cret", timeout=30) as page:
            assert page.status == 200 and page.url.endswith(f"/search/{search_id}")
        with opener.open(api, timeout=30) as response:
            assert response.status == 200
    finally:
        running.stop()


#: (score, measured latency in ms) of the trials of the Pareto example, None: not measured.
#: Against latency the front is trials 0, 1 and 3: 2 is slower and worse than 1, 4 slower and
#: worse than 3; 5 has the best score but no latency, 6 failed.
PARETO_TRIALS = [(0.5, 1.0), (0.6, 2.0), (0.55, 3.0), (0.9, 4.0), (0.8, 5.0), (0.95, None)]


def pareto_search(repo: Repository) -> str:
    """A search whose trials have the known scores and latencies of :data:`PARETO_TRIALS`,
    and one FAILED trial."""
    service = SearchService(repo)
    config = SearchConfig(
        name="pareto example", input_shape=(1, 8, 8), num_classes=10, policy=Policy.RANDOM,
        seed=5, seed_width=8, seed_depth=2,
    )  # fmt: skip
    search = service.create_search(config)
    for score, latency in PARETO_TRIALS:
        (trial,) = service.suggest(search.id, 1, "test")
        metrics = {} if latency is None else {"latency_ms": latency}
        service.report(trial.id, state=TrialState.COMPLETED, score=score, metrics=metrics)
    (failed,) = service.suggest(search.id, 1, "test")
    service.report(failed.id, state=TrialState.FAILED, score=None, reason="out of memory")
    return search.id


def dominated(i: int, points: list[tuple[int, float, float]]) -> bool:
    """Whether another (number, score, cost) point has a score at least as high at a cost at
    least as low, and is better in one of them."""
    _, a, c = points[i]
    return any(b >= a and d <= c and (b > a or d < c) for _, b, d in points)


def test_search_payload_names_the_pareto_front_of_each_axis(
    dashboard: RunningDashboard, source: DatabaseSource
) -> None:
    search_id = pareto_search(source.repo)
    data = get_json(f"{dashboard.url}api/search/{search_id}")
    assert data["axes"]["latency_ms"] == "measured latency (ms)"  # offered: latency measured
    assert data["pareto"]["latency_ms"] == [0, 1, 3]  # cheapest first
    assert [row["latency_ms"] for row in data["trials"]] == [lat for _, lat in PARETO_TRIALS] + [
        None
    ]
    # against parameters and FLOPs: exactly the completed trials nothing beats on both
    for axis in ("params", "flops"):
        points = [(r["n"], r["score"], r[axis]) for r in data["trials"] if r["score"] is not None]
        front = {n for i, (n, _, _) in enumerate(points) if not dominated(i, points)}
        assert set(data["pareto"][axis]) == front, axis
        assert 5 in front  # the best score is always on the front
    # the same fronts in the static report
    match = re.search(r'type="application/json">(.*?)</script>', report_html(source, search_id))
    assert match is not None
    assert json.loads(match.group(1))["search"]["pareto"] == data["pareto"]
    # a faster, better trial replaces the whole latency front (no stale answer is kept)
    service = SearchService(source.repo)
    (best,) = service.suggest(search_id, 1, "test")
    service.report(best.id, state=TrialState.COMPLETED, score=0.99, metrics={"latency_ms": 0.5})
    data = get_json(f"{dashboard.url}api/search/{search_id}")
    assert data["pareto"]["latency_ms"] == [best.number]


def test_latency_axis_only_once_a_latency_is_measured(
    dashboard: RunningDashboard, search_id: str
) -> None:
    data = get_json(f"{dashboard.url}api/search/{search_id}")
    assert list(data["axes"]) == ["params", "flops"]
    assert set(data["pareto"]) == {"params", "flops"}
    assert data["pareto"]["params"]  # some completed trial is always on the front


def test_report_is_self_contained(source: DatabaseSource, search_id: str, tmp_path: Path) -> None:
    html = report_html(source, search_id)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched
    assert "<link" not in html.replace('<link rel="icon" href="data:,">', "")
    match = re.search(
        r'<script id="morphnas-data" type="application/json">(.*?)</script>', html, re.S
    )
    assert match is not None
    data = json.loads(match.group(1))
    assert len(data["search"]["trials"]) == 12
    assert set(data["layers"]) == {t.id for t in source.trials(search_id)}
    assert len(data["search"]["curves"]) == 10  # the best trials' curves, embedded


def test_trial_names_with_markup_stay_inert_in_a_report(
    source: DatabaseSource, tmp_path: Path
) -> None:
    search_id = build_search(source.repo, 2, name="</script><script>alert(1)</script>")
    html = report_html(source, search_id)
    assert "<script>alert(1)" not in html


def test_json_has_no_non_finite_numbers() -> None:
    assert payload.to_json({"a": [float("nan"), float("inf"), 1.5]}) == '{"a":[null,null,1.5]}'
