"""`appshield diff`: exit codes, the three formats, SARIF against the SARIF 2.1.0 schema, and
the responsible lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from appshield.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy_diff"
SCHEMA = json.loads((ROOT / "tests" / "data" / "sarif-2.1.0-subset.schema.json").read_text())

BASE = """\
version: 1
mode: enforce
defaults: {process: deny, file: deny, network: deny, import: allow}
rules:
  - id: read-app
    category: file
    action: allow
    match: {path: "/app/**", access: read}
  - id: no-keys
    category: file
    action: deny
    match: {path: "/app/keys/**"}
"""


def _diff(
    capsys: pytest.CaptureFixture[str], old: Path | str, new: Path | str, *more: str
) -> tuple[int, str, str]:
    code = main(["diff", str(old), str(new), *more])
    out, err = capsys.readouterr()
    return code, out, err


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_same_policy_widens_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _diff(capsys, EXAMPLE / "before.yaml", EXAMPLE / "before.yaml")
    assert code == 0
    assert "widened (NEW allows or hides what OLD did not): none" in out


def test_a_new_destination_widens_and_names_its_rule(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = _diff(
        capsys, "examples/policy_diff/before.yaml", "examples/policy_diff/after.yaml"
    )
    assert code == 1
    line = _line_of(EXAMPLE / "after.yaml", "id: network-connect-telemetry")
    rule = "network-connect-telemetry-acme-billing-example-443"
    assert f"{rule} (examples/policy_diff/after.yaml:{line})" in out
    assert "connect telemetry.acme-billing.example:443 (tcp)" in out
    # The other way round it is a narrowing, and narrowing is not a failure.
    code, out, _ = _diff(capsys, EXAMPLE / "after.yaml", EXAMPLE / "before.yaml")
    assert code == 0
    assert "narrowed (NEW denies or reports what OLD did not): 2" in out


def test_an_invalid_policy_exits_2_with_its_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = _write(tmp_path, "bad.yaml", BASE.replace("access: read", "access: reed"))
    code, out, err = _diff(capsys, EXAMPLE / "before.yaml", bad)
    assert code == 2 and out == ""
    assert err.startswith(f"{bad}:8:")
    assert "Traceback" not in err


def test_an_invalid_policy_in_a_real_process(tmp_path: Path) -> None:
    bad = _write(tmp_path, "bad.yaml", "version: 1\ndefaults: {process: nope}\n")
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "diff", str(bad), str(EXAMPLE / "after.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert f"{bad}:2:" in done.stderr and "Traceback" not in done.stderr
    missing = tmp_path / "missing.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "appshield", "diff", str(missing), str(EXAMPLE / "after.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and str(missing) in done.stderr
    assert "Traceback" not in done.stderr


def test_json_lists_changes_with_their_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _diff(
        capsys, EXAMPLE / "before.yaml", EXAMPLE / "after.yaml", "--format", "json"
    )
    report = json.loads(out)
    assert code == 1 and report["widens"] is True and report["narrowed"] == []
    rules = {c["new_rule"] for c in report["widened"]}
    assert rules == {
        "network-connect-telemetry-acme-billing-example-443",
        "network-resolve-telemetry-acme-billing-example",
    }
    connect = next(c for c in report["widened"] if "connect" in c["new_rule"])
    assert connect["old_rule"] == "default:network"
    assert connect["examples"][0]["fields"]["host"] == "telemetry.acme-billing.example"


def _sarif(capsys: pytest.CaptureFixture[str], old: Path | str, new: Path | str) -> Any:
    code, out, _ = _diff(capsys, old, new, "--format", "sarif")
    log = json.loads(out)
    jsonschema.validate(log, SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    # And a second, independent reading where sarif-pydantic is installed: its models of
    # the SARIF 2.1.0 object model (our schema file is a subset written from the
    # specification). Not a test dependency: the images CI installs from may not have it.
    try:
        import sarif_pydantic
    except ImportError:
        pass
    else:
        sarif_pydantic.Sarif.model_validate(log)
    return code, log


def test_sarif_validates_and_points_at_the_new_policy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, log = _sarif(
        capsys, "examples/policy_diff/before.yaml", "examples/policy_diff/after.yaml"
    )
    assert code == 1
    run = log["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert run["tool"]["driver"]["name"] == "appshield"
    assert len(run["results"]) == 2
    for result in run["results"]:
        # What GitHub code scanning needs of each result: a rule of the driver, a level, a
        # message, and a location in the repository with a line.
        assert rule_ids[result["ruleIndex"]] == result["ruleId"] == "appshield.diff.widened"
        assert result["level"] == "error"
        place = result["locations"][0]["physicalLocation"]
        assert place["artifactLocation"]["uri"] == "examples/policy_diff/after.yaml"
        rule = result["properties"]["newRule"]
        assert place["region"]["startLine"] == _line_of(EXAMPLE / "after.yaml", f"id: {rule}")
        assert result["partialFingerprints"]


def test_sarif_of_no_change_has_no_results(capsys: pytest.CaptureFixture[str]) -> None:
    code, log = _sarif(capsys, EXAMPLE / "after.yaml", EXAMPLE / "after.yaml")
    assert code == 0 and log["runs"][0]["results"] == []


def test_the_schema_rejects_what_code_scanning_would(capsys: pytest.CaptureFixture[str]) -> None:
    """A control: the subset schema is not a rubber stamp."""
    _code, log = _sarif(capsys, EXAMPLE / "before.yaml", EXAMPLE / "after.yaml")
    broken = json.loads(json.dumps(log))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    broken = json.loads(json.dumps(log))
    del broken["runs"][0]["tool"]["driver"]["name"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)
    broken = json.loads(json.dumps(log))
    broken["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]["startLine"] = 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_settings_changes_point_at_their_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # process: allow, so that the unshielded-children protection is what denies a child.
    base = BASE.replace("process: deny", "process: allow")
    old = _write(tmp_path, "old.yaml", base)
    new_text = base.replace("mode: enforce", "mode: monitor").replace(
        "network: deny", "network: allow"
    )
    new_text += "protections: {unshielded_children: false}\n"
    new = _write(tmp_path, "new.yaml", new_text)
    code, out, _ = _diff(capsys, old, new, "--format", "json")
    report = json.loads(out)
    assert code == 1
    by_summary = {c["summary"]: c for c in report["widened"]}
    assert by_summary["mode: enforce -> monitor"]["location"].endswith("new.yaml:2:1")
    assert by_summary["defaults.network: deny -> allow"]["location"].endswith("new.yaml:3:40")
    assert "protections.unshielded_children: on -> off" in by_summary
    # Turning the protection off lets an unshielded Python child start: a process widening.
    assert any(
        c["category"] == "process" and c["old_rule"] == "implicit:unshielded_children"
        for c in report["widened"]
    )


def test_a_narrowed_deny_is_a_widening_located_at_that_rule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    old = _write(tmp_path, "old.yaml", BASE)
    new = _write(tmp_path, "new.yaml", BASE.replace('"/app/keys/**"', '"/app/keys/*.pem"'))
    code, out, _ = _diff(capsys, old, new, "--format", "json")
    report = json.loads(out)
    assert code == 1
    (change,) = report["widened"]
    assert change["old_rule"] == "no-keys" and change["new_rule"] == "read-app"
    assert change["kind"] == "allowed"
    # The allow that now decides is in NEW; it is where the SARIF result points.
    assert change["location"].endswith(f"new.yaml:{_line_of(new, 'id: read-app')}:5")
    assert {e["fields"]["access"] for e in change["examples"]} == {"read"}


def test_a_monitor_deny_over_a_deny_default_widens(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A deny with `mode: monitor` decides where it matches, and does not block: added over a
    deny default it lets through what the default blocked (the diff found this one)."""
    old = _write(tmp_path, "old.yaml", BASE)
    new = _write(
        tmp_path,
        "new.yaml",
        BASE + "  - id: watch-net\n    category: network\n    action: deny\n"
        "    mode: monitor\n    match: {host: db.internal}\n",
    )
    code, out, _ = _diff(capsys, old, new, "--format", "json")
    (change,) = json.loads(out)["widened"]
    assert code == 1
    assert (change["new_rule"], change["kind"]) == ("watch-net", "allowed")
    assert change["new_outcome"] == "deny (reported only)"


