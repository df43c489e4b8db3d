"""The generaliser: every observed operation is allowed by the policy it writes, and the
policy is valid v1 (loaded by the real loader, decided by the real engine)."""

from __future__ import annotations

import os
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import appshield
from appshield.learn import learn_policy, not_allowed
from appshield.learn.generalise import own_sources_glob
from appshield.learn.paths import escape_glob
from appshield.learn.records import Observation
from appshield.operations import CATEGORIES, FileOp, ImportOp, NetworkOp, ProcessOp
from appshield.policy import Policy
from tests.learn._strategies import ROOTS, observations


def _obs(op: object, module: str = "app", count: int = 1) -> Observation:
    return Observation(op, "api", module, (module, "__main__"), count, ROOTS)  # type: ignore[arg-type]


def _learn(*ops: object) -> tuple[Policy, str]:
    result = learn_policy([_obs(op) for op in ops])
    return Policy.from_yaml(result.text), result.text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(observations(), min_size=1, max_size=15))
def test_every_observation_is_allowed(seen: list[Observation]) -> None:
    result = learn_policy(seen)
    policy = Policy.from_yaml(result.text)
    assert policy.document.defaults == {c: "deny" for c in CATEGORIES}
    missing = [o for o in not_allowed(policy, seen) if o not in result.skipped]
    assert missing == []


def test_defaults_deny_and_unseen_is_denied() -> None:
    policy, _ = _learn(FileOp("/srv/app/config.json", "read"))
    assert policy.decide(FileOp("/srv/app/config.json", "read")).action == "allow"
    assert policy.decide(FileOp("/srv/app/config.json", "write")).action == "deny"
    assert policy.decide(FileOp("/srv/app/other.json", "read")).action == "deny"
    assert policy.decide(ProcessOp("/bin/sh", ("sh",), trusted_location=True)).action == "deny"


def test_interpreter_reads_become_root_globs() -> None:
    policy, text = _learn(
        FileOp(ROOTS.stdlib[0] + "/json/__init__.py", "read"),
        FileOp(ROOTS.site_packages[0] + "/yaml/__init__.py", "read"),
    )
    assert '"{stdlib}/**"' in text and '"{site_packages}/**"' in text
    assert policy.decide(FileOp(ROOTS.stdlib[0] + "/email/parser.py", "read")).action == "allow"
    assert policy.decide(FileOp(ROOTS.stdlib[0] + "/email/parser.py", "write")).action == "deny"


def test_siblings_collapse_but_not_in_etc() -> None:
    data = [FileOp(f"/srv/data/part{i}.csv", "read") for i in range(6)]
    etc = [FileOp(f"/etc/conf{i}", "read") for i in range(6)]
    policy, text = _learn(*data, *etc)
    assert '"/srv/data/*"' in text
    assert policy.decide(FileOp("/srv/data/new.csv", "read")).action == "allow"
    assert policy.decide(FileOp("/etc/shadow", "read")).action == "deny"


def test_temp_names_are_widened() -> None:
    policy, text = _learn(FileOp(f"{ROOTS.tmp}/tmpab12_x9z/out.json", "write"))
    assert '"{tmp}/tmp*/out.json"' in text
    assert policy.decide(FileOp(f"{ROOTS.tmp}/tmpzz99_aaa/out.json", "write")).action == "allow"


def test_ephemeral_loopback_ports_and_bind_zero() -> None:
    policy, text = _learn(
        NetworkOp("connect", address="127.0.0.1", port=41234),
        NetworkOp("bind", address="127.0.0.1", port=0),
        NetworkOp("connect", host="db.internal", address="10.0.0.5", port=5432),
    )
    assert '"32768-65535"' in text
    assert policy.decide(NetworkOp("connect", address="127.0.0.1", port=50001)).action == "allow"
    assert policy.decide(NetworkOp("connect", address="127.0.0.1", port=22)).action == "deny"
    assert policy.decide(NetworkOp("bind", address="127.0.0.1", port=0)).action == "allow"
    assert policy.decide(NetworkOp("connect", host="db.internal", port=5433)).action == "deny"


def test_names_are_preferred_over_addresses() -> None:
    policy, text = _learn(
        NetworkOp("resolve", host="api.example.com", port=443),
        NetworkOp("connect", address="93.184.216.34", port=443, names=("api.example.com",)),
    )
    assert "93.184.216.34" not in text
    moved = NetworkOp("connect", address="93.184.216.99", port=443, names=("api.example.com",))
    assert policy.decide(moved).action == "allow"
    assert policy.decide(NetworkOp("connect", address="93.184.216.34", port=443)).action == "deny"


def test_programs_by_name_only_from_path() -> None:
    policy, text = _learn(
        ProcessOp("/usr/bin/git", ("git", "--version"), trusted_location=True),
        ProcessOp("/opt/tool/run", ("run", "-x")),
    )
    assert 'executable: "git"' in text and 'executable: "/opt/tool/run"' in text
    git = ProcessOp("/usr/bin/git", ("git", "--version"), trusted_location=True)
    assert policy.decide(git).action == "allow"
    push = ProcessOp("/usr/bin/git", ("git", "push"), trusted_location=True)
    assert policy.decide(push).action == "deny"
    assert policy.decide(ProcessOp("/tmp/git", ("git", "--version"))).action == "deny"


