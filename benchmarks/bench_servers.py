"""Server throughput under a learned policy (issue 17): bare against `appshield run`.

    python benchmarks/bench_servers.py                    # both servers, 5 rounds
    python benchmarks/bench_servers.py --rounds 3 --requests 2000 --only flask
    python benchmarks/bench_servers.py --callgrind --requests 100   # instructions/request
    python benchmarks/bench_servers.py --profile          # where the shield's cost goes
    python benchmarks/run.py --only servers [--quick] [--callgrind]  # as a row of run.py

Two servers, each with ONE worker process, so that the comparison is about the process that
serves: Flask under `gunicorn -w 1` (sync worker: one connection per request, as gunicorn's
sync worker closes after each response) and FastAPI under `uvicorn` (one process, h11 on
asyncio, its default access log; a plain `def` endpoint, run in the thread pool, as FastAPI
documents for blocking work). Each app's endpoint does what a small JSON service does: it
opens and parses a small JSON file and renders part of it as JSON.

For each server:
1. `appshield learn --out P -- SERVER` while a short warm-up loop of the same requests
   runs against it, then `appshield check P`: the policy measured is the learned one.
2. Rounds, bare and shielded interleaved (bare, shield, bare, shield, ...): each round
   starts the server fresh (`SERVER`, or `appshield run --policy P -- SERVER`), waits until
   it answers, sends a warm-up loop, then the measured loop: a fixed number of GETs, one
   after another, from a separate client process (http.client, HTTP/1.1 keep-alive where
   the server keeps the connection). Requests per second is the client's count over its
   wall time; the server's CPU time per request is the utime+stime of the server's whole
   process tree (/proc/PID/stat, every live process under it) before and after that loop.
   After the loop of a shielded round the violations log must be empty (the learned policy
   allowed everything the loop did), and a request to an endpoint that learning never saw
   (it reads another file) must be denied: the shield was on in the worker that served.
3. A table: medians of requests per second and CPU us per request, both ways, the ratio of
   the medians, and the spread of the ratios of the rounds' pairs (lowest, median, highest).

`--callgrind` counts user-space instructions per request instead (valgrind, not swayed by
the machine's load): each server runs under callgrind (children and forks followed); after a
warm-up its counters are zeroed, a loop of N and then one of 2N requests each end with a
dump (`callgrind_control`); per request is the difference over N, added up over the
server's processes. `--keep DIR` keeps the dumps for `callgrind_annotate --inclusive=yes`.

`--profile` runs the server bare and shielded once more with cProfile in every thread of
the serving process (appshield's audit hook made visible to it with `__cantrace__`, PEP
578: audit hooks are otherwise never profiled) and an audit hook that counts events, and
prints per request: the audit events, the appshield functions called at least every other
request (calls, own and cumulative time), and what the audit hook and the gate call.
cProfile's own overhead inflates every time; the call counts are exact.

Everything listens and connects on 127.0.0.1 only; every loop is bounded in requests and
time; every server is started in its own process group, which is killed when its step ends.
"""

from __future__ import annotations

import argparse
import json
import marshal
import os
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

STEP_TIMEOUT = 120.0  # seconds any start, loop or stop may take
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The data the endpoint reads on every request: 40 items, about 3 KB of JSON.
DATA = [
    {"id": i, "name": f"item-{i}", "price": round(1.5 * i + 0.25, 2), "tags": ["a", "b", str(i)]}
    for i in range(40)
]

