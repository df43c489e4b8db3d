"""The `packages` section of format v1: read, validated with places, merged across `extends`,
cached, described by the schema; policies without it are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from appshield.errors import PolicyError
from appshield.policy import Policy, cache
from appshield.policy._schema import policy_schema
from appshield.policy.loader import load_file
from appshield.versions import SpecifierError, check_specifier, meets

HEAD = "version: 1\ndefaults: {process: deny, file: allow, network: deny, import: allow}\n"

GOOD = (
    HEAD
    + """\
packages:
  default: deny
  first_party: [My_App]
  grants:
    Good.HTTP:
      version: ">=1.0,<2"
      network: [{host: 127.0.0.1, port: "8000-9000", operation: connect}]
      file: [{path: "{tmp}/**", access: read}]
      import: [{module: [socket, json]}]
    quiet:
"""
)


def test_section_is_read_with_normalised_names() -> None:
    packages = Policy.from_yaml(GOOD).document.packages
    assert packages is not None
    assert packages.default == "deny"
    assert packages.first_party == ("my-app",)
    assert set(packages.grants) == {"good-http", "quiet"}
    grant = packages.grants["good-http"]
    assert grant.version == ">=1.0,<2"
    assert set(grant.allows) == {"network", "file", "import"}
    assert grant.allows["network"][0].fields["port"] == ((8000, 9000),)
    assert grant.source is not None and grant.source.line == 7
    assert packages.grants["quiet"].allows == {}


def test_old_policy_has_no_section() -> None:
    assert Policy.from_yaml(HEAD).document.packages is None


BAD = (
    HEAD
    + """\
packages:
  default: sometimes
  grants:
    goodhttp:
      version: latest
      network: {host: x}
      proces: []
    evil:
      file: [{path: relative, mode: r}]
    "not a name!": {}
"""
)


def test_every_problem_has_its_place() -> None:
    with pytest.raises(PolicyError) as caught:
        Policy.from_yaml(BAD, filename="p.yaml")
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("p.yaml:4:12: packages.default must be one of deny, allow")
    assert any(line.startswith("p.yaml:7:16: packages.grants.goodhttp.version") for line in lines)
    assert any(line.startswith("p.yaml:8:16:") and "a list" in line for line in lines)
    assert any(
        line.startswith("p.yaml:9:7: unknown key 'proces'") and "'process'" in line
        for line in lines
    )
    assert any(line.startswith("p.yaml:11:21:") and "not absolute" in line for line in lines)
    assert any(line.startswith("p.yaml:11:31: unknown key 'mode'") for line in lines)
    assert any(
        line.startswith("p.yaml:12:5:") and "not a distribution name" in line for line in lines
    )


def test_duplicate_after_normalising_and_first_party_overlap() -> None:
    twice = HEAD + "packages:\n  grants:\n    Foo_Bar: {}\n    foo.bar: {}\n"
    with pytest.raises(PolicyError, match=r"<policy>:6:5: .*'foo-bar' is granted twice"):
        Policy.from_yaml(twice)
    both = HEAD + "packages:\n  first_party: [a]\n  grants:\n    A: {}\n"
    with pytest.raises(PolicyError, match="'a' is both first_party and granted"):
        Policy.from_yaml(both)


def test_extends_merges_grants(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        HEAD + "packages:\n  default: allow\n  grants:\n    a: {file: [{}]}\n    b: {}\n"
    )
    (tmp_path / "top.yaml").write_text(
        "version: 1\nextends: [base.yaml]\npackages:\n  grants:\n    b: {network: [{}]}\n"
    )
    packages = load_file(tmp_path / "top.yaml").packages
    assert packages is not None
    assert packages.default == "deny"  # the extending file's section says (its default: deny)
    assert set(packages.grants) == {"a", "b"}
    assert set(packages.grants["b"].allows) == {"network"}


def test_cache_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    fresh = load_file(path)
    cache.store(str(path), fresh, ((str(path), str(path), GOOD.encode()),), {})
    assert cache.plain(cache._document(cache.plain(fresh))) == cache.plain(fresh)


def test_schema_accepts_the_section() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft7Validator(policy_schema())
    validator.validate(yaml.safe_load(GOOD))
    wrong = yaml.safe_load(HEAD + "packages: {grants: {a: {network: {host: x}}}}\n")
    assert list(validator.iter_errors(wrong))


@pytest.mark.parametrize(
    ("version", "spec", "expected"),
    [
        ("2.31.0", ">=2", True),
        ("1.9", ">=2", False),
        ("2.0", "==2.*", True),
        ("3.0", "==2.*", False),
        ("1.4.2", "~=1.4", True),
        ("2.0", "~=1.4", False),
        ("1.0", "!=1.0", False),
        ("1.0", ">=1.0,<2", True),
        ("", ">=0", False),
        ("2.0", None, True),
    ],
)
def test_version_specifiers(version: str, spec: str | None, expected: bool) -> None:
    assert meets(version, spec) is expected
    if spec is not None:
        from appshield import versions

        assert versions._meets_subset(version, check_specifier(spec)) is expected


@pytest.mark.parametrize("spec", ["latest", ">=", "==1.*.2", ">=1.*", "~=1", "===1.0"])
def test_bad_specifiers(spec: str) -> None:
    with pytest.raises(SpecifierError):
        check_specifier(spec)
