"""The EKS-on-Fargate example: every YAML file parses, has what the README relies on, and
the policy in the ConfigMap is valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.examples._ready import require

FOLDER = Path(__file__).resolve().parents[2] / "examples" / "k8s-fargate"


def documents(name: str) -> list[dict[str, Any]]:
    with open(FOLDER / name) as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def by_kind(kind: str) -> list[dict[str, Any]]:
    found = []
    for path in sorted(FOLDER.glob("*.yaml")):
        found += [doc for doc in documents(path.name) if doc.get("kind") == kind]
    return found


def the_deployment() -> dict[str, Any]:
    (deployment,) = by_kind("Deployment")
    return deployment


def container(name: str) -> dict[str, Any]:
    containers = the_deployment()["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def env_of(name: str) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(name).get("env", [])}


def config_map(name: str) -> dict[str, Any]:
    return next(cm for cm in by_kind("ConfigMap") if cm["metadata"]["name"] == name)


@pytest.mark.parametrize("name", sorted(p.name for p in FOLDER.glob("*.yaml")))
def test_every_file_parses_with_kind_and_api_version(name: str) -> None:
    docs = documents(name)
    assert docs
    for doc in docs:
        assert doc["apiVersion"] and doc["kind"] and doc["metadata"]["name"]


def test_expected_kinds() -> None:
    kinds = sorted(doc["kind"] for p in FOLDER.glob("*.yaml") for doc in documents(p.name))
    assert kinds == sorted(
        ["ClusterConfig", "ConfigMap", "ConfigMap", "Deployment", "Namespace", "ServiceAccount"]
    )


def test_everything_in_one_namespace_selected_by_the_fargate_profile() -> None:
    (cluster,) = by_kind("ClusterConfig")
    selected = {s["namespace"] for p in cluster["fargateProfiles"] for s in p["selectors"]}
    labels = cluster["fargateProfiles"][0]["selectors"][0]["labels"]
    namespaced = by_kind("ConfigMap") + by_kind("Deployment") + by_kind("ServiceAccount")
    assert {doc["metadata"]["namespace"] for doc in namespaced} == selected == {"checkout"}
    pod_labels = the_deployment()["spec"]["template"]["metadata"]["labels"]
    assert labels.items() <= pod_labels.items()


def test_policy_mounted_from_the_config_map_as_a_folder() -> None:
    env = env_of("app")
    policy_path = Path(env["APPSHIELD_POLICY"])
    mounts = {m["name"]: m for m in container("app")["volumeMounts"]}
    volumes = {v["name"]: v for v in the_deployment()["spec"]["template"]["spec"]["volumes"]}
    (name,) = [n for n, m in mounts.items() if m["mountPath"] == str(policy_path.parent)]
    assert mounts[name]["readOnly"] is True
    assert "subPath" not in mounts[name]  # a subPath mount never sees ConfigMap updates
    policy_map = config_map(volumes[name]["configMap"]["name"])
    assert policy_path.name in policy_map["data"]


def test_bootstrap_and_otlp_environment() -> None:
    env = env_of("app")
    assert env["PYTHONPATH"].split(":")[0].endswith("/site-packages/appshield/bootstrap")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://127.0.0.1:4318"
    assert env["OTEL_SERVICE_NAME"]
    for signal in ("TRACES", "LOGS", "METRICS"):
        assert env[f"OTEL_{signal}_EXPORTER"] == "otlp"
    assert "APPSHIELD_DISABLE" not in env


def test_collector_sidecar_receives_otlp_on_the_endpoint() -> None:
    sidecar = container("otel-collector")
    assert "opentelemetry-collector" in sidecar["image"]
    (config_arg,) = [a for a in sidecar["args"] if a.startswith("--config=")]
    config_path = Path(config_arg.removeprefix("--config="))
    volumes = {v["name"]: v for v in the_deployment()["spec"]["template"]["spec"]["volumes"]}
    (mount,) = [m for m in sidecar["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    collector_map = config_map(volumes[mount["name"]]["configMap"]["name"])
    config = yaml.safe_load(collector_map["data"][config_path.name])
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == "127.0.0.1:4318"
    pipelines = config["service"]["pipelines"]
    assert {"traces", "logs", "metrics"} <= set(pipelines)
    for pipeline in pipelines.values():
        assert pipeline["receivers"] == ["otlp"]
        assert set(pipeline["exporters"]) <= set(config["exporters"])
        assert set(pipeline["processors"]) <= set(config["processors"])


def test_embedded_policy_passes_appshield_check(tmp_path: Path) -> None:
    require("cli")
    policy = tmp_path / "policy.yaml"
    policy.write_text(config_map("checkout-appshield-policy")["data"]["policy.yaml"])
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_embedded_policy_allows_the_sidecar_and_denies_the_task_credentials(
    tmp_path: Path,
) -> None:
    require("loader", "engine")
    from appshield import NetworkOp, Policy

    text = config_map("checkout-appshield-policy")["data"]["policy.yaml"]
    policy = Policy.from_yaml(text, filename=str(tmp_path / "policy.yaml"))
    sidecar = policy.decide(NetworkOp("connect", address="127.0.0.1", port=4318))
    assert sidecar.action == "allow"
    credentials = policy.decide(NetworkOp("connect", address="169.254.170.2", port=80), ())
    assert credentials.action == "deny"
    assert policy.mode == "monitor"  # the example starts in monitor, as the README says


def test_dockerfile_installs_appshield() -> None:
    text = (FOLDER / "Dockerfile").read_text()
    assert "appshield" in text and text.startswith("#")
