"""A shielded process hammering appshield from many threads or tasks, judged from outside.

    python _driver.py threads|asyncio|fork THREADS OPS WORKDIR

Each worker mixes allowed and denied operations: `os.open` of an allowed and of a denied
file, and now and then a TCP connect to an allowed and to a denied loopback listener. It
counts what it saw; the listeners count the connections that really arrived; appshield's
`appshield.violations` counter (read through the app's own MeterProvider) counts what was
reported. The result is printed as one JSON line: the test compares the three.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

CONNECT_EVERY = 50  # one operation in 50 is a connect (much dearer than an open)


class Listener:
    """Counts the TCP connections that really arrive on a loopback port."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.count = 0
        self._arrival = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._arrival:
                self.count += 1
                self._arrival.notify_all()
            conn.close()

    def settled_count(self, at_least: int, timeout: float = 30.0) -> int:
        """The count once `at_least` connections have been accepted (or the timeout passed).

        A client's connect() returns once the kernel has queued the connection, before this
        thread accepts it, so reading the count straight after the workers finish can miss
        the last few arrivals."""
        with self._arrival:
            self._arrival.wait_for(lambda: self.count >= at_least, timeout)
            return self.count


@dataclass
class Tally:
    counts: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, local: Counter[str]) -> None:
        with self.lock:
            self.counts.update(local)


@dataclass(frozen=True)
class Setup:
    allowed_file: str
    denied_file: str
    allowed_port: int
    denied_port: int


def one_operation(setup: Setup, i: int, local: Counter[str]) -> None:
    denied = i % 3 == 0
    if i % CONNECT_EVERY == 1 or i % CONNECT_EVERY == 3:  # 1 and 3: one denied, one not
        port = setup.denied_port if i % 3 == 0 else setup.allowed_port
        denied = port == setup.denied_port
        attempt = lambda: socket.create_connection(("127.0.0.1", port), timeout=10).close()  # noqa: E731
        kind = "connect"
    else:
        path = setup.denied_file if denied else setup.allowed_file
        attempt = lambda: os.close(os.open(path, os.O_RDONLY))  # noqa: E731
        kind = "open"
    try:
        attempt()
    except PermissionError as error:
        rule = getattr(error, "rule_id", None)
        local[f"{kind}_blocked" if denied and rule else f"{kind}_wrongly_blocked"] += 1
    except OSError:
        local[f"{kind}_error"] += 1
    else:
        local[f"{kind}_leaked" if denied else f"{kind}_ok"] += 1


def thread_worker(setup: Setup, ops: int, start: threading.Barrier, tally: Tally) -> None:
    local: Counter[str] = Counter()
    start.wait()
    for i in range(ops):
        one_operation(setup, i, local)
    tally.add(local)


def run_threads(setup: Setup, threads: int, ops: int) -> Counter[str]:
    tally = Tally()
    start = threading.Barrier(threads)
    workers = [
        threading.Thread(target=thread_worker, args=(setup, ops, start, tally))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tally.counts


async def task_worker(setup: Setup, ops: int, local: Counter[str]) -> None:
    loop = asyncio.get_running_loop()
    for i in range(ops):
        if i % CONNECT_EVERY in (1, 3):
            denied = i % 3 == 0
            port = setup.denied_port if denied else setup.allowed_port
            try:
                sock = socket.socket()
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, ("127.0.0.1", port))
                finally:
                    sock.close()
            except PermissionError:
                local["connect_blocked" if denied else "connect_wrongly_blocked"] += 1
            except OSError:
                local["connect_error"] += 1
            else:
                local["connect_leaked" if denied else "connect_ok"] += 1
        else:
            one_operation(setup, i, local)
        if i % 10 == 0:
            await asyncio.sleep(0)  # interleave the tasks


async def run_tasks(setup: Setup, tasks: int, ops: int) -> Counter[str]:
    local: Counter[str] = Counter()
    await asyncio.gather(*(task_worker(setup, ops, local) for _ in range(tasks)))
    return local


def run_fork(setup: Setup, threads: int, ops: int, reader: InMemoryMetricReader) -> dict[str, Any]:
    """Threads run; half-way through the main thread forks. The child (holding whatever locks
    the other threads held at that moment) must go on enforcing and counting."""
    tally = Tally()
    start = threading.Barrier(threads + 1)
    workers = [
        threading.Thread(target=thread_worker, args=(setup, ops, start, tally))
        for _ in range(threads)
    ]
    for worker in workers:
        worker.start()
    start.wait()
    local: Counter[str] = Counter()
    for i in range(ops // 2):
        one_operation(setup, i, local)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a single thread now, with the parent's state at fork time
        os.close(read_end)
        before = violation_count(reader)
        child: Counter[str] = Counter()
        child_start = threading.Barrier(4)
        child_tally = Tally()
        child_threads = [
            threading.Thread(target=thread_worker, args=(setup, ops // 4, child_start, child_tally))
            for _ in range(4)
        ]
        for t in child_threads:
            t.start()
        for t in child_threads:
            t.join()
        for i in range(ops // 4):
            one_operation(setup, i, child)
        child.update(child_tally.counts)
        report = {"counts": child, "counted": violation_count(reader) - before}
        os.write(write_end, json.dumps(report).encode())
        os._exit(0)
    os.close(write_end)
    for i in range(ops // 2, ops):
        one_operation(setup, i, local)
    for worker in workers:
        worker.join()
    tally.add(local)
    with os.fdopen(read_end, "rb") as pipe:
        child_report = json.loads(pipe.read() or b"{}")
    _, status = os.waitpid(pid, 0)
    return {"parent": tally.counts, "child": child_report, "child_status": status}


def violation_count(reader: InMemoryMetricReader) -> int:
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "appshield.violations":
                    total += sum(int(p.value) for p in metric.data.data_points)
    return total


def prepare(workdir: Path) -> tuple[Setup, Listener, Listener]:
    (workdir / "secret").mkdir(exist_ok=True)
    allowed, denied = workdir / "public.txt", workdir / "secret" / "key.txt"
    allowed.write_text("public")
    denied.write_text("secret")
    good, bad = Listener(), Listener()
    return Setup(str(allowed), str(denied), good.port, bad.port), good, bad


def policy(setup: Setup, workdir: Path) -> dict[str, Any]:
    return {
        "version": 1,
        "name": "stress",
        "mode": "enforce",
        "defaults": {"process": "allow", "file": "allow", "network": "allow", "import": "allow"},
        "rules": [
            {"id": "deny-secret", "category": "file", "action": "deny",
             "match": {"path": f"{workdir}/secret/**"}},
            {"id": "deny-port", "category": "network", "action": "deny",
             "match": {"cidr": "127.0.0.1/32", "port": setup.denied_port}},
        ],
    }  # fmt: skip


def main() -> None:
    scenario, threads, ops, workdir = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    folder = Path(workdir)
    setup, good, bad = prepare(folder)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    import appshield

    appshield.install(policy(setup, folder))
    result: dict[str, Any]
    if scenario == "threads":
        result = {"counts": run_threads(setup, threads, ops)}
    elif scenario == "asyncio":
        result = {"counts": asyncio.run(run_tasks(setup, threads, ops))}
    else:
        result = run_fork(setup, threads, ops, reader)
    result["counted"] = violation_count(reader)
    connected = result["counts"].get("connect_ok", 0) if "counts" in result else 0
    result["arrived"] = {"allowed": good.settled_count(connected), "denied": bad.count}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
