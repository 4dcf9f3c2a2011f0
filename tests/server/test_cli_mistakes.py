"""A new user's mistakes, made with the real command: one clear line each, the right exit
status, nothing created, no traceback."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from morphnas.options import UsageError, server_address

ROOT = Path(__file__).resolve().parents[2]


def _morphnas(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "morphnas.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--trials", "-3"], "--trials -3: give a positive number"),
        (["--trials", "0"], "--trials 0: give a positive number (or 0 with a --budget)"),
        (["--epochs", "-1"], "--epochs -1: give at least 1"),
        (["--max-seconds", "-5"], "--max-seconds -5: give a positive number of seconds"),
        (["--export", "/nonexistent/dir/x.onnx"], "no such folder '/nonexistent/dir'"),
        (["--workers", "0"], "needs at least 1 training worker"),
        (["--server", "127.0.0.1:notaport"], "the port must be a number"),
    ],
)
def test_run_refuses_a_bad_option_before_creating_anything(
    tmp_path: Path, option: list[str], message: str
) -> None:
    result = _morphnas("run", "--dataset", "digits", *option, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    line = _one_line(result)
    assert line.startswith("morphnas run: ") and message in line, line
    assert list(tmp_path.iterdir()) == []  # no database, no server, no search


_NO_CUDA = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="this machine has a CUDA device"
)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["serve", "--db", "nonsense://x"], "--db 'nonsense://x': give a SQLite file"),
        (["serve", "--db", "sqlite:////nonexistent/dir/x.db"], "no such folder '/nonexistent/dir'"),
        (["serve", "--db", "sqlite://", "--workers", "2"], "is an in-memory database"),
        (["serve", "--workers", "65"], "--workers 65: give 0 to 64"),
        (["serve", "--tokens-file", "missing-tokens"], "--tokens-file 'missing-tokens': no such"),
        (["serve", "--tls-key", str(ROOT / "README.md")], "--tls-cert and --tls-key go together"),
        (["worker", "--db", "sqlite://"], "is an in-memory database"),
        (["worker", "--device", "gpu"], "--device 'gpu': give cpu, cuda, cuda:N or auto"),
        (["run", "--dataset", "digits", "--db", "nope/x.db"], "--db 'nope/x.db': no such folder"),
        (["run", "--dataset", "digits", "--workers", "100000"], "--workers 100000: give 1 to 64"),
        (["run", "--dataset", "digits", "--device", "banana"], "--device 'banana': give cpu"),
        pytest.param(
            ["run", "--dataset", "digits", "--device", "cuda"],
            "--device cuda: PyTorch finds no CUDA device on this machine",
            marks=_NO_CUDA,
        ),
        (["searches", "--token-file", "missing-token"], "--token-file 'missing-token': no such"),
    ],
)
def test_a_mistake_in_any_command_is_one_line_before_anything_starts(
    tmp_path: Path, command: list[str], message: str
) -> None:
    result = _morphnas(*command, cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    line = _one_line(result)
    assert line.startswith(f"morphnas {command[0]}: ") and message in line, line
    assert list(tmp_path.iterdir()) == []  # no database, no server, no search


def test_export_to_a_missing_folder_and_serve_with_negative_workers(tmp_path: Path) -> None:
    export = _morphnas("export", "0" * 32, "-o", "/nonexistent/dir/x.onnx", cwd=tmp_path)
    assert export.returncode == 2
    assert "no such folder '/nonexistent/dir'; create it first" in _one_line(export)
    serve = _morphnas("serve", "--workers", "-1", cwd=tmp_path)
    assert serve.returncode == 2
    assert _one_line(serve) == "morphnas serve: --workers -1: give 0 or more"
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_server_address_says_a_server_must_be_started(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _morphnas("searches", "--server", f"127.0.0.1:{port}", cwd=tmp_path)
    assert result.returncode == 1
    line = _one_line(result)
    assert f"no morphnas server answers at 127.0.0.1:{port}" in line
    assert "start one with `morphnas serve`" in line


def test_serve_on_a_port_in_use_says_so(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _morphnas("serve", "--port", str(port), "--db", "sqlite://", cwd=tmp_path)
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in _one_line(result)


def test_version_and_the_help_of_policy_and_seed(tmp_path: Path) -> None:
    version = _morphnas("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("morphnas 0.")
    helptext = " ".join(_morphnas("run", "--help", cwd=tmp_path).stdout.split())
    assert "random morphs, the baseline" in helptext  # --policy
    assert "seeds the data split" in helptext  # --seed


def test_a_bare_host_gets_morphnas_port() -> None:
    assert server_address("127.0.0.1") == "127.0.0.1:50051"
    assert server_address("gpu-box:6000") == "gpu-box:6000"
    assert server_address("[::1]") == "[::1]:50051"
    assert server_address("unix:/tmp/morphnas.sock") == "unix:/tmp/morphnas.sock"
    with pytest.raises(UsageError, match="1..65535"):
        server_address("127.0.0.1:0")


@pytest.fixture
def workerless_server(tmp_path: Path):
    """A real server with no training worker: what `morphnas serve` starts by default."""
    from morphnas.server.app import ServerOptions, build_server

    running = build_server(ServerOptions(db_url=f"sqlite:///{tmp_path / 's.db'}", port=0))
    try:
        yield running.address
    finally:
        running.stop(2)


def _search_ids(address: str) -> list[tuple[str, bool]]:
    from morphnas.client import Client

    with Client(address) as client:
        return [(s.id, s.info.stopped) for s in client.list_searches()]


def test_run_against_a_server_without_workers_fails_fast(
    tmp_path: Path, workerless_server: str
) -> None:
    started = time.monotonic()
    result = _morphnas(
        "run", "--dataset", "digits", "--trials", "1", "--epochs", "1", "--quiet",
        "--server", workerless_server, "--claim-timeout", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1 and time.monotonic() - started < 30
    line = _one_line(result)
    assert "no training worker took the search in 1 s" in line
    assert "morphnas serve --workers N" in line and "morphnas worker --db URL" in line
    [(search_id, stopped)] = _search_ids(workerless_server)
    assert stopped and f"morphnas run --resume {search_id}" in line  # it never trains later


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_run_stops_its_search(
    tmp_path: Path, workerless_server: str, signum: int
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "morphnas.cli", "run", "--dataset", "digits", "--trials", "2",
         "--epochs", "1", "--quiet", "--server", workerless_server, "--claim-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith("search "), proc.communicate(timeout=60)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    [(search_id, stopped)] = _search_ids(workerless_server)
    assert stopped
    assert err.strip() == (
        f"morphnas run: interrupted; stopped search {search_id} "
        f"(continue it with: morphnas run --resume {search_id})"
    )


def test_morphnas_stop(tmp_path: Path, workerless_server: str) -> None:
    from morphnas.client import Client

    with Client(workerless_server) as client:
        search = client.create_search(name="s", input_shape=(8,), num_classes=2)
    result = _morphnas("stop", search.id, "--server", workerless_server, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"stopped search {search.id}")
    assert _search_ids(workerless_server) == [(search.id, True)]
    missing = _morphnas("stop", "0" * 32, "--server", workerless_server, cwd=tmp_path)
    assert missing.returncode == 1 and "no search" in _one_line(missing).lower()


def test_run_takes_a_database_url_from_morphnas_db_and_its_onnx_takes_raw_digits(
    tmp_path: Path,
) -> None:
    import json

    import numpy as np
    from sklearn.datasets import load_digits

    from morphnas.nn.onnx_export import onnx_metadata, run_onnx

    db = tmp_path / "elsewhere" / "custom.db"
    db.parent.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "morphnas.cli", "run", "--dataset", "digits", "--trials", "1",
         "--epochs", "2", "--quiet", "--export", "digits.onnx"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "MORPHNAS_DB": f"sqlite:///{db}"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert ": 1 trial on digits" in result.stdout and "(1 trial in " in result.stdout
    assert db.exists() and not (tmp_path / "morphnas.db").exists()
    # The file takes what load_digits() gives (0..16), not the /16 the training once used.
    blob = (tmp_path / "digits.onnx").read_bytes()
    digits = load_digits()
    raw = digits.images[:, None].astype(np.float32)  # (1797, 1, 8, 8), 0..16
    raw_accuracy = float((run_onnx(blob, raw).argmax(1) == digits.target).mean())
    scaled_accuracy = float((run_onnx(blob, raw / 16).argmax(1) == digits.target).mean())
    assert raw_accuracy > 0.5 and raw_accuracy > scaled_accuracy + 0.2
    meta = onnx_metadata(blob)
    assert "pixel counts 0..16" in meta["expected_input"]
    assert "float32 (N, 1, 8, 8)" in meta["expected_input"]
    assert json.loads(meta["normalisation"])["mean"][0] > 1  # the scaling lives here now
    helptext = " ".join(_morphnas("export", "--help", cwd=tmp_path).stdout.split())
    assert "float32" in helptext and "pixel counts 0..16" in helptext


def test_a_stopped_search_trains_again_only_when_resumed(tmp_path: Path) -> None:
    from morphnas.client import Client
    from morphnas.server.app import ServerOptions, build_server
    from morphnas.server.workers import WorkerPool

    url = f"sqlite:///{tmp_path / 's.db'}"
    running = build_server(ServerOptions(db_url=url, port=0))
    address = running.address
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "morphnas.cli", "run", "--dataset", "digits", "--trials", "2",
             "--epochs", "1", "--quiet", "--server", address, "--claim-timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        assert proc.stdout.readline().startswith("search ")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        assert proc.returncode == 130
        [(search_id, stopped)] = _search_ids(address)
        assert stopped
        pool = WorkerPool(url, 1)
        pool.start()  # a worker now: the stopped search must still not train
        try:
            time.sleep(2)
            with Client(address) as client:
                assert client.get_search(search_id).trials() == []
            refused = _morphnas(
                "run", "--resume", search_id, "--trials", "3", "--server", address, cwd=tmp_path
            )
            assert refused.returncode == 2 and "drop --trials" in _one_line(refused)
            resumed = _morphnas(
                "run", "--resume", search_id, "--quiet", "--server", address, cwd=tmp_path,
                timeout=300,
            )  # fmt: skip
        finally:
            pool.stop()
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith(
            f"search {search_id}: resumed, 2 trials and the final fit (retrain) left on digits"
        )  # the run's default final fit is still owed
        assert "(2 trials in " in resumed.stdout
        with Client(address) as client:
            trials = client.get_search(search_id).trials()
        assert [t.state for t in trials] == ["COMPLETED", "COMPLETED"]
        again = _morphnas("run", "--resume", search_id, "--server", address, cwd=tmp_path)
        assert again.returncode == 1 and "owed no training" in _one_line(again)
    finally:
        running.stop(2)


def test_own_data_mistakes_are_caught_before_anything_is_created(tmp_path: Path) -> None:
    import numpy as np

    text = tmp_path / "data.npz"
    text.write_text("x,y\n1,2\n")
    notnpz = _morphnas("run", "--dataset", str(text), cwd=tmp_path)
    assert notnpz.returncode == 2
    assert "is not an .npz file" in _one_line(notnpz) and "numpy.savez" in notnpz.stderr
    rng = np.random.default_rng(0)
    nhwc = tmp_path / "nhwc.npz"
    np.savez(nhwc, x=rng.random((40, 8, 8, 1), dtype=np.float32), y=np.arange(40) % 2)
    mistake = _morphnas("run", "--dataset", str(nhwc), cwd=tmp_path)
    assert mistake.returncode == 2
    line = _one_line(mistake)
    assert "(40, 8, 8, 1), which looks channels-last" in line and "--layout nhwc" in line
    assert "(40, 1, 8, 8)" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "nhwc.npz"]


def test_layout_nhwc_is_transposed_and_the_scaling_is_said() -> None:
    import io
    import tempfile

    import numpy as np

    from morphnas.nn.datasets import load_npz
    from morphnas.own_data import prepare_upload

    x = np.arange(12 * 8 * 6 * 3, dtype=np.float32).reshape(12, 8, 6, 3)  # (N, H, W, C)
    with tempfile.NamedTemporaryFile(suffix=".npz") as file:
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=np.arange(12) % 2)
        file.write(buffer.getvalue())
        file.flush()
        upload = prepare_upload(file.name, "nhwc")
    data = load_npz(upload.data, max_bytes=2**20)
    assert data.x.shape == (12, 3, 8, 6)
    np.testing.assert_array_equal(data.x[1, 2], x[1, :, :, 2])
    assert "standardised with its training-split mean and std" in upload.note
    assert "(12, 3, 8, 6) (N, C, H, W) float32, values 0..1727" in upload.note


@pytest.mark.postgres
def test_run_takes_a_postgresql_url(tmp_path: Path, postgres_url: str) -> None:
    result = _morphnas(
        "run", "--dataset", "digits", "--trials", "1", "--epochs", "1", "--quiet",
        "--db", postgres_url, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "(1 trial in " in result.stdout and list(tmp_path.iterdir()) == []


def test_an_unexpected_error_is_one_line_and_a_traceback_only_with_v(tmp_path: Path) -> None:
    (tmp_path / "token").write_bytes(b"\xff\xfe not text")  # not UTF-8: a case nobody checks
    args = ("searches", "--token-file", "token")
    quiet = _morphnas(*args, cwd=tmp_path)
    assert quiet.returncode == 1
    line = _one_line(quiet)
    assert "UnicodeDecodeError" in line and "morphnas -v searches" in line
    verbose = _morphnas("-v", *args, cwd=tmp_path)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_resuming_a_search_that_owes_only_its_final_fit(tmp_path: Path) -> None:
    """The worker died during the final fit (its trials done), the search was stopped: a
    resume runs only the final fit and exports the final model."""
    from morphnas.client import Client
    from morphnas.server.app import ServerOptions, build_server
    from morphnas.server.service import SearchService
    from morphnas.server.training import TrainingService
    from morphnas.server.worker import Worker
    from morphnas.server.workers import WorkerPool
    from morphnas.storage.repository import Repository

    class WorkerKilledDuringTheFit(Exception):
        pass

    class DiesInTheFinalFit(Worker):
        def _final_fit(self, *args: object, **kwargs: object) -> float | None:
            raise WorkerKilledDuringTheFit  # what a killed process leaves: no fit, no event

    url = f"sqlite:///{tmp_path / 's.db'}"
    running = build_server(ServerOptions(db_url=url, port=0))
    address = running.address
    try:
        with Client(address) as client:
            search = client.create_search(name="fit-owed", input_shape=(1, 8, 8), num_classes=10)
            search.train("digits", 1, epochs=1, final_fit="retrain")
        repo = Repository.from_url(url)
        try:
            worker = DiesInTheFinalFit(TrainingService(SearchService(repo)), device="cpu")
            with pytest.raises(WorkerKilledDuringTheFit):
                worker.run_once()
        finally:
            repo.close()
        stopped = _morphnas("stop", search.id, "--server", address, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        pool = WorkerPool(url, 1, device="cpu")
        pool.start()
        try:
            resumed = _morphnas(
                "run", "--resume", search.id, "--quiet", "--export", "final.onnx",
                "--server", address, cwd=tmp_path, timeout=300,
            )  # fmt: skip
        finally:
            pool.stop()
        assert resumed.returncode == 0, resumed.stderr
        lines = resumed.stdout.splitlines()
        assert lines[0] == (
            f"search {search.id}: resumed, only the final fit (retrain) left on digits"
        )
        assert any(line.startswith("final fit of trial 0 (retrain, ") for line in lines)
        summary = next(line for line in lines if line.startswith("best: trial 0,"))
        assert "final model (retrain) test accuracy" in summary
        from morphnas.nn.onnx_export import onnx_metadata

        assert onnx_metadata((tmp_path / "final.onnx").read_bytes())["weights"] == "final"
        with Client(address) as client:
            assert len(client.get_search(search.id).trials()) == 1  # no trial trained again
    finally:
        running.stop(2)


def _options(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    """Every option and positional argument of every command, with its command's name."""
    found = [(parser.prog, a) for a in parser._actions if not isinstance(a, _HELP_ACTIONS)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found += _options(command)
    return found


_HELP_ACTIONS = (argparse._HelpAction, argparse._SubParsersAction)


def test_every_option_of_every_command_says_what_it_does(tmp_path: Path) -> None:
    from morphnas.cli import build_parser

    options = _options(build_parser())
    assert len(options) > 40
    silent = [f"{prog} {a.dest}" for prog, a in options if not (a.help or "").strip()]
    assert silent == []
    for command in ("run", "serve", "export", "stop", "searches", "trials", "worker"):
        shown = _morphnas(command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and shown.stdout.startswith("usage: morphnas " + command)


def test_ctrl_c_twice_still_stops_the_search(tmp_path: Path, workerless_server: str) -> None:
    """An impatient user presses Ctrl-C again while the search is being stopped."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "morphnas.cli", "run", "--dataset", "digits", "--trials", "2",
         "--quiet", "--server", workerless_server, "--claim-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout.readline().startswith("search ")  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    [(search_id, stopped)] = _search_ids(workerless_server)
    assert stopped and f"stopped search {search_id}" in err


def test_ctrl_c_while_the_command_loads_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from morphnas import cli

    def interrupted() -> None:
        raise KeyboardInterrupt  # as if Ctrl-C came while the modules load

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["searches"]) == 130
    assert capsys.readouterr().err == "\nmorphnas: interrupted\n"


def test_a_client_command_waits_for_a_server_started_just_before(tmp_path: Path) -> None:
    """`morphnas serve ... &` followed at once by a client command: the server binds its port
    a few seconds later, and the command waits for it (up to 10 s) instead of failing."""
    from morphnas.server.app import ServerOptions, build_server

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "morphnas.cli", "searches", "--server", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        time.sleep(5.0)  # the command has loaded and finds nothing listening yet
        running = build_server(ServerOptions(db_url="sqlite://", port=port))
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            running.stop(0)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.split()[:2] == ["id", "name"]


def test_a_bare_host_is_tried_on_morphnas_port_not_443(tmp_path: Path) -> None:
    result = _morphnas("searches", "--server", "127.0.0.3", cwd=tmp_path)  # nothing listens there
    assert result.returncode == 1
    assert "no morphnas server answers at 127.0.0.3:50051" in _one_line(result)