# The profiling prelude both apps start with: inert unless BENCH_PROFILE_FD is set. It
# profiles every thread of the process (one cProfile.Profile per thread: one profiler cannot
# follow several threads' stacks) and, at exit, writes their stats, marshalled, to that
# inherited descriptor with os.write: no file is opened, so the learned policy needs no rule
# for it.
PROFILE_PRELUDE = """\
import os as _os

if _os.environ.get("BENCH_PROFILE_FD"):
    import atexit, cProfile, marshal, threading

    _profiles = []

    def _start(*_args):
        profile = cProfile.Profile()
        _profiles.append(profile)
        profile.enable()

    _events = {}

    def _count(event, _args):  # every audit event of the process, by name
        _events[event] = _events.get(event, 0) + 1

    def _dump():
        threads = []
        for profile in _profiles:
            profile.disable()
            profile.create_stats()
            threads.append(profile.stats)
        blob = marshal.dumps({"threads": threads, "events": dict(_events)})
        _os.write(int(_os.environ["BENCH_PROFILE_FD"]), blob)

    # An audit hook runs unprofiled unless it has a true `__cantrace__` (PEP 578): let the
    # profiler see inside appshield's, where most of its work per operation is done.
    import gc, sys, types

    for _hook in gc.get_objects():
        if type(_hook) is types.FunctionType and _hook.__name__ == "appshield_audit_hook":
            _hook.__cantrace__ = True
    sys.addaudithook(_count)
    threading.setprofile(_start)  # each new thread starts its own profiler
    _start()
    atexit.register(_dump)
"""

FLASK_APP = (
    PROFILE_PRELUDE
    + """
import json
import os

from flask import Flask, jsonify

HERE = os.path.dirname(os.path.abspath(__file__))
app = Flask(__name__)


@app.get("/item/<int:n>")
def item(n):
    with open(os.path.join(HERE, "data.json"), encoding="utf-8") as f:
        items = json.load(f)
    entry = items[n % len(items)]
    return jsonify(id=n, name=entry["name"], tags=entry["tags"],
                   total=sum(e["price"] for e in items))


@app.get("/other")
def other():  # never requested while learning: the shield must deny its read
    with open(os.path.join(HERE, "other.txt"), encoding="utf-8") as f:
        return f.read()
"""
)

FASTAPI_APP = (
    PROFILE_PRELUDE
    + """
import json
import os

from fastapi import FastAPI

HERE = os.path.dirname(os.path.abspath(__file__))
app = FastAPI()


@app.get("/item/{n}")
def item(n: int):
    with open(os.path.join(HERE, "data.json"), encoding="utf-8") as f:
        items = json.load(f)
    entry = items[n % len(items)]
    return {"id": n, "name": entry["name"], "tags": entry["tags"],
            "total": sum(e["price"] for e in items)}


@app.get("/other")
def other():  # never requested while learning: the shield must deny its read
    with open(os.path.join(HERE, "other.txt"), encoding="utf-8") as f:
        return f.read()
"""
)

# The client: its own process (it must not share the server's CPU accounting or GIL), one
# connection reused while the server keeps it (http.client reconnects by itself when the
# server closes after a response). Prints {"seconds", "bad", "bytes"}.
CLIENT = """\
import http.client, json, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
bad = size = 0
t0 = time.perf_counter()
for i in range(count):
    conn.request("GET", f"/item/{i % 100}")
    response = conn.getresponse()
    size += len(response.read())
    bad += response.status != 200
seconds = time.perf_counter() - t0
conn.close()
print(json.dumps({"seconds": seconds, "bad": bad, "bytes": size}))
"""


@dataclass(frozen=True)
class Server:
    key: str  # what --only accepts
    label: str
    app: str  # the source of app.py
    # How it is stopped. uvicorn re-raises the signal that stopped it once it has shut down:
    # on SIGINT that is a KeyboardInterrupt, which still runs the atexit handlers (the
    # profile's dump); on SIGTERM the process dies without them.
    stop: signal.Signals = signal.SIGTERM

    def command(self, port: int) -> list[str]:
        # The console script run by this interpreter by name (not through its #! line), so
        # that valgrind runs the interpreter itself.
        script = str(
            Path(sys.executable).with_name("gunicorn" if self.key == "flask" else "uvicorn")
        )
        if self.key == "flask":
            # gunicorn 23+ opens a control socket, by default one path for every gunicorn of
            # the user: here it stays in the app's folder.
            return [sys.executable, script, "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
                    "--control-socket", "gunicorn.ctl", "app:app"]  # fmt: skip
        return [sys.executable, script, "app:app", "--host", "127.0.0.1", "--port", str(port)]


