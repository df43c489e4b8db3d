"""The real command, run as `python -m appshield ...`: exit codes, output, no tracebacks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import appshield

ROOT = Path(__file__).resolve().parents[2]

POLICY = """\
version: 1
name: cli-test
defaults: {process: deny, file: allow, network: deny, import: allow}
rules:
  - id: mytool-run
    category: process
    action: allow
    match: {executable: mytool, args: [run, "**"]}
  - id: no-secrets
    description: secrets stay closed
    category: file
    action: deny
    match: {path: "{policy_dir}/secret/**"}
  - id: api
    category: network
    action: allow
    match: {host: "*.example.com", port: 443, operation: [resolve, connect]}
  - id: dns
    category: network
    action: allow
    match: {port: 53, transport: udp, operation: send}
  - id: v6-loopback
    category: network
    action: allow
    match: {cidr: "::1/128"}
  - id: ctypes-alert
    category: import
    action: alert
    match: {module: ctypes}
    unless: {scope: trusted_vendor}
  - id: tmp-code
    category: import
    action: deny
    match: {origin: "/tmp/**"}
  - id: quiet-deny
    category: file
    action: deny
    mode: monitor
    match: {path: "{policy_dir}/quiet"}
"""


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    result = subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "appshield.yaml"
    path.write_text(POLICY)
    tool = folder / "bin" / "mytool"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return path


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"appshield {appshield.__version__}")


def test_schema_prints_the_shipped_schema() -> None:
    result = run("schema")
    assert result.returncode == 0
    shipped = (Path(appshield.__file__).parent / "schema.json").read_text(encoding="utf-8")
    assert result.stdout == shipped
    assert json.loads(result.stdout)["title"] == "appshield policy"


def test_check_examples() -> None:
    examples = sorted(str(p) for p in (ROOT / "examples").glob("*.yaml"))
    result = run("check", *examples)
    assert result.returncode == 0, result.stdout
    assert len(result.stdout.splitlines()) == len(examples)


def test_check_discovers_the_policy(policy: Path) -> None:
    (policy.parent / ".git").mkdir(exist_ok=True)
    result = run("check", cwd=policy.parent / "bin", env={"APPSHIELD_POLICY": ""})
    assert result.returncode == 0
    assert result.stdout == f"{policy}: valid (8 rules)\n"


def test_check_without_any_policy(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    result = run("check", cwd=tmp_path, env={"APPSHIELD_POLICY": ""})
    assert result.returncode == 1
    assert result.stdout.startswith("appshield: no policy found")


def test_check_mixed_valid_missing_and_broken(tmp_path: Path, policy: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nrules: [\n")
    result = run("check", str(policy), str(tmp_path / "missing.yaml"), str(broken), str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{policy}: valid (8 rules)",
        f"{tmp_path}/missing.yaml: cannot read policy: No such file or directory",
        f"{broken}:3:1: invalid YAML: expected the node content, but found '<stream end>'"
        " (while parsing a flow node)",
        f"{tmp_path}: cannot read policy: Is a directory",
    ]


def explain(policy: Path, *args: str, cwd: Path | None = None) -> tuple[int, dict[str, object]]:
    env = {"PATH": f"{policy.parent / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = run("explain", "--policy", str(policy), "--json", *args, cwd=cwd, env=env)
    return result.returncode, json.loads(result.stdout)


@pytest.mark.parametrize(
    ("args", "code", "rule", "blocked"),
    [
        (["process", "--", "mytool", "run", "--fast"], 0, "mytool-run", False),
        (["process", "--", "mytool", "build"], 1, "default:process", True),
        (["file", "read", "{dir}/secret/key.pem"], 1, "no-secrets", True),
        (["file", "write", "{dir}/secret/../secret/x"], 1, "no-secrets", True),
        (["file", "read", "{dir}/public.txt"], 0, "default:file", False),
        (["file", "delete", "{dir}/quiet"], 1, "quiet-deny", False),
        (["network", "connect", "api.example.com:443"], 0, "api", False),
        (["network", "connect", "API.Example.com.:80"], 1, "default:network", True),
        (["network", "resolve", "api.example.com:443"], 0, "api", False),
        (["network", "resolve", "api.example.com"], 1, "default:network", True),
        (["network", "send", "10.0.0.2:53"], 0, "dns", False),
        (["network", "connect", "10.0.0.2:53"], 1, "default:network", True),
        (["network", "connect", "[::1]:8080"], 0, "v6-loopback", False),
        (["network", "connect", "[0:0::1]:9", "--transport", "udp"], 0, "v6-loopback", False),
        (["import", "ctypes"], 3, "ctypes-alert", False),
        (
            ["import", "ctypes.util", "--stack", "app,trusted_vendor.loader"],
            0,
            "default:import",
            False,
        ),
        (["import", "json", "--origin", "/tmp/json.py"], 1, "tmp-code", True),
        (["--mode", "monitor", "import", "json", "--origin", "/tmp/json.py"], 1, "tmp-code", False),
    ],
)
def test_explain(policy: Path, args: list[str], code: int, rule: str, blocked: bool) -> None:
    args = [a.replace("{dir}", str(policy.parent)) for a in args]
    returncode, answer = explain(policy, *args)
    assert (returncode, answer["rule"], answer["blocked"]) == (code, rule, blocked)


def _explained_and_enforced(policy: Path, argv: list[str], path: str) -> tuple[str, str]:
    """explain's rule for `argv` started from the policy's bin folder with `path` as PATH,
    and what a shielded process started with that same PATH makes of the start."""
    folder = policy.parent / "bin"
    env = {"PATH": path, "APPSHIELD_POLICY": str(policy)}
    result = run(
        "explain", "--policy", str(policy), "--json", "process", "--", *argv, cwd=folder, env=env
    )
    shielded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import appshield.auto, subprocess\n"
            f"try:\n    subprocess.run({argv!r}, check=True)\n    print('started')\n"
            "except Exception as e:\n    print(type(e).__name__)\n",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    return json.loads(result.stdout)["rule"], shielded.stdout.strip() or shielded.stderr


def test_explain_untrusted_program_is_not_its_base_name(policy: Path) -> None:
    # ./mytool sits in a folder this process can write, and that folder was not on PATH when
    # the process started: `executable: mytool` does not cover it, for explain as for the hooks
    bare = os.environ.get("PATH", os.defpath)
    assert _explained_and_enforced(policy, ["./mytool", "run"], bare) == (
        "default:process",
        "PolicyViolation",
    )
    # The control: that folder on the start-up PATH holds trusted programs, for both alike
    on_path = f"{policy.parent / 'bin'}{os.pathsep}{bare}"
    assert _explained_and_enforced(policy, ["./mytool", "run"], on_path) == (
        "mytool-run",
        "started",
    )


def test_explain_text_output_names_the_rule_and_its_place(policy: Path) -> None:
    result = run("explain", "--policy", str(policy), "file", "read", f"{policy.parent}/secret/k")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "decision: deny",
        f"rule:     no-secrets ({policy}:9)",
        "          secrets stay closed",
        "blocked:  yes (mode enforce)",
        f"file:     {policy.parent}/secret/k",
    ]


def test_explain_with_invalid_policy_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefaults: {process: deny}\n")
    result = run("explain", "--policy", str(bad), "import", "os")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"{bad}:2:1: 'defaults' has no action for file, network, import"
        " (after extends are merged, every category needs one)"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["network", "connect", "host:99999"],
        ["network", "connect", "[::1"],
        ["import"],
    ],
)
def test_explain_bad_description_exits_2(policy: Path, args: list[str]) -> None:
    result = run("explain", "--policy", str(policy), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("appshield explain: ")


def test_explain_missing_policy_exits_2(tmp_path: Path) -> None:
    result = run("explain", "--policy", str(tmp_path / "none.yaml"), "import", "os")
    assert result.returncode == 2
    assert "cannot read policy" in result.stderr


def test_explain_judges_a_missing_program_as_the_hooks_do(tmp_path: Path) -> None:
    # A program that is not installed: the hooks judge its start at the first PATH candidate,
    # trusted when every folder searched is; explain must give the same answer.
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\nmode: enforce\n"
        "defaults: {process: deny, file: allow, network: allow, import: allow}\n"
        "rules:\n  - id: tool-ok\n    category: process\n    action: allow\n"
        "    match: {executable: [no-such-tool-xyz]}\n"
    )
    code, answer = explain(policy, "process", "--", "no-such-tool-xyz")
    assert (code, answer["rule"]) == (0, "tool-ok")
    code, answer = explain(policy, "process", "--", f"{tmp_path}/no-such-tool-xyz")
    assert (code, answer["rule"]) == (1, "default:process")
    shielded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import appshield.auto, subprocess\n"
            "for p in ['no-such-tool-xyz', " + repr(f"{tmp_path}/no-such-tool-xyz") + "]:\n"
            "    try:\n        subprocess.run([p])\n"
            "    except Exception as e:\n        print(type(e).__name__)\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "APPSHIELD_POLICY": str(policy)},
    )
    assert shielded.stdout.split() == ["FileNotFoundError", "PolicyViolation"], shielded.stderr