def test_imports_group_by_origin() -> None:
    policy, _ = _learn(
        ImportOp("json.decoder", ROOTS.stdlib[0] + "/json/decoder.py"),
        ImportOp("app.util", "/srv/app/util.py"),
        ImportOp("_json", "built-in"),
    )
    assert policy.decide(ImportOp("json", ROOTS.stdlib[0] + "/json/__init__.py")).action == "allow"
    assert policy.decide(ImportOp("json", "/tmp/evil/json.py")).action == "deny"
    assert policy.decide(ImportOp("app.models", "/srv/app/models.py")).action == "allow"
    assert policy.decide(ImportOp("ctypes", ROOTS.stdlib[0] + "/ctypes/__init__.py")).action == (
        "deny"
    )


def test_comments_say_count_and_module() -> None:
    result = learn_policy(
        [_obs(FileOp("/srv/a", "read"), "app.config", 7), _obs(FileOp("/srv/a", "read"), "lib", 2)]
    )
    assert "# seen 9 times from app.config, lib" in result.text


def test_unshielded_child_is_reported_not_allowed() -> None:
    child = ProcessOp("/usr/bin/python3", ("python3", "-I", "x.py"), unshielded=True)
    result = learn_policy([_obs(child)])
    assert result.skipped and "# not allowed:" in result.text
    Policy.from_yaml(result.text)


def test_multiprocessing_descriptor_numbers_are_widened() -> None:
    code = "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=7, pipe_handle=13)"

    def start(source: str) -> ProcessOp:
        argv = ("python3", "-B", "-c", source, "--multiprocessing-fork")
        return ProcessOp("/usr/bin/python3.11", argv, trusted_location=True)

    policy, _ = _learn(start(code))
    later = start(code.replace("=7", "=5").replace("=13", "=11"))
    assert policy.decide(later).action == "allow"
    assert policy.decide(FileOp(ROOTS.stdlib[0] + "/os.py", "read")).action == "allow"  # always


def test_scratch_trees_under_tmp_collapse() -> None:
    garbage = f"{ROOTS.tmp}/pytest-of-me/garbage-1f2e3d4c-aaaa-bbbb-cccc-0123456789ab"
    ops = [FileOp(f"{garbage}/{name}x/sub/f.txt", "delete") for name in "abcdefghijkl"]
    policy, text = _learn(*ops)
    assert '"{tmp}/pytest-of-me/**"' in text
    later = FileOp(f"{ROOTS.tmp}/pytest-of-me/garbage-99/x/y.txt", "delete")
    assert policy.decide(later).action == "allow"
    assert policy.decide(FileOp(f"{ROOTS.tmp}/other/y.txt", "delete")).action == "deny"


def test_appshields_own_sources_are_readable_when_outside_site_packages() -> None:
    # A denied operation raises from inside the shield; the app's error handler formats the
    # traceback, and linecache reads the shield's own frames. Here the interpreter's folders
    # do not hold this appshield, as in an editable install.
    package = os.path.dirname(appshield.__file__)
    roots = replace(ROOTS, stdlib=("/opt/py/lib",), site_packages=("/opt/py/site-packages",))
    assert own_sources_glob(roots) == escape_glob(package) + "/**/*.py"
    seen = Observation(FileOp("/srv/app/config.json", "read"), "open", "app", ("app",), 1, roots)
    text = learn_policy([seen]).text
    policy = Policy.from_yaml(text)
    assert "appshield's own sources" in text
    assert policy.decide(FileOp(f"{package}/runtime.py", "read")).action == "allow"
    assert policy.decide(FileOp(f"{package}/runtime.py", "write")).action == "deny"
    assert policy.decide(FileOp(f"{package}/schema.json", "read")).action == "deny"

    # Installed below site-packages, `{site_packages}/**` already covers them: no extra rule.
    installed = replace(ROOTS, site_packages=(os.path.dirname(package),))
    assert own_sources_glob(installed) is None


def test_a_module_seen_without_a_file_is_allowed_by_its_whole_name_and_only_without_one() -> None:
    # Flask 3.1's `flask.sansio` is a namespace package (no file); `sys` is built in.
    site = "/venv/lib/python3.11/site-packages"
    policy, _ = _learn(
        ImportOp("flask.sansio"),
        ImportOp("sys"),
        ImportOp("flask", origin=f"{site}/flask/__init__.py"),
    )
    assert policy.decide(ImportOp("flask.sansio")).action == "allow"
    assert policy.decide(ImportOp("sys")).action == "allow"
    # The name seen without a file does not stand for the whole package, from anywhere.
    planted = ImportOp("flask", origin="/tmp/evil/flask/__init__.py")
    assert policy.decide(planted).action == "deny"
    assert policy.decide(ImportOp("sys", origin="/srv/app/sys.py")).action == "deny"
    assert policy.decide(ImportOp("flask.sansio", origin="/tmp/evil.py")).action == "deny"
