"""The policy cache beside the policy file: a hit is exactly a fresh load; anything else is a
miss that falls back to YAML; a running shield protects the cache like the policy itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appshield.errors import PolicyError
from appshield.operations import FileOp
from appshield.policy import Policy, cache
from appshield.policy.loader import PACKS_DIR, load_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TOP = """\
version: 1
name: cached
extends: [base.yaml, "appshield:python-runtime"]
defaults: {process: deny, file: allow, network: deny, import: allow}
rules:
  - id: no-work-writes
    category: file
    action: deny
    match: {path: "{cwd}/secrets/**", access: write}
  - id: tmp-reads
    category: file
    action: allow
    match: {path: "{tmp}/**"}
    unless: {path: "{tmp}/private/**"}
  - id: git
    category: process
    action: allow
    match: {executable: git, args: [[git, status]]}
"""
BASE = """\
version: 1
defaults: {process: deny, file: allow, network: deny, import: allow}
rules:
  - {id: loopback, category: network, action: allow, match: {host: localhost, port: 8080}}
"""


@pytest.fixture(autouse=True)
def _bytecode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", None)


@pytest.fixture
def policy_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    top = tmp_path / "appshield.yaml"
    top.write_text(TOP)
    monkeypatch.chdir(tmp_path)
    return top


def _hit(path: Path | str) -> bool:
    return cache.load(str(path)) is not None


def test_a_hit_is_exactly_a_fresh_load(policy_file: Path) -> None:
    first = Policy.from_file(policy_file)
    assert Path(cache.cache_path(str(policy_file))).is_file()
    cached = cache.load(str(policy_file))
    assert cached == load_file(policy_file) == first.document
    assert Policy.from_file(policy_file) == first


@pytest.mark.parametrize(
    "path",
    [*sorted(EXAMPLES.glob("*.yaml")), *sorted(Path(PACKS_DIR).glob("*.yaml"))],
    ids=lambda p: p.name,
)
def test_round_trip_of_every_shipped_policy(path: Path) -> None:
    try:
        document = load_file(path)
    except Exception:
        pytest.skip("a pack alone is not a complete policy")
    assert cache._document(cache.plain(document)) == document


def test_changed_policy_is_a_miss(policy_file: Path) -> None:
    Policy.from_file(policy_file)
    policy_file.write_text(TOP.replace("name: cached", "name: changed"))
    assert not _hit(policy_file)
    assert Policy.from_file(policy_file).name == "changed"  # and the cache is rewritten
    assert cache.load(str(policy_file)).name == "changed"  # type: ignore[union-attr]


def test_changed_extended_file_is_a_miss(policy_file: Path) -> None:
    Policy.from_file(policy_file)
    (policy_file.parent / "base.yaml").write_text(BASE.replace("8080", "9090"))
    assert not _hit(policy_file)


def test_repointed_symlink_is_a_miss(policy_file: Path) -> None:
    real = policy_file.parent / "real-base.yaml"
    real.write_text(BASE)
    (policy_file.parent / "base.yaml").unlink()
    (policy_file.parent / "base.yaml").symlink_to(real)
    Policy.from_file(policy_file)
    assert _hit(policy_file)
    other = policy_file.parent / "other-base.yaml"
    other.write_text(BASE)  # same bytes, another file
    (policy_file.parent / "base.yaml").unlink()
    (policy_file.parent / "base.yaml").symlink_to(other)
    assert not _hit(policy_file)


def test_a_variable_with_another_value_is_a_miss(
    policy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Policy.from_file(policy_file)
    assert _hit(policy_file)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # {cwd} now means another folder
    assert not _hit(policy_file)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(elsewhere))  # {tmp}
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert not _hit(policy_file)


def test_spelled_differently_is_a_miss(policy_file: Path) -> None:
    Policy.from_file("appshield.yaml")
    assert _hit("appshield.yaml")
    assert not _hit(str(policy_file))  # problems and reports quote the path as given


@pytest.mark.parametrize("damage", ["truncate", "garbage", "group-writable", "symlink", "magic"])
def test_damaged_or_untrusted_cache_is_a_miss(policy_file: Path, damage: str) -> None:
    Policy.from_file(policy_file)
    where = Path(cache.cache_path(str(policy_file)))
    if damage == "truncate":
        where.write_bytes(where.read_bytes()[:50])
    elif damage == "garbage":
        where.write_bytes(b"\x00not marshal at all")
    elif damage == "group-writable":
        where.chmod(0o664)
    elif damage == "symlink":
        moved = where.with_name("moved")
        where.rename(moved)
        where.symlink_to(moved)
    else:
        import marshal

        entry = list(marshal.loads(where.read_bytes()))
        entry[0] = "appshield-policy-cache/0/0.0.0"
        where.write_bytes(marshal.dumps(tuple(entry)))
    assert not _hit(policy_file)
    assert Policy.from_file(policy_file).name == "cached"  # the YAML still loads


def test_untrusted_folder_is_neither_read_nor_written(policy_file: Path) -> None:
    folder = policy_file.parent / "__pycache__"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)
    Policy.from_file(policy_file)
    assert not Path(cache.cache_path(str(policy_file))).exists()


def test_nothing_written_without_bytecode_writing(
    policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    Policy.from_file(policy_file)
    assert not (policy_file.parent / "__pycache__").exists()


def test_pycache_prefix_is_ignored(
    policy_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PYTHONPYCACHEPREFIX is the environment's to choose, and a shielded app chooses its
    children's: the cache always lives beside the policy (issue 12)."""
    prefix = tmp_path / "prefix"
    monkeypatch.setattr(sys, "pycache_prefix", str(prefix))
    Policy.from_file(policy_file)
    assert not prefix.exists()
    assert Path(cache.cache_path(str(policy_file))).parent == policy_file.parent / "__pycache__"
    assert _hit(policy_file)


