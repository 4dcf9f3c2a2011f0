"""The gRPC I/O path the morphnas command asks for: set before gRPC loads, never over the user's."""

from __future__ import annotations

import os
import subprocess
import sys

from morphnas import grpc_io as transport

PROBE = (
    "import os, sys\n"
    "from morphnas.grpc_io import prefer_low_latency_io, io_path\n"
    "made = prefer_low_latency_io()\n"
    "import grpc\n"
    "print(made, repr(os.environ.get('GRPC_EXPERIMENTS')), io_path(), sep='|')\n"
)


def probe(env_value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    if env_value is not None:
        env["GRPC_EXPERIMENTS"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip().split("|")


def test_a_fresh_process_asks_for_the_poller_path() -> None:
    made, value, path = probe(None)
    assert made == "True" and value == repr(transport.LOW_LATENCY_EXPERIMENTS)
    assert path.startswith("poller")


def test_importing_the_sdk_leaves_the_environment_alone() -> None:
    """A library must not reconfigure its host: ``import morphnas.client`` (gRPC included, it
    loads grpc) changes no environment variable, GRPC_EXPERIMENTS above all."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import morphnas.client\n"
        "assert 'grpc' in sys.modules\n"
        "print(dict(os.environ) == before, 'GRPC_EXPERIMENTS' in os.environ)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "False"]


def test_the_users_setting_wins_even_when_empty() -> None:
    assert probe("")[:2] == ["False", "''"]
    assert probe("-event_engine_dns")[:2] == ["False", "'-event_engine_dns'"]


def test_too_late_once_grpc_is_loaded(monkeypatch) -> None:
    import grpc  # noqa: F401  (loaded here, as in any test process)

    monkeypatch.delenv("GRPC_EXPERIMENTS", raising=False)
    assert transport.prefer_low_latency_io() is False
    assert "GRPC_EXPERIMENTS" not in os.environ


def test_the_command_serves_on_the_poller_path(tmp_path) -> None:
    """`morphnas -v serve` logs the path it took (and still prints its one ready line)."""
    env = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "morphnas.cli",
            "-v",
            "serve",
            "--db",
            f"sqlite:///{tmp_path}/t.db",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("morphnas listening on 127.0.0.1:")
    finally:
        server.terminate()
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0
    assert "gRPC I/O path: poller" in err
