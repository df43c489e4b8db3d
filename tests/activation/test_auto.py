"""`import appshield.auto`: discovery, locking, failing closed, no double install."""

from __future__ import annotations

from pathlib import Path

from tests.activation._helpers import (
    PROBE,
    PY,
    RUN,
    allow_all_but,
    clean_env,
    probe,
    run,
    stderr_lines,
)

AUTO = "import appshield.auto\n" + PROBE


def test_auto_discovers_up_to_the_repository_root(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    allow_all_but(repo, name=".appshield.yaml")
    deep = repo / "src" / "pkg"
    deep.mkdir(parents=True)
    result = run([PY, "-c", AUTO], cwd=deep)
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout) == {
        "active": True,
        "locked": True,
        "policy": "activation-test",
        "source": "auto",
    }


def test_auto_does_not_look_above_the_repository_root(tmp_path: Path) -> None:
    allow_all_but(tmp_path, name="appshield.yaml")  # outside the repository: not used
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    result = run([PY, "-c", AUTO + "\nprint('ran')"], cwd=repo)
    assert result.returncode == 2
    assert "ran" not in result.stdout
    assert len(stderr_lines(result.stderr)) == 1, result.stderr


def test_auto_prefers_the_environment_variable(tmp_path: Path) -> None:
    allow_all_but(tmp_path, name="appshield.yaml")
    other = tmp_path / "other"
    other.mkdir()
    chosen = other / "chosen.yaml"
    chosen.write_text(
        "version: 1\nname: chosen\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    result = run([PY, "-c", AUTO], env=clean_env(APPSHIELD_POLICY=str(chosen)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert probe(result.stdout)["policy"] == "chosen"


def test_auto_under_run_installs_once(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    code = (
        "from appshield import runtime\nfirst = runtime.active_shield()\n"
        "import appshield.auto\nprint('SAME', runtime.active_shield() is first)\n" + PROBE
    )
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert result.returncode == 0, result.stderr
    assert "SAME True" in result.stdout
    assert probe(result.stdout)["source"] == "bootstrap"
    assert result.stderr == ""


def test_explicit_install_of_the_same_policy_under_run_is_a_no_op(tmp_path: Path) -> None:
    policy = allow_all_but(tmp_path)
    code = (
        "import appshield\nfrom appshield import runtime\nfirst = runtime.active_shield()\n"
        f"appshield.install({str(policy)!r})\n"
        "print('SAME', runtime.active_shield() is first)\n"
    )
    result = run([*RUN, "--policy", str(policy), "--", PY, "-c", code])
    assert result.returncode == 0, result.stderr
    assert "SAME True" in result.stdout


def test_the_collector_is_left_as_the_app_had_it(tmp_path: Path) -> None:
    # Activation holds the cyclic collector off while the shield starts (a start-up cost,
    # docs/performance.md) and puts it back as it found it: on, or off when the app had
    # switched it off before; the app's cyclic garbage is collected as before. Under
    # `appshield run` too.
    policy = allow_all_but(tmp_path)
    env = clean_env(APPSHIELD_POLICY=str(policy))
    code = (
        "import gc\n{before}import appshield.auto\n"
        "class Cycle:\n    pass\n"
        "import weakref\nc = Cycle(); c.me = c; gone = weakref.ref(c); del c\n"
        "print('ENABLED', gc.isenabled()); gc.enable(); gc.collect()\n"
        "print('COLLECTED', gone() is None)\n"
    )
    on = run([PY, "-c", code.format(before="")], env=env)
    off = run([PY, "-c", code.format(before="gc.disable()\n")], env=env)
    under_run = run([*RUN, "--policy", str(policy), "--", PY, "-c", code.format(before="")])
    for result, enabled in ((on, True), (off, False), (under_run, True)):
        assert result.returncode == 0, result.stderr
        assert f"ENABLED {enabled}" in result.stdout and "COLLECTED True" in result.stdout
