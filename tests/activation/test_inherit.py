"""Children get exactly the parent's policy (issue 12): the identity a parent passes, the
bootstrap's own copy of appshield, the frozen variables, and the reverse case (a venv's base
interpreter). Real processes, real files; each start-up case with bytecode writing on and off.
"""

from __future__ import annotations

import glob
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appshield import _inherit
from appshield.activation import BOOTSTRAP_DIR
from appshield.policy import Policy, cache, variables
from tests.activation._helpers import PY, RUN, TIMEOUT, allow_all_but, clean_env

BYTECODE = pytest.mark.parametrize("no_bytecode", ["", "1"], ids=["pyc-on", "pyc-off"])

text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)))


@given(
    digest=text,
    tag=text,
    site=st.lists(text, max_size=4),
    names=st.lists(st.tuples(text, st.lists(text, max_size=3)), max_size=4),
    ok=st.booleans(),
)
def test_identity_text_round_trips(
    digest: str, tag: str, site: list[str], names: list[tuple[str, list[str]]], ok: bool
) -> None:
    value = _inherit.Inherited(digest, tuple((n, tuple(v)) for n, v in names), tag, tuple(site), ok)
    encoded = _inherit.encode(value)
    assert _inherit.decode(encoded) == value
    assert _inherit.unshielded_allowed({_inherit.VARIABLE: encoded}) is ok


@pytest.mark.parametrize("bad", ["", "2:a:00", "1:x:00", "1:d:zz", "1:d:" + b"d\0t".hex()])
def test_a_malformed_identity_is_refused(bad: str) -> None:
    with pytest.raises((ValueError, IndexError)):
        _inherit.decode(bad)


def test_frozen_variables_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variables, "_frozen", {})
    monkeypatch.setattr(variables, "_expanded", {})
    variables.freeze({"cwd": ("/parent",), "policy_dir": ("/ignored",), "nonsense": ("x",)})
    assert variables.value("cwd", "/p") == ("/parent",)
    assert variables.value("policy_dir", "/p") == ("/p",)
    assert variables.value("home", "/p") == (os.path.expanduser("~"),)
    assert variables.expanded() == {"cwd": ("/parent",), "home": (os.path.expanduser("~"),)}