SERVERS = (
    Server("flask", "Flask + gunicorn -w 1 (sync)", FLASK_APP),
    Server("fastapi", "FastAPI + uvicorn (1 process)", FASTAPI_APP, signal.SIGINT),
)


@dataclass
class Round:
    rps: float
    cpu_us: float  # server process tree CPU time per request


@dataclass
class Result:
    server: str
    policy_rules: int
    bare: list[Round] = field(default_factory=list)
    shield: list[Round] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        median = statistics.median
        rps_b, rps_s = median(r.rps for r in self.bare), median(r.rps for r in self.shield)
        cpu_b, cpu_s = median(r.cpu_us for r in self.bare), median(r.cpu_us for r in self.shield)
        pairs = list(zip(self.bare, self.shield, strict=True))
        rps_ratios = [s.rps / b.rps for b, s in pairs]
        cpu_ratios = [s.cpu_us / b.cpu_us for b, s in pairs if b.cpu_us > 0]
        return {
            "rps_bare": rps_b,
            "rps_shield": rps_s,
            "rps_ratio": rps_s / rps_b,
            "rps_ratio_low": min(rps_ratios),
            "rps_ratio_pairs_median": median(rps_ratios),
            "rps_ratio_high": max(rps_ratios),
            "cpu_us_bare": cpu_b,
            "cpu_us_shield": cpu_s,
            "cpu_ratio": cpu_s / cpu_b if cpu_b else float("nan"),
            "cpu_ratio_low": min(cpu_ratios, default=float("nan")),
            "cpu_ratio_pairs_median": median(cpu_ratios) if cpu_ratios else float("nan"),
            "cpu_ratio_high": max(cpu_ratios, default=float("nan")),
        }


