"""appshield's benchmark: bare Python vs appshield vs a ptrace tracer, one command.

    python benchmarks/run.py            # the whole table (a few minutes)
    python benchmarks/run.py --quick    # fewer rounds
    python benchmarks/run.py --only open,connect
    python benchmarks/run.py --callgrind  # also user-space instruction counts (valgrind)
    python benchmarks/run.py --callgrind --shadow deny --only open,connect
                                          # and with a shadow candidate beside the policy
    python benchmarks/run.py --only globs,first_decision  # the engine's worst cases
    python benchmarks/run.py --only servers [--callgrind]  # Flask/gunicorn, FastAPI/uvicorn
                                          # requests per second under a learned policy
    python benchmarks/run.py --callgrind --with-noop-hook --aikido-python PATH --markdown
                                          # issue 17's side-by-side per-call table
    python benchmarks/run.py --only calls --callgrind --with-compiled-floor --with-python-hook
                                          # the compiled hook against its floor and the
                                          # Python hook

Every operation is measured in fresh interpreters, bare and shielded *interleaved* round by
round (bare, shield, bare, shield, ...), each worker warming up first and timing several
repetitions; the table shows medians and the ratio of medians from this one run, because the
machines are noisy and only ratios taken side by side mean anything. The allowed path is
measured under a generated 1,000-rule policy across all four categories (benchmarks/
_policygen.py) under which the measured operation is allowed. `strace -f` (ptrace, what is
left on hosts without eBPF) runs the bare loop for comparison.

`--with-noop-hook` adds a worker with a no-op Python audit hook and nothing else (the floor of
any design that decides in a Python audit hook), `--with-compiled-floor` one with appshield's
compiled hook told of no event (the floor of the compiled design: CPython's own cost per
event once any hook is set), `--with-python-hook` appshield with its Python hook alone
(`APPSHIELD_PURE_PYTHON=1`), and `--aikido-python PATH` one with Aikido Zen
started as its README says, in blocking mode (`AIKIDO_BLOCK=true`), under PATH, an
interpreter of a separate venv that has `aikido_zen` installed (never appshield's). No
`AIKIDO_TOKEN` is passed: without one Zen starts no background process and reports nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _policygen import generate, to_yaml  # noqa: E402

from appshield.document import Condition, RuleSpec  # noqa: E402

WORKER = str(HERE / "_worker.py")


@dataclass(frozen=True)
class Case:
    name: str  # row label
    op: str  # _worker.py operation
    n: int  # operations per repetition
    policy: str  # a key of write_policies: "full", "no_file_deny", "defaults_only", ...
    target: str  # the issue's target, for the table
    strace: bool = True
    key: str = ""  # what `--only` also accepts for this row (default: just the op)
    # An operation whose audit events appshield has no handler for: its target is the no-op
    # hook's cost (within 10%), not bare Python's.
    unhandled: bool = False


HOOK_FLOOR = "hook +10%"


CASES = (
    Case("open()+close(), no file deny rules", "open", 20000, "no_file_deny", "<= 1.08x"),
    Case("open()+close(), 1,000 rules with file denies", "open", 20000, "full", "<= 1.15x"),
    Case("subprocess.run(['true'])", "subprocess", 100, "full", "<= 1.10x"),
    Case(
        "subprocess.run, + 250 base-name glob denies",
        "subprocess",
        100,
        "base_name_globs",
        "<= 1.10x",
    ),
    Case("TCP connect+close, loopback", "connect", 3000, "full", "<= 1.15x"),
    Case(
        "socket.create_connection+close, loopback",
        "create_connection",
        3000,
        "full",
        "<= 1.15x",
    ),
    # The app's own open/connect under a policy that grants 50 distributions (issue 15):
    # what per-distribution attribution costs a first-party caller.
    Case(
        "open()+close(), 50-distribution grants",
        "open",
        20000,
        "grants50",
        "<= 1.5x",
        key="open_grants50",
    ),
    Case(
        "TCP connect+close, 50-distribution grants",
        "connect",
        3000,
        "grants50",
        "<= 1.5x",
        key="connect_grants50",
    ),
    Case("getaddrinfo('localhost')", "getaddrinfo", 3000, "full", "-"),
    # Round 29: two everyday calls that were decided in full on every repeat.
    Case(
        "getaddrinfo('localhost'), the defaults alone",
        "getaddrinfo",
        3000,
        "defaults_only",
        "-",
        key="getaddrinfo_defaults",
    ),
    Case(
        "open()+close(), relative path, 1,000 rules with file denies",
        "open_relative",
        20000,
        "full",
        "-",
    ),
    # Round 30: listings, changes by path and SQLite connects, decided in full every time before.
    Case("os.listdir(folder), 1,000 rules with file denies", "listdir", 20000, "full", "-"),
    Case("os.scandir() of the current folder, 1,000 rules", "scandir_here", 20000, "full", "-"),
    Case("os.utime(path) (Path.touch), 1,000 rules", "touch", 20000, "full", "-"),
    Case("os.makedirs(folder, exist_ok=True), 1,000 rules", "makedirs", 20000, "full", "-"),
    Case("sqlite3.connect(path)+close(), 1,000 rules", "sqlite", 2000, "full", "-"),
    Case("import json (cached)", "import_cached", 200000, "full", "<= 1.05x"),
    # Audit events appshield does not handle (issue 17): every Python audit hook is called
    # on them, so the no-op hook (`--with-noop-hook`) is the floor to compare with.
    Case(
        "exec('import json'), already imported",
        "exec_import",
        20000,
        "full",
        HOOK_FLOOR,
        unhandled=True,
    ),
    Case("compile('x = 1')", "compile", 20000, "full", HOOK_FLOOR, unhandled=True),
    Case("exec(code of 'x = 1')", "exec_code", 200000, "full", HOOK_FLOOR, unhandled=True),
    Case("sys._getframe()", "getframe", 200000, "full", HOOK_FLOOR, unhandled=True),
    Case(
        "function.__code__ (object.__getattr__)",
        "function_code",
        200000,
        "full",
        HOOK_FLOOR,
        unhandled=True,
    ),
    Case(
        "frame.f_code (object.__getattr__)",
        "frame_code",
        200000,
        "full",
        HOOK_FLOOR,
        unhandled=True,
    ),
    Case("first import of a module (its bytecode cached)", "import_first", 300, "full", "<= 1.10x"),
    Case("open(new path, 'w')+close(), each path new", "open_new", 2000, "full", "-"),
    Case(
        "violation, repeated (aggregated)",
        "violation_repeated",
        2000,
        "full",
        "<= 100 us",
        strace=False,
    ),
    Case(
        "violation, distinct, fully reported",
        "violation_distinct",
        500,
        "full",
        "<= 500 us",
        strace=False,
    ),
)


def bench_rules() -> list[RuleSpec]:
    """Rules that make the measured operations allowed (and the violation loop denied)."""
    tmp = tempfile.gettempdir()
    return [
        RuleSpec("bench-true", "process", "allow", Condition({"executable": ("true",)})),
        RuleSpec(
            "bench-denied",
            "file",
            "deny",
            Condition({"path": (f"{tmp}/appshield-bench-*/denied/**",)}),
        ),
        RuleSpec("bench-localhost", "network", "allow", Condition({"host": ("localhost",)})),
    ]


# Shadow candidates for `--shadow` (APPSHIELD_SHADOW_POLICY): `copy` is the measured policy
# itself (every operation allowed by both, so the caches stay on: the cost of a shadow that
# agrees); `deny` denies everything (every operation decided by both and reported as shadow,
# its repeats folded: the cost of a shadow that disagrees on every call).
DENY_ALL = (
    "version: 1\nname: bench-shadow-deny-all\n"
    "defaults: {process: deny, file: deny, network: deny, import: deny}\n"
)


def shadow_policy(kind: str, policy: str, folder: Path) -> str:
    if kind == "copy":
        return policy
    path = folder / "shadow-deny-all.yaml"
    path.write_text(DENY_ALL)
    return str(path)


def write_policies(folder: Path) -> dict[str, str]:
    full = generate(1000, name="bench-1000")
    full = full._replace(rules=(*bench_rules(), *full.rules))
    no_deny = full._replace(
        name="bench-1000-no-file-deny",
        rules=tuple(r for r in full.rules if not (r.category == "file" and r.action != "allow")),
    )
    # Issue 17: `executable: "toolN*"` denies, which a spawn must not check one by one.
    globs = full._replace(
        name="bench-1000-base-name-globs",
        rules=(
            *full.rules,
            *(
                RuleSpec(
                    f"no-tool{i}", "process", "deny", Condition({"executable": (f"tool{i}*",)})
                )
                for i in range(250)
            ),
        ),
    )
    paths = {}
    for key, document in (("full", full), ("no_file_deny", no_deny), ("base_name_globs", globs)):
        path = folder / f"{key}.yaml"
        path.write_text(to_yaml(document))
        paths[key] = str(path)
    # The same 1,000 rules for the PYTHONDONTWRITEBYTECODE=1 start-up rows, each in a folder
    # of its own (no other row's start may write their caches): one left without a cache,
    # as such an image has, one prepared by the build step `appshield check --compile`.
    for key in ("nobytecode_nocache", "nobytecode_compiled"):
        (folder / key).mkdir()
        path = folder / key / "full.yaml"
        path.write_text(to_yaml(full))
        paths[key] = str(path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "appshield",
            "check",
            "-q",
            "--compile",
            paths["nobytecode_compiled"],
        ],
        check=True,
    )
    grants = folder / "grants50.yaml"
    grants.write_text(to_yaml(full) + grants_section(50))
    paths["grants50"] = str(grants)
    # The defaults alone (and the implicit rules, `implicit:telemetry_exporter` among them):
    # where a scoped implicit allow once made every lookup of `localhost` a full decision.
    defaults_only = folder / "defaults_only.yaml"
    defaults_only.write_text(
        "version: 1\nname: bench-defaults-only\nmode: enforce\n"
        "defaults: {process: allow, file: allow, network: allow, import: allow}\n"
    )
    paths["defaults_only"] = str(defaults_only)
    return paths


def grants_section(count: int) -> str:
    """A `packages` section granting `count` distributions a little of each category (the
    names need not be installed: the cost measured is the first-party caller's)."""
    lines = ["packages:", "  default: deny", "  grants:"]
    for i in range(count):
        lines += [
            f"    bench-dist-{i:02}:",
            f"      version: '>={i % 3}'",
            f"      network: [{{host: 'api{i}.example.com', port: 443}}]",
            f"      file: [{{path: '{{tmp}}/bench-dist-{i:02}/**', access: read}}]",
            f"      import: [{{module: bench_dist_{i:02}}}]",
        ]
    return "\n".join(lines) + "\n"


def start_listener() -> tuple[subprocess.Popen[bytes], int]:
    """An accept-and-close server in its own process, so it does not share our GIL."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    code = (
        "import socket\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {port})); s.listen(1024)\n"
        "while True:\n    c, _ = s.accept(); c.close()\n"
    )
    server = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, port


@dataclass(frozen=True)
class Mode:
    """A worker mode (`_worker.py`'s MODE) and how to start it."""

    name: str  # the worker's MODE
    label: str  # column heading
    python: str = sys.executable
    env: tuple[tuple[str, str], ...] = ()  # added to the benchmark's environment

    def environ(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, **dict(self.env)}


BARE = Mode("bare", "bare")
SHIELD = Mode("shield", "appshield")
NOOP_HOOK = Mode("noop_hook", "no-op hook")
# appshield's compiled hook told of no event: the floor of the compiled hook's design.
COMPILED_FLOOR = Mode("compiled_floor", "no-op compiled hook")
# appshield with the Python audit hook alone (appshield/_c_audit_hook.c not used).
PYTHON_HOOK = Mode("shield_python", "appshield, Python hook", env=(("APPSHIELD_PURE_PYTHON", "1"),))


def aikido_mode(python: str) -> Mode:
    # Blocking mode. AIKIDO_TOKEN is never set (the benchmark's environment drops every
    # AIKIDO_ variable): without a token Zen starts no background process, so nothing is
    # sent anywhere; its patches and checks run all the same.
    return Mode("aikido", "Aikido Zen", python, (("AIKIDO_BLOCK", "true"),))


def run_worker(
    case: Case,
    mode: str | Mode,
    reps: int,
    policy: str,
    env: dict[str, str],
    tracer: list[str] | None = None,
) -> list[float]:
    how = mode if isinstance(mode, Mode) else Mode(mode, mode)
    command = [how.python, WORKER, case.op, how.name, str(case.n), str(reps), policy]
    if tracer:
        command = [*tracer, *command]
    out = subprocess.run(command, env=how.environ(env), capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{case.op} {how.name} failed:\n{out.stderr[-2000:]}")
    return [float(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def measure(
    case: Case,
    rounds: int,
    reps: int,
    policy: str,
    env: dict[str, str],
    with_strace: bool,
    extra: tuple[Mode, ...] = (),
) -> dict[str, float | None]:
    """Median ns per operation of each mode (keys: the worker's MODE, and "strace"), the
    modes interleaved round by round."""
    modes = (BARE, SHIELD, *extra)
    samples: dict[str, list[float]] = {m.name: [] for m in modes}
    samples["strace"] = []
    strace = shutil.which("strace") if with_strace and case.strace else None
    for _ in range(rounds):
        for mode in modes:
            samples[mode.name] += run_worker(case, mode, reps, policy, env)
        if strace:
            samples["strace"] += run_worker(
                case,
                "bare",
                max(1, reps // 2),
                policy,
                env,
                [strace, "-f", "-qq", "-o", "/dev/null"],
            )
    return {k: (statistics.median(v) if v else None) for k, v in samples.items()}


_COLLECTED = re.compile(r"Collected : (\d+)")


def callgrind_instructions(command: list[str], env: dict[str, str], label: str) -> int:
    """User-space instructions of one run of `command` under callgrind (its children not
    followed). `label` names the run in the error when callgrind fails."""
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.out", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    found = _COLLECTED.findall(done.stderr)
    if done.returncode != 0 or not found:
        raise RuntimeError(f"callgrind {label} failed:\n{done.stderr[-2000:]}")
    return int(found[-1])


def instructions(case: Case, mode: Mode, n: int, policy: str, env: dict[str, str]) -> int:
    """User-space instructions of one worker run of `n` operations (one repetition)."""
    command = [mode.python, WORKER, case.op, mode.name, str(n), "1", policy]
    return callgrind_instructions(command, mode.environ(env), f"{case.op} {mode.name}")


def write_modules(folder: Path, count: int = 2000) -> str:
    """The modules the first-import row imports (`benchmod_N`, more than any worker asks
    for), with their bytecode compiled here: every worker is a new process, so each of its
    imports is a first one, reading the cached bytecode as a deployed app does."""
    folder.mkdir()
    for i in range(count):
        (folder / f"benchmod_{i}.py").write_text("VALUE = 1\n")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(folder)], check=True)
    return str(folder)


def per_op_instructions(case: Case, mode: str | Mode, policy: str, env: dict[str, str]) -> float:
    how = mode if isinstance(mode, Mode) else Mode(mode, mode)
    n = max(50, case.n // 20)
    # One plain run first, so that neither measured run is the one that writes the policy
    # cache or the `.pyc` files (that work would land in one count and not the other).
    warm = [how.python, WORKER, case.op, how.name, "1", "1", policy]
    subprocess.run(warm, env=how.environ(env), capture_output=True, timeout=600, check=False)
    one = instructions(case, how, n, policy, env)
    two = instructions(case, how, 2 * n, policy, env)
    # The worker also runs a warm-up of n/10 operations, which scales with n as well.
    return (two - one) / (n * 1.1)


TYPICAL_POLICY = str(HERE.parent / "examples" / "web-service.yaml")
APPSHIELD_SCRIPT = str(Path(sys.executable).with_name("appshield"))
GNU_TIME = "/usr/bin/time"


NOOP_HOOK_STARTUP = "no-op audit hook (the floor)"
STRACE_STARTUP = "strace -f python -c pass"


def startup_commands(
    policies: dict[str, str], aikido_python: str | None = None, strace: bool = False
) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Label -> (command, extra environment). `import wrapt` is there for reference (the
    brief's patching library, of which appshield loads only the C extension), and so are the
    standard-library modules appshield needs at start-up. A no-op audit hook is the floor of
    this design; Aikido Zen (started as its README says, blocking, no token) and a ptrace
    tracer are the peers, when asked for."""
    py = sys.executable
    appshield = APPSHIELD_SCRIPT if os.path.exists(APPSHIELD_SCRIPT) else None
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "python -c pass": ([py, "-c", "pass"], {}),
        NOOP_HOOK_STARTUP: ([py, "-c", "import sys; sys.addaudithook(lambda e, a: None)"], {}),
        "python -c 'import wrapt' (reference)": ([py, "-c", "import wrapt"], {}),
        # The standard-library modules appshield needs, which most applications import anyway.
        "import typing, re, threading (reference)": (
            [py, "-c", "import typing, re, threading, weakref, contextlib"],
            {},
        ),
    }
    named = (("typical policy", policies["typical"]), ("1,000 rules", policies["full"]))
    for label, policy in named:
        commands[f"import appshield.auto, {label}"] = (
            [py, "-c", "import appshield.auto"],
            {"APPSHIELD_POLICY": policy},
        )
        run = [appshield] if appshield else [py, "-m", "appshield"]
        commands[f"appshield run, {label}"] = (
            [*run, "run", "--policy", policy, "--", py, "-c", "pass"],
            {},
        )
    if aikido_python:
        commands["Aikido Zen, protect()"] = (
            [aikido_python, "-c", "import aikido_zen; aikido_zen.protect()"],
            {"AIKIDO_BLOCK": "true"},
        )
    if strace and shutil.which("strace"):
        # Wall time and RSS only: callgrind would count the tracer, not the traced program
        # (which runs the same user-space code as bare Python).
        commands[STRACE_STARTUP] = (["strace", "-f", "-o", "/dev/null", py, "-c", "pass"], {})
    # Images that set PYTHONDONTWRITEBYTECODE=1: no start writes the policy cache.
    for label, key in (
        ("no cache", "nobytecode_nocache"),
        ("check --compile", "nobytecode_compiled"),
    ):
        commands[f"import appshield.auto, 1,000 rules, PYTHONDONTWRITEBYTECODE=1, {label}"] = (
            [py, "-c", "import appshield.auto"],
            {"APPSHIELD_POLICY": policies[key], "PYTHONDONTWRITEBYTECODE": "1"},
        )
    return commands


def startup(
    rounds: int,
    policies: dict[str, str],
    env: dict[str, str],
    aikido_python: str | None = None,
    strace: bool = False,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall time (ms) and median peak RSS (MB) of each start-up command, interleaved
    round by round. The policy cache (appshield/policy/cache.py) is warmed first, as it is
    after a process's first start."""
    commands = startup_commands(policies, aikido_python, strace)
    times: dict[str, list[float]] = {k: [] for k in commands}
    peaks: dict[str, list[float]] = {k: [] for k in commands}
    for round_number in range(rounds + 1):
        for label, (command, extra) in commands.items():  # interleaved
            t0 = time.perf_counter()
            peak = _peak_rss_mb(command, {**env, **extra})
            if round_number:  # round 0 warms the page cache and the policy cache
                times[label].append((time.perf_counter() - t0) * 1000)
                peaks[label].append(peak)
    median = statistics.median
    return {k: median(v) for k, v in times.items()}, {k: median(v) for k, v in peaks.items()}


def _peak_rss_mb(command: list[str], env: dict[str, str]) -> float:
    """Run `command` and return its peak resident set size in MB, through GNU time (`-f %M`:
    the `wait4` high-water mark of its child, which Linux carries across `exec`, so for
    `appshield run` it is the larger of the two images). Not from this process's own
    `wait4`: a child forked (or vforked) from this interpreter starts with our pages counted,
    and reports our size as its floor. NaN where GNU time is missing."""
    if not os.path.exists(GNU_TIME):
        subprocess.run(command, env=env, check=True, capture_output=True)
        return float("nan")
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        subprocess.run(
            [GNU_TIME, "-f", "%M", "-o", out.name, *command],
            env=env,
            check=True,
            capture_output=True,
        )
        return int(out.read().split()[-1]) / 1024  # kB


def startup_instructions(
    policies: dict[str, str], env: dict[str, str], aikido_python: str | None = None
) -> dict[str, int]:
    """User-space instructions of each start-up command (callgrind; child processes too).

    callgrind reports only the last image of a process that execs, so for `appshield run`
    the command's own share (validating the policy, up to the exec) is counted separately,
    from the same command with a CMD that does not exist (it stops just before the exec)."""
    counts: dict[str, int] = {}
    for label, (command, extra) in startup_commands(policies, aikido_python).items():
        counts[label] = _callgrind_total(label, command, {**env, **extra})
        if "--" in command:
            missing = [*command[: command.index("--") + 1], "/nonexistent/appshield-bench"]
            counts[label] += _callgrind_total(label, missing, {**env, **extra}, ok=(127,))
    return counts


def _callgrind_total(
    label: str, command: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)
) -> int:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--trace-children=yes",
                f"--callgrind-out-file={out}/cg.%p",
                *command,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        found = _COLLECTED.findall(done.stderr)
        if done.returncode not in ok or not found:
            raise RuntimeError(f"callgrind {label} failed:\n{done.stderr[-2000:]}")
        return sum(int(x) for x in found)


def selected(case: Case, only: AbstractSet[str] | None, skip: AbstractSet[str]) -> bool:
    """Whether `--only` (None: everything; `calls`: every per-call row) and `--skip` keep
    `case`. A row answers to its op and to its key."""
    names = {case.op, case.key} - {""}
    return (only is None or "calls" in only or bool(names & only)) and not names & skip


def markdown_table(
    rows: list[tuple[Case, dict[str, float | None]]], extra: tuple[Mode, ...]
) -> str:
    """The per-call rows as docs/performance.md shows them: instructions per call of each
    mode with its ratio to bare (and, for an unhandled event, appshield's to the no-op hook),
    then the wall-clock ratios. A ptrace tracer adds no user-space instructions to the traced
    process (its cost is in the kernel and the tracer), so `strace -f` has wall time only."""
    modes = (
        BARE,
        *(m for m in extra if m is NOOP_HOOK),
        SHIELD,
        *(m for m in extra if m is not NOOP_HOOK),
    )
    head = ["operation", *(f"{m.label}, instr." for m in modes), "target"]
    head += ["appshield / no-op hook", "wall, appshield / bare", "wall, `strace -f` / bare"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case, m in rows:
        bare_ns, traced = m["bare"], m["strace"]
        violation = case.op.startswith("violation")
        cells = [case.name]
        ib = m.get("instructions_bare")
        for mode in modes:
            count = m.get(f"instructions_{mode.name}")
            if count is None:
                # A violation is one only under appshield: the other modes' loops just write
                # their files, so only appshield's wall time means anything there.
                cells.append(fmt_ns(m[mode.name]) if violation and mode is SHIELD else "-")
            elif mode is BARE or not ib:
                cells.append(f"{count:,.0f}")
            else:
                cells.append(f"{count:,.0f} ({count / ib:.2f}x)")
        cells.append(case.target.replace("<=", "≤"))
        noop, ish = m.get("instructions_noop_hook"), m.get("instructions_shield")
        cells.append(f"{ish / noop:.3f}x" if noop and ish else "-")
        shield_ns = m["shield"]
        wall = not violation and bare_ns and shield_ns
        cells.append(f"{shield_ns / bare_ns:.2f}x" if wall and shield_ns and bare_ns else "-")
        cells.append(f"{traced / bare_ns:.1f}x" if traced and bare_ns else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_ns(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} us" if value >= 1000 else f"{value:.0f} ns"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (noisier)")
    parser.add_argument(
        "--only",
        help="comma-separated worker ops to run (e.g. open,connect; `calls`: every per-call"
        " row; `servers`: the server throughput row, only when named)",
    )
    parser.add_argument("--no-strace", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="add user-space instruction counts (valgrind): per operation, from runs of N and"
        " 2N operations, and for each start-up command",
    )
    parser.add_argument(
        "--shadow",
        choices=("copy", "deny"),
        help="with --callgrind: also count instructions with a shadow candidate beside the"
        " policy (copy: the same policy; deny: a deny-all candidate)",
    )
    parser.add_argument(
        "--skip", help="comma-separated rows to leave out (op or key, e.g. open_grants50)"
    )
    parser.add_argument(
        "--with-noop-hook",
        action="store_true",
        help="also run every row with a no-op Python audit hook and nothing else",
    )
    parser.add_argument(
        "--with-compiled-floor",
        action="store_true",
        help="also run every row with appshield's compiled audit hook told of no event, and"
        " nothing else (the floor of the compiled hook: CPython's own cost per event)",
    )
    parser.add_argument(
        "--with-python-hook",
        action="store_true",
        help="also run every row under appshield with its Python audit hook instead of the"
        " compiled one (APPSHIELD_PURE_PYTHON=1)",
    )
    parser.add_argument(
        "--aikido-python",
        metavar="PATH",
        help="also run every row under Aikido Zen (blocking mode, no token), with PATH: the"
        " python of a separate venv with aikido_zen installed",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="end with the per-call rows as a Markdown table (docs/performance.md)",
    )
    args = parser.parse_args()
    more: tuple[Mode, ...] = ()
    if args.with_noop_hook:
        more += (NOOP_HOOK,)
    if args.with_compiled_floor:
        more += (COMPILED_FLOOR,)
    if args.with_python_hook:
        more += (PYTHON_HOOK,)
    if args.aikido_python:
        more += (aikido_mode(args.aikido_python),)
    only = set(args.only.split(",")) if args.only else None
    skip = set(args.skip.split(",")) if args.skip else set()
    rounds, reps = (3, 3) if args.quick else (7, 5)
    folder = Path(tempfile.mkdtemp(prefix="appshield-bench-policies-"))
    policies = {**write_policies(folder), "typical": TYPICAL_POLICY}
    server, port = start_listener()
    # Bytecode writing on, as in production (and so the policy cache, warmed by the first
    # round): a machine that sets PYTHONDONTWRITEBYTECODE=1 would otherwise measure every
    # start-up row without caches. The rows for such images set it themselves.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "AIKIDO_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(
        BENCH_PORT=str(port),
        APPSHIELD_LOG=str(folder / "violations.jsonl"),
        BENCH_MODULES=write_modules(folder / "modules"),
    )
    results: dict[str, object] = {}
    rows: list[tuple[Case, dict[str, float | None]]] = []
    try:
        print(
            f"{'operation':46} {'bare':>10} {'appshield':>10} {'ratio':>7} {'target':>10}"
            f" {'strace -f':>10} {'ratio':>7}"
        )
        for case in CASES:
            if not selected(case, only, skip):
                continue
            policy = policies[case.policy]
            m = measure(case, rounds, reps, policy, env, not args.no_strace, more)
            bare, shield, traced = m["bare"], m["shield"], m["strace"]
            assert bare is not None and shield is not None
            violation = case.op.startswith("violation")
            ratio = "-" if violation else f"{shield / bare:.3f}x"
            sratio = f"{traced / bare:.1f}x" if traced else "-"
            line = (
                f"{case.name:46} {fmt_ns(None if violation else bare):>10} {fmt_ns(shield):>10}"
                f" {ratio:>7} {case.target:>10} {fmt_ns(traced):>10} {sratio:>7}"
            )
            for mode in more:  # wall time of the other modes, after the usual columns
                value = m[mode.name]
                assert value is not None
                line += f"  {mode.label} {fmt_ns(value)}"
                line += "" if violation else f" ({value / bare:.3f}x)"
            if args.callgrind and not violation:
                ib = per_op_instructions(case, "bare", policy, env)
                ish = per_op_instructions(case, "shield", policy, env)
                line += f"  instructions/op {ib:,.0f} -> {ish:,.0f} ({ish / ib:.3f}x)"
                m = {**m, "instructions_bare": ib, "instructions_shield": ish}
                for mode in more:
                    count = per_op_instructions(case, mode, policy, env)
                    line += f", {mode.label} {count:,.0f} ({count / ib:.3f}x)"
                    m = {**m, f"instructions_{mode.name}": count}
                noop = m.get("instructions_noop_hook")
                if case.unhandled and noop:
                    line += f"; appshield / no-op hook {ish / noop:.3f}x"
                if args.shadow:
                    candidate = shadow_policy(args.shadow, policy, folder)
                    shadowed = {**env, "APPSHIELD_SHADOW_POLICY": candidate}
                    isd = per_op_instructions(case, "shield", policy, shadowed)
                    line += f" -> shadow {args.shadow} {isd:,.0f} ({isd / ib:.3f}x)"
                    m = {**m, f"instructions_shadow_{args.shadow}": isd}
            print(line, flush=True)
            results[case.name] = m
            rows.append((case, m))
        if args.markdown and rows:
            print()
            print(markdown_table(rows, more))
        if only is None or "globs" in only:
            from _worst_cases import print_globs

            results["globs_worst_ns"] = print_globs()
        if only is None or "first_decision" in only:
            from _worst_cases import print_first_decision

            results["first_decision"] = print_first_decision()
        if only is not None and "servers" in only:  # opt-in: servers start, learn, serve
            from bench_servers import run_callgrind, run_servers

            rounds_, requests = (3, 2000) if args.quick else (5, 5000)
            results["servers"] = run_servers(None, rounds_, requests)
            if args.callgrind:
                results["servers_instructions"] = run_callgrind()
        if not args.only or "startup" in args.only:
            aikido = args.aikido_python
            rounds = 5 if args.quick else 15
            s, rss = startup(rounds, policies, env, aikido, not args.no_strace)
            base = s["python -c pass"]
            counts = startup_instructions(policies, env, aikido) if args.callgrind else {}
            print()
            for label, ms in s.items():
                extra = "" if label == "python -c pass" else f"  (+{ms - base:.1f} ms)"
                extra += f"  peak RSS {rss[label]:5.1f} MB"
                if label != "python -c pass":
                    extra += f" (+{rss[label] - rss['python -c pass']:.1f} MB)"
                if label in counts:
                    extra += f"  {counts[label] / 1e6:8.1f} M instructions"
                    if label != "python -c pass":
                        extra += f" (+{(counts[label] - counts['python -c pass']) / 1e6:.1f} M)"
                print(f"start-up  {label:42} {ms:7.1f} ms{extra}")
            results["startup_ms"] = s
            results["startup_peak_rss_mb"] = rss
            results["startup_instructions"] = counts
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
