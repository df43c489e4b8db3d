"""`extends`, `disable` and how layers merge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appshield.errors import PolicyError
from appshield.policy.loader import PACKS_DIR, load_file, load_text

ALL_DEFAULTS = "defaults: {process: deny, file: allow, network: deny, import: allow}\n"


def _rule(rule_id: str, category: str = "file", action: str = "deny") -> str:
    return f"  - {{id: {rule_id}, category: {category}, action: {action}, match: {{}}}}\n"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _problems(path: Path | str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_file(path)
    return [str(p) for p in caught.value.problems]


def test_rule_order_settings_and_files(tmp_path: Path) -> None:
    _write(
        tmp_path / "base" / "a.yaml",
        "version: 1\nname: a\nmode: monitor\n"
        "defaults: {process: allow, file: deny}\nprotections: {policy_files: false}\n"
        "rules:\n" + _rule("a1") + _rule("a2"),
    )
    _write(tmp_path / "b.yaml", "version: 1\ndefaults: {network: alert}\nrules:\n" + _rule("b1"))
    top = _write(
        tmp_path / "top.yaml",
        "version: 1\nextends: [base/a.yaml, b.yaml]\n"
        "defaults: {file: allow, import: allow}\nrules:\n" + _rule("own"),
    )
    document = load_file(top)
    assert [r.id for r in document.rules] == ["a1", "a2", "b1", "own"]
    assert document.defaults == {
        "process": "allow",
        "file": "allow",
        "network": "alert",
        "import": "allow",
    }
    assert (document.name, document.mode) == ("a", "monitor")
    assert document.protections.policy_files is False
    assert document.files == (str(top), str(tmp_path / "base/a.yaml"), str(tmp_path / "b.yaml"))
    assert document.rules[0].source is not None
    assert document.rules[0].source.file == str(tmp_path / "base/a.yaml")


def test_own_settings_override_inherited(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "version: 1\nname: a\nmode: monitor\n" + ALL_DEFAULTS)
    top = _write(
        tmp_path / "top.yaml",
        "version: 1\nname: top\nmode: enforce\nextends: a.yaml\n"
        "defaults: {network: allow}\nprotections: {unshielded_children: false}\n",
    )
    document = load_file(top)
    assert (document.name, document.mode, document.defaults["network"]) == (
        "top",
        "enforce",
        "allow",
    )
    assert document.defaults["process"] == "deny"
    assert document.protections.unshielded_children is False


def test_disable_removes_inherited_rules(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "version: 1\nrules:\n" + _rule("keep") + _rule("drop"))
    top = _write(
        tmp_path / "top.yaml",
        "version: 1\nextends: [a.yaml]\ndisable: [drop]\n"
        + ALL_DEFAULTS
        + "rules:\n"
        + _rule("drop", action="allow"),
    )
    document = load_file(top)
    assert [(r.id, r.action) for r in document.rules] == [("keep", "deny"), ("drop", "allow")]


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "version: 1\nrules:\n" + _rule("same"))
    _write(tmp_path / "b.yaml", "version: 1\nrules:\n" + _rule("same"))
    top = _write(tmp_path / "top.yaml", "version: 1\nextends: [a.yaml, b.yaml]\n" + ALL_DEFAULTS)
    shown = os.path.join(str(tmp_path), "a.yaml")
    assert _problems(top) == [
        f"{tmp_path}/b.yaml:3:5: duplicate rule id 'same' (first defined at {shown}:3:5)"
    ]


def test_diamond_is_merged_once(tmp_path: Path) -> None:
    _write(tmp_path / "common.yaml", "version: 1\nrules:\n" + _rule("c"))
    _write(tmp_path / "a.yaml", "version: 1\nextends: common.yaml\n")
    _write(tmp_path / "b.yaml", "version: 1\nextends: common.yaml\n")
    top = _write(tmp_path / "top.yaml", "version: 1\nextends: [a.yaml, b.yaml]\n" + ALL_DEFAULTS)
    assert [r.id for r in load_file(top).rules] == ["c"]


def test_self_extends_is_a_cycle(tmp_path: Path) -> None:
    top = _write(tmp_path / "top.yaml", "version: 1\nextends: [top.yaml]\n" + ALL_DEFAULTS)
    assert _problems(top) == [f"{top}:2:11: extends cycle: {top} -> {top}"]


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside" / "x.yaml", "version: 1\n")
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "link.yaml").symlink_to(outside)
    top = _write(folder / "top.yaml", "version: 1\nextends: [link.yaml]\n" + ALL_DEFAULTS)
    assert _problems(top) == [f"{top}:2:11: extends: 'link.yaml' is outside this policy's folder"]


def test_absolute_extends_inside_the_folder_is_fine(tmp_path: Path) -> None:
    base = _write(tmp_path / "sub" / "base.yaml", "version: 1\n" + ALL_DEFAULTS)
    top = _write(tmp_path / "top.yaml", f"version: 1\nextends: ['{base}']\n")
    assert load_file(top).defaults["file"] == "allow"


def test_problems_of_an_extended_file_name_that_file(tmp_path: Path) -> None:
    _write(tmp_path / "sub" / "a.yaml", "version: 1\nrules:\n  - {id: x, category: nope}\n")
    top = _write(tmp_path / "top.yaml", "version: 1\nextends: sub/a.yaml\n" + ALL_DEFAULTS)
    sub = f"{tmp_path}/sub/a.yaml"
    assert _problems(top) == [
        f"{sub}:3:5: rule has no 'action'",
        f"{sub}:3:5: rule has no 'match'",
        f"{sub}:3:23: category must be one of process, file, network, import, not 'nope'",
    ]


def test_packs_resolve_and_are_not_files(tmp_path: Path) -> None:
    top = _write(
        tmp_path / "top.yaml",
        "version: 1\nextends: [appshield:baseline, appshield:python-runtime]\n" + ALL_DEFAULTS,
    )
    document = load_file(top)
    assert document.files == (str(top),)
    assert document.rules
    assert all(
        r.source and r.source.file and r.source.file.startswith(PACKS_DIR) for r in document.rules
    )


@pytest.mark.parametrize(
    "pack", sorted(p[:-5] for p in os.listdir(PACKS_DIR) if p.endswith(".yaml"))
)
def test_every_pack_loads(pack: str) -> None:
    load_text(f"version: 1\nextends: appshield:{pack}\n" + ALL_DEFAULTS)


def test_text_without_file_name_extends_from_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "base.yaml", "version: 1\n" + ALL_DEFAULTS + "rules:\n" + _rule("b"))
    monkeypatch.chdir(tmp_path)
    document = load_text("version: 1\nextends: base.yaml\n")
    assert [r.id for r in document.rules] == ["b"]
    assert document.files == (str(tmp_path / "base.yaml"),)