def clean_env() -> dict[str, str]:
    """This environment without appshield's and OpenTelemetry's settings, with bytecode
    writing on, as in production (so `appshield run` uses its policy cache)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("APPSHIELD_", "OTEL_", "BENCH_")) and k != "PYTHONDONTWRITEBYTECODE"
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and every live process under it (all their threads, the
    exited ones included: /proc/PID/stat counts the whole thread group)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        todo += _children(current)
    return total / CLK_TCK


def client(port: int, count: int, timeout: float = STEP_TIMEOUT) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), str(count)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )
    if done.returncode != 0:
        raise RuntimeError(f"client failed:\n{done.stderr[-2000:]}")
    answer: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if answer["bad"]:
        raise RuntimeError(f"{answer['bad']} of {count} requests did not answer 200")
    return answer


def get_status(port: int, path: str) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@contextmanager
def serving(
    command: list[str],
    folder: Path,
    port: int,
    env: dict[str, str],
    *,
    stop: signal.Signals = signal.SIGTERM,
    under_learn: bool = False,
    pass_fds: Sequence[int] = (),
    timeout: float = STEP_TIMEOUT,
) -> Iterator[int]:
    """Start `command` in its own process group in `folder`, wait until it answers on
    127.0.0.1:`port`, yield its pid; on leaving, send `stop` to the server's master (`appshield
    run` becomes it; under `appshield learn` it is learn's child, so that learning ends
    with the command's own exit, not cut short), wait for a clean exit, and whatever
    happened kill the whole group."""
    errors = (folder / f"stderr-{port}.txt").open("w")
    proc = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=errors,
        start_new_session=True, pass_fds=pass_fds,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if get_status(port, "/item/0") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(
                    f"{command} did not serve:\n{(folder / f'stderr-{port}.txt').read_text()}"
                )
            time.sleep(0.05)
        yield proc.pid
        os.kill(_children(proc.pid)[0] if under_learn else proc.pid, stop)
        code = proc.wait(timeout=timeout)
        if code not in (0, -stop, 128 + stop):  # the signal re-raised is a clean stop too
            raise RuntimeError(f"exit {code}:\n{(folder / f'stderr-{port}.txt').read_text()}")
    finally:
        errors.close()
        tree = _tree(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.poll() is None:
            proc.wait()
        # A killed worker dies a moment after the signal: wait for it (bounded), so that no
        # server of this step still runs, nor holds a core, when the next one starts.
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.02)


def _tree(pid: int) -> list[int]:
    """`pid` and every live process under it."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += _children(current)
    return found


def _running(pid: int) -> bool:
    """Whether `pid` is there and not a zombie (dead, only waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] != "Z"


def appshield(*args: str) -> list[str]:
    return [sys.executable, "-m", "appshield", *args]


def prepare(server: Server, folder: Path) -> None:
    (folder / "app.py").write_text(server.app)
    (folder / "data.json").write_text(json.dumps(DATA))
    (folder / "other.txt").write_text("never read while learning\n")


def learn(server: Server, folder: Path, warmup: int) -> tuple[Path, int]:
    """Learn the server's policy from `warmup` requests; check it. The policy and its rule
    count."""
    policy = folder / "appshield.yaml"
    port = free_port()
    command = appshield("learn", "--out", str(policy), "--", *server.command(port))
    with serving(command, folder, port, clean_env(), stop=server.stop, under_learn=True):
        client(port, warmup)
    checked = subprocess.run(
        appshield("check", str(policy)), cwd=folder, capture_output=True, text=True,
        timeout=STEP_TIMEOUT, env=clean_env(),
    )  # fmt: skip
    if checked.returncode != 0:
        raise RuntimeError(f"appshield check {policy} failed:\n{checked.stdout}{checked.stderr}")
    import yaml

    rules = len(yaml.safe_load(policy.read_text()).get("rules") or [])
    return policy, rules


def read_log(log: Path) -> list[dict[str, object]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def server_start(
    server: Server, policy: Path | None, log: Path
) -> tuple[int, dict[str, str], list[str]]:
    """A free port, the environment and the command of one server start: bare when `policy`
    is None, else under `appshield run` with its violations written to `log`."""
    port = free_port()
    env = clean_env()
    command = server.command(port)
    if policy is not None:
        log.unlink(missing_ok=True)
        env["APPSHIELD_LOG"] = str(log)
        command = appshield("run", "--policy", str(policy), "--", *command)
    return port, env, command


def one_round(
    server: Server, folder: Path, policy: Path | None, requests: int, warmup: int
) -> Round:
    """One fresh server (bare when `policy` is None), warmed up, then the measured loop."""
    log = folder / "violations.jsonl"
    port, env, command = server_start(server, policy, log)
    with serving(command, folder, port, env, stop=server.stop) as pid:
        client(port, warmup)
        cpu0 = tree_cpu_seconds(pid)
        answer = client(port, requests)
        cpu1 = tree_cpu_seconds(pid)
        if policy is not None:
            found = read_log(log)
            if found:
                raise RuntimeError(f"the learned policy denied the loop: {found[:3]}")
            # The shield was on in the worker that served: what learning never saw is denied.
            status = get_status(port, "/other")
            denied = [v for v in read_log(log) if str(v.get("target", "")).endswith("other.txt")]
            if status == 200 or not denied or not all(v.get("blocked") for v in denied):
                raise RuntimeError(f"/other was not denied under the shield ({status}, {denied})")
    return Round(requests / answer["seconds"], (cpu1 - cpu0) / requests * 1e6)


def measure(server: Server, rounds: int, requests: int, warmup: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="appshield-bench-servers-") as tmp:
        folder = Path(tmp)
        prepare(server, folder)
        policy, rules = learn(server, folder, warmup)
        result = Result(server.label, rules)
        for number in range(rounds):
            bare = one_round(server, folder, None, requests, warmup)
            shield = one_round(server, folder, policy, requests, warmup)
            result.bare.append(bare)
            result.shield.append(shield)
            print(
                f"  {server.key:8} round {number + 1}: bare {bare.rps:7.0f} rps"
                f" {bare.cpu_us:6.0f} us CPU/req; shielded {shield.rps:7.0f} rps"
                f" {shield.cpu_us:6.0f} us CPU/req",
                flush=True,
            )
        return result


def table(results: Sequence[Result]) -> str:
    """Medians both ways and the ratio of the medians; in brackets, the lowest, median and
    highest of the ratios of each round's pair (bare and shielded run one after the other,
    so a pair shares the machine's load of the moment)."""
    pairs = "(pairs: low med high)"
    head = (
        f"{'server':31} {'rps bare':>9} {'shielded':>9} {'ratio':>7} {pairs:>21}"
        f" {'CPU us/req bare':>16} {'shielded':>9} {'ratio':>7} {pairs:>21}"
    )
    lines = [head]
    for r in results:
        s = r.summary()
        lines.append(
            f"{r.server:31} {s['rps_bare']:9.0f} {s['rps_shield']:9.0f} {s['rps_ratio']:6.3f}x"
            f"   {s['rps_ratio_low']:.3f} {s['rps_ratio_pairs_median']:.3f}"
            f" {s['rps_ratio_high']:.3f}"
            f" {s['cpu_us_bare']:16.0f} {s['cpu_us_shield']:9.0f} {s['cpu_ratio']:6.3f}x"
            f"   {s['cpu_ratio_low']:.3f} {s['cpu_ratio_pairs_median']:.3f}"
            f" {s['cpu_ratio_high']:.3f}"
        )
    return "\n".join(lines)


def run_servers(
    only: Sequence[str] | None = None, rounds: int = 5, requests: int = 5000, warmup: int = 200
) -> dict[str, object]:
    """Measure the selected servers, print the rounds and the table; the figures."""
    chosen = [s for s in SERVERS if only is None or s.key in only]
    print(
        f"\nserver throughput under a learned policy: {rounds} rounds of {requests} requests"
        f" (after {warmup} warm-up), bare and shielded interleaved (target: within 3%)",
        flush=True,
    )
    results = [measure(s, rounds, requests, warmup) for s in chosen]
    print(table(results))
    return {
        r.server: {
            **r.summary(),
            "policy_rules": r.policy_rules,
            "rounds": [
                {"bare": vars(b), "shield": vars(s)} for b, s in zip(r.bare, r.shield, strict=True)
            ],
        }
        for r in results
    }


# -- instructions (callgrind) ---------------------------------------------------------------

_SUMMARY = re.compile(r"^summary: (\d+)$", re.MULTILINE)
CALLGRIND_TIMEOUT = 900.0  # a start under valgrind is some 50 times slower


def _callgrind_control(option: str, pids: Sequence[int]) -> None:
    for pid in pids:
        subprocess.run(
            ["callgrind_control", option, str(pid)],
            capture_output=True, timeout=STEP_TIMEOUT, check=True,
        )  # fmt: skip


def _dumped(folder: Path, pids: Sequence[int], part: int) -> int:
    """The instructions of dump `part` of every process in `pids`, added up."""
    total = 0
    for pid in pids:
        found = _SUMMARY.findall((folder / f"cg.{pid}.{part}").read_text())
        total += int(found[0])
    return total


def server_instructions(
    server: Server,
    folder: Path,
    policy: Path | None,
    requests: int,
    warmup: int,
    keep: Path | None = None,
) -> float:
    """User-space instructions per request of the server's processes (bare when `policy` is
    None), under callgrind: after a warm-up the counters are zeroed, then the loop runs with
    `requests` and again with 2 x `requests` requests, each followed by a dump; per request
    is the difference divided by `requests` (what does not grow with the loop cancels).
    `keep`: a folder to copy the dumps to (`callgrind_annotate --inclusive=yes` reads them)."""
    port, env, command = server_start(server, policy, folder / "violations-callgrind.jsonl")
    with tempfile.TemporaryDirectory(prefix="appshield-bench-cg-") as out:
        where = Path(out)
        valgrind = ["valgrind", "--tool=callgrind", "--trace-children=yes",
                    f"--callgrind-out-file={where}/cg.%p"]  # fmt: skip
        with serving(
            [*valgrind, *command], folder, port, env, stop=server.stop, timeout=CALLGRIND_TIMEOUT
        ) as pid:
            client(port, warmup, timeout=CALLGRIND_TIMEOUT)
            pids = [pid, *_children(pid)]
            _callgrind_control("-z", pids)
            client(port, requests, timeout=CALLGRIND_TIMEOUT)
            _callgrind_control("-d", pids)
            client(port, 2 * requests, timeout=CALLGRIND_TIMEOUT)
            _callgrind_control("-d", pids)
            one, two = _dumped(where, pids, 1), _dumped(where, pids, 2)
        if keep is not None:
            kind = "shield" if policy is not None else "bare"
            for dump in where.glob("cg.*.[12]"):
                shutil.copy(dump, keep / f"{server.key}-{kind}-{dump.name}")
    return (two - one) / requests


def run_callgrind(
    only: Sequence[str] | None = None,
    requests: int = 100,
    warmup: int = 50,
    keep: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Instructions per request, bare and shielded, of each selected server."""
    print(f"\nserver instructions per request (callgrind, loops of {requests} and {2 * requests})")
    figures = {}
    for server in (s for s in SERVERS if only is None or s.key in only):
        with tempfile.TemporaryDirectory(prefix="appshield-bench-servers-") as tmp:
            folder = Path(tmp)
            prepare(server, folder)
            policy, _rules = learn(server, folder, warmup)
            bare = server_instructions(server, folder, None, requests, warmup, keep)
            shield = server_instructions(server, folder, policy, requests, warmup, keep)
        figures[server.label] = {"instructions_bare": bare, "instructions_shield": shield}
        print(
            f"  {server.label:31} bare {bare:12,.0f}  shielded {shield:12,.0f}"
            f"  ({shield / bare:.3f}x, +{shield - bare:,.0f})",
            flush=True,
        )
    return figures


# -- profile ---------------------------------------------------------------------------------


@dataclass
class Profile:
    stats: pstats.Stats
    events: dict[str, int]  # audit events by name, from the app's import to the exit


def profiled(
    server: Server, folder: Path, policy: Path | None, requests: int, warmup: int
) -> Profile:
    """cProfile of every thread of the server (bare when `policy` is None) over warm-up +
    loop, and its audit events, read back through an inherited temporary file."""
    port, env, command = server_start(server, policy, folder / "violations-profile.jsonl")
    with tempfile.TemporaryFile() as out:
        env["BENCH_PROFILE_FD"] = str(out.fileno())
        with serving(command, folder, port, env, stop=server.stop, pass_fds=(out.fileno(),)):
            client(port, warmup)
            client(port, requests)
        out.seek(0)
        blob = out.read()
    if not blob:
        raise RuntimeError("the server wrote no profile")
    dumped = marshal.loads(blob)
    stats = pstats.Stats(_Loaded(dumped["threads"][0]))  # type: ignore[arg-type]
    for more in dumped["threads"][1:]:
        stats.add(_Loaded(more))  # type: ignore[arg-type]
    return Profile(stats, dumped["events"])


class _Loaded:
    """What pstats.Stats takes for a profiler: its `stats` after `create_stats()`."""

    def __init__(self, stats: dict[object, object]) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


Row = tuple[str, float, float, float]  # function, calls, own us, cumulative us (per request)


def _name(function: tuple[str, int, str], package: str = "appshield") -> str:
    filename, line, name = function
    marker = f"/{package}/"
    if marker in filename:
        filename = filename[filename.rindex(marker) + 1 :]
    elif filename == "~":  # a built-in function
        return name
    return f"{filename}:{line} {name}"


def per_request(stats: pstats.Stats, calls: int, package: str) -> list[Row]:
    """The functions of `package` called at least once every other request, by cumulative
    time."""
    rows = []
    table_ = stats.stats  # type: ignore[attr-defined]
    for function, (_cc, ncalls, tottime, cumtime, _callers) in table_.items():
        if f"/{package}/" not in function[0] or ncalls < calls / 2:
            continue
        rows.append((_name(function), ncalls / calls, tottime / calls * 1e6, cumtime / calls * 1e6))
    return sorted(rows, key=lambda row: -row[3])


def callees(stats: pstats.Stats, name: str, calls: int) -> list[Row]:
    """What the function called `name` calls, per request (own time left out: pstats keeps
    only the time of each call edge)."""
    stats.calc_callees()
    rows = []
    for function, edges in stats.all_callees.items():  # type: ignore[attr-defined]
        if function[2] != name:
            continue
        for callee, (_cc, ncalls, _tt, cumtime) in edges.items():
            rows.append((_name(callee), ncalls / calls, 0.0, cumtime / calls * 1e6))
    return sorted(rows, key=lambda row: -row[3])


def run_profile(only: Sequence[str] | None, requests: int, warmup: int) -> None:
    for server in (s for s in SERVERS if only is None or s.key in only):
        with tempfile.TemporaryDirectory(prefix="appshield-bench-servers-") as tmp:
            folder = Path(tmp)
            prepare(server, folder)
            policy, _rules = learn(server, folder, warmup)
            calls = requests + warmup
            bare = profiled(server, folder, None, requests, warmup)
            shield = profiled(server, folder, policy, requests, warmup)
        # pstats sets `total_tt` in __init__ without declaring it (typeshed leaves it out).
        total = {
            how: p.stats.total_tt / calls * 1e6  # type: ignore[attr-defined]
            for how, p in (("bare", bare), ("shield", shield))
        }
        print(
            f"\n{server.label}: cProfile over {calls} requests (every thread; profiled time"
            f" per request: bare {total['bare']:.0f} us, shielded {total['shield']:.0f} us)"
        )
        print("  audit events per request (shielded):")
        events = sorted(shield.events.items(), key=lambda item: -item[1])
        for event, count in events:
            if count >= calls / 2:
                print(f"    {event:40} {count / calls:6.2f}")
        print(f"  appshield functions run per request:\n    {'function':70} {'calls':>6}"
              f" {'own us':>7} {'cum us':>7}")  # fmt: skip
        for name, ncalls, own, cum in per_request(shield.stats, calls, "appshield")[:25]:
            print(f"    {name[:70]:70} {ncalls:6.2f} {own:7.2f} {cum:7.2f}")
        # The audit hook's own calls, then the handlers the gate runs for the events it
        # decides in full (the rest take the hook's fast paths).
        for caller in ("appshield_audit_hook", "_event_once"):
            print(f"  what {caller} calls, per request:")
            for name, ncalls, _own, cum in callees(shield.stats, caller, calls)[:8]:
                print(f"    {name[:70]:70} {ncalls:6.2f} {'':7} {cum:7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated servers: flask, fastapi")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=5000, help="per measured loop")
    parser.add_argument("--warmup", type=int, default=200, help="requests before each loop")
    parser.add_argument("--profile", action="store_true", help="cProfile instead of timing")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="instructions per request instead of timing (valgrind; --requests 100 is plenty)",
    )
    parser.add_argument("--keep", metavar="DIR", help="with --callgrind: keep the dumps in DIR")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    only = args.only.split(",") if args.only else None
    if args.profile:
        run_profile(only, args.requests, args.warmup)
        return 0
    if args.callgrind:
        keep = Path(args.keep) if args.keep else None
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
        counts = run_callgrind(only, args.requests, args.warmup, keep)
        if args.json:
            Path(args.json).write_text(json.dumps(counts, indent=2))
        return 0
    figures = run_servers(only, args.rounds, args.requests, args.warmup)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