def test_a_cache_that_does_not_list_the_policy_is_a_miss(policy_file: Path) -> None:
    """The list of files to re-check is inside the cache: one that leaves out the policy (or
    any file of the document) proves nothing and is not used."""
    import marshal

    Policy.from_file(policy_file)
    where = Path(cache.cache_path(str(policy_file)))
    magic, given, read_files, variables, plain, index, stdlib = marshal.loads(where.read_bytes())
    for forged_list in ((), read_files[1:]):
        forged = (magic, given, forged_list, variables, plain, index, stdlib)
        where.write_bytes(marshal.dumps(forged))
        assert cache.load(str(policy_file)) is None
    where.write_bytes(marshal.dumps((magic, given, read_files, variables, plain, index, stdlib)))
    assert cache.load(str(policy_file)) is not None


def test_invalid_policy_is_never_cached(policy_file: Path) -> None:
    policy_file.write_text(TOP + "  - {id: broken}\n")
    with pytest.raises(PolicyError):
        Policy.from_file(policy_file)
    assert not Path(cache.cache_path(str(policy_file))).exists()


TAMPER = """\
import os, sys
import appshield
appshield.install(sys.argv[1], mode="enforce", locked=True)
where = sys.argv[2]
attempts = {
    "open": lambda: open(where, "wb").close(),
    "os.open": lambda: os.close(os.open(where, os.O_WRONLY | os.O_TRUNC)),
    "replace": lambda: (open(sys.argv[3], "wb").close(), os.replace(sys.argv[3], where)),
    "unlink": lambda: os.unlink(where),
    "sibling": lambda: open(where.replace("cpython", "pypy"), "wb").close(),
    "rename-cache-folder": lambda: os.rename(os.path.dirname(where), sys.argv[3] + ".d"),
    "rename-policy-folder": lambda: os.rename(
        os.path.dirname(os.path.dirname(where)), sys.argv[3] + ".p"
    ),
    "rmtree-cache-folder": lambda: __import__("shutil").rmtree(os.path.dirname(where)),
}
for name, attempt in attempts.items():
    try:
        attempt()
    except PermissionError:
        print(name, "refused")
    else:
        print(name, "DONE")
"""


