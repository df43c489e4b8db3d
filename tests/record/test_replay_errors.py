"""`appshield replay` on bad input: exit 2 with one clear line, never a traceback; torn lines
are skipped and said; the recording's lines round-trip."""

from __future__ import annotations

from pathlib import Path

from appshield.decision import Decision
from appshield.operations import FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.record.format import Entry, Site, entry_from_json, entry_json
from appshield.settings import Settings
from tests.record._helpers import ROOT, appshield

POLICY = ROOT / "examples" / "demo-policy.yaml"


def _recording(path: Path) -> Path:
    entry = Entry(
        ProcessOp("/usr/bin/uname", ("uname", "-s"), trusted_location=True),
        "subprocess.Popen",
        "svc",
        ("subprocess", "svc"),
        Site("run", "/srv/svc.py", 7),
        Decision("allow", "uname-only", False, "enforce"),
        (),
        3,
        None,
    )
    path.write_text(entry_json(entry) + "\n")
    return path


def test_an_invalid_policy_exits_2_naming_the_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndefaults: {process: maybe}\n")
    done = appshield("replay", "--policy", str(bad), str(_recording(tmp_path / "r.jsonl")))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{bad}:"), done.stderr


def test_a_missing_or_foreign_recording_exits_2(tmp_path: Path) -> None:
    missing = appshield("replay", "--policy", str(POLICY), str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello\nworld\n")
    done = appshield("replay", "--policy", str(POLICY), str(foreign))
    assert done.returncode == 2 and "not an appshield recording" in done.stderr
    assert "Traceback" not in done.stderr + missing.stderr


def test_torn_lines_are_skipped_and_said(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.jsonl")
    text = path.read_text()
    path.write_text(text + text[:40])  # a process killed mid-write
    done = appshield("replay", "--policy", str(POLICY), str(path))
    assert done.returncode == 0, done.stderr
    assert "1 line(s) could not be read" in done.stderr
    assert "replayed 1 distinct decision(s) (3 operation(s)" in done.stdout


def test_entries_round_trip() -> None:
    import json

    ops = [
        FileOp("/a", "read", resolved="/b"),
        NetworkOp("connect", None, "10.0.0.1", 443, "tcp", ("api.example.com",)),
        ProcessOp("/usr/bin/git", ("git", "status"), trusted_location=True),
        ImportOp("ctypes", "/usr/lib/python3/ctypes/__init__.py"),
    ]
    for op in ops:
        for decision in (None, Decision("deny", "r", True, "monitor")):
            entry = Entry(op, "api", "m", ("m",), Site("f", "/m.py", 3), decision, (), 2, 9)
            assert entry_from_json(json.loads(entry_json(entry))) == entry


def test_the_record_settings_are_read_once_from_the_environment() -> None:
    found = Settings.from_environ({"APPSHIELD_RECORD": "/x.jsonl", "APPSHIELD_RECORD_LIMIT": "5"})
    assert (found.record_path, found.record_limit) == ("/x.jsonl", 5)
    default = Settings.from_environ({"APPSHIELD_RECORD_LIMIT": "lots"})
    assert (default.record_path, default.record_limit) == (None, 10_000)
