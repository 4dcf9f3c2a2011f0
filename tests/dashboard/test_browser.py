"""The dashboard in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright, on a search of 24 trials with skips and several morph kinds.

Screenshots of every page are written to ``test-artifacts/dashboard/`` (git-ignored; CI keeps
them as artefacts). ``MORPHNAS_CHROMIUM`` names another Chromium binary.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from morphnas.dashboard.app import start_dashboard
from morphnas.dashboard.data import DatabaseSource
from morphnas.dashboard.report import write_report
from morphnas.server.service import SearchService
from morphnas.storage import Repository
from tests.dashboard.synthetic import add_trial, build_search

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("MORPHNAS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
TRIALS = 24


def launch(playwright: Any) -> Any:
    """Headless system Chromium (Playwright's own browser download does not work offline)."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
        ],
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    db = tmp_path_factory.mktemp("dashboard") / "search.db"
    repo = Repository.from_url(f"sqlite:///{db}")
    search_id = build_search(repo, TRIALS, name="digits-shaped synthetic")
    source = DatabaseSource(repo)
    running = start_dashboard(source)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield {
            "repo": repo,
            "source": source,
            "search_id": search_id,
            "dashboard": running,
            "browser": browser,
            "tmp": tmp_path_factory.mktemp("downloads"),
        }
        browser.close()
    running.stop()
    repo.close()


def new_page(world: dict[str, Any], **kwargs: Any) -> Any:
    page = world["browser"].new_page(viewport={"width": 1400, "height": 1000}, **kwargs)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.errors = errors
    return page


def open_ready(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function("window.morphnas && window.morphnas.ready", timeout=30_000)


def tree(page: Any) -> tuple[dict[int, str], dict[int, int]]:
    """The genealogy as drawn: trial number -> trial id, and child -> parent from the edges."""
    nodes = page.eval_on_selector_all(
        "svg.tree circle[data-trial]", "els => els.map(e => [+e.dataset.trial, e.dataset.trialId])"
    )
    edges = page.eval_on_selector_all(
        "svg.tree path[data-child]", "els => els.map(e => [+e.dataset.child, +e.dataset.parent])"
    )
    return dict(nodes), dict(edges)


def test_searches_page_lists_the_search(world: dict[str, Any]) -> None:
    page = new_page(world)
    open_ready(page, world["dashboard"].url)
    row = page.locator(f"tr[data-search='{world['search_id']}']")
    assert row.count() == 1
    assert "digits-shaped synthetic" in row.inner_text()
    assert f"{TRIALS}" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "searches.png"))
    assert page.errors == []


def test_search_page_draws_every_trial_and_the_genealogy(world: dict[str, Any]) -> None:
    trials = world["source"].trials(world["search_id"])
    number_of = {t.id: t.number for t in trials}
    kinds = {op["op"] for t in trials for op in t.operations}
    assert {"add_skip", "wider", "deeper"} <= kinds  # the search this test needs
    page = new_page(world)
    open_ready(page, f"{world['dashboard'].url}search/{world['search_id']}")
    # one point per trial on the progress charts and the scatter (uPlot's drawn data)
    for chart in ("byTrial", "byTime", "scatter"):
        points = page.evaluate(
            f"window.morphnas.charts.{chart}.data[1].filter(v => v !== null).length"
        )
        assert points == TRIALS, chart
    # the scatter marks exactly the trials on the front of score against parameters
    front = world["source"].pareto(world["search_id"], "params")
    marked = page.evaluate("window.morphnas.charts.scatter.data[2].filter(v => v !== null).length")
    assert marked == len(front) == int(page.get_attribute("#scatter", "data-pareto-points") or -1)
    assert "Pareto front" in page.locator("#scatter .u-legend").inner_text()
    nodes, edges = tree(page)
    assert sorted(nodes) == [t.number for t in trials]
    assert nodes == {t.number: t.id for t in trials}
    assert edges == {t.number: number_of[t.parent_id] for t in trials if t.parent_id}
    labels = page.eval_on_selector_all("svg.tree text[data-edge-label]", "e => e.length")
    assert labels == TRIALS - 1
    assert page.locator("table.data tbody tr").count() == TRIALS
    page.locator("#curves-panel").scroll_into_view_if_needed()
    assert page.evaluate("window.morphnas.charts.curves.data.length") == 6  # epochs + 5 curves
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)
    # the table filters and sorts
    page.fill("input[type=search]", "add_skip")
    skips = [t for t in trials if "add_skip" in [op["op"] for op in t.operations]]
    assert page.locator("table.data tbody tr").count() == len(skips)
    assert page.errors == []


def test_clicking_a_node_opens_its_trial_and_its_onnx_runs(world: dict[str, Any]) -> None:
    import onnxruntime as ort

    trials = world["source"].trials(world["search_id"])
    target = next(t for t in trials if any(op["op"] == "add_skip" for op in t.operations))
    page = new_page(world)
    open_ready(page, f"{world['dashboard'].url}search/{world['search_id']}")
    page.locator(f"svg.tree circle[data-trial='{target.number}']").click()
    page.wait_for_url(f"**/trial/{target.id}")
    page.wait_for_function("window.morphnas.ready")
    assert page.locator("h1").inner_text().startswith(f"Trial {target.number}")
    assert page.locator("svg.arch path[data-skip]").count() >= 1  # the skip it was made with
    assert page.locator("ol.morphs li").first.inner_text().startswith("add_skip")
    page.screenshot(path=str(ARTIFACTS / "trial.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#onnx").click()
    path = world["tmp"] / "trial.onnx"
    download.value.save_as(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 16, (3, 1, 8, 8)).astype(np.float32)
    (logits,) = session.run(None, {"input": x})
    assert logits.shape == (3, 10) and np.isfinite(logits).all()
    assert page.errors == []


def test_the_search_page_updates_live(world: dict[str, Any]) -> None:
    page = new_page(world)
    open_ready(page, f"{world['dashboard'].url}search/{world['search_id']}")
    before = page.locator("svg.tree circle[data-trial]").count()
    repo = world["repo"]
    add_trial(SearchService(repo), repo, world["search_id"], random.Random(1))
    page.wait_for_function(f"window.morphnas.trialCount === {before + 1}", timeout=10_000)
    assert page.locator("svg.tree circle[data-trial]").count() == before + 1
    assert page.errors == []


def test_static_report_opens_without_a_network(world: dict[str, Any]) -> None:
    report = world["tmp"] / "report.html"
    write_report(world["source"], world["search_id"], str(report))
    trials = world["source"].trials(world["search_id"])
    context = world["browser"].new_context(viewport={"width": 1400, "height": 1000})
    asked: list[str] = []

    def block(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            asked.append(route.request.url)
            route.abort()

    context.route("**/*", block)
    context.set_offline(True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(report.as_uri())
    page.wait_for_function("window.morphnas && window.morphnas.ready", timeout=30_000)
    nodes, edges = tree(page)
    assert len(nodes) == len(trials) and len(edges) == len(trials) - 1
    points = page.evaluate("window.morphnas.charts.byTrial.data[1].filter(v => v !== null).length")
    assert points == len(trials)
    page.locator("svg.tree circle[data-trial='3']").click()
    panel = page.locator("#trial-panel")
    assert panel.locator("h1").inner_text().startswith("Trial 3")
    assert panel.locator("svg.arch g[data-layer]").count() > 3
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert asked == [] and errors == []
    context.close()