def test_a_running_shield_protects_its_cache(policy_file: Path, tmp_path: Path) -> None:
    Policy.from_file(policy_file)
    where = Path(cache.cache_path(str(policy_file)))
    before = where.read_bytes()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [sys.executable, "-c", TAMPER, str(policy_file), str(where), str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env={**env, "APPSHIELD_LOG": os.devnull},
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "DONE" not in done.stdout, done.stdout
    assert where.read_bytes() == before  # the outside world: the file is untouched
    assert not where.with_name(where.name.replace("cpython", "pypy")).exists()


GUESS = """\
import sys
from appshield.policy.cache import _tempdir_guess
sys.modules.pop("tempfile", None)  # some environments import it at start-up (a .pth file)
guess = _tempdir_guess()
import tempfile
print(guess == (tempfile.gettempdir(),), guess, tempfile.gettempdir())
"""


@pytest.mark.parametrize("tmpdir", [None, "missing", "file", "folder"])
def test_tmp_guess_agrees_with_tempfile(tmp_path: Path, tmpdir: str | None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")}
    if tmpdir == "missing":
        env["TMPDIR"] = str(tmp_path / "missing")
    elif tmpdir == "file":
        (tmp_path / "file").write_text("")
        env["TMPDIR"] = str(tmp_path / "file")
    elif tmpdir == "folder":
        env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", GUESS], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("True"), done.stdout


def test_is_valid_answers_as_load_does_without_building(policy_file: Path) -> None:
    """`appshield run` asks only whether the cache proves the policy valid."""
    assert not cache.is_valid(str(policy_file))  # no cache yet
    Policy.from_file(policy_file)
    assert cache.is_valid(str(policy_file)) and _hit(policy_file)
    (policy_file.parent / "base.yaml").write_text(BASE.replace("8080", "8081"))
    assert not cache.is_valid(str(policy_file)) and not _hit(policy_file)


def test_run_with_a_valid_cache_still_refuses_a_bad_mode_and_a_changed_policy(
    policy_file: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPSHIELD_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [sys.executable, "-m", "appshield", "run", "--policy", str(policy_file), "--"]
    ok = subprocess.run([*command, sys.executable, "-c", "pass"], env=env, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    assert cache.is_valid(str(policy_file))
    bad_mode = subprocess.run(
        [*command, "true"], env={**env, "APPSHIELD_MODE": "loud"}, capture_output=True, text=True
    )
    assert bad_mode.returncode == 2 and "loud" in bad_mode.stderr
    policy_file.write_text(TOP.replace("action: deny", "action: nope", 1))
    broken = subprocess.run([*command, "true"], env=env, capture_output=True, text=True)
    assert broken.returncode == 2 and f"{policy_file}:" in broken.stderr, broken.stderr


# -- the rule index kept in the cache (issue 17: the first decision must not index every rule)


def _denied_write(policy: Policy) -> bool:
    op = FileOp(f"{os.getcwd()}/secrets/key", "write", f"{os.getcwd()}/secrets/key")
    return policy.decide(op).blocked


def test_the_cache_keeps_the_rule_index(policy_file: Path) -> None:
    from appshield.engine import index_states

    fresh = Policy.from_file(policy_file)  # from YAML: writes the cache, index included
    cached = Policy.from_file(policy_file)
    assert cached._index is not None
    assert cached._index == index_states(cached.document)
    assert cached.identity == fresh.identity
    assert _denied_write(cached) and _denied_write(fresh)


def test_a_forged_index_changes_the_identity(policy_file: Path) -> None:
    """Not authenticated, like the rest of the cache: a root trusts it as far as it trusts the
    cached document, and a child, which checks its policy's identity against its parent's,
    sees a forged index as another policy (and reloads the YAML)."""
    import marshal

    from appshield.engine import index_states
    from appshield.policy.loader import load_file as load_yaml

    genuine = Policy.from_file(policy_file).identity
    where = Path(cache.cache_path(str(policy_file)))
    entry = list(marshal.loads(where.read_bytes()))
    document = load_yaml(str(policy_file))
    emptied = index_states(document._replace(rules=()))  # every rule filed nowhere
    entry[5] = tuple((order, emptied[k][1]) for k, (order, _state) in enumerate(entry[5]))
    where.write_bytes(marshal.dumps(tuple(entry)))
    forged = Policy.from_file(policy_file)
    assert (
        forged._index is not None
        and forged._index != Policy.from_file(policy_file, use_cache=False).index()
    )
    assert not _denied_write(forged)  # the control: the forged index does hide the rule
    assert forged.identity != genuine
    assert Policy.from_file(policy_file, use_cache=False).identity == genuine


@pytest.mark.parametrize("shape", [None, (), ("x",) * 4, ((1, 2),) * 4])
def test_an_index_of_another_shape_is_rebuilt(policy_file: Path, shape: object) -> None:
    import marshal

    genuine = Policy.from_file(policy_file).identity
    where = Path(cache.cache_path(str(policy_file)))
    entry = list(marshal.loads(where.read_bytes()))
    entry[5] = shape
    where.write_bytes(marshal.dumps(tuple(entry)))
    policy = Policy.from_file(policy_file)
    assert _hit(policy_file) and _denied_write(policy)
    assert policy.identity == genuine
