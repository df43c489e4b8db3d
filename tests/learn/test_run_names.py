"""Run-specific names generalise (pids, dates, uuids, tempfile's random parts), ordinary
names do not; the app's own sources are readable; process rules carry over ({python},
numeric arguments). Decided by the real loader and engine."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from appshield.learn import learn_policy
from appshield.learn.paths import RunNames, escape_glob, widen_segment
from appshield.learn.records import Observation
from appshield.operations import FileOp, ImportOp, ProcessOp
from appshield.policy import Policy
from tests.learn._strategies import ROOTS

TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"  # tempfile's alphabet


def _obs(op: object, *, pids: tuple[int, ...] = (), volatile: tuple[str, ...] = ()) -> Observation:
    return Observation(op, "open", "app", ("app",), 1, ROOTS, pids, volatile)  # type: ignore[arg-type]


def _policy(*obs: Observation) -> tuple[Policy, str]:
    result = learn_policy(list(obs))
    return Policy.from_yaml(result.text), result.text


def _allows(policy: Policy, op: object) -> bool:
    return policy.decide(op).action == "allow"  # type: ignore[arg-type]


_random_part = st.text(alphabet=TEMP_CHARS, min_size=8, max_size=8)
_affix = st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=10)


@settings(max_examples=60, deadline=None)
@given(_affix, _affix, _random_part, _random_part, st.sampled_from([ROOTS.tmp, "/srv/app/run"]))
@example("", "0", "00000000", "_0000000", ROOTS.tmp)  # a digit suffix on an all-digit part
def test_tempfile_names_with_any_prefix_and_suffix(
    prefix: str, suffix: str, first: str, second: str, folder: str
) -> None:
    name = f"{folder}/{prefix}{first}{suffix}"
    policy, _ = _policy(_obs(FileOp(name, "write"), volatile=(first,)))
    assert _allows(policy, FileOp(f"{folder}/{prefix}{second}{suffix}", "write"))
    assert not _allows(policy, FileOp(f"{folder}/{prefix}{second}{suffix}/x", "write"))
    assert not _allows(policy, FileOp(f"{folder}/../etc/{prefix}{second}{suffix}", "write"))


def test_gunicorn_worker_temp_file_and_its_later_uses() -> None:
    made = f"{ROOTS.tmp}/wgunicorn-d7lf25wp"
    policy, text = _policy(
        _obs(FileOp(made, "write"), volatile=("d7lf25wp",)),
        _obs(FileOp(made, "delete")),  # gunicorn.util.unlink: no tempfile frame, same token
        _obs(FileOp(made + " (deleted)", "write")),  # os.utime on the open descriptor
    )
    assert '"{tmp}/wgunicorn-*"' in text and "d7lf25wp" not in text
    for access in ("write", "delete"):
        assert _allows(policy, FileOp(f"{ROOTS.tmp}/wgunicorn-abcdefgh", access))  # type: ignore[arg-type]
    assert not _allows(policy, FileOp(f"{ROOTS.tmp}/other-abcdefgh", "write"))


def test_a_bare_random_name_is_never_a_bare_star() -> None:
    policy, text = _policy(_obs(FileOp(f"{ROOTS.tmp}/ab12cd34", "write"), volatile=("ab12cd34",)))
    assert '"{tmp}/????????"' in text
    assert not _allows(policy, FileOp(f"{ROOTS.tmp}/secrets.txt", "write"))


def test_a_single_sighting_of_the_runs_pid() -> None:
    policy, text = _policy(_obs(FileOp("/srv/app/out/result-48213.json", "write"), pids=(48213, 1)))
    assert '"/srv/app/out/result-*.json"' in text
    assert _allows(policy, FileOp("/srv/app/out/result-977.json", "write"))
    assert not _allows(policy, FileOp("/srv/app/out/other.txt", "write"))


def test_an_unknown_number_seen_once_stays_literal_but_variation_widens() -> None:
    _, once = _policy(_obs(FileOp("/srv/app/out/result-48213.json", "write")))
    assert '"/srv/app/out/result-48213.json"' in once
    policy, twice = _policy(
        _obs(FileOp("/srv/app/out/result-48213.json", "write")),
        _obs(FileOp("/srv/app/out/result-48250.json", "write")),
    )
    assert '"/srv/app/out/result-*.json"' in twice
    assert _allows(policy, FileOp("/srv/app/out/result-1.json", "write"))
    _, versions = _policy(
        _obs(FileOp("/srv/a/config-v1.json", "read")), _obs(FileOp("/srv/a/config-v2.json", "read"))
    )
    assert "config-v*" not in versions  # a number glued to a letter is a name, not an id


@pytest.mark.parametrize(
    ("name", "glob"),
    [
        ("app-2026-12-03.log", "app-*.log"),
        ("build-20261203.tar", "build-*.tar"),
        ("dump_2026_12_03T08-52-01.sql", "dump_*.sql"),
        ("trace-2026-12-03T08:52:01.123Z.json", "trace-*.json"),
        ("report-2026-12.csv", "report-*.csv"),
        ("snap-1764751921.db", "snap-*.db"),
        ("snap-1764751921123.db", "snap-*.db"),
        ("item-0f8fad5b-d9cb-469f-a165-70867728950e.bin", "item-*.bin"),
        ("blob-0f8fad5bd9cb469fa16570867728950e", "blob-*"),
        ("cache_3f9a01bc2d.pkl", "cache_*.pkl"),
    ],
)
def test_dates_times_and_ids_widen_anywhere(name: str, glob: str) -> None:
    assert widen_segment(name) == glob


ORDINARY = [
    "config-v2.json",
    "utf-8",
    "utf-16",
    "python3.11",
    "libssl.so.3",
    "index.html",
    "x",
    "README.md",
    "part1.csv",
    "deadbeef",
    "2fa-setup",
    "iso8859-1",
    "cp1252",
    "v1.2.3",
    "settings.py",
    "worker-7.log",
    "http-8080.conf",
    "year-2026",
    "a[1].txt",
    "{x}",
]


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_names_stay_literal(name: str) -> None:
    run = RunNames.of(pids=[1, 7, 8, 16, 99])  # small pids: indexes more likely than pids
    assert widen_segment(name, run) == escape_glob(name)


_word = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=7)
_version = st.integers(0, 99).map(lambda n: f"v{n}")
_ordinary = st.tuples(
    st.lists(st.one_of(_word, _version), min_size=1, max_size=3),
    st.sampled_from(["-", "_", "."]),
    st.sampled_from(["", ".json", ".txt", ".py", ".so.3"]),
).map(lambda t: t[1].join(t[0]) + t[2])


@settings(max_examples=200, deadline=None)
@given(_ordinary, st.lists(st.integers(1, 99), max_size=3))
def test_ordinary_names_never_widen(name: str, small_pids: list[int]) -> None:
    assert widen_segment(name, RunNames.of(pids=small_pids)) == escape_glob(name)


@settings(max_examples=40, deadline=None)
@given(st.integers(100, 4_194_304), st.integers(100, 4_194_304), _word)
def test_learned_pid_names_allow_the_next_runs_pid(first: int, second: int, stem: str) -> None:
    policy, _ = _policy(_obs(FileOp(f"/srv/out/{stem}-{first}.json", "write"), pids=(first,)))
    assert _allows(policy, FileOp(f"/srv/out/{stem}-{second}.json", "write"))
    assert not _allows(policy, FileOp(f"/srv/out/{stem}x-{second}.json", "write"))


# -- process rules carry over ------------------------------------------------------------------


def _run(exe: str, *args: str, trusted: bool = True) -> ProcessOp:
    return ProcessOp(exe, (exe.rpartition("/")[2], *args), trusted_location=trusted)


def test_the_interpreter_is_python_and_numeric_options_generalise() -> None:
    seen = _run(ROOTS.executable, "-m", "gunicorn", "-w", "2", "--bind=127.0.0.1:8002", "app:app")
    policy, text = _policy(_obs(seen))
    assert 'executable: "{python}"' in text
    assert '"-w", "[0-9]*", "--bind=127.0.0.1:[0-9]*"' in text
    later = _run(ROOTS.executable, "-m", "gunicorn", "-w", "4", "--bind=127.0.0.1:9100", "app:app")
    assert _allows(policy, later)
    assert not _allows(policy, _run(ROOTS.executable, "-c", "import os"))
    assert not _allows(policy, _run("/usr/bin/perl", "-m", "gunicorn", "-w", "2"))


def test_port_after_an_option_and_pid_arguments() -> None:
    policy, text = _policy(
        _obs(_run("/usr/bin/server", "--port", "8002", "7")),
        _obs(_run("/usr/bin/kill", "-TERM", "51234"), pids=(51234,)),
        _obs(_run("/usr/bin/chmod", "-R", "755", "/srv/app")),
    )
    assert _allows(policy, _run("/usr/bin/server", "--port", "8003", "7"))
    assert not _allows(policy, _run("/usr/bin/server", "--port", "8003", "8"))  # positional
    assert _allows(policy, _run("/usr/bin/kill", "-TERM", "61234"))
    assert not _allows(policy, _run("/usr/bin/chmod", "-R", "777", "/srv/app"))  # modes exact
    assert "755" in text


def test_python_variable_holds_the_venv_and_the_real_interpreter() -> None:
    import os
    import sys

    from appshield.policy.variables import value

    found = value("python", ".")
    assert sys.executable in found and os.path.realpath(sys.executable) in found
    policy = Policy.from_yaml(
        "version: 1\ndefaults: {process: deny, file: deny, network: deny, import: deny}\n"
        'rules:\n  - {id: py, category: process, action: allow, match: {executable: "{python}"}}\n'
    )
    assert _allows(policy, _run(ROOTS.executable, "x.py", trusted=False))
    assert not _allows(policy, _run("/usr/bin/env", "python", trusted=False))


# -- the app's own sources -----------------------------------------------------------------------


def test_the_apps_own_sources_are_readable_py_only() -> None:
    policy, text = _policy(
        _obs(ImportOp("app", "/srv/proj/app.py")),
        _obs(ImportOp("mysite.urls", "/srv/proj/mysite/urls.py")),
        _obs(ImportOp("json", ROOTS.stdlib[0] + "/json/__init__.py")),
    )
    assert '"/srv/proj/**/*.py"' in text
    for path in ("/srv/proj/app.py", "/srv/proj/mysite/urls.py", "/srv/proj/polls/views.py"):
        assert _allows(policy, FileOp(path, "read"))
        assert not _allows(policy, FileOp(path, "write"))
    assert not _allows(policy, FileOp("/srv/proj/.env", "read"))
    assert not _allows(policy, FileOp("/srv/proj/db.sqlite3", "read"))


def test_sources_in_a_broad_folder_stay_narrow() -> None:
    policy, _ = _policy(
        _obs(ImportOp("loose", f"{ROOTS.tmp}/loose.py")),
        _obs(ImportOp("pkg.mod", f"{ROOTS.tmp}/pkg/mod.py")),
    )
    assert _allows(policy, FileOp(f"{ROOTS.tmp}/loose.py", "read"))
    assert _allows(policy, FileOp(f"{ROOTS.tmp}/pkg/other.py", "read"))
    assert not _allows(policy, FileOp(f"{ROOTS.tmp}/someone_else.py", "read"))


def test_the_main_script_folder_counts() -> None:
    main = Observation(FileOp("/srv/tool/run.py", "read"), "open", None, (), 1, ROOTS)
    policy, text = _policy(main)
    assert '"/srv/tool/**/*.py"' in text
    assert _allows(policy, FileOp("/srv/tool/lib/util.py", "read"))
