"""A tiny service for trying `appshield learn` (see README.md next to this file).

It does a little of everything a real service does: reads its config file, runs a program
(`git --version`, or `true` where git is missing), calls a service on 127.0.0.1, imports a
few modules, and starts a Python worker that reads a data file. Run it once under
`appshield learn`, then under `appshield run` with the learned policy.

`--attack KIND` makes it misbehave the way a compromised service would, to see the learned
policy stop it: `shell` (start a shell), `port` (connect to a port it never used),
`secret` (read a file it never read). The attack prints BLOCKED when a PolicyViolation (a
PermissionError) stops it and DONE when it went through.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_config() -> dict[str, object]:
    with open(HERE / "config.json", encoding="utf-8") as handle:
        return dict(json.load(handle))


def run_program() -> str:
    program = ["git", "--version"] if shutil.which("git") else ["true"]
    return subprocess.run(program, capture_output=True, text=True, check=True).stdout.strip()


def call_service(port: int, greeting: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(greeting.encode() + b"\n")
        return conn.recv(100).decode().strip()


def start_worker() -> str:
    worker = HERE / "worker.py"
    done = subprocess.run([sys.executable, str(worker)], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip()


def attack(kind: str, target: str) -> None:
    try:
        if kind == "shell":
            os.system(f"echo pwned > {target}")
        elif kind == "port":
            socket.create_connection(("127.0.0.1", int(target)), timeout=10).close()
        elif kind == "secret":
            print("secret:", Path(target).read_text().strip())
    except PermissionError as exc:
        print(f"BLOCKED {kind}: {exc}")
        return
    print(f"DONE {kind}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True, help="the service on 127.0.0.1")
    parser.add_argument("--attack", choices=("shell", "port", "secret"))
    parser.add_argument("--target", default="", help="canary file, port or secret file")
    args = parser.parse_args()
    config = read_config()
    print("config:", config["name"])
    print("program:", run_program())
    print("service:", call_service(args.port, str(config["greeting"])))
    print("worker:", start_worker())
    if args.attack:
        attack(args.attack, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