def test_identity_covers_rules_variables_and_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(variables, "_frozen", {})
    path = allow_all_but(
        tmp_path, "- {id: r, category: file, action: deny, match: {path: '{cwd}/x'}}"
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    one = Policy.from_file(path, use_cache=False)
    assert one.identity == Policy.from_file(path, use_cache=False).identity
    assert one.identity != one.with_mode("monitor").identity
    monkeypatch.chdir(tmp_path / "b")
    assert Policy.from_file(path, use_cache=False).identity != one.identity
    variables.freeze({"cwd": (str(tmp_path / "a"),)})
    assert Policy.from_file(path, use_cache=False).identity == one.identity


SECRET_RULE = """\
- id: no-secret
  category: file
  action: deny
  match: {path: "{cwd}/secret.txt", access: read}
"""

# The app: starts children that try to read the secret of the parent's {cwd} from elsewhere.
APP = """\
import os, subprocess, sys
secret = os.path.join(os.getcwd(), "secret.txt")
read = "import sys; print(open(%r).read().strip(), 'appshield.runtime' in sys.modules)" % secret
for label, extra, cwd in [
    ("same", {}, None),
    ("cwd", {}, "elsewhere"),
    ("tmp", {"TMPDIR": os.path.abspath("elsewhere")}, None),
    ("home", {"HOME": os.path.abspath("elsewhere")}, None),
]:
    done = subprocess.run([sys.executable, "-c", read], cwd=cwd, env={**os.environ, **extra},
                          capture_output=True, text=True)
    print(label, done.returncode, done.stdout.strip(), "PolicyViolation" in done.stderr)
"""


@BYTECODE
def test_children_keep_the_roots_variables(tmp_path: Path, no_bytecode: str) -> None:
    rules = SECRET_RULE + SECRET_RULE.replace("no-secret", "no-tmp").replace("{cwd}", "{tmp}")
    rules += SECRET_RULE.replace("no-secret", "no-home").replace("{cwd}", "{home}")
    policy = allow_all_but(tmp_path, rules)
    (tmp_path / "secret.txt").write_text("SECRET\n")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.txt").write_text("OTHER\n")
    (tmp_path / "app.py").write_text(APP)
    env = clean_env(PYTHONDONTWRITEBYTECODE=no_bytecode, TMPDIR=str(tmp_path), HOME=str(tmp_path))
    for _ in range(2):  # the second start reads the policy cache when bytecode writing is on
        done = subprocess.run(
            [*RUN, "--policy", str(policy), "--", PY, "app.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, done.stderr
        lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
        assert set(lines) == {"same", "cwd", "tmp", "home"}, done.stdout
        for label, rest in lines.items():
            assert rest == "1  True", (label, done.stdout, done.stderr)
    assert bool(glob.glob(str(tmp_path / "__pycache__" / "*.cache"))) is (no_bytecode == "")


def _identity_for(policy: Path) -> str:
    loaded = Policy.from_file(str(policy), use_cache=False)
    return _inherit.encode(
        _inherit.Inherited(
            loaded.identity,
            tuple(sorted(variables.expanded().items())),
            sys.implementation.cache_tag,
            (),
            False,
        )
    )


def _bootstrapped(
    policy: Path, identity: str, code: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    env = clean_env(
        PYTHONPATH=BOOTSTRAP_DIR,
        APPSHIELD_POLICY=str(policy),
        APPSHIELD_IDENTITY=identity,
        **extra,
    )
    return subprocess.run(
        [PY, "-c", code],
        cwd=policy.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def _forge(policy: Path) -> None:
    """A cache beside the policy that holds its real bytes and an allow-all document."""
    weak = Policy.from_yaml(
        "version: 1\nmode: monitor\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    raw = policy.read_bytes()
    entry = (
        cache._MAGIC,
        str(policy),
        ((str(policy), os.path.realpath(policy), raw),),
        (),
        cache.plain(weak.document._replace(files=(str(policy),))),
        weak.index(),
        None,  # no sysconfig paths kept: a policy with no `{stdlib}` needs none
    )
    where = Path(cache.cache_path(str(policy)))
    where.parent.mkdir(exist_ok=True)
    where.write_bytes(marshal.dumps(entry))
    assert cache.load(str(policy)) is not None  # a cache the root would take


@BYTECODE
def test_a_child_reloads_the_yaml_when_its_cache_is_not_the_parents_policy(
    tmp_path: Path, no_bytecode: str
) -> None:
    policy = allow_all_but(tmp_path, SECRET_RULE.replace("{cwd}", str(tmp_path)))
    (tmp_path / "secret.txt").write_text("SECRET\n")
    identity = _identity_for(policy)
    _forge(policy)
    done = _bootstrapped(
        policy, identity, "print(open('secret.txt').read())", PYTHONDONTWRITEBYTECODE=no_bytecode
    )
    assert "SECRET" not in done.stdout
    assert "PolicyViolation" in done.stderr, done.stderr


def test_a_child_whose_policy_differs_refuses_to_start(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path, SECRET_RULE)
    identity = _identity_for(policy)
    other = _inherit.decode(identity)._replace(digest="0" * 64)
    done = _bootstrapped(policy, _inherit.encode(other), "print('RAN')")
    assert done.returncode == 2
    assert "RAN" not in done.stdout
    assert "refusing to run unshielded" in done.stderr
    assert "not the one the parent process enforces" in done.stderr


def test_a_malformed_identity_stops_the_child(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    done = _bootstrapped(policy, "1:d:nothex", "print('RAN')")
    assert done.returncode == 2 and "RAN" not in done.stdout


def test_a_fake_appshield_first_on_the_path_is_not_imported(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path, SECRET_RULE.replace("{cwd}", str(tmp_path)))
    (tmp_path / "secret.txt").write_text("SECRET\n")
    fake = tmp_path / "fake" / "appshield"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "activation").mkdir()
    (fake / "activation" / "__init__.py").write_text(
        "def activate(*a, **k): pass\ndef chain_sitecustomize(*a, **k): pass\n"
    )
    env = clean_env(
        PYTHONPATH=os.pathsep.join([BOOTSTRAP_DIR, str(fake.parent)]), APPSHIELD_POLICY=str(policy)
    )
    code = "import appshield, sys; print(appshield.__file__); print(open('secret.txt').read())"
    done = subprocess.run(
        [PY, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert str(fake) not in done.stdout
    assert "SECRET" not in done.stdout and "PolicyViolation" in done.stderr


# -- the reverse case: a venv's base interpreter, started by its real path ------------------

BASE_APP = """\
import os, subprocess, sys, tempfile
base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
where = tempfile.mkdtemp()
for exe in [base] + sys.argv[1:]:
    try:
        done = subprocess.run(
            [exe, "-c", "import os, sys; print(os.getcwd(), 'appshield.runtime' in sys.modules)"],
            cwd=where, capture_output=True, text=True,
        )
    except PermissionError as exc:
        print("DENIED", exc)
        continue
    expected = where + " " + str(exe == base)
    print("RC", done.returncode, done.stdout.strip() == expected, done.stderr.strip())
"""


def _venv(tmp_path: Path) -> Path:
    """A real venv made from the base interpreter (as pyenv's), whose only way to appshield is
    a .pth file naming this interpreter's folders: the base interpreter does not have them."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    venv = tmp_path / "venv"
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=TIMEOUT)
    site = next((venv / "lib").glob("python*/site-packages"))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    folders = [repo, *(p for p in sys.path if p.endswith("site-packages"))]
    (site / "appshield_test.pth").write_text("\n".join(folders) + "\n")
    return venv / "bin" / "python"


def _other_python() -> str | None:
    for version in ("3.12", "3.13", "3.10", "3.11"):
        if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
            continue
        found = glob.glob(f"/root/.pyenv/versions/{version}*/bin/python{version}")
        if found:
            return found[0]
    return None


@BYTECODE
@pytest.mark.parametrize("children", ["protected", "unshielded-allowed"])
def test_a_venvs_base_interpreter_child(tmp_path: Path, no_bytecode: str, children: str) -> None:
    python = _venv(tmp_path)
    policy = allow_all_but(tmp_path)
    if children == "unshielded-allowed":
        policy.write_text(policy.read_text() + "protections: {unshielded_children: false}\n")
    (tmp_path / "app.py").write_text(BASE_APP)
    other = _other_python()
    done = subprocess.run(
        [
            str(python),
            "-m",
            "appshield",
            "run",
            "--policy",
            str(policy),
            "--",
            str(python),
            "app.py",
            *([other] if other else []),
        ],
        cwd=tmp_path,
        env=clean_env(PYTHONDONTWRITEBYTECODE=no_bytecode),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The base interpreter carries the shield: it loads the parent's appshield.
    assert lines[0] == "RC 0 True ", done.stdout
    if other:
        if children == "protected":  # decided at spawn time, in the parent
            assert lines[1].startswith("DENIED") and "implicit:unshielded_children" in lines[1]
        else:  # allowed, and it runs (unshielded) instead of dying in its bootstrap
            assert lines[1] == "RC 0 True ", done.stdout


def test_explain_answers_for_the_yaml_not_a_forged_cache(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path, SECRET_RULE.replace("{cwd}", str(tmp_path)))
    _forge(policy)
    done = subprocess.run(
        [
            PY,
            "-m",
            "appshield",
            "explain",
            "--policy",
            str(policy),
            "file",
            "read",
            str(tmp_path / "secret.txt"),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no-secret" in done.stdout