def test_rewording_is_not_a_change(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Capability, not text: reordered rules, other ids, a list instead of a scalar."""
    old = _write(tmp_path, "old.yaml", BASE)
    reworded = """\
version: 1
defaults: {file: deny, process: deny, import: allow, network: deny}
rules:
  - id: keys-stay-private
    category: file
    action: deny
    match: {path: ["/app/keys/**"], access: [read, write, delete]}
  - id: app-sources
    category: file
    action: allow
    match: {path: ["/app/**"], access: [read]}
"""
    new = _write(tmp_path, "new.yaml", reworded)
    code, out, _ = _diff(capsys, old, new, "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["widened"] == [] and report["narrowed"] == []


def test_output_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "diff.sarif"
    code, out, _ = _diff(
        capsys,
        EXAMPLE / "before.yaml",
        EXAMPLE / "after.yaml",
        "--format",
        "sarif",
        "-o",
        str(target),
    )
    assert code == 1 and out == ""
    assert json.loads(target.read_text())["version"] == "2.1.0"


def test_help_mentions_diff(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "diff" in capsys.readouterr().out
    assert os.path.exists(EXAMPLE / "before.yaml")


def test_reporting_less_is_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """An alert dropped under an allow default blocks nothing more or less, but NEW stops
    reporting: a widening of kind `unreported`, a SARIF warning."""
    alert = (
        "  - id: watch-tmp\n    category: file\n    action: alert\n"
        '    match: {path: "/app/tmp/**"}\n'
    )
    base = BASE.replace("file: deny", "file: allow")
    old = _write(tmp_path, "old.yaml", base + alert)
    new = _write(tmp_path, "new.yaml", base)
    code, log = _sarif(capsys, old, new)
    assert code == 1
    results = log["runs"][0]["results"]
    # One result per rule that now decides: `read-app` under /app, the default elsewhere
    # (a path under /app/tmp that resolves outside /app, through a symlink).
    assert {r["properties"]["newRule"] for r in results} == {"read-app", "default:file"}
    for result in results:
        assert (result["ruleId"], result["level"]) == ("appshield.diff.unreported", "warning")
        assert result["properties"]["oldRule"] == "watch-tmp"
    # The other way round: NEW reports more, a note, and the exit code stays 0.
    code, log = _sarif(capsys, new, old)
    assert code == 0
    assert {r["level"] for r in log["runs"][0]["results"]} == {"note"}
