"""Security: bearer tokens, TLS, mutual TLS, secrets kept out of logs, nothing executable from
the wire."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from morphnas.client import Client, UnauthenticatedError, UnavailableError
from morphnas.client.credentials import BearerToken
from morphnas.server.app import RunningServer, ServerOptions, build_server
from morphnas.server.security import load_tokens, token_matches
from morphnas.v1 import morphnas_pb2 as pb
from tests.reliability.certs import Pki, make_pki
from tests.reliability.harness import REPO_ROOT, ServerProcess

TOKEN = "tok-3f9a1c0e5b7d42e8a6c1"
WRONG = "tok-not-the-right-one-77"


def serve(url: str, **options: object) -> RunningServer:
    return build_server(ServerOptions(db_url=url, port=0, **options))  # type: ignore[arg-type]


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
def locked(sqlite_url: str) -> Iterator[RunningServer]:
    server = serve(sqlite_url, tokens=(TOKEN,))
    yield server
    server.stop(0)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'morphnas.db'}"


def test_calls_without_a_token_are_unauthenticated(locked: RunningServer) -> None:
    with Client(locked.address, timeout=10) as client:
        with pytest.raises(UnauthenticatedError, match="bearer token"):
            client.list_searches()
        with pytest.raises(UnauthenticatedError):  # streams too
            client.download_weights("0" * 32)


def test_a_wrong_token_is_unauthenticated(locked: RunningServer) -> None:
    with Client(locked.address, token=WRONG, timeout=10) as client:
        with pytest.raises(UnauthenticatedError):
            client.create_search("x", input_shape=(8,), num_classes=3)
        with pytest.raises(UnauthenticatedError):
            client.upload_weights("0" * 32, b"data")


def test_the_right_token_works(locked: RunningServer) -> None:
    with Client(locked.address, token=TOKEN, timeout=10) as client:
        search = client.create_search("x", input_shape=(8,), num_classes=3, policy="random")
        [trial] = search.suggest(worker_id="w")
        assert trial.initial_weights()  # a stream, authenticated the same way
        assert [s.id for s in client.list_searches()] == [search.id]


def test_health_checks_need_no_token(locked: RunningServer) -> None:
    with grpc.insecure_channel(locked.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_tokens_never_reach_the_logs(
    locked: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for token in (WRONG, TOKEN[:-1], TOKEN + "x"):
        with Client(locked.address, token=token, timeout=10) as client:
            with pytest.raises(UnauthenticatedError) as refused:
                client.list_searches()
            assert token not in str(refused.value)
    assert "refused a call" in caplog.text  # the refusals were logged...
    for secret in (WRONG, TOKEN, TOKEN[:-1]):
        assert secret not in caplog.text  # ...without the tokens
    assert TOKEN not in repr(BearerToken(TOKEN))


def test_tokens_come_from_a_file_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text("# workers\nalpha\n\n beta \n")
    assert load_tokens(file, env={"MORPHNAS_TOKENS": "gamma, alpha,"}) == ("alpha", "beta", "gamma")
    assert load_tokens(None, env={}) == ()
    assert token_matches("beta", ("alpha", "beta")) and not token_matches("bet", ("alpha", "beta"))


def test_tls_with_a_self_signed_ca(sqlite_url: str, pki: Pki) -> None:
    server = serve(sqlite_url, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    try:
        with Client(server.address, tls_ca=str(pki.ca), timeout=10) as client:
            assert client.list_searches() == []
        with Client(server.address, timeout=5) as plain, pytest.raises(UnavailableError):
            plain.list_searches()  # plain text is not spoken on a TLS port
        with Client(server.address, tls=True, timeout=5) as untrusting:
            with pytest.raises(UnavailableError):  # the system roots do not know our CA
                untrusting.list_searches()
    finally:
        server.stop(0)


def test_mutual_tls_needs_a_client_certificate(sqlite_url: str, pki: Pki) -> None:
    server = serve(
        sqlite_url,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.ca),
        tokens=(TOKEN,),
    )
    try:
        with Client(
            server.address,
            token=TOKEN,
            tls_ca=str(pki.ca),
            tls_cert=str(pki.client_cert),
            tls_key=str(pki.client_key),
            timeout=10,
        ) as client:
            assert client.list_searches() == []
        with Client(server.address, token=TOKEN, tls_ca=str(pki.ca), timeout=5) as anonymous:
            with pytest.raises(UnavailableError):  # the handshake fails without a certificate
                anonymous.list_searches()
    finally:
        server.stop(0)


def test_the_cli_speaks_tls_with_a_token(tmp_path: Path, pki: Pki) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'cli.db'}",
        None,
        "--tokens-file",
        str(tokens),
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
    ).start()
    try:

        def searches(*flags: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "morphnas.cli",
                    "searches",
                    "--server",
                    server.address,
                    "--tls-ca",
                    str(pki.ca),
                    *flags,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=REPO_ROOT,
                env={k: v for k, v in os.environ.items() if k != "MORPHNAS_TOKEN"},
            )

        listed = searches("--token-file", str(tokens))
        assert listed.returncode == 0, listed.stderr
        refused = searches()
        assert refused.returncode == 1 and "bearer token" in refused.stderr
        assert TOKEN not in refused.stderr
    finally:
        assert server.stop() == 0


#: Calls that would run code or unpickle objects from data; np.load is fine with allow_pickle=False.
_FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _unsafe_calls(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if (name or "").split(".")[0] in _FORBIDDEN_MODULES:
                    yield f"line {node.lineno}: imports {name}"
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        keywords = {k.arg: k.value for k in node.keywords}
        if isinstance(func, ast.Name) and func.id in ("eval", "exec", "__import__"):
            yield f"line {node.lineno}: {func.id}()"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            owner, attr = func.value.id, func.attr
            if owner in ("np", "numpy") and attr == "load":
                flag = keywords.get("allow_pickle")
                if not (isinstance(flag, ast.Constant) and flag.value is False):
                    yield f"line {node.lineno}: np.load without allow_pickle=False"
            if owner == "torch" and attr == "load":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    yield f"line {node.lineno}: torch.load without weights_only=True"
            if owner == "yaml" and attr in ("load", "unsafe_load", "full_load"):
                yield f"line {node.lineno}: yaml.{attr}"


def test_nothing_executable_is_read_from_the_wire() -> None:
    found = []
    for path in sorted((REPO_ROOT / "morphnas").rglob("*.py")):
        if "v1" in path.relative_to(REPO_ROOT / "morphnas").parts[:1]:
            continue  # generated stubs
        hits = _unsafe_calls(ast.parse(path.read_text()))
        found += [f"{path.relative_to(REPO_ROOT)} {hit}" for hit in hits]
    assert found == []


def test_the_safety_scan_catches_what_it_looks_for() -> None:
    source = "import pickle\nnp.load(f)\nnp.load(f, allow_pickle=True)\ntorch.load(f)\neval('1')\n"
    assert len(list(_unsafe_calls(ast.parse(source)))) == 5
    assert list(_unsafe_calls(ast.parse("np.load(f, allow_pickle=False)\nm.eval()\n"))) == []


def test_auth_refuses_streams_and_unknown_methods_alike(locked: RunningServer) -> None:
    with grpc.insecure_channel(locked.address) as channel:
        unknown = channel.unary_unary("/morphnas.v1.MorphNas/NoSuchMethod")
        with pytest.raises(grpc.RpcError) as refused:
            unknown(b"", timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        upload = channel.stream_unary(
            "/morphnas.v1.MorphNas/UploadWeights",
            request_serializer=pb.UploadWeightsRequest.SerializeToString,
        )
        with pytest.raises(grpc.RpcError) as refused:
            upload(iter([pb.UploadWeightsRequest(trial_id="0" * 32)]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
