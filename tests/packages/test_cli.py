"""`appshield explain --package` and `appshield check`'s warnings about grants, through the
real command line."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

POLICY = """\
version: 1
defaults: {process: deny, file: allow, network: allow, import: allow}
rules:
  - {id: no-evil, category: network, action: deny, match: {host: evil.example}}
packages:
  first_party: [hypothesis]
  grants:
    pytest:
      network: [{host: api.example.com, port: 443}]
    requests:
      version: ">=99"
      network: [{}]
    not-installed-anywhere: {}
"""


def appshield(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appshield", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_warns_but_stays_valid(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY)
    done = appshield("check", "p.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0] == "p.yaml: valid (1 rule)"
    assert lines[1] == (
        f"p.yaml:10:5: warning: packages.grants.requests: the installed version"
        f" {version('requests')} does not meet '>=99'; the grant does not apply"
        " (packages.default: deny)"
    )
    assert lines[2] == (
        "p.yaml:13:5: warning: packages.grants.not-installed-anywhere: no distribution"
        " 'not-installed-anywhere' is installed here"
    )
    assert len(lines) == 3


def explain(tmp_path: Path, *args: str) -> tuple[int, dict[str, object]]:
    (tmp_path / "p.yaml").write_text(POLICY)
    done = appshield("explain", "--policy", "p.yaml", "--json", *args, cwd=tmp_path)
    return done.returncode, json.loads(done.stdout)


def test_explain_asks_on_behalf_of_a_distribution(tmp_path: Path) -> None:
    code, answer = explain(
        tmp_path, "--package", "pytest", "network", "connect", "api.example.com:443"
    )
    assert code == 0 and answer["decision"] == "allow"
    assert (answer["package"], answer["package_version"]) == ("pytest", version("pytest"))
    code, answer = explain(
        tmp_path, "network", "connect", "other.example.com:443", "--package", "pytest"
    )
    assert code == 1
    assert (answer["rule"], answer["source"], answer["blocked"]) == (
        "package:pytest",
        "p.yaml:8",
        True,
    )
    # without --package: the app's own code, the ordinary rules alone
    code, answer = explain(tmp_path, "network", "connect", "other.example.com:443")
    assert code == 0 and "package" not in answer


def test_explain_package_versions_default_and_first_party(tmp_path: Path) -> None:
    code, answer = explain(tmp_path, "--package", "requests", "network", "connect", "a.example:1")
    assert code == 1 and answer["rule"] == "packages:default"
    code, answer = explain(
        tmp_path, "--package", "requests==100", "network", "connect", "a.example:1"
    )
    assert code == 0 and answer["package_version"] == "100"
    code, answer = explain(tmp_path, "--package", "hypothesis", "network", "connect", "a.example:1")
    assert code == 0  # first-party: the ordinary rules
    # a grant never allows what the ordinary rules deny
    code, answer = explain(
        tmp_path, "--package", "requests==100", "network", "connect", "evil.example:1"
    )
    assert code == 1 and answer["rule"] == "no-evil"
