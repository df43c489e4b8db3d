"""Valid policies load into exactly the expected `PolicyDocument`."""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from appshield import Policy
from appshield.document import Condition, PolicyDocument, Protections, RuleSpec, SourceRef
from appshield.policy.loader import load_file, load_mapping, load_text

DEFAULTS = "defaults: {process: deny, file: allow, network: deny, import: allow}\n"
DEFAULTS_MAP = {"process": "deny", "file": "allow", "network": "deny", "import": "allow"}


def _only_rule(text: str) -> RuleSpec:
    document = load_text("version: 1\n" + DEFAULTS + "rules:\n" + text)
    assert len(document.rules) == 1
    return document.rules[0]


def test_full_document_round_trip() -> None:
    text = (
        "version: 1\n"
        "name: checkout\n"
        "mode: monitor\n" + DEFAULTS + "protections: {unshielded_children: false}\n"
        "rules:\n"
        "  - id: git-status\n"
        "    description: version banner\n"
        "    category: process\n"
        "    action: allow\n"
        "    match: {executable: git, args: [status, '**']}\n"
        "  - id: no-shadow\n"
        "    category: file\n"
        "    action: deny\n"
        "    match: {path: /etc/shadow}\n"
        "    mode: monitor\n"
        "  - id: api\n"
        "    category: network\n"
        "    action: alert\n"
        "    match: {host: API.Example.COM., port: 443}\n"
        "    scope: [requests, 'vendor.*']\n"
        "  - id: ctypes\n"
        "    category: import\n"
        "    action: deny\n"
        "    match: {module: ctypes}\n"
        "    unless: {scope: PIL, origin: /opt/ok/**}\n"
    )
    assert load_text(text) == PolicyDocument(
        version=1,
        name="checkout",
        mode="monitor",
        defaults=DEFAULTS_MAP,
        rules=(
            RuleSpec(
                id="git-status",
                category="process",
                action="allow",
                match=Condition({"executable": ("git",), "args": (("status", "**"),)}),
                description="version banner",
                source=SourceRef(None, 7, 5),
            ),
            RuleSpec(
                id="no-shadow",
                category="file",
                action="deny",
                match=Condition({"path": ("/etc/shadow",)}),
                mode="monitor",
                source=SourceRef(None, 12, 5),
            ),
            RuleSpec(
                id="api",
                category="network",
                action="alert",
                match=Condition({"host": ("api.example.com",), "port": ((443, 443),)}),
                scope=("requests", "vendor.*"),
                source=SourceRef(None, 17, 5),
            ),
            RuleSpec(
                id="ctypes",
                category="import",
                action="deny",
                match=Condition({"module": ("ctypes",)}),
                unless=Condition({"origin": ("/opt/ok/**",)}, scope=("PIL",)),
                source=SourceRef(None, 22, 5),
            ),
        ),
        protections=Protections(policy_files=True, unshielded_children=False),
        files=(),
    )


def test_mapping_and_text_agree_except_sources() -> None:
    data = {
        "version": 1,
        "defaults": DEFAULTS_MAP,
        "rules": [
            {"id": "a", "category": "network", "action": "deny", "match": {"cidr": "10.0.0.0/8"}},
        ],
    }
    from_map = load_mapping(data)
    assert from_map.rules[0].source is None
    assert from_map.rules[0].match == Condition({"cidr": ("10.0.0.0/8",)})
    assert Policy.from_mapping(data).document == from_map


