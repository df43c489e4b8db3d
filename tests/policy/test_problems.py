"""Problems in-process: every one reported, each with its place, and nothing but
`PolicyError` for any input."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from appshield.errors import PolicyError
from appshield.policy.loader import load_file, load_mapping, load_text

DEFAULTS = "defaults: {process: deny, file: allow, network: deny, import: allow}\n"
DEFAULTS_MAP = {"process": "deny", "file": "allow", "network": "deny", "import": "allow"}


def _problems_text(text: str, filename: str | None = None) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_text(text, filename=filename)
    return [str(p) for p in caught.value.problems]


def _problems_map(data: object) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_mapping(data)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def _rule_text(match: str, category: str = "file") -> str:
    return (
        "version: 1\n" + DEFAULTS + "rules:\n"
        f"  - id: r\n    category: {category}\n    action: deny\n    match: {match}\n"
    )


def test_text_without_file_name_uses_policy_placeholder() -> None:
    assert _problems_text("version: 3\n" + DEFAULTS) == ["<policy>:1:10: version must be 1, not 3"]


def test_all_problems_are_reported_in_order() -> None:
    text = (
        "version: 1\nmode: audit\n" + DEFAULTS + "rules:\n"
        "  - {id: a, category: file, action: deny, match: {path: x}}\n"
        "  - {id: b, category: network, action: deny, match: {host: off, port: '5-1'}}\n"
    )
    assert _problems_text(text, "p.yaml") == [
        "p.yaml:2:7: mode must be one of enforce, monitor, not 'audit'",
        "p.yaml:5:57: path: 'x' is not absolute"
        " (a path glob must start with '/', '~' or a variable)",
        "p.yaml:6:60: host: 'off' is read by YAML as boolean false; quote it",
        "p.yaml:6:71: port: port range '5-1' has LOW greater than HIGH",
    ]


@pytest.mark.parametrize(
    ("match", "category", "message"),
    [
        ("{host: 1.5}", "network", "host: '1.5' is read by YAML as number 1.5; quote it"),
        ("{host: ~}", "network", "host: '~' is read by YAML as null; quote it"),
        ("{host: }", "network", "host: missing value"),
        (
            "{module: 2024-01-02}",
            "import",
            "module: '2024-01-02' is read by YAML as date 2024-01-02; quote it",
        ),
        ("{port: 0x1BB}", "network", "port: '0x1BB' is read by YAML as integer 443; quote it"),
        ("{port: 0755}", "network", "port: '0755' is read by YAML as integer 493; quote it"),
        ("{port: -1}", "network", "port: port -1 is out of range 0-65535"),
        ("{port: [true]}", "network", "port: 'true' is read by YAML as boolean true; quote it"),
        (
            "{port: [[1]]}",
            "network",
            'port must be a port number or a "LOW-HIGH" string, not a list',
        ),
        ("{path: []}", "file", "path is an empty list (it would match nothing)"),
        ("{path: '/a/{home}'}", "file", None),
        (
            "{path: '~root/x'}",
            "file",
            "path: only a leading '~' or '~/' is supported, not '~root/x'",
        ),
        (
            "{path: '/a/}b'}",
            "file",
            "path: unknown variable '}' in '/a/}b' (known: {cwd}, {home}, {tmp}, {prefix},"
            " {stdlib}, {stdlib_modules}, {site_packages}, {policy_dir}, {python})",
        ),
        ("{path: '/a/[/]'}", "file", "path: a character class cannot hold '/' in glob '/a/[/]'"),
        ("{path: '/a/[z-a]'}", "file", "path: bad character range z-a in glob '/a/[z-a]'"),
        (
            "{args: [a, [b]]}",
            "process",
            "args: a list of globs or a list of lists, not a mix of both",
        ),
        (
            "{args: {a: b}}",
            "process",
            "args must be a list of globs or a list of such lists, not a mapping",
        ),
        ("{executable: '{prefix}'}", "process", None),
        (
            "{executable: 'a{b}'}",
            "process",
            "executable: unknown variable in 'a{b}' (variables make a path: add a '/')",
        ),
        ("{shell: 1}", "process", "shell must be true or false, not an integer"),
        ("{cidr: nonsense}", "network", "cidr: 'nonsense' is not an IPv4 or IPv6 network"),
        ("{host: 'a b'}", "network", "host: 'a b' is not a host name or glob"),
        ("{host: 'a:80'}", "network", "host: 'a:80' is not a host name (a port goes in 'port')"),
        (
            "{module: 'a.**b'}",
            "import",
            "module: '**' must be a whole segment in module glob 'a.**b'",
        ),
        ("{module: 'os/path'}", "import", "module: 'os/path' is not a dotted module name or glob"),
        (
            "{operation: listen}",
            "network",
            "operation must be one of connect, send, bind, resolve, not 'listen'",
        ),
        (
            "{transport: sctp}",
            "network",
            "transport must be one of tcp, udp, unix, raw, not 'sctp'",
        ),
        ("{access: all}", "file", "access must be one of read, write, delete, not 'all'"),
        ("", "file", "match is empty (write {} to match every file operation)"),
        (
            "{paths: /x}",
            "file",
            "unknown key 'paths' in match of a file rule (did you mean 'path'?)",
        ),
    ],
)
def test_match_field_messages(match: str, category: str, message: str | None) -> None:
    text = _rule_text(match, category)
    if message is None:
        load_text(text)
        return
    problems = _problems_text(text)
    assert len(problems) == 1, problems
    assert problems[0].split(": ", 1)[1] == message


def test_rule_level_messages() -> None:
    text = (
        "version: 1\n" + DEFAULTS + "rules:\n"
        "  - hello\n"
        "  - {id: '', category: file, action: deny, match: {}, mode: loud, scope: ''}\n"
        "  - {category: file, action: deny, match: {}, unless: [x]}\n"
    )
    assert _problems_text(text) == [
        "<policy>:4:5: a rule must be a mapping, not a string",
        "<policy>:5:10: id '' may hold only letters, digits, '.', '_' and '-'",
        "<policy>:5:61: mode must be one of enforce, monitor, not 'loud'",
        "<policy>:5:74: scope: a module glob cannot be empty",
        "<policy>:6:5: rule has no 'id'",
        "<policy>:6:55: unless must be a mapping, not a list",
    ]


def test_top_level_messages() -> None:
    text = (
        "version: '1'\nname: [x]\nextends: 5\ndisable: {a: b}\nprotections: {policy_files: maybe}\n"
    )
    assert _problems_text(text) == [
        "<policy>:1:1: missing 'defaults' (an action for each of: process, file, network, import)",
        "<policy>:1:10: version must be an integer, not a string",
        "<policy>:2:7: name must be a string, not a list",
        "<policy>:3:10: extends: '5' is read by YAML as integer 5; quote it",
        "<policy>:4:10: disable must be a string, not a mapping",
        "<policy>:5:29: protections.policy_files must be true or false, not a string",
    ]


def test_defaults_messages() -> None:
    assert _problems_text("version: 1\ndefaults: {process: block, files: allow}\n") == [
        "<policy>:2:1: 'defaults' has no action for process, file, network, import"
        " (after extends are merged, every category needs one)",
        "<policy>:2:21: defaults.process must be one of allow, deny, alert, not 'block'",
        "<policy>:2:28: unknown key 'files' in defaults (did you mean 'file'?)",
    ]


def test_mapping_problems_name_their_key_path() -> None:
    data = {
        "version": 1,
        "defaults": DEFAULTS_MAP,
        "rules": [
            {"id": "a", "category": "file", "action": "deny", "match": {"path": ["/ok", 7]}},
            {"id": "b", "category": "network", "action": "deny", "match": {"port": True}},
            {"id": "c", "category": "network", "action": "deny", "match": {"host": b"x"}},
        ],
        7: "x",
    }
    assert _problems_map(data) == [
        "7: keys must be strings, not 7",
        "rules[0].match.path[1]: path must be a string, not an integer",
        'rules[1].match.port: port must be a port number or a "LOW-HIGH" string, not a boolean',
        "rules[2].match.host: host must be a string, not a bytes",
    ]


def test_mapping_of_the_wrong_shape() -> None:
    assert _problems_map([1, 2]) == ["the policy must be a mapping, not a list"]
    assert _problems_map(None) == ["the policy must be a mapping, not null"]


def test_cyclic_python_structure_is_fine() -> None:
    rules: list[object] = []
    rules.append(rules)
    assert _problems_map({"version": 1, "defaults": DEFAULTS_MAP, "rules": rules}) == [
        "rules[0]: a rule must be a mapping, not a list"
    ]


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_file(tmp_path / "nope.yaml")
    assert (
        str(caught.value) == f"{tmp_path}/nope.yaml: cannot read policy: No such file or directory"
    )
    with pytest.raises(PolicyError) as caught:
        load_file(tmp_path)
    assert str(caught.value) == f"{tmp_path}: cannot read policy: Is a directory"


def test_policy_error_pickles() -> None:
    with pytest.raises(PolicyError) as caught:
        load_text("version: 2\n")
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.problems == caught.value.problems


def test_alias_bomb_fails_fast() -> None:
    lines = ["version: 1", DEFAULTS.strip(), "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 12):
        refs = ", ".join([f"*a{level - 1}"] * 10)
        lines.append(f"a{level}: &a{level} [{refs}]")
    start = time.perf_counter()
    with pytest.raises(PolicyError) as caught:
        load_text("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 2
    assert "<policy>:4:10: YAML aliases are not allowed (*a0)" in str(caught.value)
    assert len(caught.value.problems) <= 101  # capped


def test_deep_nesting_fails_fast() -> None:
    start = time.perf_counter()
    for text in ("[" * 100_000, "{a: " * 50_000, "- " * 10_000 + "x"):
        with pytest.raises(PolicyError) as caught:
            load_text(text)
        assert "nesting deeper than 64 levels" in str(caught.value) or "invalid YAML" in str(
            caught.value
        )
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize(
    "text",
    ["\x00", "a: \x07", "\ud800", "[", "}", "%YAML 9.9\n---\na: 1", "? [a]\n: b", "!!binary x"],
)
def test_strange_text_is_a_policy_error(text: str) -> None:
    with pytest.raises(PolicyError):
        load_text(text)


def test_not_text_at_all() -> None:
    with pytest.raises(PolicyError):
        load_text(12)  # type: ignore[arg-type]
    with pytest.raises(PolicyError):
        load_text(b"\xff\xfe")  # type: ignore[arg-type]
