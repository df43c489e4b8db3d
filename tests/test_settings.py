"""The one Settings object (appshield/settings.py): read from the environment once, and the one
place where mode precedence is computed, tested source against source.

Precedence: an argument (install's `mode=`, `appshield run --mode`, a pytest marker)
> APPSHIELD_MODE > the policy file's `mode:` > enforce."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appshield.settings import STARTUP, Settings, effective_mode

MODES = (None, "enforce", "monitor")


def _expected(argument: str | None, environment: str | None, file_mode: str | None) -> str:
    for candidate in (argument, environment, file_mode):
        if candidate:
            return candidate
    return "enforce"


@pytest.mark.parametrize(
    ("argument", "environment", "file_mode"),
    list(itertools.product(MODES, (*MODES, ""), MODES)),
)
def test_every_source_against_every_other(
    argument: str | None, environment: str | None, file_mode: str | None
) -> None:
    expected = _expected(argument, environment, file_mode)
    assert effective_mode(argument, environment, file_mode) == expected  # type: ignore[arg-type]
    settings = Settings.from_environ({} if environment is None else {"APPSHIELD_MODE": environment})
    assert settings.mode_for(argument, file_mode) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["Enforce", "off", "monitor ", "1"])
def test_a_mode_that_is_not_one_is_an_error_not_the_next_source(bad: str) -> None:
    with pytest.raises(ValueError, match="mode must be"):
        effective_mode(bad, "monitor", "monitor")
    with pytest.raises(ValueError, match="mode must be"):
        effective_mode(None, bad, "monitor")  # a typo never leaves the file's monitor on
    with pytest.raises(ValueError, match="mode must be"):
        Settings.from_environ({"APPSHIELD_MODE": bad}).check_mode()
    # An argument decides before the environment is looked at.
    assert effective_mode("enforce", bad, None) == "enforce"


def test_from_environ_reads_each_setting() -> None:
    settings = Settings.from_environ(
        {
            "APPSHIELD_POLICY": "/srv/appshield.yaml",
            "APPSHIELD_MODE": "monitor",
            "APPSHIELD_DISABLE": "1",
            "APPSHIELD_LOG": "/tmp/v.jsonl",
            "APPSHIELD_LEARN": "/tmp/learn",
            "APPSHIELD_RELOAD": "1",
            "APPSHIELD_RELOAD_INTERVAL": "0.01",
            "APPSHIELD_FLUSH_TIMEOUT": "0.5",
            "APPSHIELD_IDENTITY": "v2:x",
            "PATH": "/opt/bin:/usr/bin",
            "OTEL_SERVICE_NAME": "svc",
            "HOME": "/root",
        }
    )
    assert settings == Settings(
        policy_path="/srv/appshield.yaml",
        mode="monitor",
        disabled=True,
        log_path="/tmp/v.jsonl",
        learn_folder="/tmp/learn",
        reload=True,
        reload_interval=0.1,  # at least a tenth of a second
        flush_timeout=0.5,
        inherited="v2:x",
        path="/opt/bin:/usr/bin",
        environ=settings.environ,
    )
    assert "HOME" not in settings.environ and settings.environ["OTEL_SERVICE_NAME"] == "svc"
    with pytest.raises(TypeError):
        settings.environ["APPSHIELD_DISABLE"] = "0"  # type: ignore[index]


@pytest.mark.parametrize(
    ("environ", "disabled", "reload", "interval", "flush"),
    [
        ({}, False, False, 2.0, 2.0),
        ({"APPSHIELD_DISABLE": "0", "APPSHIELD_RELOAD": "0"}, False, False, 2.0, 2.0),
        ({"APPSHIELD_DISABLE": "yes", "APPSHIELD_RELOAD": "true"}, True, True, 2.0, 2.0),
        ({"APPSHIELD_RELOAD_INTERVAL": "x", "APPSHIELD_FLUSH_TIMEOUT": "-1"}, False, False, 2, 2),
        ({"APPSHIELD_RELOAD_INTERVAL": "5", "APPSHIELD_FLUSH_TIMEOUT": "0"}, False, False, 5, 0),
    ],
)
def test_switches_and_seconds(
    environ: dict[str, str], disabled: bool, reload: bool, interval: float, flush: float
) -> None:
    settings = Settings.from_environ(environ)
    assert (settings.disabled, settings.reload) == (disabled, reload)
    assert (settings.reload_interval, settings.flush_timeout) == (interval, flush)


def test_the_start_up_settings_are_this_process_environment() -> None:
    assert STARTUP.path == os.environ.get("PATH", os.defpath) or "PATH" not in os.environ


def test_os_environ_is_read_as_any_other_mapping_would_be() -> None:
    """`os.environ` is read from the bytes it keeps (docs/performance.md, "Start-up, seventh
    round"): a real child's environment, with names that only look like ours, a non-ASCII
    value and bytes the file-system encoding cannot decode, gives the snapshot that its
    `items()` gives, in the same order."""
    child = textwrap.dedent(
        """
        import os
        from appshield.settings import STARTUP, Settings, _ours
        generic = {
            k: v
            for k, v in os.environ.items()
            if k.startswith(("APPSHIELD_", "OTEL_")) or k == "PATH"
        }
        fast = _ours(os.environ)
        assert list(fast.items()) == list(generic.items()), (fast, generic)
        assert dict(STARTUP.environ) == generic
        assert Settings.from_environ(dict(os.environ)) == Settings.from_environ(os.environ)
        print(sorted(fast))
        """
    )
    env = {k: v for k, v in os.environb.items() if not k.startswith((b"APPSHIELD_", b"OTEL_"))}
    env.update(
        {
            b"APPSHIELD_LOG": "/tmp/x\u00e9.log".encode(),
            b"APPSHIELD_MODE": b"monitor",
            b"APPSHIELD_RAW": b"\xff\xfe",  # not UTF-8: kept as surrogate escapes
            b"OTEL_SERVICE_NAME": b"svc",
            b"OTELX": b"no",
            b"PATHX": b"no",
            b"XAPPSHIELD_MODE": b"no",
        }
    )
    found = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, check=False
    )
    assert found.returncode == 0, found.stderr
    names = ["APPSHIELD_LOG", "APPSHIELD_MODE", "APPSHIELD_RAW", "OTEL_SERVICE_NAME"]
    assert found.stdout.strip() == repr(sorted([*names, "PATH"] if b"PATH" in env else names))


POLICY = """\
version: 1
name: modes
mode: {file_mode}
defaults: {{process: allow, file: allow, network: allow, import: allow}}
rules:
  - id: no-secret
    category: file
    action: deny
    match: {{path: "{secret}", access: read}}
"""

# The child reports the mode it ended up in, and whether changing the environment after
# start-up changed anything (it must not).
CHILD = textwrap.dedent(
    """
    import os, sys
    import appshield
    os.environ["APPSHIELD_MODE"] = "monitor"  # too late: read once, at import
    os.environ["APPSHIELD_DISABLE"] = "1"
    argument = sys.argv[2] or None
    handle = appshield.install(sys.argv[1], mode=argument)
    print(handle.policy.mode)
    """
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPSHIELD_", "OTEL_"))}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("argument", "environment", "file_mode"),
    [
        (None, None, "monitor"),
        (None, "monitor", "enforce"),
        ("enforce", "monitor", "monitor"),
        ("monitor", None, "enforce"),
        (None, None, "enforce"),
    ],
)
def test_install_in_a_real_process_follows_the_same_precedence(
    tmp_path: Path, argument: str | None, environment: str | None, file_mode: str
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.format(file_mode=file_mode, secret=tmp_path / "secret"))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = _env(**({"APPSHIELD_MODE": environment} if environment else {}))
    done = subprocess.run(
        [sys.executable, str(script), str(policy), argument or ""],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [_expected(argument, environment, file_mode)]


@pytest.mark.parametrize(
    ("flag", "environment", "file_mode"),
    [
        (None, None, "monitor"),
        (None, "monitor", "enforce"),
        ("enforce", "monitor", "monitor"),
        ("monitor", "enforce", "enforce"),
    ],
)
def test_appshield_run_follows_the_same_precedence(
    tmp_path: Path, flag: str | None, environment: str | None, file_mode: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s")
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY.format(file_mode=file_mode, secret=secret))
    read = f"open({str(secret)!r}).read(); print('read')"
    command = [sys.executable, "-m", "appshield", "run", "--policy", str(policy)]
    if flag:
        command += ["--mode", flag]
    env = _env(**({"APPSHIELD_MODE": environment} if environment else {}))
    done = subprocess.run(
        [*command, "--", sys.executable, "-c", read],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if _expected(flag, environment, file_mode) == "enforce":
        assert done.returncode != 0 and "read" not in done.stdout, done.stdout
    else:
        assert done.returncode == 0 and "read" in done.stdout, done.stderr
