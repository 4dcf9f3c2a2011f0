"""The dashboard's commands as a user runs them, and the dashboard reading a server (the SDK)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from morphnas.client import Client
from morphnas.dashboard.data import DatabaseSource, ServerSource
from morphnas.server.app import ServerOptions, build_server
from morphnas.storage import Repository
from tests.dashboard.synthetic import build_search
from tests.dashboard.test_app import get, get_json

READY = re.compile(r"^morphnas dashboard on http://127\.0\.0\.1:(\d+)/$")


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "morphnas.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out, err


def _search_db(tmp_path: Path, trials: int = 6) -> tuple[str, str]:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    repo = Repository.from_url(url)
    search_id = build_search(repo, trials)
    repo.close()
    return url, search_id


def test_dashboard_prints_one_ready_line_and_serves(tmp_path: Path) -> None:
    url, search_id = _search_db(tmp_path)
    proc = _start("dashboard", "--db", url, "--port", "0")
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert READY.match(line.rstrip("\n")), line
        base = line.split(" on ", 1)[1].strip()
        (row,) = get_json(f"{base}api/searches")["searches"]
        assert row["id"] == search_id
    finally:
        out, _ = _stop(proc)
    assert out == ""  # nothing after the ready line


def test_report_writes_one_html_file(tmp_path: Path) -> None:
    url, search_id = _search_db(tmp_path)
    out = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "morphnas.cli", "report", search_id, "-o", str(out), "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}")
    assert 'id="morphnas-data"' in out.read_text(encoding="utf-8")


def test_dashboard_refuses_a_missing_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "morphnas.cli", "dashboard", "--db", str(tmp_path / "none.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "no database at" in done.stderr
    assert done.stdout == ""


def test_serve_dashboard_port_needs_the_servers_tokens(tmp_path: Path) -> None:
    url, search_id = _search_db(tmp_path)
    proc = _start(
        "serve", "--db", url, "--port", "0", "--dashboard-port", "0",
        env={"MORPHNAS_TOKENS": "tok-1,tok-2"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")
        assert READY.match(first), first
        assert proc.stdout.readline().startswith("morphnas listening on 127.0.0.1:")
        base = first.split(" on ", 1)[1]
        assert get(f"{base}api/searches")[0] == 401
        data = get_json(f"{base}api/search/{search_id}", {"Authorization": "Bearer tok-2"})
        assert len(data["trials"]) == 6
    finally:
        _stop(proc)


def test_server_source_reads_through_the_sdk(tmp_path: Path) -> None:
    import onnxruntime as ort

    url = f"sqlite:///{tmp_path / 'server.db'}"
    repo = Repository.from_url(url)
    search_id = build_search(repo, 5)
    trials = repo.list_trials(search_id)[0]
    for epoch, value in ((1, 0.5), (2, 0.7)):  # what a server-side training worker writes
        payload = {"trial_id": trials[2].id, "number": 2, "epoch": epoch, "val_accuracy": value}
        repo.add_event(search_id, "epoch_finished", payload)
    running = build_server(ServerOptions(db_url=url, port=0), repo)
    source = ServerSource(Client(running.address))
    try:
        assert [s.id for s in source.searches()] == [search_id]
        assert [t.number for t in source.trials(search_id)] == [0, 1, 2, 3, 4]
        assert [t.parent_id for t in source.trials(search_id)] == [t.parent_id for t in trials]
        curves = source.curves(search_id, [trials[2].id])
        assert curves == {trials[2].id: {"val_accuracy": [(1, 0.5), (2, 0.7)]}}
        # the front through GetParetoFront is the one the database source computes
        for axis in ("params", "flops"):
            front = source.pareto(search_id, axis)
            assert front and front == DatabaseSource(repo).pareto(search_id, axis), axis
        blob = source.onnx(trials[4].id)
        session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"input": np.zeros((2, 1, 8, 8), np.float32)})
        assert logits.shape == (2, 10)
    finally:
        source.close()
        running.stop(1)


def test_run_announces_its_dashboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from morphnas.dashboard.cli import dashboard_for_run

    url, search_id = _search_db(tmp_path)
    embedded = argparse.Namespace(server=None, no_dashboard=False, dashboard=None)
    with dashboard_for_run(embedded, url) as announce:
        announce(search_id)
        line = capsys.readouterr().out.strip()
        assert re.match(rf"^dashboard: http://127\.0\.0\.1:\d+/search/{search_id}$", line), line
        page = line.removeprefix("dashboard: ")
        assert get(page.replace("/search/", "/api/search/"))[0] == 200
    remote = argparse.Namespace(server="h:1", no_dashboard=False, dashboard="http://h:8050/")
    with dashboard_for_run(remote, url) as announce:
        announce(search_id)
    assert capsys.readouterr().out == f"dashboard: http://h:8050/search/{search_id}\n"
    off = argparse.Namespace(server=None, no_dashboard=True, dashboard=None)
    with dashboard_for_run(off, url) as announce:
        announce(search_id)
    assert capsys.readouterr().out == ""
