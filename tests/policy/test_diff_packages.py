"""`appshield diff` compares the `packages` sections too: what each distribution may do, per
category, as its grant (or the section's default) allows it. A dependency bump that needs a
wider grant is caught in CI like any other widening."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appshield.cli import main
from appshield.policy import Policy
from appshield.policy.diff import diff_documents

BASE = """\
version: 1
defaults: {process: allow, file: allow, network: allow, import: allow}
rules: []
"""
REQUESTS = """\
packages:
  default: deny
  grants:
    requests:
      network:
        - host: [%s]
          port: [443]
"""


def _doc(text: str) -> object:
    return Policy.from_yaml(text).document


def _policy(hosts: str, extra: str = "") -> str:
    return BASE + (REQUESTS % hosts) + extra


def test_a_grant_that_reaches_a_new_host_widens_for_that_distribution() -> None:
    old = _doc(_policy('"api.example.com"'))
    new = _doc(_policy('"api.example.com", "collector.example.net"'))
    result = diff_documents(old, new)  # type: ignore[arg-type]
    assert result.widens and not result.narrowed
    (change,) = result.widened
    assert change.category == "packages:requests:network"
    assert change.new_rule == "packages.grants.requests"
    assert any(w.op.host == "collector.example.net" for w in change.examples)
    back = diff_documents(new, old)  # type: ignore[arg-type]
    assert not back.widened and [c.category for c in back.narrowed] == [change.category]


def test_the_same_packages_section_shows_nothing() -> None:
    doc = _doc(_policy('"api.example.com"'))
    result = diff_documents(doc, doc)  # type: ignore[arg-type]
    assert result.widened == () and result.narrowed == ()


def test_adding_the_section_narrows_and_removing_it_widens() -> None:
    with_section, without = _doc(_policy('"api.example.com"')), _doc(BASE)
    assert not diff_documents(without, with_section).widens  # type: ignore[arg-type]
    assert diff_documents(with_section, without).widens  # type: ignore[arg-type]


def test_a_new_grant_and_a_new_first_party_distribution_widen() -> None:
    old = _doc(_policy('"api.example.com"'))
    grant = '    leftpad:\n      file:\n        - path: ["/etc/**"]\n          access: [read]\n'
    new = _doc(_policy('"api.example.com"', grant))
    categories = {c.category for c in diff_documents(old, new).widened}  # type: ignore[arg-type]
    assert "packages:leftpad:file" in categories
    first_party = _doc(
        _policy('"api.example.com"').replace(
            "default: deny", "default: deny\n  first_party: [leftpad]"
        )
    )
    summaries = [c.summary for c in diff_documents(old, first_party).widened]  # type: ignore[arg-type]
    assert summaries == ["packages.first_party: + leftpad"]


def test_the_cli_exits_1_and_sarif_points_at_the_grant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # SARIF points into the repository: the current folder
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    # (a comment of their own: text loaded before by `from_yaml`, without a file, is not reused)
    old.write_text(_policy('"api.example.com"') + "# old\n")
    new.write_text(_policy('"api.example.com", "collector.example.net"') + "# new\n")
    assert main(["diff", str(old), str(new), "--format", "sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    (result,) = log["runs"][0]["results"]
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 7  # `requests:` under `grants:`
    assert main(["diff", str(new), str(old)]) == 0
