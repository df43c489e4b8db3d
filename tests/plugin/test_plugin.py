"""The pytest plugin, black-box through `pytester` (each run is a real pytest subprocess)."""

from __future__ import annotations

import textwrap

import pytest

# "No network except 127.0.0.1, no subprocess except git", in a few lines.
OFFLINE = """
version: 1
name: offline-tests
defaults: {process: deny, file: allow, network: deny, import: allow}
rules:
  - {id: loopback, category: network, action: allow, match: {cidr: 127.0.0.0/8}}
  - {id: git, category: process, action: allow, match: {executable: git}}
"""

SAMPLE_TESTS = """
import os, socket, subprocess, tempfile, threading

def test_pure():
    assert 1 + 1 == 2

def test_loopback_is_fine():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass

def test_swallowed_subprocess():
    try:
        subprocess.run(["ls"], capture_output=True)
    except OSError:
        pass  # the code under test hides the denial: the plugin still fails the test

def test_in_a_thread():
    def work():  # a unix socket: outside 127.0.0.0/8, and never leaves the machine
        path = os.path.join(tempfile.mkdtemp(), "nothing-listens-here")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
        except OSError:
            pass
    t = threading.Thread(target=work)
    t.start()
    t.join()
"""


# Other plugins of this environment cost seconds per run and play no part here.
QUIET_PLUGINS = (
    "-p",
    "no:cacheprovider",
    "-p",
    "no:hypothesispytest",
    "-p",
    "no:benchmark",
    "-p",
    "no:anyio",
    "-p",
    "no:randomly",
    "-p",
    "no:xdist",
)


def runpytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A real pytest subprocess, so the shield never touches the outer session."""
    return pytester.runpytest_subprocess(*QUIET_PLUGINS, *args)


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """One shared assert helper: the outcome counts of a run."""
    parsed = result.parseoutcomes()
    return {k: v for k, v in parsed.items() if k in ("passed", "failed", "errors", "error")}


def test_session_policy_from_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", appshield=OFFLINE)
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    result = runpytest(pytester, "--appshield-policy", "appshield.yaml")
    assert outcomes(result) == {"passed": 2, "failed": 2}
    result.stdout.fnmatch_lines(
        [
            "*appshield: 1 denied operation in this test (policy 'offline-tests')*",
            "*process*'ls'*rule 'default:process' (blocked)*",
            "*at *test_sample.py:* in test_swallowed_subprocess*",
        ]
    )
    result.stdout.fnmatch_lines(["*network connect*nothing-listens-here*rule 'default:network'*"])


def test_session_policy_from_the_ini_file(pytester: pytest.Pytester) -> None:
    (pytester.path / "ci").mkdir()
    (pytester.path / "ci" / "policy.yaml").write_text(OFFLINE)
    pytester.makeini("[pytest]\nappshield_policy = ci/policy.yaml\n")
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    result = runpytest(pytester)
    assert outcomes(result) == {"passed": 2, "failed": 2}


def test_marker_with_inline_rules(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_marked=textwrap.dedent("""
        import subprocess, pytest

        NO_LS = [{"id": "no-ls", "category": "process", "action": "deny",
                  "match": {"executable": "ls"}}]

        @pytest.mark.appshield(rules=NO_LS)
        def test_marked():
            subprocess.run(["ls"], capture_output=True)

        def test_unmarked():
            subprocess.run(["ls"], capture_output=True)

        @pytest.mark.appshield(rules=[{"id": "typo", "category": "proces", "action": "deny",
                                       "match": {}}])
        def test_bad_marker():
            pass
    """)
    )
    result = runpytest(pytester)
    assert outcomes(result) == {"passed": 1, "failed": 1, "errors": 1}
    result.stdout.fnmatch_lines(["*test_marked*", "*rule 'no-ls' (blocked)*"])
    result.stdout.fnmatch_lines(["*appshield marker: invalid policy*"])


def test_marker_with_yaml_replaces_the_session_policy(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", appshield=OFFLINE)
    pytester.makepyfile(
        test_marked=textwrap.dedent('''
        import subprocess, pytest

        ALLOW_ALL = """
        version: 1
        defaults: {process: allow, file: allow, network: allow, import: allow}
        """

        @pytest.mark.appshield(yaml=ALLOW_ALL)
        def test_may_run_ls():
            subprocess.run(["ls"], capture_output=True, check=True)

        def test_may_not_run_ls():
            subprocess.run(["ls"], capture_output=True)
    ''')
    )
    result = runpytest(pytester, "--appshield-policy", "appshield.yaml")
    assert outcomes(result) == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(["*FAILED*test_may_not_run_ls*"])


def test_monitor_mode_still_fails_but_does_not_block(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", appshield=OFFLINE)
    pytester.makepyfile(
        test_m="""
        import subprocess
        def test_runs_ls():
            out = subprocess.run(["ls"], capture_output=True)
            assert out.returncode == 0
    """
    )
    result = runpytest(
        pytester, "--appshield-policy", "appshield.yaml", "--appshield-mode", "monitor"
    )
    assert outcomes(result) == {"failed": 1}
    result.stdout.fnmatch_lines(["*rule 'default:process' (deny, not blocked)*"])


def test_alerts_are_warnings(pytester: pytest.Pytester) -> None:
    pytester.makefile(
        ".yaml",
        appshield="""
        version: 1
        defaults: {process: allow, file: allow, network: allow, import: allow}
        rules:
          - {id: watch-ls, category: process, action: alert, match: {executable: ls}}
    """,
    )
    pytester.makepyfile(
        test_a="""
        import subprocess
        def test_runs_ls():
            subprocess.run(["ls"], capture_output=True, check=True)
    """
    )
    result = runpytest(pytester, "--appshield-policy", "appshield.yaml")
    assert outcomes(result) == {"passed": 1}
    result.stdout.fnmatch_lines(["*AppshieldAlertWarning*watch-ls*"])


def test_invalid_session_policy_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", appshield="version: 1\nsurprise: 1\n")
    pytester.makepyfile(test_x="def test_x(): pass\n")
    result = runpytest(pytester, "--appshield-policy", "appshield.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*appshield.yaml:*:*:*"])


def test_without_a_policy_the_plugin_does_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_x="""
        import subprocess
        from appshield import runtime
        def test_x():
            subprocess.run(["ls"], capture_output=True, check=True)
            assert runtime.active_shield() is None
    """
    )
    result = runpytest(pytester)
    assert outcomes(result) == {"passed": 1}


def test_violation_in_a_fixture_fails_setup(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", appshield=OFFLINE)
    pytester.makepyfile(
        test_f="""
        import subprocess, pytest

        @pytest.fixture
        def tool_version():
            try:
                return subprocess.run(["ls"], capture_output=True).returncode
            except OSError:
                return None

        def test_uses_fixture(tool_version):
            pass
    """
    )
    result = runpytest(pytester, "--appshield-policy", "appshield.yaml")
    assert outcomes(result) == {"errors": 1}
    result.stdout.fnmatch_lines(
        ["*appshield: 1 denied operation during setup*", "*in tool_version*"]
    )


def test_marker_policy_file_relative_to_the_test(pytester: pytest.Pytester) -> None:
    (pytester.path / "policies").mkdir()
    (pytester.path / "policies" / "offline.yaml").write_text(OFFLINE)
    pytester.makepyfile(
        test_p="""
        import subprocess, pytest

        @pytest.mark.appshield(policy="policies/offline.yaml")
        def test_git_only():
            subprocess.run(["git", "--version"], capture_output=True)

        @pytest.mark.appshield("policies/offline.yaml")
        def test_ls():
            subprocess.run(["ls"], capture_output=True)
    """
    )
    result = runpytest(pytester)
    assert outcomes(result) == {"passed": 1, "failed": 1}
    result.stdout.fnmatch_lines(["*FAILED*test_ls*"])


def test_under_appshield_run_with_the_same_policy(pytester: pytest.Pytester) -> None:
    import sys

    policy = pytester.makefile(".yaml", appshield=OFFLINE)
    pytester.makepyfile(test_sample=SAMPLE_TESTS)
    # The locked shield of `appshield run` is kept; the plugin only listens to it.
    result = pytester.run(
        sys.executable,
        "-m",
        "appshield",
        "run",
        "--policy",
        str(policy),
        "--",
        sys.executable,
        "-m",
        "pytest",
        *QUIET_PLUGINS,
        "--appshield-policy",
        str(policy),
    )
    assert outcomes(result) == {"passed": 2, "failed": 2}
