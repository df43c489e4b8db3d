"""The attribution rule and the grant decision, pure: generated stacks of first-party,
standard-library, transparent and third-party frames in any order, and the index that maps
files to distributions."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from appshield.attribution import (
    FIRST_PARTY,
    STANDARD,
    UNATTRIBUTED,
    Dist,
    DistributionIndex,
    normalise_name,
    responsible,
)
from appshield.decision import Decision
from appshield.document import Condition, Grant, Packages
from appshield.grants import GrantTable
from appshield.operations import FileOp

DISTS = [Dist(n, "1.0") for n in ("a", "b", "c", "d")]
FRAME = st.sampled_from([FIRST_PARTY, STANDARD, None, *DISTS])
OP_IN = FileOp("/data/in.txt", "read", "/data/in.txt")
OP_OUT = FileOp("/etc/shadow", "read", "/etc/shadow")
ALLOW = Decision("allow", "default:file", False, "enforce")
# per distribution: None (no grant), or the set of paths its grant's entries name
GRANTS = st.dictionaries(
    st.sampled_from([d.name for d in DISTS]),
    st.frozensets(st.sampled_from(["/data/**", "/etc/shadow", "/nowhere"]), max_size=3),
)


def table(grants: dict[str, frozenset[str]], default: str = "deny") -> GrantTable:
    made = {
        name: Grant(
            name,
            None,
            MappingProxyType({"file": tuple(Condition({"path": (p,)}) for p in sorted(paths))}),
        )
        for name, paths in grants.items()
    }
    return GrantTable(Packages(default, (), MappingProxyType(made)), "enforce")  # type: ignore[arg-type]


def allowed(
    grants: dict[str, frozenset[str]], stack: list[object], op: FileOp, default: str = "deny"
) -> bool:
    return table(grants, default).decide(op, ALLOW, responsible(stack)).action == "allow"


def test_walk_stops_at_the_nearest_first_party_frame() -> None:
    a, b, c, _ = DISTS
    assert responsible([a, STANDARD, None, b, FIRST_PARTY, c]) == (a, b)
    assert responsible([FIRST_PARTY, a]) == ()
    assert responsible([a, a, STANDARD, a]) == (a,)
    assert responsible([STANDARD, None]) == (UNATTRIBUTED,)
    assert responsible([None, a]) == (a,)
    assert responsible([STANDARD, STANDARD]) == ()  # the interpreter's own work
    assert responsible([]) == ()  # a builtin called back from C
    assert responsible([UNATTRIBUTED, FIRST_PARTY]) == (UNATTRIBUTED,)
    assert responsible([a], bottom=[b]) == (a, b)
    assert responsible([FIRST_PARTY], bottom=[b]) == ()


def test_decision_names_the_first_distribution_that_may_not() -> None:
    grants = {"a": frozenset({"/data/**"})}
    a, b, _, _ = DISTS
    decision = table(grants).decide(OP_IN, ALLOW, (a, b))
    assert (decision.rule_id, decision.package, decision.package_version) == (
        "packages:default",
        "b",
        "1.0",
    )
    assert decision.blocked
    decision = table(grants).decide(OP_OUT, ALLOW, (a, b))
    assert (decision.rule_id, decision.package) == ("package:a", "a")
    assert table(grants).decide(OP_IN, ALLOW, (UNATTRIBUTED,)).rule_id == "packages:unattributed"
    assert table(grants, "allow").decide(OP_IN, ALLOW, (b,)) is ALLOW
    ordinary_deny = Decision("deny", "no-shadow", True, "enforce")
    # the ordinary rules' denial stands, and names the distribution that made it
    assert table(grants).decide(OP_OUT, ordinary_deny, (a,)) == ordinary_deny._replace(
        package="a", package_version="1.0"
    )


def test_version_specifier_decides_whether_a_grant_applies() -> None:
    grant = Grant("evil", "<2", MappingProxyType({"file": (Condition(),)}))
    granted = GrantTable(Packages("deny", (), MappingProxyType({"evil": grant})), "monitor")
    assert granted.decide(OP_IN, ALLOW, (Dist("evil", "1.4"),)) is ALLOW
    denied = granted.decide(OP_IN, ALLOW, (Dist("evil", "2.0"),))
    assert (denied.rule_id, denied.package_version, denied.blocked) == (
        "packages:default",
        "2.0",
        False,  # monitor: reported, not blocked
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(FRAME, max_size=8), GRANTS, st.sampled_from(DISTS), st.sampled_from([OP_IN, OP_OUT])
)
def test_adding_a_grant_never_denies_more(
    stack: list[object], grants: dict[str, frozenset[str]], extra: Dist, op: FileOp
) -> None:
    if extra.name in grants:
        return
    before = allowed(grants, stack, op)
    after = allowed({**grants, extra.name: frozenset({"/data/**"})}, stack, op)
    assert after or not before


@settings(max_examples=150, deadline=None)
@given(
    st.lists(FRAME, max_size=8),
    GRANTS,
    st.sampled_from(["/data/**", "/etc/shadow"]),
    st.sampled_from(["deny", "allow"]),
    st.sampled_from([OP_IN, OP_OUT]),
)
def test_an_entry_added_never_denies_more_and_removed_never_allows_more(
    stack: list[object], grants: dict[str, frozenset[str]], path: str, default: str, op: FileOp
) -> None:
    for name, paths in grants.items():
        wider = {**grants, name: paths | {path}}
        narrower = {**grants, name: paths - {path}}
        here = allowed(grants, stack, op, default)
        assert allowed(wider, stack, op, default) or not here
        assert here or not allowed(narrower, stack, op, default)


@settings(max_examples=100, deadline=None)
@given(st.lists(FRAME, max_size=8), GRANTS)
def test_removing_a_grant_never_allows_more(
    stack: list[object], grants: dict[str, frozenset[str]]
) -> None:
    for name in grants:
        fewer = {k: v for k, v in grants.items() if k != name}
        for op in (OP_IN, OP_OUT):
            assert allowed(grants, stack, op) or not allowed(fewer, stack, op)


@settings(max_examples=100, deadline=None)
@given(st.lists(FRAME, max_size=8), st.sampled_from(DISTS))
def test_a_third_party_frame_inside_the_app_is_always_answerable(
    stack: list[object], dist: Dist
) -> None:
    # The confused deputy: whatever the outer frames, a distribution between the operation
    # and the nearest first-party frame answers for it.
    answerable = responsible([dist, *stack])
    assert dist in answerable


def test_index_maps_files_to_distributions(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    (site / "goodhttp").mkdir(parents=True)
    (site / "goodhttp" / "__init__.py").write_text("")
    (site / "stray.py").write_text("")
    info = site / "Good_HTTP-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: Good_HTTP\nVersion: 1.2\n")
    (info / "RECORD").write_text("goodhttp/__init__.py,,\n")
    nofiles = site / "nofiles-3.0.dist-info"
    nofiles.mkdir()
    (nofiles / "METADATA").write_text("Metadata-Version: 2.1\nName: nofiles\nVersion: 3.0\n")
    app = tmp_path / "app"
    app.mkdir()
    stdlib = tmp_path / "stdlib"
    index = DistributionIndex.build(
        ["mine"], path=[str(site), str(app)], stdlib=[str(stdlib)], site=[str(site)]
    )
    assert index.owner_of(str(site / "goodhttp" / "__init__.py")) == Dist("good-http", "1.2")
    assert index.owner_of(str(site / "stray.py")) is UNATTRIBUTED
    assert index.owner_of(str(app / "main.py")) is FIRST_PARTY
    assert index.owner_of(str(stdlib / "json" / "__init__.py")) is STANDARD
    assert index.owner_of("/nowhere/dropped.py") is UNATTRIBUTED
    assert index.version_of("good.http") == "1.2"
    assert index.version_of("nofiles") == "3.0"
    assert normalise_name("Foo__Bar.baz") == "foo-bar-baz"


def test_a_module_body_running_as_the_shield_starts_is_attributed_to_its_file(
    tmp_path: Path,
) -> None:
    """The body of a module still being imported when origins start to be recorded (3.10's
    `site.py`, which runs the bootstrap's sitecustomize) is recorded from its frame, so it is
    judged by its file instead of as code nobody made. A body run by `exec` under a module's
    globals but with another file name is not."""
    import subprocess
    import sys

    (tmp_path / "starter.py").write_text(
        "import sys\n"
        "from appshield.hooks.imports import scope_code\n"
        "scope_code.configure_origins(True)\n"
        "print(scope_code.origin_of(sys._getframe(0).f_code))\n"
        "forged = compile('import sys; from appshield.hooks.imports import scope_code;"
        " scope_code.configure_origins(True);"
        " print(scope_code.origin_of(sys._getframe(0).f_code))', '/usr/lib/forged.py', 'exec')\n"
        "exec(forged, globals())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import starter"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(tmp_path / "starter.py"), "None"]
