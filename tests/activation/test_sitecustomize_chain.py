"""The app's own sitecustomize runs after the shield, also when the policy comes from its
cache (issue 11, item 9), and a failure to run it is reported the way `site` reports one.

The bug: with bytecode writing on, the second and later starts read the policy from its
cache, which imports nothing, so the first import of the `importlib` package came under the
shield. The shield's hooks, running inside that import, imported `importlib.machinery` while
`importlib/__init__.py` was still being read, and it bound uninitialised source copies of the
import system: `PathFinder.find_spec` raised, the app's sitecustomize (OpenTelemetry's
auto-instrumentation, for one) was not run, and every start printed "Error in sitecustomize".

An interpreter whose start-up imports `importlib` itself (an editable install's `.pth` finder
does) hides that, so the processes also run under a bare virtual environment that reaches
appshield and its dependencies through plain path lines in a `.pth` file, as a regular
install would.
"""

from __future__ import annotations

import os
import site
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

import appshield
from appshield.activation import chain_sitecustomize
from tests.activation._helpers import PY, allow_all_but, clean_env, run

# The app's own sitecustomize: it uses the import system's API, as OpenTelemetry's does, and
# says whether it ran inside the shield (it also runs, unshielded, in the `appshield run`
# launcher, a Python program too). It imports nothing of appshield's.
APP_SITECUSTOMIZE = """\
import sys
import importlib.util

found = importlib.util.find_spec("json") is not None
activate = sys.modules.get("appshield.activation")
shielded = activate is not None and activate.activation() is not None
with open({log!r}, "a") as f:
    f.write(f"find_spec={{found}} shielded={{shielded}}\\n")
"""

APP = """\
try:
    open({secret!r}).read()
except PermissionError:
    print("BLOCKED")
else:
    print("READ")
"""


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An interpreter whose start-up imports only what `site` does."""
    home = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    python = home / "bin" / "python"
    where = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    purelib = Path(where.stdout.strip())
    # Plain folder lines: `site` only appends them to sys.path (it runs no `.pth` found there).
    folders = [str(Path(appshield.__file__).resolve().parent.parent), *site.getsitepackages()]
    (purelib / "appshield-test-paths.pth").write_text("\n".join(folders) + "\n")
    return str(python)


@pytest.mark.parametrize("bytecode", ["written", "not-written"])
@pytest.mark.parametrize("interpreter", ["bare", "this"])
def test_app_sitecustomize_runs_at_every_start(
    tmp_path: Path, bare_python: str, interpreter: str, bytecode: str
) -> None:
    python = bare_python if interpreter == "bare" else PY
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    (tmp_path / "policy").mkdir()
    policy = allow_all_but(
        tmp_path / "policy",
        f"""
        - id: no-secret
          category: file
          action: deny
          match: {{path: "{secret}"}}
        """,
    )
    log = tmp_path / "sitecustomize.log"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "sitecustomize.py").write_text(APP_SITECUSTOMIZE.format(log=str(log)))
    env = clean_env(PYTHONPATH=str(tmp_path / "app"))
    env.pop("PYTHONPYCACHEPREFIX", None)  # the policy cache goes beside the policy
    if bytecode == "written":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [python, "-m", "appshield", "run", "--policy", str(policy), "--"]
    command += [python, "-c", APP.format(secret=str(secret))]

    for start in (1, 2):  # the second start reads the policy cache, when it was written
        result = run(command, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Error in sitecustomize" not in result.stderr, result.stderr
        assert result.stdout.splitlines() == ["BLOCKED"], result.stderr
        # Once in the launcher, then once in the app, already shielded.
        assert log.read_text().splitlines()[-2:] == [
            "find_spec=True shielded=False",
            "find_spec=True shielded=True",
        ], f"start {start}: {result.stderr}"
    assert len(log.read_text().splitlines()) == 4
    cached = list((tmp_path / "policy" / "__pycache__").glob("policy.yaml.appshield-*.cache"))
    assert bool(cached) == (bytecode == "written")


# -- a failure to chain is reported like site reports it, and goes no further ---------------


def _two_sitecustomizes(tmp_path: Path, app_body: str) -> Path:
    """Our bootstrap's folder then the app's, each with a sitecustomize; returns ours."""
    for name, body in (("ours", ""), ("app", app_body)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "sitecustomize.py").write_text(body)
    return tmp_path / "ours" / "sitecustomize.py"


def _isolate_imports(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> object:
    monkeypatch.setattr(sys, "path", [str(tmp_path / "ours"), str(tmp_path / "app")])
    monkeypatch.setattr(sys, "path_importer_cache", dict(sys.path_importer_cache))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    ours = object()
    monkeypatch.setitem(sys.modules, "sitecustomize", ours)
    return ours


def test_failure_to_load_the_app_sitecustomize_is_reported_like_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib._bootstrap

    ran = tmp_path / "ran"
    our_file = _two_sitecustomizes(tmp_path, f"open({str(ran)!r}, 'w').close()\n")
    ours = _isolate_imports(monkeypatch, tmp_path)
    # The chain takes `module_from_spec` from `importlib._bootstrap` (importlib.util's is the
    # same function), which every import uses: only the sitecustomize's fails.
    real = importlib._bootstrap.module_from_spec

    def broken(spec: Any) -> object:
        if getattr(spec, "name", None) == "sitecustomize":
            raise AttributeError("'NoneType' object has no attribute 'ModuleSpec'")
        return real(spec)

    monkeypatch.setattr(importlib._bootstrap, "module_from_spec", broken)
    chain_sitecustomize(str(our_file))  # raises nothing
    assert capsys.readouterr().err == (
        "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n"
        "AttributeError: 'NoneType' object has no attribute 'ModuleSpec'\n"
    )
    assert not ran.exists()
    assert sys.modules["sitecustomize"] is ours


def test_failing_app_sitecustomize_leaves_ours_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    our_file = _two_sitecustomizes(tmp_path, "raise ValueError('boom')\n")
    ours = _isolate_imports(monkeypatch, tmp_path)
    chain_sitecustomize(str(our_file))
    assert capsys.readouterr().err == (
        "Error in sitecustomize; set PYTHONVERBOSE for traceback:\nValueError: boom\n"
    )
    assert sys.modules["sitecustomize"] is ours


def test_app_sitecustomize_becomes_the_sitecustomize(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    our_file = _two_sitecustomizes(tmp_path, "VALUE = 42\n")
    _isolate_imports(monkeypatch, tmp_path)
    chain_sitecustomize(str(our_file))
    assert capsys.readouterr().err == ""
    module = sys.modules["sitecustomize"]
    assert getattr(module, "VALUE", None) == 42
    assert os.path.samefile(module.__file__ or "", tmp_path / "app" / "sitecustomize.py")