def test_empty_match_and_null_rules() -> None:
    rule = _only_rule("  - {id: all, category: file, action: alert, match: {}}\n")
    assert rule.match == Condition({})
    assert load_text("version: 1\n" + DEFAULTS + "rules:\n").rules == ()


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("[status]", (("status",),)),
        ("status", (("status",),)),
        ("[]", ((),)),
        ("[[log, '**'], [status]]", (("log", "**"), ("status",))),
    ],
)
def test_args_forms(written: str, stored: tuple[tuple[str, ...], ...]) -> None:
    rule = _only_rule(
        f"  - {{id: a, category: process, action: allow, match: {{args: {written}}}}}\n"
    )
    assert rule.match.fields["args"] == stored


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("[example.com.]", ("example.com",)),
        ("'*.Evil.COM'", ("*.evil.com",)),
        ("'::ffff:127.0.0.1'", ("127.0.0.1",)),
        ("'[::1]'", ("::1",)),
        ("'2001:DB8::0001'", ("2001:db8::1",)),
    ],
)
def test_hosts_are_normalised(written: str, stored: tuple[str, ...]) -> None:
    rule = _only_rule(
        f"  - {{id: a, category: network, action: deny, match: {{host: {written}}}}}\n"
    )
    assert rule.match.fields["host"] == stored


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.168.1.7", "192.168.1.7/32"),
        ("'2001:DB8::/32'", "2001:db8::/32"),
        ("'::ffff:10.0.0.0/104'", "10.0.0.0/8"),
    ],
)
def test_cidrs_are_canonical(written: str, stored: str) -> None:
    rule = _only_rule(
        f"  - {{id: a, category: network, action: deny, match: {{cidr: {written}}}}}\n"
    )
    assert rule.match.fields["cidr"] == (stored,)


def test_ports() -> None:
    rule = _only_rule(
        "  - {id: a, category: network, action: allow,"
        " match: {port: [0, 65535, '8000-8080', ' 22 - 23 ', '53']}}\n"
    )
    assert rule.match.fields["port"] == ((0, 0), (65535, 65535), (8000, 8080), (22, 23), (53, 53))


def test_variables_expand_in_path_globs(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "version: 1\n" + DEFAULTS + "rules:\n"
        "  - id: a\n"
        "    category: file\n"
        "    action: allow\n"
        "    match:\n"
        "      path: ['~/.cache/**', '{home}/x', '{cwd}/in/*', '{tmp}/t', '{prefix}/bin/*',\n"
        "             '{policy_dir}/data/**', '/a/./b/../c//d/**']\n"
        "  - id: b\n"
        "    category: import\n"
        "    action: allow\n"
        "    match: {origin: '{stdlib}/**', library: '{site_packages}/**'}\n"
    )
    document = load_file(policy)
    home = os.path.expanduser("~")
    assert document.rules[0].match.fields["path"] == (
        f"{home}/.cache/**",
        f"{home}/x",
        f"{os.getcwd()}/in/*",
        f"{tempfile.gettempdir()}/t",
        f"{os.path.normpath(sys.prefix)}/bin/*",
        f"{tmp_path}/data/**",
        "/a/c/d/**",
    )
    paths = sysconfig.get_paths()
    stdlib = dict.fromkeys(
        os.path.normpath(p) + "/**" for p in (paths["stdlib"], paths["platstdlib"])
    )
    assert document.rules[1].match.fields["origin"] == tuple(stdlib)
    sites = list(site.getsitepackages())
    if os.path.isdir(site.getusersitepackages()):
        sites.append(site.getusersitepackages())
    expected = tuple(dict.fromkeys(os.path.normpath(p) + "/**" for p in sites))
    assert document.rules[1].match.fields["library"] == expected
    assert document.files == (str(policy),)
    assert document.rules[0].source == SourceRef(str(policy), 4, 5)


def test_base_name_executable_is_kept_but_path_one_is_expanded() -> None:
    rule = _only_rule(
        "  - {id: a, category: process, action: allow,"
        " match: {executable: [git, 'py*', '{prefix}/bin/python3']}}\n"
    )
    assert rule.match.fields["executable"] == (
        "git",
        "py*",
        os.path.normpath(sys.prefix) + "/bin/python3",
    )


def test_values_from_yaml_that_are_fine_as_they_are() -> None:
    rule = _only_rule(
        "  - id: a\n"
        "    category: process\n"
        "    action: deny\n"
        "    match: {shell: yes, unshielded: [true, false], command_line: 'curl * | sh'}\n"
    )
    assert rule.match.fields == {
        "shell": (True,),
        "unshielded": (True, False),
        "command_line": ("curl * | sh",),
    }


def test_bytes_and_bom_are_accepted() -> None:
    text = ("\ufeffversion: 1\n" + DEFAULTS).encode()
    assert load_text(text).defaults == DEFAULTS_MAP  # type: ignore[arg-type]
