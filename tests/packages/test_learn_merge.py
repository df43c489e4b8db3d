"""`learn --merge` extends grants in the existing text: a known distribution's category list
gets new entries, a new category or distribution is added, comments survive; the merged
policy grants everything observed."""

from __future__ import annotations

from pathlib import Path

import pytest

from appshield.learn import merge_policy, not_allowed
from appshield.learn.records import Observation
from appshield.operations import FileOp, NetworkOp
from appshield.policy import Policy

EXISTING = """\
version: 1
defaults: {process: deny, file: allow, network: allow, import: allow}
rules: []
packages:
  default: deny
  grants:
    # the API client
    goodhttp:
      network:
        - {host: 127.0.0.1, port: 8000}
    quiet: {}
"""


def obs(op: object, *packages: tuple[str, str], count: int = 1) -> Observation:
    return Observation(op, "api", None, (), count, packages=tuple(packages))  # type: ignore[arg-type]


OBSERVED = [
    obs(NetworkOp("connect", None, "127.0.0.1", 8000), ("goodhttp", "1.0")),
    obs(NetworkOp("connect", None, "127.0.0.1", 9001), ("goodhttp", "1.0"), count=3),
    obs(FileOp("/etc/goodhttp.conf", "read", "/etc/goodhttp.conf"), ("goodhttp", "1.0")),
    obs(FileOp("/srv/quiet.txt", "read", "/srv/quiet.txt"), ("quiet", "2.0")),
    obs(FileOp("/srv/new.txt", "read", "/srv/new.txt"), ("newcomer", "0.1"), ("goodhttp", "1.0")),
]


def test_merge_extends_grants_in_place(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(EXISTING)
    before = Policy.from_file(path, use_cache=False)
    assert not_allowed(before, OBSERVED)  # the grants do not cover all of it yet
    result = merge_policy(str(path), OBSERVED)
    text = result.text
    assert "    # the API client\n    goodhttp:\n      network:\n" in text
    assert text.index("port: 8000") < text.index("9001")
    assert "# learned with newcomer 0.1" in text
    merged = Policy.from_yaml(text)
    assert merged.document.packages is not None
    assert set(merged.document.packages.grants) == {"goodhttp", "quiet", "newcomer"}
    assert not_allowed(merged, OBSERVED) == []


def test_merge_adds_a_section_when_there_is_none(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(EXISTING.split("packages:")[0])
    result = merge_policy(str(path), OBSERVED)
    merged = Policy.from_yaml(result.text)
    assert merged.document.packages is not None
    assert not_allowed(merged, OBSERVED) == []


def test_merge_refuses_a_flow_style_grant(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        EXISTING.replace("    quiet: {}\n", "    quiet: {file: []}\n").replace(
            "{file: []}", "{network: [{port: 1}]}"
        )
    )
    with pytest.raises(ValueError, match="flow style"):
        merge_policy(str(path), OBSERVED)
