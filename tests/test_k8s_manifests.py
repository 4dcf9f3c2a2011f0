"""The Kubernetes files of ``deploy/k8s/`` hold together, checked without a cluster.

Each document is validated against a minimal JSON Schema of its kind (bundled below: the fields
these files use and the types Kubernetes and KubeRay require of them, with unknown kinds refused),
then across documents: every Service selects pods of some workload and targets a port they name,
every secret referenced is the one ``postgres.yaml`` tells the user to create, and every
``morphnas`` command line parses with morphnas's own argument parser (a renamed flag fails here).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

yaml = pytest.importorskip("yaml")

from morphnas.cli import build_parser  # noqa: E402

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
SECRET = "morphnas-db"

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _NAME, "labels": _LABELS},
}
_QUANTITY = {"type": ["string", "integer"]}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
_ENV = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
            "value": {"type": "string"},
            "valueFrom": {
                "type": "object",
                "properties": {
                    "secretKeyRef": {
                        "type": "object",
                        "required": ["name", "key"],
                        "properties": {"name": _NAME, "key": {"type": "string"}},
                    }
                },
            },
        },
        "oneOf": [{"required": ["value"]}, {"required": ["valueFrom"]}],
    },
}
_PROBE = {
    "type": "object",
    "minProperties": 1,
    "properties": {
        "grpc": {
            "type": "object",
            "required": ["port"],
            "properties": {"port": {"type": "integer"}},
        },
        "exec": {"type": "object", "required": ["command"]},
        "periodSeconds": {"type": "integer", "minimum": 1},
        "failureThreshold": {"type": "integer", "minimum": 1},
    },
}
_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "additionalProperties": False,
    "properties": {
        "name": _NAME,
        "image": {"type": "string", "minLength": 1},
        "command": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "ports": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["containerPort"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "maxLength": 15},
                    "containerPort": {"type": "integer", "minimum": 1, "maximum": 65535},
                },
            },
        },
        "env": _ENV,
        "resources": _RESOURCES,
        "readinessProbe": _PROBE,
        "livenessProbe": _PROBE,
        "volumeMounts": {
            "type": "array",
            "items": {"type": "object", "required": ["name", "mountPath"]},
        },
    },
}
_POD_SPEC = {
    "type": "object",
    "required": ["containers"],
    "properties": {
        "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
        "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
    },
}
_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "metadata": {"type": "object", "properties": {"labels": _LABELS}},
        "spec": _POD_SPEC,
    },
}
_SELECTOR = {"type": "object", "required": ["matchLabels"], "properties": {"matchLabels": _LABELS}}


def _kind(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "Service": _kind(
        "v1",
        "Service",
        {
            "type": "object",
            "required": ["selector", "ports"],
            "properties": {
                "selector": _LABELS,
                "ports": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "properties": {
                            "name": {"type": "string"},
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "targetPort": {"type": ["string", "integer"]},
                        },
                    },
                },
            },
        },
    ),
    "Deployment": _kind(
        "apps/v1",
        "Deployment",
        {
            "type": "object",
            "required": ["selector", "template"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "selector": _SELECTOR,
                "template": _POD_TEMPLATE,
            },
        },
    ),
    "StatefulSet": _kind(
        "apps/v1",
        "StatefulSet",
        {
            "type": "object",
            "required": ["selector", "template", "serviceName"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "serviceName": {"type": "string"},
                "selector": _SELECTOR,
                "template": _POD_TEMPLATE,
                "volumeClaimTemplates": {"type": "array"},
            },
        },
    ),
    # KubeRay's ray.io/v1 RayCluster: the fields of its CRD that these files use.
    "RayCluster": _kind(
        "ray.io/v1",
        "RayCluster",
        {
            "type": "object",
            "required": ["headGroupSpec"],
            "properties": {
                "rayVersion": {"type": "string", "pattern": r"^2\.\d+\.\d+$"},
                "headGroupSpec": {
                    "type": "object",
                    "required": ["template"],
                    "properties": {
                        "rayStartParams": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "template": _POD_TEMPLATE,
                    },
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["groupName", "template"],
                        "properties": {
                            "groupName": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 0},
                            "minReplicas": {"type": "integer", "minimum": 0},
                            "maxReplicas": {"type": "integer", "minimum": 0},
                            "rayStartParams": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "template": _POD_TEMPLATE,
                        },
                    },
                },
            },
        },
    ),
}


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def pod_templates(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = document["spec"]
    if document["kind"] == "RayCluster":
        groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
        return [g["template"] for g in groups]
    return [spec["template"]]


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, container)
        for name, doc in documents()
        if doc["kind"] != "Service"
        for template in pod_templates(doc)
        for container in template["spec"]["containers"]
    ]


def test_the_files_hold_a_server_postgres_workers_and_a_raycluster() -> None:
    kinds = {(name, doc["kind"], doc["metadata"]["name"]) for name, doc in documents()}
    assert ("postgres.yaml", "StatefulSet", "morphnas-postgres") in kinds
    assert ("server.yaml", "Deployment", "morphnas-server") in kinds
    assert ("workers.yaml", "Deployment", "morphnas-workers") in kinds
    assert ("raycluster.yaml", "RayCluster", "morphnas-ray") in kinds


@pytest.mark.parametrize(
    "name,document", documents(), ids=lambda v: v if isinstance(v, str) else v["kind"]
)
def test_each_document_matches_the_schema_of_its_kind(name: str, document: dict[str, Any]) -> None:
    assert document.get("kind") in SCHEMAS, f"{name}: no schema for kind {document.get('kind')!r}"
    jsonschema.validate(document, SCHEMAS[document["kind"]])


def test_the_schemas_refuse_what_kubernetes_would() -> None:
    [(_, deployment)] = [
        (n, d) for n, d in documents() if d["metadata"]["name"] == "morphnas-server"
    ]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"] = None
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy "] = "Always"  # a typo
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMAS["Deployment"])


def test_every_service_selects_pods_and_targets_a_named_port() -> None:
    workloads = [doc for _, doc in documents() if doc["kind"] in ("Deployment", "StatefulSet")]
    for _, service in documents():
        if service["kind"] != "Service":
            continue
        selector = service["spec"]["selector"]
        matched = [
            w
            for w in workloads
            if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
            and w["spec"]["selector"]["matchLabels"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched, f"service {service['metadata']['name']} selects no pods"
        ports = {
            p.get("name")
            for w in matched
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, (service["metadata"]["name"], port)


def test_secrets_come_from_the_one_secret_and_env_references_resolve() -> None:
    for name, container in containers():
        defined: set[str] = set()
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref == {"name": SECRET, "key": "password"}, (name, ref)
            for used in _references(variable.get("value", "")):
                assert used in defined, f"{name}: $({used}) is used before it is defined"
            defined.add(variable["name"])
            for password in re.findall(r"://[^:/@]+:([^@]*)@", variable.get("value", "")):
                assert re.fullmatch(r"\$\([A-Z_]+\)", password), f"{name}: a password in plain text"


def _references(value: str) -> list[str]:
    return re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value)


def test_every_morphnas_command_line_parses() -> None:
    parser = build_parser()
    checked = 0
    for name, container in containers():
        command = container.get("command", [])
        image = container["image"]
        if not image.startswith("morphnas") or (command and command != ["morphnas"]):
            continue
        args = container.get("args", [])
        if not args:  # the Ray images run `ray start` (KubeRay supplies the command)
            continue
        parsed = parser.parse_args(args)
        assert parsed.command in ("serve", "worker"), (name, args)
        checked += 1
    assert checked >= 3  # the server, the DB-queue workers, the server on the RayCluster
