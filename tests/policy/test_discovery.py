"""Policy discovery: APPSHIELD_POLICY, then appshield.yaml / .appshield.yaml upwards to the
repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

from appshield.errors import PolicyError
from appshield.policy import discover_policy


def test_environment_variable_wins(tmp_path: Path) -> None:
    (tmp_path / "appshield.yaml").write_text("")
    found = discover_policy(str(tmp_path), {"APPSHIELD_POLICY": "/elsewhere/p.yaml"})
    assert found == "/elsewhere/p.yaml"


def test_plain_name_before_dotted_name(tmp_path: Path) -> None:
    (tmp_path / "appshield.yaml").write_text("")
    (tmp_path / ".appshield.yaml").write_text("")
    assert discover_policy(str(tmp_path), {}) == str(tmp_path / "appshield.yaml")


def test_parents_are_searched_up_to_the_repository_root(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    (repo / ".git").mkdir()
    (repo / ".appshield.yaml").write_text("")
    assert discover_policy(str(deep), {}) == str(repo / ".appshield.yaml")


def test_search_stops_at_the_repository_root(tmp_path: Path) -> None:
    (tmp_path / "appshield.yaml").write_text("")  # above the repository: not used
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    with pytest.raises(PolicyError, match="no policy found"):
        discover_policy(str(repo), {})


def test_nothing_found_is_an_error(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    with pytest.raises(PolicyError) as caught:
        discover_policy(str(tmp_path), {"APPSHIELD_POLICY": ""})
    assert str(caught.value).startswith("no policy found: set APPSHIELD_POLICY")
