"""A new user's mistakes, made with the real command: one clear line each, the right exit
status, nothing created, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
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
