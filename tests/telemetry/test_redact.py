"""Redaction of values that look like secrets."""

from __future__ import annotations

import pytest

from appshield.operations import ProcessOp
from appshield.telemetry.record import violation_attributes
from appshield.telemetry.redact import MASK, Redactor
from tests.telemetry.conftest import violation

R = Redactor(True)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mysql", "--password=hunter2"], ["mysql", f"--password={MASK}"]),
        (["tool", "--api-key", "k123", "next"], ["tool", "--api-key", MASK, "next"]),
        (["env", "DB_PASSWORD=s3cret", "X=1"], ["env", f"DB_PASSWORD={MASK}", "X=1"]),
        (["env", "AWS_SECRET_ACCESS_KEY=abc"], ["env", f"AWS_SECRET_ACCESS_KEY={MASK}"]),
        (["ssh", "-p", "2222", "host"], ["ssh", "-p", "2222", "host"]),  # -p is not touched
        (["git", "status"], ["git", "status"]),
        (
            ["curl", "-H", "Authorization: Bearer eyJabc.def"],
            ["curl", "-H", f"Authorization: Bearer {MASK}"],
        ),
        (
            ["git", "clone", "https://bob:pa55@git.example.com/r.git"],
            ["git", "clone", f"https://bob:{MASK}@git.example.com/r.git"],
        ),
        (["aws", "AKIAIOSFODNN7EXAMPLE"], ["aws", MASK]),
        (["gh", "ghp_" + "a" * 36], ["gh", MASK]),
    ],
)
def test_argv(argv: list[str], expected: list[str]) -> None:
    assert R.argv(argv) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:pw@db:5432/x", f"postgres://app:{MASK}@db:5432/x"),
        ("/srv/app/config.yaml", "/srv/app/config.yaml"),
        ("token=abc&user=x", f"token={MASK}&user=x"),
        ("X-Api-Key: 123456", f"X-Api-Key: {MASK}"),
        ("evil.example:443", "evil.example:443"),
    ],
)
def test_text(text: str, expected: str) -> None:
    assert R.text(text) == expected


def test_disabled_keeps_everything() -> None:
    off = Redactor(False)
    assert off.argv(["x", "--password=p"]) == ["x", "--password=p"]
    assert off.text("https://u:p@h") == "https://u:p@h"


def test_attributes_are_redacted_everywhere() -> None:
    op = ProcessOp("/usr/bin/curl", ("curl", "--password", "p4ss", "https://u:pw@h.io/"))
    attrs = violation_attributes(violation(op), R)
    flat = repr(attrs)
    assert "p4ss" not in flat and ":pw@" not in flat
    attrs_off = violation_attributes(violation(op), Redactor(False))
    assert "p4ss" in repr(attrs_off)
